"""Refused input is described by field, never by its value, when the value is personal data or a
secret: not in the answer, not in the mock's log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from mocks.core.app import create_asgi_app
from mocks.core.runtime import MockRuntime, MockSettings
from mocks.sisdmk.system import SisdmkSystem

TYPO = "sisdmk-dev-secret-typo\tx"
NIK = 1207326108700023


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    runtime = MockRuntime.build(SisdmkSystem(), MockSettings(size=4, seed=5))
    with TestClient(create_asgi_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_malformed_client_secret_is_refused_without_being_echoed_or_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        answer = client.post(
            "/oauth2/v1/accesstoken",
            params={"grant_type": "client_credentials"},
            data={"client_id": "sisdmk-dev-client", "client_secret": TYPO},
        )
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert "client_secret" in answer.text
    assert "typo" not in answer.text
    assert "typo" not in caplog.text


def test_a_nik_sent_as_a_number_is_not_echoed(client: TestClient) -> None:
    token = client.post(
        "/oauth2/v1/accesstoken",
        params={"grant_type": "client_credentials"},
        data={"client_id": "sisdmk-dev-client", "client_secret": "sisdmk-dev-secret"},
    ).json()["access_token"]

    answer = client.post(
        "/v1/health-workers/lookup", json={"nik": NIK}, headers={"Authorization": f"Bearer {token}"}
    )

    assert answer.status_code == 400
    assert answer.json()["errors"][0]["name"] == "nik"
    assert str(NIK) not in answer.text
