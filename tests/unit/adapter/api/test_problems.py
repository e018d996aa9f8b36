"""The API's problem documents for the adapter's own errors: a fixed detail in the answer, the
cause and what to do in the log."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from adapter.api.views import _problem_of
from adapter.errors import ConfigurationError, KeyNotFoundError


@pytest.mark.parametrize(
    ("error", "reason", "logged"),
    [
        (KeyNotFoundError("k-2024"), "unknown_key_id", "no key with id 'k-2024' in ENCRYPTION"),
        (ConfigurationError("KKI_BASE_URL is not set"), "configuration", "KKI_BASE_URL is not set"),
    ],
)
def test_an_error_of_the_adapters_own_is_a_500_whose_log_says_what_to_fix(
    error: Exception, reason: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Flask(__name__).test_request_context(), caplog.at_level(logging.ERROR, "adapter.api"):
        response = _problem_of(error)  # type: ignore[arg-type]

    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    body = json.loads(response.get_data())
    assert body["reason"] == reason
    assert body["detail"] == "the adapter failed; the log has the details"
    assert logged not in body["detail"]
    assert any(logged in record.getMessage() for record in caplog.records)
