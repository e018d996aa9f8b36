"""Requested sync runs: one waits per system, a live run refuses a request, a dead one does not."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from adapter.sdmk_integration_manager import ConnectionDisabled, set_enabled
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.locks import exclusive
from adapter.store.models import SyncRequest, SyncRun
from adapter.sync.requests import (
    RunNotRequested,
    SyncInProgress,
    pending_requests,
    refuse_request,
    request_run,
    take_request,
)
from tests.support.databases import migrate

NOW = dt.datetime(2031, 5, 4, 3, 2, 1, tzinfo=dt.UTC)
SUBJECT = "0b6a4c1e-6f0e-4d6c-9c59-1f1d7b2b9a11"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def _request(sessions: sessionmaker[Session], engine: Engine, system: str) -> uuid.UUID:
    with sessions.begin() as session:
        request = request_run(session, engine, system, full=True, requested_by=SUBJECT, now=NOW)
        return request.run_id


def _running(sessions: sessionmaker[Session], system: str) -> uuid.UUID:
    run_id = uuid.uuid4()
    with sessions.begin() as session:
        session.add(
            SyncRun(id=run_id, system=system, mode="full", started_at=NOW, status="running")
        )
    return run_id


def test_a_request_waits_for_the_scheduler_with_who_asked(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    run_id = _request(sessions, engine, "kki")

    with sessions() as session:
        (waiting,) = pending_requests(session)
    assert (waiting.system, waiting.run_id, waiting.full) == ("kki", run_id, True)
    assert waiting.requested_by == SUBJECT
    assert waiting.requested_at == NOW


def test_a_second_request_of_a_system_is_refused_naming_the_waiting_one(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    first = _request(sessions, engine, "kki")

    with pytest.raises(SyncInProgress) as refused:
        _request(sessions, engine, "kki")
    assert (refused.value.run_id, refused.value.status) == (first, "requested")
    assert str(first) in refused.value.message
    _request(sessions, engine, "sisdmk")  # the other system is free


def test_a_request_while_a_run_holds_the_lock_is_refused_naming_the_run(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    running = _running(sessions, "sisdmk")

    with exclusive(engine, "sync-sisdmk"), pytest.raises(SyncInProgress) as refused:
        _request(sessions, engine, "sisdmk")
    assert (refused.value.run_id, refused.value.status) == (running, "running")


def test_a_running_row_whose_process_died_does_not_refuse_a_request(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    _running(sessions, "sisdmk")  # nobody holds the lock: its process is gone

    run_id = _request(sessions, engine, "sisdmk")

    with sessions() as session:
        assert [r.run_id for r in pending_requests(session)] == [run_id]


def test_a_disabled_connection_refuses_the_request_and_records_nothing(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    with sessions.begin() as session:
        set_enabled(session, "kki", False, clock=lambda: NOW)

    with pytest.raises(ConnectionDisabled):
        _request(sessions, engine, "kki")
    with sessions() as session:
        assert pending_requests(session) == []


def test_a_request_is_taken_once(sessions: sessionmaker[Session], engine: Engine) -> None:
    run_id = _request(sessions, engine, "kki")

    with sessions.begin() as session:
        taken = take_request(session, "kki", run_id)
        assert taken.requested_by == SUBJECT
    with sessions.begin() as session, pytest.raises(RunNotRequested):
        take_request(session, "kki", run_id)
    with sessions.begin() as session:
        assert not refuse_request(session, "kki", run_id, "too late", NOW)


def test_a_refused_request_ends_as_a_failed_run_under_its_id(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    run_id = _request(sessions, engine, "kki")
    later = NOW + dt.timedelta(seconds=5)

    with sessions.begin() as session:
        assert refuse_request(session, "kki", run_id, "ConnectionDisabled: off", later)

    with sessions() as session:
        run = session.get(SyncRun, run_id)
        assert session.scalars(select(SyncRequest)).all() == []
    assert run is not None
    assert (run.status, run.mode, run.error) == ("failed", "full", "ConnectionDisabled: off")
    assert (run.requested_by, run.requested_at, run.finished_at) == (SUBJECT, NOW, later)
