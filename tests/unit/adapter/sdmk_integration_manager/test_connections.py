"""Connection state: backoff, down after repeated failures, recovery, lag — all on the injected
clock, at dates years before and after the real one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adapter.sdmk_integration_manager import (
    connection_state,
    enabled_switches,
    record_failure,
    record_success,
    set_enabled,
)
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.models import Connection
from tests.support.databases import migrate

NOW = (
    dt.datetime(2019, 3, 10, 4, 0, tzinfo=dt.UTC),
    dt.datetime(2041, 6, 15, 23, 30, tzinfo=dt.UTC),
)


@pytest.fixture(params=NOW, ids=lambda now: f"{now:%Y}")
def start(request: pytest.FixtureRequest) -> dt.datetime:
    now: dt.datetime = request.param
    return now


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def test_failures_back_off_doubling_from_the_clock_then_mark_the_connection_down(
    sessions: sessionmaker[Session], start: dt.datetime
) -> None:
    waits, statuses = [], []
    with sessions.begin() as session:
        for n in range(8):
            now = start + dt.timedelta(hours=n)
            state = record_failure(session, "kki", "UpstreamUnavailable", clock=lambda now=now: now)
            assert state.last_failure_at == now
            assert state.next_attempt_at is not None
            waits.append(state.next_attempt_at - now)
            statuses.append(state.status)
    assert [w.total_seconds() / 60 for w in waits] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert statuses == ["degraded", "degraded"] + ["down"] * 6


def test_a_success_makes_the_connection_healthy_and_lag_counts_from_it(
    sessions: sessionmaker[Session], start: dt.datetime
) -> None:
    with sessions.begin() as session:
        record_failure(session, "sisdmk", "UpstreamUnavailable", clock=lambda: start)
        record_success(session, "sisdmk", clock=lambda: start + dt.timedelta(minutes=3))
        state = connection_state(session, "sisdmk")
    assert (state.status, state.consecutive_failures, state.next_attempt_at) == (
        "healthy",
        0,
        None,
    )
    assert state.error_count == 1
    assert state.lag_s(start + dt.timedelta(minutes=5)) == 120.0


def _health(sessions: sessionmaker[Session]) -> tuple[str, int, dt.datetime | None]:
    """KKI's connection: status, failures in a row, when the scheduler tries again."""
    with sessions() as session:
        state = connection_state(session, "kki")
    return state.status, state.consecutive_failures, state.next_attempt_at


def test_a_healthy_connections_successes_are_written_at_most_once_a_second(
    sessions: sessionmaker[Session], start: dt.datetime
) -> None:
    """Every worker transaction that applied documents records a success (as do look-ups and
    sync runs); a healthy row is rewritten only when its last success is a second old, or when
    a success would change more."""

    def succeed(after_s: float, breaker: str = "closed") -> dt.datetime | None:
        moment = start + dt.timedelta(seconds=after_s)
        with sessions.begin() as session:
            record_success(session, "kki", breaker_state=breaker, clock=lambda: moment)
        with sessions() as session:
            return connection_state(session, "kki").last_success_at

    def at(after_s: float) -> dt.datetime:
        return start + dt.timedelta(seconds=after_s)

    assert succeed(0) == at(0)
    assert succeed(0.4) == at(0), "within the second: not written again"
    assert succeed(0.9) == at(0)
    assert succeed(1.0) == at(1.0)
    assert succeed(1.5, breaker="half_open") == at(1.5), "the breaker changed"
    with sessions.begin() as session:
        record_failure(session, "kki", "UpstreamUnavailable", clock=lambda: at(1.6))
    assert succeed(1.7) == at(1.7), "after a failure, the next success is written"
    assert _health(sessions) == ("healthy", 0, None)


def test_a_success_overwrites_a_failure_committed_after_its_session_read_the_row(
    sessions: sessionmaker[Session], start: dt.datetime
) -> None:
    """A transaction that read the connection first (is it enabled?) and records its success
    last: another process's failure committed in between is not hidden by the copy it holds."""
    with sessions.begin() as session:
        record_success(session, "kki", clock=lambda: start)
    later = start + dt.timedelta(milliseconds=300)
    with sessions() as worker:
        held = worker.get(Connection, "kki")
        assert held is not None
        assert held.status == "healthy"
        with sessions.begin() as other:
            record_failure(other, "kki", "UpstreamUnavailable", clock=lambda: later)
        record_success(worker, "kki", clock=lambda: later + dt.timedelta(milliseconds=100))
        worker.commit()
    assert _health(sessions) == ("healthy", 0, None)


def test_disabling_a_connection_is_dated_by_the_clock(
    sessions: sessionmaker[Session], start: dt.datetime
) -> None:
    with sessions.begin() as session:
        state = set_enabled(session, "kki", False, clock=lambda: start)
        assert not state.enabled
        assert connection_state(session, "kki").lag_s(start) is None
    with sessions() as session:
        row = session.get(Connection, "kki")
        assert row is not None
        assert row.changed_at == start


def test_enabled_switches_read_each_connection_as_connection_state_does(
    sessions: sessionmaker[Session], start: dt.datetime
) -> None:
    with sessions.begin() as session:
        assert enabled_switches(session, ["kki", "sisdmk", "kki"]) == {"kki": True, "sisdmk": True}
        set_enabled(session, "sisdmk", False, clock=lambda: start)
    with sessions() as session:
        assert enabled_switches(session, {"sisdmk"}) == {"sisdmk": False}
        assert enabled_switches(session, ["kki", "sisdmk"]) == {
            system: connection_state(session, system).enabled for system in ("kki", "sisdmk")
        }
        assert enabled_switches(session, []) == {}
        with pytest.raises(ValueError, match="'satusehat'"):
            enabled_switches(session, ["kki", "satusehat"])


def test_a_connection_without_its_row_is_enabled(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.query(Connection).delete()
    with sessions() as session:
        assert enabled_switches(session, ["kki", "sisdmk"]) == {"kki": True, "sisdmk": True}
        assert connection_state(session, "kki").enabled


@pytest.mark.parametrize(
    ("status", "expected"),
    [(422, "healthy"), (400, "healthy"), (403, "down"), (409, "down")],
)
def test_a_request_refused_as_invalid_is_an_answer_not_a_failure(
    sessions: sessionmaker[Session], start: dt.datetime, status: int, expected: str
) -> None:
    """Any reader can send a NIK that cannot exist (KKI answers 422): counted as a failure,
    three of them marked KKI down and pushed the failed daily sync's retry back an hour."""
    from adapter.clients.errors import UpstreamRejected
    from adapter.sdmk_integration_manager.connections import record_outcome

    refused = UpstreamRejected(
        f"request rejected ({status})", system="kki", operation="lookup", status=status
    )
    with sessions.begin() as session:
        for _ in range(3):
            record_outcome(session, "kki", object(), refused, clock=lambda: start)
        state = connection_state(session, "kki")
    assert state.status == expected
