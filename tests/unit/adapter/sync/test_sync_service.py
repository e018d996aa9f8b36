"""`sync_system` with a scripted SISDMK client on a SQLite store: what a page does with records
the contract or the store refuses, the checkpoint, the run row, the audit entry per page and a
connection disabled in the middle of a run. (Real sources over HTTP: tests/integration.)"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from psycopg.errors import DeadlockDetected, UniqueViolation
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from adapter.clients.errors import UpstreamUnavailable
from adapter.clients.http import Page, RejectedItem
from adapter.observability.sync_metrics import SyncMetrics
from adapter.sdmk_integration_manager import ConnectionDisabled, connection_state, set_enabled
from adapter.store.crypto import BlindIndex, FieldCipher, Key, KeyRing
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.models import (
    AuditEvent,
    HealthWorker,
    IdentityFinding,
    QuarantinedRecord,
    SyncCheckpoint,
    SyncRun,
)
from adapter.store.repositories import HealthWorkerRepository
from adapter.sync.service import sync_system
from tests.support.databases import migrate
from tests.support.documents import sisdmk_worker

AT = dt.datetime(2030, 5, 6, 7, 8, tzinfo=dt.UTC)
CIPHER = FieldCipher(KeyRing([Key("enc-1", b"e" * 32)]))
BLIND_INDEX = BlindIndex(Key("bidx-1", b"b" * 32))


class ScriptedSisdmk:
    """Hands out the given pages; `before_page(n)` runs before page n is handed out."""

    def __init__(self, pages: Sequence[Page], before_page: Any = None) -> None:
        self.pages = pages
        self.before_page = before_page
        self.calls: list[tuple[Any, Any]] = []

    def iter_health_workers(
        self, updated_since: Any = None, page_size: int = 100, cursor: str | None = None
    ) -> Iterator[Page]:
        self.calls.append((updated_since, cursor))
        for number, page in enumerate(self.pages):
            if self.before_page is not None:
                self.before_page(number)
            yield page


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate(engine)
    yield session_factory(engine, audit_keys=KeyRing([Key("audit-test", bytes(range(32)))]))
    engine.dispose()


def run(sessions: sessionmaker[Session], client: Any, *, read_ahead: bool = True) -> Any:
    return sync_system(
        "sisdmk",
        session_factory=sessions,
        client=client,
        repository_factory=lambda session: HealthWorkerRepository(session, CIPHER, BLIND_INDEX),
        metrics=SyncMetrics.for_registry(CollectorRegistry()),
        clock=lambda: AT,
        read_ahead=read_ahead,
    )


def test_a_page_stores_the_good_records_and_quarantines_the_refused_ones(
    sessions: sessionmaker[Session],
) -> None:
    good, missing_name = sisdmk_worker(), sisdmk_worker()
    del missing_name["full_name"]
    broken = {"worker_id": "not-a-uuid", "nik": "1"}
    page = Page(
        items=(good, missing_name),
        next_cursor="c-2",
        rejected=(RejectedItem(2, "body.data[2].nik: too short", broken),),
    )
    result = run(sessions, ScriptedSisdmk([page]))
    assert result.succeeded
    assert (result.counts.fetched, result.counts.created, result.counts.rejected) == (3, 1, 2)
    with sessions() as session:
        quarantined = {
            row.source_id: row.reason for row in session.scalars(select(QuarantinedRecord))
        }
        [entry] = session.scalars(select(AuditEvent)).all()
        checkpoint = session.get(SyncCheckpoint, "sisdmk")
        run_row = session.get(SyncRun, result.run_id)
    assert quarantined == {
        missing_name["worker_id"]: "missing_field: full_name",
        "not-a-uuid": "contract_violation: body.data[2].nik: too short",
    }
    detail = json.loads(entry.detail or "{}")
    assert (entry.action, detail["run_id"]) == ("sync.write", str(result.run_id))
    assert detail["written_ids"] == [good["worker_id"]]
    assert sorted(detail["quarantined_ids"]) == sorted([missing_name["worker_id"], "not-a-uuid"])
    assert checkpoint is not None
    assert checkpoint.cursor == "c-2"
    assert run_row is not None
    assert (run_row.status, run_row.created) == ("succeeded", 1)


def test_a_connection_disabled_mid_run_stops_it_after_the_committed_pages(
    sessions: sessionmaker[Session],
) -> None:
    first, second = sisdmk_worker(), sisdmk_worker()

    def disable_before_second_page(number: int) -> None:
        if number == 1:
            with sessions.begin() as session:
                set_enabled(session, "sisdmk", False)

    client = ScriptedSisdmk(
        [Page(items=(first,), next_cursor="c-1"), Page(items=(second,), next_cursor=None)],
        disable_before_second_page,
    )
    # Without read-ahead the hook runs between the pages, after the first one's commit.
    result = run(sessions, client, read_ahead=False)
    assert (result.status, result.error_type, result.counts.created) == (
        "failed",
        "ConnectionDisabled",
        1,
    )
    with sessions() as session:
        checkpoint = session.get(SyncCheckpoint, "sisdmk")
        state = connection_state(session, "sisdmk")
    assert checkpoint is not None
    assert checkpoint.cursor == "c-1"
    assert state.status != "degraded"  # an operator's choice, not a failure to reach SISDMK

    with pytest.raises(ConnectionDisabled):  # and the next run does not start at all
        run(sessions, ScriptedSisdmk([]))


class FailingSisdmk:
    """Hands out `pages`, then fails as an unreachable source does; records the thread that
    fetched each page."""

    def __init__(self, pages: Sequence[Page]) -> None:
        self.pages = pages
        self.fetched_on: list[str] = []

    def iter_health_workers(
        self, updated_since: Any = None, page_size: int = 100, cursor: str | None = None
    ) -> Iterator[Page]:
        for page in self.pages:
            self.fetched_on.append(threading.current_thread().name)
            yield page
        raise UpstreamUnavailable(
            "server error (503)", system="sisdmk", operation="listHealthWorkers"
        )


def test_read_ahead_commits_every_page_before_the_source_error_and_resumes_after_them(
    sessions: sessionmaker[Session],
) -> None:
    first, second = sisdmk_worker(), sisdmk_worker()
    pages = [
        Page(items=(first,), next_cursor="c-1", cursor=None),
        Page(items=(second,), next_cursor="c-2", cursor="c-1"),
    ]
    client = FailingSisdmk(pages)
    result = run(sessions, client)

    assert (result.status, result.error_type) == ("failed", "UpstreamUnavailable")
    assert (result.pages, result.counts.created) == (2, 2)
    assert client.fetched_on == ["sync-read-ahead", "sync-read-ahead"]
    with sessions() as session:
        checkpoint = session.get(SyncCheckpoint, "sisdmk")
        run_row = session.scalars(select(SyncRun)).one()
    assert checkpoint is not None
    assert checkpoint.cursor == "c-2", "the next run starts at the page that failed"
    assert (run_row.status, run_row.created) == ("failed", 2)


class CollidingRepository(HealthWorkerRepository):
    """The page's first write meets a key another writer created meanwhile (so the page is
    replayed record by record), then so does `culprit`'s own write in that replay once: what
    the webhook worker creating people of the page at the wrong moments looks like."""

    def __init__(self, session: Session, state: dict[str, Any]) -> None:
        super().__init__(session, CIPHER, BLIND_INDEX)
        self.state = state

    def upsert_from_sisdmk(self, doc: Any, *, fetched_at: dt.datetime) -> Any:
        if doc is self.state["culprit"] and not self.state["page"] and self.state["record"]:
            self.state["record"] -= 1
            raise IntegrityError("COPY health_workers …", None, UniqueViolation("duplicate key"))
        return super().upsert_from_sisdmk(doc, fetched_at=fetched_at)

    def write_staged(self, *, last: bool = True) -> None:
        if self.state["page"]:
            self.state["page"] -= 1
            raise IntegrityError("COPY health_workers …", None, UniqueViolation("duplicate key"))
        super().write_staged()


@pytest.mark.parametrize(("collisions", "quarantined"), [(1, 0), (2, 1)])
def test_a_record_meeting_a_key_created_meanwhile_is_read_again_once_before_quarantine(
    sessions: sessionmaker[Session], collisions: int, quarantined: int
) -> None:
    first, culprit = sisdmk_worker(), sisdmk_worker()
    state: dict[str, Any] = {"culprit": culprit, "page": 1, "record": collisions}
    result = sync_system(
        "sisdmk",
        session_factory=sessions,
        client=ScriptedSisdmk([Page(items=(first, culprit), next_cursor=None)]),
        repository_factory=lambda session: CollidingRepository(session, state),
        metrics=SyncMetrics.for_registry(CollectorRegistry()),
        clock=lambda: AT,
    )
    assert result.succeeded, result.error
    assert (result.counts.created, result.counts.rejected) == (2 - quarantined, quarantined)
    with sessions() as session:
        reasons = [row.reason for row in session.scalars(select(QuarantinedRecord))]
    assert reasons == ["database_rejected: UniqueViolation"] * quarantined


def test_a_run_counts_the_findings_its_pages_opened_not_another_writers(
    sessions: sessionmaker[Session],
) -> None:
    first, second = sisdmk_worker(), sisdmk_worker()

    def another_writer_opens_a_finding(number: int) -> None:
        if number == 1:  # the first page is committed: its worker exists
            with sessions.begin() as session:
                worker = session.scalars(select(HealthWorker.id)).one()
                session.add(
                    IdentityFinding(
                        id=uuid.uuid4(),
                        rule="identity_mismatch",
                        worker_id=worker,
                        source_system="kki",
                        field="full_name",
                        detected_at=AT,
                    )
                )

    client = ScriptedSisdmk(
        [Page(items=(first,), next_cursor="c-1"), Page(items=(second,), next_cursor=None)],
        before_page=another_writer_opens_a_finding,
    )
    result = run(sessions, client, read_ahead=False)
    assert result.succeeded, result.error
    assert result.findings == 0
    with sessions() as session:
        run_row = session.get(SyncRun, result.run_id)
    assert run_row is not None
    assert run_row.findings == 0


def test_a_record_stamped_in_the_future_does_not_move_the_checkpoint_past_the_fetch(
    sessions: sessionmaker[Session],
) -> None:
    """One record whose `updated_at` is years ahead (a source's clock) set `updated_since` there:
    every later run asked for changes since 2099, got none and "succeeded"."""
    ahead, normal = sisdmk_worker(), sisdmk_worker()
    ahead["updated_at"] = "2099-01-01T00:00:00Z"
    normal["updated_at"] = (AT - dt.timedelta(hours=1)).isoformat()
    source = ScriptedSisdmk([Page(items=(ahead, normal), next_cursor=None)])

    assert run(sessions, source).succeeded
    with sessions() as session:
        checkpoint = session.get(SyncCheckpoint, "sisdmk")
    assert checkpoint is not None
    assert checkpoint.updated_since == AT, "capped at the page's fetch time"

    assert run(sessions, source).succeeded
    assert source.calls[-1][0] == AT, "the next run asks for changes since then"


class DeadlockingRepository(HealthWorkerRepository):
    """The page's write is chosen as a deadlock victim `times` times (another writer inserting
    the same new people in the other order)."""

    def __init__(self, session: Session, state: dict[str, int]) -> None:
        super().__init__(session, CIPHER, BLIND_INDEX)
        self.state = state

    def write_staged(self, *, last: bool = True) -> None:
        if self.state["times"]:
            self.state["times"] -= 1
            raise OperationalError("COPY health_workers …", None, DeadlockDetected("deadlock"))
        super().write_staged()


@pytest.mark.parametrize(("deadlocks", "succeeded"), [(1, True), (2, False)])
def test_a_page_chosen_as_a_deadlock_victim_is_written_again_once(
    sessions: sessionmaker[Session], deadlocks: int, succeeded: bool
) -> None:
    first, second = sisdmk_worker(), sisdmk_worker()
    state = {"times": deadlocks}
    result = sync_system(
        "sisdmk",
        session_factory=sessions,
        client=ScriptedSisdmk([Page(items=(first, second), next_cursor=None)]),
        repository_factory=lambda session: DeadlockingRepository(session, state),
        metrics=SyncMetrics.for_registry(CollectorRegistry()),
        clock=lambda: AT,
    )
    assert result.succeeded is succeeded
    if succeeded:
        assert (result.counts.created, result.counts.rejected) == (2, 0)
    else:  # a second deadlock in a row fails the run (it resumes at this page), as before
        assert "OperationalError" in str(result.error)
    with sessions() as session:
        assert len(session.scalars(select(QuarantinedRecord)).all()) == 0


def test_a_runs_row_counts_the_findings_of_each_committed_page_as_it_goes(
    sessions: sessionmaker[Session],
) -> None:
    """The run's row kept every count page by page but the findings, written only at its end:
    a run killed mid-way showed `findings` 0 whatever its committed pages had opened."""
    contradicting = sisdmk_worker(birth_date="1970-07-07")  # the NIK says 1985-03-12
    seen_after_first_page: list[int] = []

    def look(number: int) -> None:
        if number == 1:  # page 1 is committed, the run is not finished (as if killed now)
            with sessions() as session:
                row = session.scalars(select(SyncRun)).one()
                seen_after_first_page.append(row.findings)

    client = ScriptedSisdmk(
        [Page(items=(contradicting,), next_cursor="c-1"), Page(items=(), next_cursor=None)],
        before_page=look,
    )
    result = run(sessions, client, read_ahead=False)
    assert result.succeeded, result.error
    assert result.findings >= 1
    assert seen_after_first_page == [result.findings]


def test_an_unexpected_error_is_logged_with_where_it_was_raised_never_its_message(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """The run's error said "see the log", and the log said no more than the class."""
    value = "Siti Rahmawati 3171015708900042"

    def broken(number: int) -> None:
        raise RuntimeError(f"cannot handle {value}")

    with caplog.at_level(logging.WARNING, logger="adapter.sync"):
        result = run(sessions, ScriptedSisdmk([Page(items=(), next_cursor=None)], broken))
    assert not result.succeeded
    (line,) = [r for r in caplog.records if r.getMessage() == "sync failed"]
    where = line.__dict__["where"]
    assert "test_sync_service.py" in where
    assert "broken" in where
    with sessions() as session:
        row = session.get(SyncRun, result.run_id)
    assert row is not None
    assert 'the log\'s "sync failed" line says where' in (row.error or "")
    for text in (where, row.error or "", line.__dict__["error"]):
        assert value not in text


def test_a_record_the_contract_refused_last_is_not_fetched_and_quarantined_again(
    sessions: sessionmaker[Session],
) -> None:
    """The checkpoint followed only the records kept: one refused at the end of the walk was
    fetched again by every incremental run, and quarantined once more each time."""
    good = sisdmk_worker(updated_at=(AT - dt.timedelta(hours=2)).isoformat())
    refused = {"worker_id": "not-a-uuid", "updated_at": (AT - dt.timedelta(hours=1)).isoformat()}
    page = Page(
        items=(good,),
        next_cursor=None,
        rejected=(RejectedItem(1, "body.data[1].worker_id: not a uuid", refused),),
    )
    assert run(sessions, ScriptedSisdmk([page])).succeeded
    with sessions() as session:
        checkpoint = session.get(SyncCheckpoint, "sisdmk")
    assert checkpoint is not None
    assert checkpoint.updated_since == AT - dt.timedelta(hours=1)
