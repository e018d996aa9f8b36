"""Cursors of the lists embedded in a record (a worker's certifications, an STR's trainings):
valid for that list of that record as it is; any other is a 400, never a page that skips."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from mocks.core.app import create_asgi_app
from mocks.core.runtime import MockRuntime, MockSettings
from mocks.sisdmk.system import HEALTH_WORKERS, SisdmkSystem


@pytest.fixture
def sisdmk() -> Iterator[tuple[MockRuntime, TestClient, dict[str, str]]]:
    runtime = MockRuntime.build(SisdmkSystem(), MockSettings(size=30, seed=5))
    with TestClient(create_asgi_app(runtime), raise_server_exceptions=False) as client:
        token = client.post(
            "/oauth2/v1/accesstoken",
            params={"grant_type": "client_credentials"},
            data={"client_id": "sisdmk-dev-client", "client_secret": "sisdmk-dev-secret"},
        ).json()["access_token"]
        yield runtime, client, {"Authorization": f"Bearer {token}"}


def worker_with(runtime: MockRuntime, field: str, at_least: int) -> dict[str, Any]:
    return next(
        doc for doc in runtime.store(HEALTH_WORKERS).documents() if len(doc[field]) >= at_least
    )


def test_a_cursor_issued_before_the_record_changed_is_refused_not_a_skipping_page(
    sisdmk: tuple[MockRuntime, TestClient, dict[str, str]],
) -> None:
    runtime, client, bearer = sisdmk
    worker = worker_with(runtime, "educations", 2)
    url = f"/v1/health-workers/{worker['worker_id']}/educations"
    first = client.get(url, params={"limit": 1}, headers=bearer).json()
    cursor = first["page"]["next_cursor"]
    assert client.get(url, params={"limit": 1, "cursor": cursor}, headers=bearer).status_code == 200

    fewer = {"educations": worker["educations"][1:]}
    runtime.patch_record(HEALTH_WORKERS, worker["worker_id"], fewer)

    stale = client.get(url, params={"limit": 1, "cursor": cursor}, headers=bearer)
    assert stale.status_code == 400
    assert "start again without a cursor" in stale.json()["message"]


@pytest.mark.parametrize("cursor", ["0", "1", "2", "00001", "1_0000000000000000", "abc"])
def test_cursors_the_mock_never_issued_are_refused(
    sisdmk: tuple[MockRuntime, TestClient, dict[str, str]], cursor: str
) -> None:
    runtime, client, bearer = sisdmk
    worker = worker_with(runtime, "educations", 2)
    url = f"/v1/health-workers/{worker['worker_id']}/educations"
    assert client.get(url, params={"limit": 1, "cursor": cursor}, headers=bearer).status_code == 400


def test_a_cursor_of_another_workers_list_is_refused(
    sisdmk: tuple[MockRuntime, TestClient, dict[str, str]],
) -> None:
    runtime, client, bearer = sisdmk
    docs = [d for d in runtime.store(HEALTH_WORKERS).documents() if len(d["educations"]) >= 2]
    one, other = docs[0], docs[1]
    cursor = client.get(
        f"/v1/health-workers/{one['worker_id']}/educations", params={"limit": 1}, headers=bearer
    ).json()["page"]["next_cursor"]
    answer = client.get(
        f"/v1/health-workers/{other['worker_id']}/educations",
        params={"limit": 1, "cursor": cursor},
        headers=bearer,
    )
    assert answer.status_code == 400
