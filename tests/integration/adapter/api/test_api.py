"""The /api/v1 API over real HTTP with real tokens: happy paths, the scope matrix (generated from
adapter.yaml), masking, audit rows, trace ids, metrics and bad input."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from adapter.api.spec import operations
from adapter.audit.seal import SEALER_LOCK
from adapter.auth import scopes
from adapter.clock import utc_now
from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.models import AuditEvent, HealthWorker, Registration, SyncCheckpoint, SyncRun
from adapter.sync.requests import pending_requests, request_run
from adapter.sync.schedule import DailySchedule
from adapter.sync.service import SyncRunResult
from adapter.webhooks.envelope import EventEnvelope
from adapter.webhooks.inbox import WebhookInbox
from harness.idp import IdpProcess, realm_clients
from tests.integration.adapter.api.stack import OPS, PORTAL, READONLY, SIZE, Adapter
from tests.integration.adapter.sync.support import Mock, run_sync

pytestmark = pytest.mark.integration

API_OPERATIONS = {op_id: op for op_id, op in operations().items() if op.path.startswith("/api/v1")}


def subject(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return str(claims["sub"])


def audit_rows(adapter: Adapter, **where: Any) -> list[AuditEvent]:
    with adapter.sessions() as session:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        for name, value in where.items():
            query = query.where(getattr(AuditEvent, name) == value)
        return list(session.scalars(query))


def audit_count(adapter: Adapter) -> int:
    with adapter.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def any_worker_id(adapter: Adapter) -> str:
    with adapter.sessions() as session:
        return str(session.scalars(select(HealthWorker.id).limit(1)).one())


def any_str_number(adapter: Adapter) -> str:
    with adapter.sessions() as session:
        return str(session.scalars(select(Registration.str_number).limit(1)).one())


def personal_values(people: list[dict[str, Any]]) -> list[str]:
    return [p["nik"] for p in people] + [p["full_name"] for p in people if len(p["full_name"]) > 5]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# -- health workers -------------------------------------------------------------------------


def test_list_health_workers_masked_without_pii_scope(
    adapter: Adapter, tokens: dict[str, str], people: list[dict[str, Any]]
) -> None:
    with adapter.client(tokens[READONLY]) as client:
        response = client.get("/api/v1/health-workers", params={"limit": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 5
    assert body["page"]["next_cursor"]
    for worker in body["data"]:
        assert worker["masked"] is True
        assert worker["nik"] == "•••"
        assert worker["full_name"] == "•••"
        assert worker["birth_date"] is None
    for value in personal_values(people):
        assert value not in response.text


def test_list_health_workers_clear_with_pii_scope(
    adapter: Adapter, tokens: dict[str, str], people: list[dict[str, Any]]
) -> None:
    with adapter.client(tokens[PORTAL]) as client:
        response = client.get("/api/v1/health-workers", params={"limit": 200})
    assert response.status_code == 200
    niks = {p["nik"] for p in people}
    data = response.json()["data"]
    assert data
    assert all(w["masked"] is False and w["nik"] in niks for w in data)


def test_cursor_walks_every_worker_once(adapter: Adapter, tokens: dict[str, str]) -> None:
    seen: list[str] = []
    cursor: str | None = None
    with adapter.client(tokens[READONLY]) as client:
        while True:
            params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/v1/health-workers", params=params).json()
            seen += [w["id"] for w in page["data"]]
            cursor = page["page"]["next_cursor"]
            if cursor is None:
                break
    with adapter.sessions() as session:
        total = session.scalar(select(func.count()).select_from(HealthWorker))
    assert len(seen) == len(set(seen)) == total


def test_filters_narrow_the_list(adapter: Adapter, tokens: dict[str, str]) -> None:
    str_number = any_str_number(adapter)
    with adapter.client(tokens[READONLY]) as client:
        response = client.get("/api/v1/health-workers", params={"str_number": str_number})
    assert response.status_code == 200
    assert len(response.json()["data"]) == 1


def test_get_worker_in_full_with_provenance(adapter: Adapter, tokens: dict[str, str]) -> None:
    worker_id = any_worker_id(adapter)
    with adapter.client(tokens[PORTAL]) as client:
        response = client.get(f"/api/v1/health-workers/{worker_id}")
    assert response.status_code == 200
    worker = response.json()
    for key in ("registrations", "employments", "educations", "provenance"):
        assert key in worker
    assert worker["provenance"]["age_s"] >= 0
    for registration in worker["registrations"]:
        assert {"sips", "skp", "trainings", "provenance"} <= set(registration)
    rows = audit_rows(adapter, action="healthworker.read", resource_id=worker_id)
    assert rows
    assert rows[-1].actor_subject == subject(tokens[PORTAL])
    assert rows[-1].actor_client == PORTAL


def test_unknown_worker_is_404(adapter: Adapter, tokens: dict[str, str]) -> None:
    with adapter.client(tokens[READONLY]) as client:
        assert_problem(client.get(f"/api/v1/health-workers/{uuid.uuid4()}"), 404)


def test_search_by_nik_finds_the_worker_and_audits_without_the_nik(
    adapter: Adapter, tokens: dict[str, str], people: list[dict[str, Any]]
) -> None:
    nik = people[0]["nik"]
    with adapter.client(tokens[PORTAL]) as client:
        response = client.post("/api/v1/health-workers/search-by-nik", json={"nik": nik})
        miss = client.post("/api/v1/health-workers/search-by-nik", json={"nik": "3171010101900001"})
    assert response.status_code == 200
    assert [w["nik"] for w in response.json()["data"]] == [nik]
    assert miss.status_code == 200
    assert miss.json()["data"] == []
    rows = audit_rows(adapter, action="healthworker.search_by_nik")
    assert {json.loads(r.detail or "{}")["found"] for r in rows} == {True, False}
    assert all(nik not in json.dumps([r.detail, r.resource_id, r.fields]) for r in rows)


# -- look-up, findings ----------------------------------------------------------------------


def test_lookup_is_live_then_stale_when_kki_is_disabled(
    adapter: Adapter, tokens: dict[str, str]
) -> None:
    str_number = any_str_number(adapter)
    with adapter.client(tokens[READONLY]) as reader, adapter.client(tokens[OPS]) as ops:
        live = reader.post("/api/v1/registrations/lookup", json={"str_number": str_number})
        assert live.status_code == 200, live.text
        assert live.json()["live"] is True
        assert live.json()["age_s"] == 0
        assert live.json()["registrations"][0]["masked"] is True
        assert ops.patch("/api/v1/integrations/kki", json={"enabled": False}).status_code == 200
        try:
            stale = reader.post("/api/v1/registrations/lookup", json={"str_number": str_number})
        finally:
            assert ops.patch("/api/v1/integrations/kki", json={"enabled": True}).status_code == 200
    answer = stale.json()
    assert answer["live"] is False
    assert answer["stale"] is True
    assert answer["stale_reason"] == "connection_disabled"
    assert answer["age_s"] > 0
    assert len(audit_rows(adapter, action="registration.lookup")) >= 2
    updates = audit_rows(adapter, action="integration.update", resource_id="kki")
    assert len(updates) >= 2
    assert updates[-1].actor_client == OPS


def test_identity_findings_list(adapter: Adapter, tokens: dict[str, str]) -> None:
    with adapter.client(tokens[READONLY]) as client:
        response = client.get("/api/v1/identity-findings", params={"open_only": "false"})
        one_rule = client.get("/api/v1/identity-findings", params={"rule": "nik_sex"})
        unknown = client.get("/api/v1/identity-findings", params={"rule": "nik"})
    assert response.status_code == 200
    assert set(response.json()) == {"data", "page"}
    assert one_rule.status_code == 200
    assert all(item["rule"] == "nik_sex" for item in one_rule.json()["data"])
    assert_problem(unknown, 400)
    assert "rule: must be one of identity_mismatch" in unknown.json()["detail"]


# -- sync runs, integrations, events, audit -------------------------------------------------


@pytest.fixture
def scheduler(
    adapter: Adapter, kki: Mock, sisdmk: Mock, cipher: FieldCipher, blind_index: BlindIndex
) -> Iterator[DailySchedule]:
    """The scheduler's request path, in this process, against the mocks. It runs whatever a
    test requested when the test ends, so no request outlives its test."""

    def sync(system: str, *, full: bool = False, run_id: uuid.UUID | None = None) -> SyncRunResult:
        mock = kki if system == "kki" else sisdmk
        return run_sync(
            system, mock, adapter.sessions, cipher, blind_index, full=full, run_id=run_id
        )

    schedule = DailySchedule({}, "UTC", adapter.sessions, sync)
    schedule.run_requested()
    yield schedule
    for outcome in schedule.run_requested():
        assert outcome.result is not None, outcome.skipped
        assert outcome.result.succeeded, outcome.result.error


def wait_for_status(client: httpx.Client, location: str, status: str) -> dict[str, Any]:
    """The run once it shows `status`; only the deadline guards against a hang."""
    deadline = time.monotonic() + 60
    while True:
        run: dict[str, Any] = client.get(location).raise_for_status().json()
        if run["status"] == status or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def test_a_sync_run_request_is_202_requested_then_running_then_succeeded(
    adapter: Adapter, tokens: dict[str, str], scheduler: DailySchedule
) -> None:
    with adapter.client(tokens[OPS]) as client:
        started = client.post("/api/v1/sync-runs", json={"system": "sisdmk", "full": True})
        assert started.status_code == 202, started.text
        run = started.json()
        location = started.headers["Location"]
        assert location == f"/api/v1/sync-runs/{run['id']}"
        assert (run["status"], run["mode"], run["started_at"]) == ("requested", "full", None)
        assert run["requested_by"] == subject(tokens[OPS])
        assert client.get(location).json() == run

        # Hold SISDMK's checkpoint row: the run blocks at its first page's commit, running.
        with adapter.engine.connect() as blocker:
            blocker.execute(
                select(SyncCheckpoint).where(SyncCheckpoint.system == "sisdmk").with_for_update()
            ).one()
            runner = threading.Thread(target=scheduler.run_requested, name="scheduler")
            runner.start()
            running = wait_for_status(client, location, "running")
            assert running["status"] == "running"
            assert running["started_at"] is not None
            assert running["requested_by"] == run["requested_by"]
            blocker.rollback()
        runner.join(timeout=120)
        done = client.get(location).json()
    assert not runner.is_alive()
    assert (done["id"], done["status"], done["mode"]) == (run["id"], "succeeded", "full")
    assert done["fetched"] == SIZE
    assert (done["requested_by"], done["requested_at"]) == (
        run["requested_by"],
        run["requested_at"],
    )
    (audit,) = audit_rows(adapter, action="sync.start", resource_id=run["id"])
    assert (audit.outcome, audit.actor_subject) == ("success", subject(tokens[OPS]))


def test_a_second_request_is_409_naming_the_requested_then_the_running_run(
    adapter: Adapter, tokens: dict[str, str], scheduler: DailySchedule
) -> None:
    before = len(audit_rows(adapter, action="sync.start", outcome="denied"))
    with adapter.client(tokens[OPS]) as client:
        run = client.post("/api/v1/sync-runs", json={"system": "sisdmk"}).json()
        requested = assert_problem(client.post("/api/v1/sync-runs", json={"system": "sisdmk"}), 409)
        with adapter.engine.connect() as blocker:
            blocker.execute(
                select(SyncCheckpoint).where(SyncCheckpoint.system == "sisdmk").with_for_update()
            ).one()
            runner = threading.Thread(target=scheduler.run_requested, name="scheduler")
            runner.start()
            wait_for_status(client, f"/api/v1/sync-runs/{run['id']}", "running")
            running = client.post("/api/v1/sync-runs", json={"system": "sisdmk", "full": True})
            blocker.rollback()
        runner.join(timeout=120)
    assert (requested["reason"], requested["run_id"]) == ("sync_in_progress", run["id"])
    assert requested["run_status"] == "requested"
    assert run["id"] in requested["detail"]
    problem = assert_problem(running, 409)
    assert (problem["run_id"], problem["run_status"]) == (run["id"], "running")
    denied = audit_rows(adapter, action="sync.start", outcome="denied")
    assert len(denied) == before + 2
    assert {row.actor_subject for row in denied[before:]} == {subject(tokens[OPS])}


def test_two_requests_racing_past_the_check_make_one_run_and_a_409_naming_it(
    adapter: Adapter, tokens: dict[str, str], scheduler: DailySchedule
) -> None:
    racing: list[httpx.Response] = []

    def post() -> None:
        with adapter.client(tokens[OPS]) as client:
            racing.append(client.post("/api/v1/sync-runs", json={"system": "kki"}))

    with adapter.sessions() as session:
        # This request is flushed, not committed: the POST does not see it and inserts too.
        first = request_run(
            session, adapter.engine, "kki", full=False, requested_by="racer", now=utc_now()
        )
        poster = threading.Thread(target=post, name="racing-post")
        poster.start()
        deadline = time.monotonic() + 60
        while not _waiting_on_a_lock(adapter) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_on_a_lock(adapter), "the POST never reached its insert"
        session.commit()
        poster.join(timeout=60)
    (response,) = racing
    problem = assert_problem(response, 409)
    assert (problem["run_id"], problem["run_status"]) == (str(first.run_id), "requested")
    with adapter.sessions() as session:
        assert [r.run_id for r in pending_requests(session)] == [first.run_id]


def _waiting_on_a_lock(adapter: Adapter) -> bool:
    # A connection of its own: within one transaction PostgreSQL shows a frozen pg_stat_activity.
    with adapter.engine.connect() as connection:
        waiting = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(waiting.scalar())


def test_a_sync_of_a_disabled_connection_is_409_and_records_no_request(
    adapter: Adapter, tokens: dict[str, str], scheduler: DailySchedule
) -> None:
    with adapter.client(tokens[OPS]) as client:
        client.patch("/api/v1/integrations/kki", json={"enabled": False}).raise_for_status()
        try:
            refused = client.post("/api/v1/sync-runs", json={"system": "kki"})
        finally:
            client.patch("/api/v1/integrations/kki", json={"enabled": True}).raise_for_status()
    problem = assert_problem(refused, 409)
    assert problem["reason"] == "connection_disabled"
    assert "kki connection is disabled" in problem["detail"]
    with adapter.sessions() as session:
        assert pending_requests(session) == []


def test_integrations_list_and_logs(adapter: Adapter, tokens: dict[str, str]) -> None:
    with adapter.client(tokens[OPS]) as client:
        listed = client.get("/api/v1/integrations").json()["data"]
        logs = client.get("/api/v1/integrations/kki/logs", params={"limit": 5})
    assert {i["system"] for i in listed} == {"kki", "sisdmk"}
    assert logs.status_code == 200
    assert logs.json()["sync_runs"]


def test_failed_event_is_listed_and_replayed(adapter: Adapter, tokens: dict[str, str]) -> None:
    with adapter.sessions() as session, session.begin():
        inbox = WebhookInbox(session)
        event_id = inbox.record(
            EventEnvelope(
                "kki",
                f"msg_{uuid.uuid4().hex}",
                "registration.updated",
                "QZ1",
                1,
                dt.datetime.now(dt.UTC),
            ),
            traceparent=None,
            published=True,
        )
        assert event_id is not None
        inbox.mark_failed(event_id, "KKI answered 500", count_attempt=True)
    with adapter.client(tokens[OPS]) as client:
        failed = client.get("/api/v1/webhook-events").json()["data"]
        assert str(event_id) in [e["id"] for e in failed]
        replayed = client.post(f"/api/v1/webhook-events/{event_id}/replay")
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["replayed"] == [str(event_id)]
        assert_problem(client.post(f"/api/v1/webhook-events/{event_id}/replay"), 409)
        assert_problem(client.post(f"/api/v1/webhook-events/{uuid.uuid4()}/replay"), 404)
        assert client.post("/api/v1/webhook-events/replay").status_code == 200
    assert audit_rows(adapter, action="events.replay", resource_id=str(event_id))


def test_audit_trail_query_filters_and_pages(adapter: Adapter, tokens: dict[str, str]) -> None:
    with adapter.client(tokens[PORTAL]) as client:
        client.get(f"/api/v1/health-workers/{any_worker_id(adapter)}")
        first = client.get("/api/v1/audit-events", params={"limit": 1}).json()
        second = client.get(
            "/api/v1/audit-events", params={"limit": 1, "cursor": first["page"]["next_cursor"]}
        ).json()
        reads = client.get(
            "/api/v1/audit-events",
            params={"action": "healthworker.read", "actor_subject": subject(tokens[PORTAL])},
        ).json()
    assert second["data"][0]["seq"] == first["data"][0]["seq"] + 1
    assert reads["data"]
    assert {e["action"] for e in reads["data"]} == {"healthworker.read"}


def test_the_audit_listing_does_not_wait_for_another_sealer(
    adapter: Adapter, tokens: dict[str, str]
) -> None:
    """Another process's sealer holds the sealers' lock: the listing answers at once with what
    is sealed and says how many entries are pending; once the lock is free it seals them."""
    with adapter.engine.connect() as other_sealer:
        other_sealer.execute(select(func.pg_advisory_lock(SEALER_LOCK)))
        try:
            with adapter.client(tokens[PORTAL]) as client:
                client.get(f"/api/v1/health-workers/{any_worker_id(adapter)}")
                busy = client.get("/api/v1/audit-events", params={"limit": 1})
        finally:
            other_sealer.execute(select(func.pg_advisory_unlock(SEALER_LOCK)))
    assert busy.status_code == 200, busy.text
    assert int(busy.headers["X-Audit-Pending"]) >= 1
    with adapter.client(tokens[PORTAL]) as client:
        free = client.get("/api/v1/audit-events", params={"limit": 1})
    assert free.headers["X-Audit-Pending"] == "0"


def test_audit_rows_hold_no_personal_data(
    adapter: Adapter, tokens: dict[str, str], people: list[dict[str, Any]]
) -> None:
    with adapter.client(tokens[PORTAL]) as client:
        client.post("/api/v1/health-workers/search-by-nik", json={"nik": people[1]["nik"]})
    text = json.dumps(
        [[r.actor_subject, r.resource_id, r.fields, r.detail] for r in audit_rows(adapter)]
    )
    for value in personal_values(people):
        assert value not in text


# -- trace ids and metrics ------------------------------------------------------------------


def test_incoming_traceparent_is_honoured_and_audited(
    adapter: Adapter, tokens: dict[str, str]
) -> None:
    trace_id = uuid.uuid4().hex
    worker_id = any_worker_id(adapter)
    with adapter.client(tokens[READONLY]) as client:
        response = client.get(
            f"/api/v1/health-workers/{worker_id}",
            headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01"},
        )
        fresh = client.get("/healthz")
    assert response.headers["X-Trace-Id"] == trace_id
    assert response.headers["traceresponse"].startswith(f"00-{trace_id}-")
    assert len(fresh.headers["X-Trace-Id"]) == 32
    assert fresh.headers["X-Trace-Id"] != trace_id
    assert audit_rows(adapter, trace_id=trace_id, action="healthworker.read")


def test_request_metrics_use_route_templates(adapter: Adapter, tokens: dict[str, str]) -> None:
    worker_id = any_worker_id(adapter)
    with adapter.client(tokens[READONLY]) as client:
        client.get(f"/api/v1/health-workers/{worker_id}")
        metrics = client.get("/metrics").text
    assert 'route="/api/v1/health-workers/<uuid:worker_id>"' in metrics
    assert "hf_http_request_duration_seconds_bucket" in metrics
    assert worker_id not in metrics


# -- the scope matrix, from the spec --------------------------------------------------------

OWNER = {
    scopes.HEALTHWORKERS_READ: READONLY,
    scopes.SYNC_RUN: OPS,
    scopes.INTEGRATIONS_ADMIN: OPS,
    scopes.EVENTS_ADMIN: OPS,
    scopes.AUDIT_READ: PORTAL,
}
LACKS = {
    scopes.HEALTHWORKERS_READ: OPS,
    scopes.SYNC_RUN: PORTAL,
    scopes.INTEGRATIONS_ADMIN: PORTAL,
    scopes.EVENTS_ADMIN: READONLY,
    scopes.AUDIT_READ: READONLY,
}


def request_for(adapter: Adapter, operation_id: str) -> tuple[str, str, dict[str, Any] | None]:
    op = API_OPERATIONS[operation_id]
    with adapter.sessions() as session:
        run_id = session.scalars(select(SyncRun.id).limit(1)).one()
    path = op.path.format(
        worker_id=any_worker_id(adapter), run_id=run_id, system="sisdmk", event_id=uuid.uuid4()
    )
    body: dict[str, Any] | None = None
    if op.body is not None:
        body = {
            "searchHealthWorkersByNik": {"nik": "3171010101900001"},
            "lookupRegistration": {"str_number": any_str_number(adapter)},
            "startSyncRun": {"system": "kki"},
            "updateIntegration": {"enabled": True},
            "purgeWebhookEvent": {"reason": "scope matrix"},
            "purgeFailedWebhookEvents": {"reason": "scope matrix"},
        }[operation_id]
    return op.method, path, body


def test_every_api_operation_needs_a_scope_that_exists() -> None:
    assert API_OPERATIONS
    for op in API_OPERATIONS.values():
        assert len(op.scopes) == 1, op.operation_id
        assert op.scopes[0] in scopes.ALL_SCOPES, op.operation_id
    clients = realm_clients()
    for scope, client in OWNER.items():
        assert scope in clients[client].default_scopes
        assert scope not in clients[LACKS[scope]].default_scopes


PERSONAL_READS = {
    "getHealthWorker",
    "listHealthWorkers",
    "listIdentityFindings",
    "lookupRegistration",
    "searchHealthWorkersByNik",
}


@pytest.mark.parametrize("operation_id", sorted(API_OPERATIONS))
def test_scope_matrix(
    adapter: Adapter, tokens: dict[str, str], scheduler: DailySchedule, operation_id: str
) -> None:
    method, path, body = request_for(adapter, operation_id)
    (scope,) = API_OPERATIONS[operation_id].scopes
    before = audit_count(adapter)
    with adapter.client() as anonymous:
        denied = anonymous.request(method, path, json=body)
    body_401 = assert_problem(denied, 401)
    assert denied.headers["WWW-Authenticate"].startswith("Bearer")
    with adapter.client(tokens[LACKS[scope]]) as lacking:
        forbidden = lacking.request(method, path, json=body)
    assert_problem(forbidden, 403)
    assert 'error="insufficient_scope"' in forbidden.headers["WWW-Authenticate"]
    # The caller is known from the 403's token: a refused read of personal data is audited as
    # denied (one entry), a refused admin call is not; the 401's anonymous caller never is.
    refused = audit_rows(adapter)[before:]
    if operation_id in PERSONAL_READS:
        assert [(r.outcome, r.actor_client) for r in refused] == [("denied", LACKS[scope])]
    else:
        assert refused == [], "a refused admin request left an audit entry"
    assert "nik" not in json.dumps(body_401).lower()
    with adapter.client(tokens[OWNER[scope]]) as allowed:
        response = allowed.request(method, path, json=body)
    if operation_id in {"replayWebhookEvent", "purgeWebhookEvent"}:
        assert_problem(response, 404)  # a random event id: allowed through, then not found
    elif operation_id == "startSyncRun":
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "requested"
    else:
        assert 200 <= response.status_code < 300, response.text


def test_narrowed_portal_token_reads_masked(adapter: Adapter, idp: IdpProcess) -> None:
    token = idp.token(PORTAL, [scopes.HEALTHWORKERS_READ])
    with adapter.client(token) as client:
        data = client.get("/api/v1/health-workers", params={"limit": 3}).json()["data"]
    assert data
    assert all(w["masked"] for w in data)


# -- bad input: 4xx problem+json and nothing stored -----------------------------------------

BAD_QUERIES = [
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
    ({"cursor": "!!"}, "cursor"),
    ({"colour": "blue"}, "colour"),
    ({"active": "yes"}, "active"),
]


@pytest.mark.parametrize(("params", "field"), BAD_QUERIES)
def test_bad_query_is_400_naming_the_parameter(
    adapter: Adapter, tokens: dict[str, str], params: dict[str, str], field: str
) -> None:
    before = audit_count(adapter)
    with adapter.client(tokens[READONLY]) as client:
        problem = assert_problem(client.get("/api/v1/health-workers", params=params), 400)
    assert field in problem["detail"]
    assert audit_count(adapter) == before


BAD_BODIES = [
    (b'{"nik": "317101010190000"}', "application/json", 422, "nik"),
    (b'{"nik": "3171010101900001", "name": "x"}', "application/json", 422, "name"),
    (b"{}", "application/json", 422, "nik"),
    (b'{"nik": ', "application/json", 400, "JSON"),
    # 8,000 levels deep (16,000 bytes, under the size limit): Python's parser gives up.
    (b"[" * 8_000 + b"]" * 8_000, "application/json", 400, "nested too deeply"),
    (b'{"nik": "3171010101900001"}', "text/plain", 415, "application/json"),
    (b'{"nik": "' + b"1" * 20_000 + b'"}', "application/json", 413, "bytes"),
]


@pytest.mark.parametrize(("raw", "content_type", "status", "mentions"), BAD_BODIES)
def test_bad_body_is_refused_and_nothing_stored(
    adapter: Adapter,
    tokens: dict[str, str],
    raw: bytes,
    content_type: str,
    status: int,
    mentions: str,
) -> None:
    before = audit_count(adapter)
    with adapter.client(tokens[PORTAL]) as client:
        response = client.post(
            "/api/v1/health-workers/search-by-nik",
            content=raw,
            headers={"Content-Type": content_type},
        )
    problem = assert_problem(response, status)
    assert mentions in problem["detail"]
    assert "317101010190000" not in response.text
    assert audit_count(adapter) == before


def test_lookup_needs_exactly_one_key(adapter: Adapter, tokens: dict[str, str]) -> None:
    with adapter.client(tokens[READONLY]) as client:
        both = client.post(
            "/api/v1/registrations/lookup",
            json={"nik": "3171010101900001", "str_number": "QZ1"},
        )
        neither = client.post("/api/v1/registrations/lookup", json={})
        bad_system = client.post("/api/v1/sync-runs", json={"system": "bpjs"})
    assert_problem(both, 422)
    assert_problem(neither, 422)
    assert_problem(bad_system, 403)  # the reader may not start syncs at all


def test_readyz_checks_database_broker_and_sso(adapter: Adapter) -> None:
    with adapter.client() as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "sso": "ok", "signing_keys": "ok"},
    }


# -- HTTP hardening ---------------------------------------------------------------------------


def test_every_answer_says_no_store_and_nosniff(
    adapter: Adapter, tokens: dict[str, str], people: list[dict[str, Any]]
) -> None:
    worker_id = any_worker_id(adapter)
    with adapter.client(tokens[PORTAL]) as reader, adapter.client() as anonymous:
        answers = {
            "list in clear": reader.get("/api/v1/health-workers", params={"limit": 2}),
            "one worker": reader.get(f"/api/v1/health-workers/{worker_id}"),
            "search by NIK": reader.post(
                "/api/v1/health-workers/search-by-nik", json={"nik": people[0]["nik"]}
            ),
            "bad query": reader.get("/api/v1/health-workers", params={"limit": "0"}),
            "unknown worker": reader.get(f"/api/v1/health-workers/{uuid.uuid4()}"),
            "no scope": reader.get("/api/v1/sync-runs"),
            "no token": anonymous.get("/api/v1/health-workers"),
            "no such path": reader.get("/api/v1/nothing-here"),
            "webhook refused": anonymous.post("/webhooks/kki", json={}),
            "liveness": anonymous.get("/healthz"),
            "readiness": anonymous.get("/readyz"),
        }
    for what, response in answers.items():
        assert response.headers.get("Cache-Control") == "no-store", what
        assert response.headers.get("X-Content-Type-Options") == "nosniff", what
    assert answers["list in clear"].json()["data"][0]["masked"] is False
