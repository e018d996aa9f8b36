"""What Schemathesis is given: the contract, less only the `uri` formats its URL patterns imply."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.fuzzing import URL_GRAMMAR_START, without_implied_formats
from conformance.spec import load_contract

CONTRACTS = Path(__file__).resolve().parents[3] / "contracts" / "openapi"
URI = jsonschema_rs.Draft4Validator({"type": "string", "format": "uri"}, validate_formats=True)


def _uri_patterns(node: Any) -> list[str]:
    if isinstance(node, list):
        return [p for item in node for p in _uri_patterns(item)]
    if not isinstance(node, dict):
        return []
    own = [node["pattern"]] if node.get("format") == "uri" and "pattern" in node else []
    return own + [p for value in node.values() for p in _uri_patterns(value)]


def _without_formats_at(node: Any, patterns: set[str]) -> Any:
    """`node` with `format` dropped by hand wherever a schema has one of `patterns`."""
    if isinstance(node, list):
        return [_without_formats_at(item, patterns) for item in node]
    if not isinstance(node, dict):
        return node
    drop = node.get("pattern") in patterns
    return {
        k: _without_formats_at(v, patterns) for k, v in node.items() if not (drop and k == "format")
    }


@pytest.mark.parametrize("system", ["kki", "sisdmk"])
def test_only_the_webhook_url_format_is_left_out(system: str) -> None:
    document = load_contract(CONTRACTS / f"{system}.yaml").document
    before = copy.deepcopy(document)
    patterns = _uri_patterns(document)
    assert len(patterns) == 1
    assert patterns[0].startswith(URL_GRAMMAR_START)

    given_to_schemathesis = without_implied_formats(document)

    assert document == before, "the loaded contract is not changed"
    assert given_to_schemathesis == _without_formats_at(document, set(patterns))
    assert _uri_patterns(given_to_schemathesis) == []


def test_other_formats_and_unpatterned_uris_are_kept() -> None:
    schema = {
        "a": {"type": "string", "format": "uri"},
        "b": {"type": "string", "format": "uri", "pattern": "^[a-z]+:.*$"},
        "c": {"type": "string", "format": "date-time", "pattern": "^https?://x$"},
        "d": [{"type": "string", "format": "uri", "pattern": "^https?://[a-z]+"}],
    }
    assert without_implied_formats(schema) == schema


def _url_pattern() -> str:
    (pattern,) = _uri_patterns(load_contract(CONTRACTS / "kki.yaml").document)
    return pattern


@settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_every_value_the_url_pattern_admits_is_a_uri(data: st.DataObject) -> None:
    """Why the format can go: the pattern already confines the value to URIs (3,000 drawn
    values checked once by hand, none outside; a few each run here)."""
    value = data.draw(st.from_regex(_url_pattern(), fullmatch=True))
    assert URI.is_valid(value), value
