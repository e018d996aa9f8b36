"""What the mocks refuse before routing: a body without a Content-Type is a 415 in the system's
own error format, never a 500 (connexion hands such a body to the handler as raw bytes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from mocks.core.app import create_asgi_app
from mocks.core.runtime import MockRuntime, MockSettings
from mocks.kki.system import KkiSystem
from mocks.sisdmk.system import SisdmkSystem


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[tuple[MockRuntime, TestClient]]:
    runtime = MockRuntime.build(SisdmkSystem(), MockSettings(size=4, seed=5))
    with TestClient(create_asgi_app(runtime), raise_server_exceptions=False) as client:
        yield runtime, client


@pytest.fixture(scope="module")
def kki() -> Iterator[tuple[MockRuntime, TestClient]]:
    runtime = MockRuntime.build(KkiSystem(), MockSettings(size=4, seed=5))
    with TestClient(create_asgi_app(runtime), raise_server_exceptions=False) as client:
        yield runtime, client


def sisdmk_token(client: TestClient) -> str:
    answer = client.post(
        "/oauth2/v1/accesstoken",
        params={"grant_type": "client_credentials"},
        data={"client_id": "sisdmk-dev-client", "client_secret": "sisdmk-dev-secret"},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def test_sisdmk_bodies_without_a_content_type_are_415_in_its_formats(
    sisdmk: tuple[MockRuntime, TestClient],
) -> None:
    _, client = sisdmk
    bearer = {"Authorization": f"Bearer {sisdmk_token(client)}"}
    lookup = client.post(
        "/v1/health-workers/lookup", content=b'{"nik": "3171015708900042"}', headers=bearer
    )
    token = client.post(
        "/oauth2/v1/accesstoken",
        params={"grant_type": "client_credentials"},
        content=b"client_id=sisdmk-dev-client&client_secret=sisdmk-dev-secret",
    )
    reset = client.post("/__admin/reset", content=b"{}")

    assert (lookup.status_code, lookup.json()["status"]) == (415, 415)
    assert "no Content-Type" in lookup.json()["message"]
    assert token.status_code == 415
    assert token.json()["resourceType"] == "OperationOutcome"
    assert (reset.status_code, reset.headers["content-type"]) == (415, "application/problem+json")


def test_kki_bodies_without_a_content_type_are_415_and_an_empty_post_still_passes(
    kki: tuple[MockRuntime, TestClient],
) -> None:
    runtime, client = kki
    key = {"X-API-Key": runtime.settings.credentials["api_token"]}
    refused = client.post(
        "/v1/registrations/lookup", content=b'{"nik": "3171015708900042"}', headers=key
    )
    assert refused.status_code == 415
    assert refused.headers["content-type"] == "application/problem+json"
    assert client.post("/__admin/reset").status_code == 200


def test_a_body_to_a_path_that_does_not_exist_is_still_404(
    kki: tuple[MockRuntime, TestClient],
) -> None:
    runtime, client = kki
    key = {"X-API-Key": runtime.settings.credentials["api_token"]}
    assert client.post("/v1/no-such-thing", content=b"{}", headers=key).status_code == 404
