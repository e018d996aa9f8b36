"""The `WebhookUrl` pattern both public contracts share: what it accepts and refuses, and that its
path group (written flat, `(/(pchar|/)*)?`, because generating values for the nested
`(/pchar*)*` cost Schemathesis ~20 s of CPU per run) matches exactly the language the nested
form did."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openapi_schemas import load_yaml

SPECS = Path(__file__).resolve().parents[3] / "contracts" / "openapi"
NESTED_PATH = r"(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*"
FLAT_PATH = r"(/([A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*)?"


@cache
def _pattern(spec: str) -> str:
    document = load_yaml((SPECS / spec).read_text())
    pattern: str = document["components"]["schemas"]["WebhookUrl"]["pattern"]
    return pattern


def test_both_contracts_share_one_pattern_with_the_flat_path_group() -> None:
    assert _pattern("kki.yaml") == _pattern("sisdmk.yaml")
    assert FLAT_PATH in _pattern("kki.yaml")


@pytest.mark.parametrize(
    "url",
    [
        "http://a.b",
        "https://adapter.example.id/webhooks/kki",
        "https://10.0.0.7:65535/hooks//kki/?a=1&b=%2F",
        "http://host/",
        "http://host/a%20b/c;d=e@f",
        "https://x-1.y-2.id:8443?only=query",
    ],
)
def test_accepts(url: str) -> None:
    assert re.fullmatch(_pattern("kki.yaml"), url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/file",
        "https://user:secret@host/",  # no credentials
        "https://-host.id/",
        "https://host.id:65536/",
        "https://host.id/a b",
        "https://host.id/%zz",
        "https://host.id#fragment",
        "https://host.id/a?b#c",
    ],
)
def test_refuses(url: str) -> None:
    assert not re.fullmatch(_pattern("kki.yaml"), url)


# Pieces that mostly build valid URLs (so both forms are tested on matches, not only on refusals),
# with a few that break them.
PIECES = ["/", "//", "a", "Z9", "%2F", "%zz", "%", "?", "=", ".", "@", ":", "-", "~", "'", " ", "#"]


@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
def test_the_flat_path_group_matches_what_the_nested_one_did(tail: str) -> None:
    flat = _pattern("kki.yaml")
    nested = flat.replace(FLAT_PATH, NESTED_PATH)
    url = "https://host.id" + tail
    assert bool(re.fullmatch(nested, url)) == bool(re.fullmatch(flat, url))
