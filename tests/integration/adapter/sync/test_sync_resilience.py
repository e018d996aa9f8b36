"""Batch sync under every fault kind of the mocks, contract breaches per record, the sync lock,
connection state and metrics — real mocks, real PostgreSQL and SQLite."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adapter.audit import verify_chain
from adapter.clients import RetryPolicy, Timeouts
from adapter.observability.sync_metrics import SyncMetrics
from adapter.sdmk_integration_manager import (
    ConnectionDisabled,
    connection_state,
    set_enabled,
)
from adapter.store.crypto import BlindIndex, FieldCipher, decrypt_fields
from adapter.store.locks import HeldLock, LockHeld, advisory_key, exclusive
from adapter.store.models import (
    AuditEvent,
    HealthWorker,
    QuarantinedRecord,
    SyncCheckpoint,
    SyncRun,
)
from adapter.sync import SyncProgress
from tests.integration.adapter.sync.support import (
    Mock,
    adapter_environment,
    client_for,
    run_sync,
    running_mock,
    store,
)
from tests.integration.adapter.sync.test_sync_cli_crash import HF_ADAPTER
from tests.support.databases import BACKENDS

pytestmark = pytest.mark.integration

SIZE = 120
PAGE = 40
# Honours a Retry-After of up to 2 s (the mocks' rate limit windows are 1 s here).
PATIENT = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=2)


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=SIZE, seed=11)


@pytest.fixture
def mock(sisdmk: Mock) -> Iterator[Mock]:
    sisdmk.reset()
    yield sisdmk
    sisdmk.reset()


@pytest.fixture
def sessions(empty_database_url: URL) -> Iterator[sessionmaker[Session]]:
    with store(empty_database_url) as factory:
        yield factory


def _workers(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(HealthWorker)) or 0)


def _sync(
    mock: Mock,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    **options: Any,
) -> Any:
    overrides = {"timeouts": options.pop("timeouts")} if "timeouts" in options else {}
    client = client_for("sisdmk", mock, policy=options.pop("policy", PATIENT), **overrides)
    return run_sync(
        "sisdmk", mock, sessions, cipher, blind_index, page_size=PAGE, client=client, **options
    )


# -- every fault kind -----------------------------------------------------------------------

SURVIVED_BY_RETRIES = {
    "5xx burst": {"kind": "error", "status": 503, "retry_after_s": 0, "times": 2},
    "500 once": {"kind": "error", "status": 500, "times": 1},
    "429 with Retry-After": {"kind": "rate_limit", "limit": 2, "window_s": 1},
    "latency": {"kind": "latency", "latency_ms": 150},
    "truncated body": {"kind": "truncated", "times": 2},
}


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
@pytest.mark.parametrize("rule", SURVIVED_BY_RETRIES.values(), ids=SURVIVED_BY_RETRIES.keys())
def test_transient_faults_are_retried_and_the_run_completes(
    mock: Mock,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    rule: dict[str, Any],
) -> None:
    mock.fault({"route": "listHealthWorkers", **rule})
    result = _sync(mock, sessions, cipher, blind_index)
    assert result.succeeded, result.error
    assert (result.counts.fetched, result.counts.created) == (SIZE, SIZE)
    assert _workers(sessions) == SIZE
    with sessions() as session:
        assert connection_state(session, "sisdmk").status == "healthy"


FAILING_A_RUN = {
    # The mock drops the connection, then refuses connections for the outage.
    "down": ({"kind": "down", "duration_ms": 1500, "times": 1}, "UpstreamUnavailable"),
    "malformed body": ({"kind": "malformed", "times": 1}, "ContractViolation"),
    "timeout": ({"kind": "timeout", "timeout_ms": 8000, "times": 4}, "UpstreamUnavailable"),
}


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
@pytest.mark.parametrize(("rule", "error"), FAILING_A_RUN.values(), ids=FAILING_A_RUN.keys())
def test_a_fault_that_outlasts_the_retries_degrades_the_connection_and_the_rerun_recovers(
    mock: Mock,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    rule: dict[str, Any],
    error: str,
) -> None:
    def fault_after_first_page(progress: SyncProgress) -> None:
        if progress.pages == 1:
            mock.fault({"route": "listHealthWorkers", **rule})

    failed = _sync(
        mock,
        sessions,
        cipher,
        blind_index,
        on_page=fault_after_first_page,
        read_ahead=False,  # the fault must meet the second page's request
        policy=RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02),
        # Each attempt against a held answer waits out the read timeout: 2 s, not 5.
        **({"timeouts": Timeouts(connect_s=1.0, read_s=2.0)} if rule["kind"] == "timeout" else {}),
    )
    assert failed.status == "failed"
    assert failed.error_type in {error, "CircuitOpen"}
    assert failed.counts.fetched == PAGE, "the first page stays committed"
    with sessions() as session:
        state = connection_state(session, "sisdmk")
        assert state.status == "degraded"
        assert state.consecutive_failures == 1
        assert state.next_attempt_at is not None
        assert state.last_failure_at is not None
        assert state.next_attempt_at > state.last_failure_at
        assert state.last_error is not None
        assert state.last_error.startswith(str(failed.error_type))

    mock.wait_until_up()
    mock.reset()
    resumed = _sync(mock, sessions, cipher, blind_index)
    assert resumed.succeeded, resumed.error
    assert resumed.resumed
    assert resumed.counts.fetched == SIZE - PAGE
    assert _workers(sessions) == SIZE
    with sessions() as session:
        state = connection_state(session, "sisdmk")
        assert (state.status, state.consecutive_failures, state.error_count) == ("healthy", 0, 1)
        assert state.next_attempt_at is None


# -- records that break the contract ---------------------------------------------------------


class Tampering(httpx.BaseTransport):
    """Forwards to the real mock and spoils chosen records of list answers on the way back,
    as a source with a bug would send them."""

    def __init__(self, spoil: dict[int, Any]) -> None:
        self._inner = httpx.HTTPTransport()
        self._spoil = spoil

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path != "/v1/health-workers":
            return response
        response.read()
        body = json.loads(response.content)
        for index, spoil in self._spoil.items():
            if index < len(body["data"]):
                body["data"][index] = spoil(body["data"][index])
        headers = {"Content-Type": response.headers["Content-Type"]}
        return httpx.Response(response.status_code, headers=headers, json=body)

    def close(self) -> None:
        self._inner.close()


def _without(name: str) -> Any:
    return lambda doc: {key: value for key, value in doc.items() if key != name}


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_records_that_break_the_contract_are_quarantined_and_the_rest_stored(
    mock: Mock, sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    workers = mock.records("health-workers")
    spoil = {
        3: _without("nik"),
        5: lambda doc: {**doc, "birth_date": 19900817},
        7: lambda doc: "not an object",
    }
    client = client_for("sisdmk", mock, policy=PATIENT, transport=Tampering(spoil))
    result = run_sync("sisdmk", mock, sessions, cipher, blind_index, page_size=PAGE, client=client)
    pages = SIZE // PAGE
    assert result.succeeded, result.error
    assert result.counts.fetched == SIZE
    assert result.counts.rejected == 3 * pages
    assert result.counts.created == SIZE - 3 * pages
    assert _workers(sessions) == SIZE - 3 * pages
    with sessions() as session:
        rows = list(session.scalars(select(QuarantinedRecord).order_by(QuarantinedRecord.reason)))
        assert len(rows) == 3 * pages
        reasons = {row.reason.split(": ", 1)[1].split(" at ")[-1] for row in rows}
        assert {
            "body.data[3]: missing required field(s) nik",
            "body.data[5].birth_date: expected string, got integer",
            "body.data[7]: expected object, got string",
        } == reasons
        for row in rows:
            assert row.reason.startswith("contract_violation: ")
            assert row.run_id == result.run_id
            assert row.payload is not None
            for worker in workers:
                assert worker["nik"] not in row.reason
                assert worker["nik"] not in row.payload
        spoiled_birth = next(row for row in rows if "birth_date" in row.reason)
        clear = decrypt_fields(
            cipher, "quarantine", spoiled_birth.id, {"payload": spoiled_birth.payload}
        )["payload"]
        assert clear is not None
        assert '"birth_date":19900817' in clear
        run = session.get(SyncRun, result.run_id)
        assert run is not None
        assert (run.status, run.rejected) == ("succeeded", 3 * pages)


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_version_larger_than_the_store_keeps_is_quarantined_alike_on_every_backend(
    mock: Mock, sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    """The contract sets no maximum on `version`; PostgreSQL's INTEGER column refused 2^31 as
    `NumericValueOutOfRange` (after a failed page and a row-by-row retry), SQLite stored it."""
    spoil = {2: lambda doc: {**doc, "version": 2**31}}
    client = client_for("sisdmk", mock, policy=PATIENT, transport=Tampering(spoil))
    result = run_sync("sisdmk", mock, sessions, cipher, blind_index, page_size=PAGE, client=client)
    pages = SIZE // PAGE
    assert result.succeeded, result.error
    assert (result.counts.rejected, result.counts.created) == (pages, SIZE - pages)
    with sessions() as session:
        reasons = {row.reason for row in session.scalars(select(QuarantinedRecord))}
    assert reasons == {"version_out_of_range: VersionOutOfRange"}


class Repeating(httpx.BaseTransport):
    """Forwards to the real mock; every page after the first also carries the first page's
    first record again (a source whose paging shifts under concurrent writes does this)."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._first: Any = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path != "/v1/health-workers":
            return response
        response.read()
        body = json.loads(response.content)
        if self._first is None:
            self._first = body["data"][0]
        else:
            body["data"].append(self._first)
        headers = {"Content-Type": response.headers["Content-Type"]}
        return httpx.Response(response.status_code, headers=headers, json=body)

    def close(self) -> None:
        self._inner.close()


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_record_repeated_on_later_pages_is_stored_once(
    mock: Mock, sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    client = client_for("sisdmk", mock, policy=PATIENT, transport=Repeating())
    result = run_sync("sisdmk", mock, sessions, cipher, blind_index, page_size=PAGE, client=client)
    repeats = SIZE // PAGE - 1
    assert result.succeeded, result.error
    assert result.counts.fetched == SIZE + repeats
    assert (result.counts.created, result.counts.unchanged) == (SIZE, repeats)
    assert result.counts.rejected == 0
    assert _workers(sessions) == SIZE


# -- one sync per system at a time ---------------------------------------------------------


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_second_sync_of_the_same_system_is_refused_while_the_first_runs(
    mock: Mock, sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    first_page = threading.Event()
    release = threading.Event()
    outcome: dict[str, Any] = {}

    def hold(progress: SyncProgress) -> None:
        first_page.set()
        release.wait(timeout=30)

    def first() -> None:
        outcome["result"] = _sync(mock, sessions, cipher, blind_index, on_page=hold)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert first_page.wait(timeout=30)
        with pytest.raises(LockHeld, match="already running"):
            _sync(mock, sessions, cipher, blind_index)
    finally:
        release.set()
        thread.join(timeout=60)
    assert outcome["result"].succeeded
    with sessions() as session:
        runs = session.scalar(select(func.count()).select_from(SyncRun))
    assert runs == 1, "the refused sync left no run behind"
    again = _sync(mock, sessions, cipher, blind_index)
    assert again.succeeded, "the lock is free once the first run ended"


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_database_gone_mid_run_fails_the_run_and_the_next_run_recovers(
    mock: Mock,
    empty_database_url: URL,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    """After the first page the store's database refuses connections and its sessions are
    ended (the sync's lock connection with them). The run used to raise out of `sync_system`
    from the lock's release or the status read after its end; it now returns a failed result
    (nothing to record it in), and the next run, with the database back, marks the run
    abandoned and completes."""
    database = empty_database_url.database
    admin = create_engine(empty_database_url.set(database="postgres"))

    def outage(allowed: bool) -> None:
        with admin.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(
                text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
            )
            if not allowed:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": database},
                )

    def cut(progress: SyncProgress) -> None:
        if progress.pages == 1:
            outcome["cut"] = True
            outage(allowed=False)

    outcome: dict[str, Any] = {}
    try:
        result = _sync(mock, sessions, cipher, blind_index, on_page=cut, read_ahead=False)
    finally:
        outage(allowed=True)
        admin.dispose()
    assert outcome == {"cut": True}
    assert result.status == "failed"
    assert result.error_type == "OperationalError", result.error
    assert result.counts.fetched == PAGE  # the first page, committed before the outage
    again = _sync(mock, sessions, cipher, blind_index)
    assert again.succeeded, again.error
    assert _workers(sessions) == SIZE
    with sessions() as session:
        runs = [
            (run.status, run.error)
            for run in session.scalars(select(SyncRun).order_by(SyncRun.started_at))
        ]
    assert runs[0][0] == "failed"
    assert (runs[0][1] or "").startswith("abandoned:"), runs
    assert runs[1] == ("succeeded", None)


def _end_the_lock_holder(admin: Any) -> bool:
    """Terminate the server session holding SISDMK's sync lock; whether one was."""
    key = advisory_key("sync-sisdmk")
    with admin.connect() as connection:
        return bool(
            connection.scalar(
                text(
                    "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objsubid = 1 "
                    "AND classid = CAST(CAST(:high AS bigint) AS oid) "
                    "AND objid = CAST(CAST(:low AS bigint) AS oid)"
                ),
                {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF},
            )
        )


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_run_whose_lock_went_with_its_connection_stops_before_its_next_commit(
    mock: Mock,
    empty_database_url: URL,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    """The lock's connection idles through the run while the pages use others, which are
    replaced when the server drops them: a run whose lock connection was ended went on
    writing pages and checkpoints, unlocked, beside any run that took the lock since."""
    admin = create_engine(empty_database_url)

    def end_the_lock_holder(progress: SyncProgress) -> None:
        if progress.pages == 1:
            outcome["ended"] = _end_the_lock_holder(admin)

    outcome: dict[str, Any] = {}
    try:
        result = _sync(
            mock, sessions, cipher, blind_index, on_page=end_the_lock_holder, read_ahead=False
        )
    finally:
        admin.dispose()
    assert outcome == {"ended": True}
    assert (result.status, result.error_type) == ("failed", "LockLost"), result.error
    assert result.counts.fetched == PAGE  # page 1 only: page 2 was not committed
    assert _workers(sessions) == PAGE
    again = _sync(mock, sessions, cipher, blind_index)
    assert again.succeeded, again.error
    assert again.resumed
    assert _workers(sessions) == SIZE


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_run_that_lost_its_lock_after_the_check_commits_nothing_after_the_next_runs_start(
    mock: Mock,
    empty_database_url: URL,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window `verify` leaves: the lock lost between the check and the commit. Modelled by
    a check that always passes: run A loses its lock after page 1, run B takes it and syncs to
    the end, then A's page 2 would have committed and set the checkpoint back to mid-list."""
    monkeypatch.setattr(HeldLock, "verify", lambda self: None)
    admin = create_engine(empty_database_url)
    outcome: dict[str, Any] = {}

    def taken_over(progress: SyncProgress) -> None:
        if progress.pages == 1 and "b" not in outcome:
            outcome["ended"] = _end_the_lock_holder(admin)
            outcome["b"] = _sync(mock, sessions, cipher, blind_index)

    try:
        result = _sync(mock, sessions, cipher, blind_index, on_page=taken_over, read_ahead=False)
    finally:
        admin.dispose()
    assert outcome["ended"]
    assert outcome["b"].succeeded, outcome["b"].error
    assert outcome["b"].resumed  # from A's page 1, read after A was marked
    assert (result.status, result.error_type) == ("failed", "LockLost"), result.error
    assert result.counts.fetched == PAGE
    with sessions() as session:
        checkpoint = session.get(SyncCheckpoint, "sisdmk")
        assert checkpoint is not None
        assert (checkpoint.cursor, checkpoint.run_id) == (None, outcome["b"].run_id)
    assert _workers(sessions) == SIZE


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_the_sync_command_exits_2_while_another_process_holds_the_lock(
    mock: Mock, empty_database_url: URL, sessions: sessionmaker[Session]
) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    environment = adapter_environment(url, "http://127.0.0.1:9", mock.url)
    engine = sessions.kw["bind"]
    with exclusive(engine, "sync-sisdmk"):
        held = subprocess.run(
            [str(HF_ADAPTER), "sync", "--system", "sisdmk"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert held.returncode == 2, held.stderr
    assert "already running in another process" in held.stderr
    free = subprocess.run(
        [str(HF_ADAPTER), "sync", "--system", "sisdmk"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert free.returncode == 0, free.stderr


# -- a disabled connection, and what the metrics say ---------------------------------------


def test_a_disabled_connection_is_not_synced(
    mock: Mock, sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    with sessions.begin() as session:
        set_enabled(session, "sisdmk", False)
    with pytest.raises(ConnectionDisabled, match="disabled"):
        _sync(mock, sessions, cipher, blind_index)
    assert _workers(sessions) == 0
    with sessions.begin() as session:
        set_enabled(session, "sisdmk", True)
    assert _sync(mock, sessions, cipher, blind_index).succeeded


def test_sync_metrics_count_runs_records_and_connection_status(
    mock: Mock, sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    registry = CollectorRegistry()
    metrics = SyncMetrics.for_registry(registry)
    assert _sync(mock, sessions, cipher, blind_index, metrics=metrics).succeeded
    assert _sync(mock, sessions, cipher, blind_index, metrics=metrics, full=True).succeeded

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("hf_sync_runs_total", system="sisdmk", mode="full", status="succeeded") == 2
    assert value("hf_sync_records_total", system="sisdmk", outcome="created") == SIZE
    assert value("hf_sync_records_total", system="sisdmk", outcome="unchanged") == SIZE
    assert value("hf_sync_duration_seconds_count", system="sisdmk", status="succeeded") == 2
    assert (value("hf_sync_last_success_timestamp_seconds", system="sisdmk") or 0) > 0
    assert value("hf_connection_status", system="sisdmk", status="healthy") == 1
    assert value("hf_connection_status", system="sisdmk", status="degraded") == 0
    exposition = "\n".join(
        f"{sample.name}{sample.labels}"
        for family in registry.collect()
        for sample in family.samples
    )
    for worker in mock.records("health-workers")[:20]:
        assert worker["nik"] not in exposition
        assert worker["worker_id"] not in exposition


def test_every_page_a_sync_writes_is_on_the_audit_trail(
    mock: Mock, sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    first = _sync(mock, sessions, cipher, blind_index)
    assert first.succeeded, first.error
    unchanged = _sync(mock, sessions, cipher, blind_index, full=True)
    assert unchanged.counts.unchanged == SIZE
    with sessions() as session:
        entries = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert verify_chain(session).intact
    assert len(entries) == SIZE // PAGE, "one entry per page written; none for unchanged pages"
    written: list[str] = []
    for entry in entries:
        assert (entry.actor_kind, entry.action) == ("system", "sync.write")
        assert entry.resource_type == "sisdmk:health-workers"
        assert entry.fields is not None
        assert "nik" in json.loads(entry.fields)
        assert entry.trace_id is not None
        assert entry.detail is not None
        detail = json.loads(entry.detail)
        assert detail["run_id"] == str(first.run_id)
        written += detail["written_ids"]
    workers = mock.records("health-workers")
    assert sorted(written) == sorted(worker["worker_id"] for worker in workers)
    trail = " ".join(str(entry.detail) for entry in entries)
    assert not [worker["nik"] for worker in workers if worker["nik"] in trail]
