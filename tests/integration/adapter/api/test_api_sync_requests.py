"""`POST /api/v1/sync-runs` as processes: `hf-adapter serve` records the request and may die at
once; `hf-adapter schedule` (polling, or `--once`) runs it to the end. Both backends."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL

from adapter.api import listings
from adapter.store.database import session_factory
from adapter.store.models import AuditEvent, SyncRequest
from adapter.sync.requests import request_run
from harness.idp import IdpProcess
from harness.processes import ManagedProcess, free_port
from tests.integration.adapter.api.stack import AUDIENCE, OPS, SIZE
from tests.integration.adapter.sync.support import Mock, adapter_environment, migrated
from tests.support.databases import BACKENDS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True),
]


# Only KKI has a daily slot (due at once: it never ran); the tests request SISDMK runs.
SCHEDULE = "kki=00:00"


@pytest.fixture
def engine(empty_database_url: URL) -> Iterator[Engine]:
    engine = migrated(empty_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def environment(
    empty_database_url: URL, engine: Engine, idp: IdpProcess, kki: Mock, sisdmk: Mock
) -> dict[str, str]:
    url = empty_database_url.render_as_string(hide_password=False)
    return adapter_environment(url, kki.url, sisdmk.url) | {
        "OIDC_ISSUER": idp.issuer,
        "OIDC_AUDIENCE": AUDIENCE,
        "SYNC_SCHEDULE": SCHEDULE,
        "SYNC_TIMEZONE": "UTC",
        "SCHEDULE_POLL_S": "0.2",
        "LOG_FORMAT": "console",
        "COLUMNS": "200",
    }


def _hf_adapter(name: str, environment: dict[str, str], *args: str) -> ManagedProcess:
    argv = [sys.executable, "-m", "adapter", *args]
    return ManagedProcess(name, argv, env=environment).start()


def _serve(environment: dict[str, str]) -> tuple[ManagedProcess, str]:
    port = free_port()
    server = _hf_adapter(
        "adapter-serve",
        environment,
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        "2",
    )
    url = f"http://127.0.0.1:{port}"
    server.wait_http(f"{url}/healthz", timeout_s=60)
    return server, url


def _run(engine: Engine, run_id: str) -> dict[str, Any] | None:
    with session_factory(engine)() as session:
        return listings.sync_run(session, uuid.UUID(run_id))


def _finished(engine: Engine, run_id: str, process: ManagedProcess) -> dict[str, Any]:
    """The run once it has ended; only the deadline guards against a hang."""
    deadline = time.monotonic() + 180
    while True:
        run = _run(engine, run_id)
        assert run is not None
        if run["status"] in ("succeeded", "failed"):
            return run
        assert process.is_running(), process.output()
        assert time.monotonic() < deadline, f"the run is still {run['status']}"
        time.sleep(0.1)


def test_a_requested_run_completes_after_the_web_process_is_killed(
    engine: Engine, environment: dict[str, str], idp: IdpProcess
) -> None:
    token = idp.token(OPS)
    scheduler = _hf_adapter("adapter-schedule", environment, "schedule")
    try:
        server, url = _serve(environment)
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as api:
                answer = api.post("/api/v1/sync-runs", json={"system": "sisdmk", "full": True})
        finally:
            server.signal(signal.SIGKILL)  # what a worker restart does to whatever runs in it
            server.close()
        assert answer.status_code == 202, answer.text
        requested = answer.json()
        assert answer.headers["Location"] == f"/api/v1/sync-runs/{requested['id']}"
        assert requested["status"] == "requested"
        run = _finished(engine, requested["id"], scheduler)
    finally:
        status = scheduler.stop(timeout_s=60)
        output = scheduler.output()
        scheduler.close()
    assert status == 0, output
    assert "sisdmk: succeeded" in output
    assert (run["status"], run["mode"], run["fetched"]) == ("succeeded", "full", SIZE), run
    assert run["requested_by"] == requested["requested_by"]
    assert run["requested_at"] == requested["requested_at"]

    server, url = _serve(environment)  # the API shows the finished run at the same URL
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            shown = client.get(answer.headers["Location"])
            listed = client.get("/api/v1/sync-runs", params={"system": "sisdmk"})
    finally:
        server.close()
    assert shown.json() == run
    assert [r["id"] for r in listed.json()["data"]] == [requested["id"]]
    with session_factory(engine)() as session:
        (audit,) = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "sync.start", AuditEvent.resource_id == requested["id"]
            )
        ).all()
    assert (audit.outcome, audit.actor_subject) == ("success", requested["requested_by"])


def test_schedule_once_runs_the_pending_requests(
    engine: Engine, environment: dict[str, str]
) -> None:
    with session_factory(engine).begin() as session:
        request = request_run(
            session,
            engine,
            "sisdmk",
            full=False,
            requested_by="service-account-hf-ops",
            now=dt.datetime.now(dt.UTC),
        )
        run_id = str(request.run_id)

    scheduler = _hf_adapter("adapter-schedule-once", environment, "schedule", "--once")
    try:
        assert scheduler.process is not None
        status = scheduler.process.wait(timeout=180)
        output = scheduler.output()
    finally:
        scheduler.close()

    assert status == 0, output
    # The request first, then KKI's daily run.
    assert output.index("sisdmk: succeeded") < output.index("kki: succeeded")
    run = _run(engine, run_id)
    assert run is not None
    assert (run["status"], run["fetched"], run["requested_by"]) == (
        "succeeded",
        SIZE,
        "service-account-hf-ops",
    )
    with session_factory(engine)() as session:
        assert session.scalars(select(SyncRequest)).all() == []
