"""Keyset paging of every /api/v1 list over real HTTP on both store backends: ties on the sort
key are walked once each, and a cursor the API did not issue is a 400 problem, never a 500."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from adapter.store.models import AuditEvent, SyncRun
from harness.idp import IdpProcess
from tests.integration.adapter.api.stack import OPS, READONLY, Adapter, served_adapter
from tests.integration.adapter.sync.support import Mock
from tests.support.databases import BACKENDS, PostgresServer

pytestmark = pytest.mark.integration

STARTED = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
LISTS = {  # path → a client allowed to read it
    "/api/v1/health-workers": READONLY,
    "/api/v1/identity-findings": READONLY,
    "/api/v1/sync-runs": OPS,
    "/api/v1/webhook-events": OPS,
    "/api/v1/audit-events": OPS,
}
TWO_PART = ("/api/v1/sync-runs", "/api/v1/webhook-events")  # (instant, id)
BY_ID = ("/api/v1/health-workers", "/api/v1/identity-findings")  # (id,)


def cursor_of(value: Any) -> str:
    """`value` encoded the way the API encodes its cursors."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    idp: IdpProcess,
    kki: Mock,
    sisdmk: Mock,
) -> Iterator[Adapter]:
    """The adapter on a fresh store of each backend, holding five runs started at one instant."""
    if request.param == "postgresql":
        url = postgres_server.create_database()
    else:
        url = make_url(f"sqlite:///{tmp_path_factory.mktemp('api-store') / 'adapter.sqlite3'}")
    with served_adapter(url, idp, kki, sisdmk) as adapter:
        with adapter.sessions.begin() as session:
            session.add_all(
                SyncRun(
                    id=uuid.uuid4(),
                    system="kki",
                    mode="full",
                    status="succeeded",
                    started_at=STARTED,
                )
                for _ in range(5)
            )
        yield adapter


@pytest.fixture(scope="module")
def tokens(idp: IdpProcess) -> dict[str, str]:
    return {client: idp.token(client) for client in (OPS, READONLY)}


def audit_count(adapter: Adapter) -> int:
    with adapter.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_runs_started_at_one_instant_are_each_listed_once(
    served: Adapter, tokens: dict[str, str]
) -> None:
    with served.sessions() as session:
        expected = sorted((str(i) for i in session.scalars(select(SyncRun.id))), reverse=True)
    seen: list[str] = []
    cursor: str | None = None
    with served.client(tokens[OPS]) as client:
        for _ in range(len(expected) + 1):
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            response = client.get("/api/v1/sync-runs", params=params)
            assert response.status_code == 200, response.text
            seen += [run["id"] for run in response.json()["data"]]
            cursor = response.json()["page"]["next_cursor"]
            if cursor is None:
                break
    # Newest first; on equal start times the larger id first (the store's UUID order).
    assert len(seen) == len(set(seen)) == 5
    assert seen == sorted(seen, key=lambda run_id: uuid.UUID(run_id), reverse=True)


A_UUID = "0b9d2c1e-5f1a-4c7e-9a57-3f0c2d1e4b6a"
AN_INSTANT = STARTED.isoformat()
BAD_CURSORS = [
    *((path, cursor_of([AN_INSTANT]), "one part of two") for path in TWO_PART),
    *((path, cursor_of([AN_INSTANT, A_UUID, 1]), "three parts of two") for path in TWO_PART),
    *((path, cursor_of([A_UUID, AN_INSTANT]), "parts swapped") for path in TWO_PART),
    *((path, cursor_of(["yesterday", A_UUID]), "not an instant") for path in TWO_PART),
    *(
        (path, cursor_of(["0001-01-01T00:00:00+14:00", A_UUID]), "before year 1 in UTC")
        for path in TWO_PART
    ),
    *((path, cursor_of([AN_INSTANT, 7]), "id not a string") for path in TWO_PART),
    ("/api/v1/audit-events", cursor_of([10**30]), "beyond any integer column"),
    ("/api/v1/audit-events", cursor_of([2**63]), "one past BIGINT"),
    ("/api/v1/audit-events", cursor_of(["12"]), "number as a string"),
    ("/api/v1/audit-events", cursor_of([True]), "boolean"),
    ("/api/v1/audit-events", cursor_of([1.5]), "fraction"),
    ("/api/v1/audit-events", cursor_of([]), "empty list"),
    *((path, cursor_of({"after": A_UUID}), "an object") for path in BY_ID),
    *((path, cursor_of(["not-a-uuid"]), "not a UUID") for path in BY_ID),
    *((path, cursor_of([A_UUID, A_UUID]), "two parts of one") for path in BY_ID),
    *((path, cursor_of([[[[[]]]]]), "nested lists") for path in LISTS),
    *((path, cursor_of(None), "null") for path in LISTS),
    *((path, "bm90LWEtY3Vyc29y", "not JSON") for path in LISTS),
    *((path, "_-_-", "not UTF-8") for path in LISTS),
]


@pytest.mark.parametrize(
    ("path", "cursor"),
    [(path, cursor) for path, cursor, _ in BAD_CURSORS],
    ids=[f"{path.rsplit('/', 1)[-1]}: {why}" for path, _, why in BAD_CURSORS],
)
def test_cursor_not_issued_by_the_api_is_400_problem(
    served: Adapter, tokens: dict[str, str], path: str, cursor: str
) -> None:
    before = audit_count(served)
    with served.client(tokens[LISTS[path]]) as client:
        response = client.get(path, params={"cursor": cursor, "limit": 2})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400
    assert "cursor is not one this API issued" in problem["detail"]
    assert audit_count(served) == before


@pytest.mark.parametrize(
    "since",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-01:00"],
    ids=["year 0", "year 10000"],
)
def test_an_audit_listing_since_outside_utcs_years_is_400_problem(
    served: Adapter, tokens: dict[str, str], since: str
) -> None:
    """A date-time the spec admits but UTC cannot hold was a 500 (OverflowError on binding)."""
    with served.client(tokens[OPS]) as client:
        response = client.get("/api/v1/audit-events", params={"since": since})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "since: outside the years 1-9999" in response.json()["detail"]
