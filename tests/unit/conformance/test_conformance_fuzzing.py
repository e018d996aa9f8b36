"""Schemathesis' settings: the rate limiter `--rate-limit` gives it."""

from __future__ import annotations

import time

import jsonschema_rs
import pytest
from schemathesis.openapi.checks import JsonSchemaError

from conformance.fuzzing import even_limiter, failure_message


def test_the_rate_limiter_never_lets_requests_go_faster_than_asked() -> None:
    # Schemathesis was given "120/m" for 2/s, a sliding window that let a burst of 120 go at
    # once; one request every 1/R s never does (a lower bound only: a busy machine is slower).
    limiter = even_limiter(50.0)
    started = time.monotonic()
    for _ in range(11):
        limiter.try_acquire("provider")
    assert time.monotonic() - started >= 10 / 50


def test_a_schema_violation_is_reported_by_place_and_keyword_never_by_its_value() -> None:
    """Schemathesis' own message quotes the value; a name with a stray tab in it would reach
    the terminal and every report in clear."""
    schema = {
        "type": "object",
        "properties": {
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"full_name": {"type": "string", "pattern": "^[^\\t]{1,200}$"}},
                },
            }
        },
    }
    with pytest.raises(jsonschema_rs.ValidationError) as caught:
        jsonschema_rs.validator_for(schema).validate({"data": [{"full_name": "Siti Rahmawati\t"}]})
    failure = JsonSchemaError(operation="GET /v1/x", exc=caught.value, root_schema=schema)
    assert "Siti" in failure.message  # what the fix keeps out

    message = failure_message(failure)

    assert message == (
        "Response violates schema: data/0/full_name: a string that breaks the contract's pattern"
    )
