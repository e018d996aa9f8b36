"""Malformed input a client may send the mocks (fuzzers, hand-written tests): each answer is a
4xx problem saying what is wrong, never a 500, and nothing is stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from mocks.core.app import create_asgi_app
from mocks.core.runtime import MockRuntime, MockSettings
from mocks.kki.system import KkiSystem

KEY = {"X-API-Key": "kki-dev-token"}


@pytest.fixture(scope="module")
def runtime() -> MockRuntime:
    return MockRuntime.build(KkiSystem(), MockSettings(size=4, seed=5))


@pytest.fixture(scope="module")
def client(runtime: MockRuntime) -> Iterator[TestClient]:
    with TestClient(create_asgi_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def _cursor(*parts: str) -> str:
    raw = json.dumps(list(parts), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "tag",
    [
        "\u00e9",  # not ASCII: hmac.compare_digest raised TypeError
        "\ud800",  # a lone surrogate
    ],
)
@pytest.mark.parametrize("path", ["/v1/registrations", "/__admin/records/registrations"])
def test_a_forged_cursor_with_a_tag_that_is_no_ascii_is_a_400(
    client: TestClient, tag: str, path: str
) -> None:
    cursor = _cursor("2026-01-01T00:00:00.000000Z", "k", tag)
    answer = client.get(path, params={"cursor": cursor}, headers=KEY)
    assert answer.status_code == 400, answer.text
    assert "cursor" in answer.text


def test_a_cursor_whose_key_is_a_lone_surrogate_is_a_400(client: TestClient) -> None:
    cursor = _cursor("2026-01-01T00:00:00.000000Z", "\ud800", "0123456789abcdef")
    answer = client.get("/v1/registrations", params={"cursor": cursor}, headers=KEY)
    assert answer.status_code == 400, answer.text


def test_a_number_with_more_digits_than_python_reads_is_a_400(client: TestClient) -> None:
    body = b'{"nik": ' + b"1" * 5000 + b"}"
    answer = client.post(
        "/v1/registrations/lookup",
        content=body,
        headers={**KEY, "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].endswith("a number in it has too many digits")
    assert "1111111111" not in answer.text


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_and_nothing_is_stored(
    client: TestClient, runtime: MockRuntime, constant: str
) -> None:
    # NaN passed the contract (no comparison with it is true) and was served as `NaN`, which
    # strict JSON parsers refuse.
    key = next(iter(runtime.store("registrations").records())).key
    before = client.get(f"/v1/registrations/{key}", headers=KEY).content
    answer = client.patch(
        f"/__admin/records/registrations/{key}",
        content=b'{"skp": {"earned_total": ' + constant.encode() + b"}}",
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == (
        f"the request body is not valid JSON: {constant} is not a JSON number"
    )
    assert client.get(f"/v1/registrations/{key}", headers=KEY).content == before


@pytest.mark.parametrize(
    ("url", "name", "message"),
    [
        ("/__admin/deliveries?limit=0", "limit", "the value is less than the minimum of 1"),
        ("/v1/registrations?limit=abc", "limit", "the value is not of type 'integer'"),
        ("/v1/registrations?status=3171015708900042", "status", "the value is not one of"),
    ],
)
def test_a_bad_parameter_is_named_as_a_field_and_its_value_never_quoted(
    client: TestClient, url: str, name: str, message: str
) -> None:
    # connexion's detail was jsonschema's whole report: the value, the schema, no field list.
    answer = client.get(url, headers=KEY)
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["detail"].startswith(f"query parameter {name}: {message}")
    assert problem["errors"][0]["location"] == "query"
    assert problem["errors"][0]["name"] == name
    assert problem["errors"][0]["message"].startswith(message)
    assert "Failed validating" not in answer.text
    assert "3171015708900042" not in answer.text
    assert "abc" not in answer.text


def test_a_cursor_of_another_filters_walk_is_a_400(
    client: TestClient, runtime: MockRuntime
) -> None:
    # It was followed: the AKTIF walk's position skipped every DICABUT record before it.
    walk = client.get("/v1/registrations", params={"limit": 1, "status": "AKTIF"}, headers=KEY)
    cursor = walk.json()["page"]["next_cursor"]
    assert cursor is not None
    same = client.get(
        "/v1/registrations", params={"limit": 1, "status": "AKTIF", "cursor": cursor}, headers=KEY
    )
    assert same.status_code == 200, same.text
    for other in ({"status": "DICABUT"}, {}, {"status": "AKTIF", "profession": "bidan"}):
        answer = client.get(
            "/v1/registrations", params={"limit": 1, **other, "cursor": cursor}, headers=KEY
        )
        assert answer.status_code == 400, (other, answer.text)
