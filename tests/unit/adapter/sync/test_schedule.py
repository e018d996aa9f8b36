"""When a system's daily sync is due: slots in the configured time zone, runs and retries."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adapter.sdmk_integration_manager import ConnectionDisabled, record_failure, set_enabled
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.locks import LockHeld, exclusive
from adapter.store.models import SyncCheckpoint, SyncRun
from adapter.sync.requests import request_run, take_request
from adapter.sync.schedule import DailySchedule
from adapter.sync.service import NoLongerWanted, SyncCounts, SyncRunResult
from tests.support.databases import migrate

WIB = "Asia/Jakarta"  # UTC+7
# 01:00 WIB is 18:00 UTC the day before. Every test runs at dates years before and after the
# real one: the schedule, its sync runs and the connection state must read the injected clock
# only, so what "now" really is cannot change a result.
SLOTS_UTC = (
    dt.datetime(2019, 3, 10, 18, 0, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 26, 18, 0, tzinfo=dt.UTC),
    dt.datetime(2041, 6, 15, 18, 0, tzinfo=dt.UTC),
)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(params=SLOTS_UTC, ids=lambda slot: f"{slot:%Y}")
def slot_utc(request: pytest.FixtureRequest) -> dt.datetime:
    slot: dt.datetime = request.param
    return slot


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def _result(system: str) -> SyncRunResult:
    return SyncRunResult(
        run_id=uuid.uuid4(),
        system=system,
        mode="incremental",
        status="succeeded",
        counts=SyncCounts(),
        findings=0,
        pages=0,
        duration_s=0.1,
        resumed=False,
    )


def _run(sessions: sessionmaker[Session], system: str, started: dt.datetime, status: str) -> None:
    with sessions.begin() as session:
        session.add(
            SyncRun(id=uuid.uuid4(), system=system, mode="full", started_at=started, status=status)
        )


def _schedule(sessions: sessionmaker[Session], clock: Clock, ran: list[str]) -> DailySchedule:
    def run_sync(
        system: str,
        *,
        full: bool = False,
        run_id: uuid.UUID | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> SyncRunResult:
        if still_wanted is not None and not still_wanted():  # as sync_system, under its lock
            raise NoLongerWanted(system)
        ran.append(system)
        _run(sessions, system, clock(), "succeeded")
        return _result(system)

    times = {"sisdmk": dt.time(1, 0), "kki": dt.time(1, 30)}
    return DailySchedule(times, WIB, sessions, run_sync, clock)


def test_the_slot_is_the_configured_time_in_the_configured_zone(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    schedule = _schedule(sessions, Clock(slot_utc), [])
    assert schedule.slot("sisdmk", slot_utc + dt.timedelta(minutes=5)) == slot_utc
    assert schedule.slot("sisdmk", slot_utc - dt.timedelta(minutes=5)) == slot_utc - dt.timedelta(
        days=1
    )
    assert schedule.slot("kki", slot_utc + dt.timedelta(hours=1)) == slot_utc + dt.timedelta(
        minutes=30
    )


def test_a_run_another_scheduler_finished_after_the_decision_is_not_run_again(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    """Two schedulers decide "due" at once; the first runs and finishes before the second gets
    the lock. The second asks again under the lock (`still_wanted`) and stands down."""
    clock, ran = Clock(slot_utc + dt.timedelta(minutes=45)), []
    schedule = _schedule(sessions, clock, ran)
    inner = schedule._run_sync

    def other_scheduler_first(system: str, **kwargs: Any) -> SyncRunResult:
        _run(sessions, system, clock(), "succeeded")  # the other process's run, just finished
        return inner(system, **kwargs)

    schedule._run_sync = other_scheduler_first
    outcomes = schedule.run_due()
    assert [(o.system, o.skipped) for o in outcomes] == [
        ("sisdmk", "another process has just run it"),
        ("kki", "another process has just run it"),
    ]
    assert ran == []


def test_due_once_per_day_in_order_and_not_again_after_success(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    clock, ran = Clock(slot_utc + dt.timedelta(minutes=45)), []
    schedule = _schedule(sessions, clock, ran)
    _run(sessions, "sisdmk", slot_utc - dt.timedelta(hours=23), "succeeded")  # yesterday's
    _run(sessions, "kki", slot_utc - dt.timedelta(hours=23), "succeeded")
    assert [o.system for o in schedule.run_due()] == ["sisdmk", "kki"]
    assert schedule.run_due() == []
    assert schedule.decide("kki").why == "done for today"
    clock.now += dt.timedelta(days=1)
    assert [o.system for o in schedule.run_due()] == ["sisdmk", "kki"]
    assert ran == ["sisdmk", "kki", "sisdmk", "kki"]


def test_before_the_slot_nothing_is_due(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    clock = Clock(slot_utc - dt.timedelta(minutes=1))
    schedule = _schedule(sessions, clock, [])
    _run(sessions, "sisdmk", slot_utc - dt.timedelta(hours=23, minutes=59), "succeeded")
    assert not schedule.decide("sisdmk").due


def test_a_failed_run_is_retried_at_the_connections_next_attempt(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    clock = Clock(slot_utc + dt.timedelta(minutes=2))
    schedule = _schedule(sessions, clock, [])
    _run(sessions, "sisdmk", slot_utc + dt.timedelta(seconds=5), "failed")
    with sessions.begin() as session:
        state = record_failure(
            session, "sisdmk", "UpstreamUnavailable: sisdmk is down", clock=clock
        )
    assert state.next_attempt_at is not None
    clock.now = state.next_attempt_at - dt.timedelta(seconds=1)
    decision = schedule.decide("sisdmk")
    assert not decision.due
    assert decision.why.startswith("next attempt at")
    clock.now = state.next_attempt_at + dt.timedelta(seconds=1)
    decision = schedule.decide("sisdmk")
    assert decision.due
    assert decision.why == "retrying after a failed run"


def test_a_run_in_progress_or_a_disabled_connection_is_not_due(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    clock = Clock(slot_utc + dt.timedelta(minutes=2))
    schedule = _schedule(sessions, clock, [])
    _run(sessions, "sisdmk", slot_utc + dt.timedelta(minutes=1), "running")
    with exclusive(sessions.kw["bind"], "sync-sisdmk"):  # the lock a live run holds
        assert schedule.decide("sisdmk").why == "a run is in progress"
    with sessions.begin() as session:
        set_enabled(session, "kki", False, clock=clock)
    assert schedule.decide("kki").why == "connection disabled"


def test_a_run_whose_process_died_is_retried_at_the_next_poll(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    """A scheduler SIGKILLed mid-run leaves its row `running` and its lock free: that system
    waited for the next day's slot (the row said a run was in progress), with no alert."""
    clock = Clock(slot_utc + dt.timedelta(minutes=30))
    ran: list[str] = []
    schedule = _schedule(sessions, clock, ran)
    _run(sessions, "sisdmk", slot_utc + dt.timedelta(minutes=1), "running")

    decision = schedule.decide("sisdmk")
    assert decision.due
    assert decision.why == "retrying after a run whose process ended"
    schedule.run_due()
    assert ran[:1] == ["sisdmk"], "the run is started (the still-due check under its lock)"


def test_a_run_failed_for_no_fault_of_the_source_is_retried_with_backoff_not_every_poll(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    """A key retired too early or a database refusing writes fails the run without recording
    a failure on the connection: it was retried at every poll (5 s), all day."""
    started = slot_utc + dt.timedelta(minutes=1)
    clock = Clock(started)
    schedule = _schedule(sessions, clock, [])
    waits = []
    for _ in range(8):
        with sessions.begin() as session:
            session.add(
                SyncRun(
                    id=uuid.uuid4(),
                    system="sisdmk",
                    mode="full",
                    started_at=clock(),
                    finished_at=clock() + dt.timedelta(seconds=10),
                    status="failed",
                )
            )
        ended = clock() + dt.timedelta(seconds=10)
        clock.now = ended + dt.timedelta(seconds=5)  # the next poll
        assert not schedule.decide("sisdmk").due
        while not schedule.decide("sisdmk").due:
            clock.now += dt.timedelta(seconds=5)
        waits.append(round((clock() - ended).total_seconds() / 60))

    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]  # minutes: doubling, an hour at most


def test_a_sync_another_process_holds_is_reported_skipped(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    def held(system: str, **kwargs: Any) -> SyncRunResult:
        raise LockHeld(f"sync-{system}")

    clock = Clock(slot_utc + dt.timedelta(hours=1))
    schedule = DailySchedule({"sisdmk": dt.time(1, 0)}, WIB, sessions, held, clock)
    (outcome,) = schedule.run_due()
    assert outcome.result is None
    assert outcome.skipped == "another process is running it"


# -- runs requested through the API ---------------------------------------------------------

SUBJECT = "0b6a4c1e-6f0e-4d6c-9c59-1f1d7b2b9a11"


def _request(
    sessions: sessionmaker[Session], system: str, *, full: bool, at: dt.datetime
) -> uuid.UUID:
    engine = sessions.kw["bind"]
    with sessions.begin() as session:
        return request_run(session, engine, system, full=full, requested_by=SUBJECT, now=at).run_id


class FakeSync:
    """Stands in for `sync_system`: takes the request like it does, records each call."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions, self.clock = sessions, clock
        self.calls: list[tuple[str, bool, uuid.UUID | None]] = []
        self.error: Exception | None = None

    def __call__(
        self,
        system: str,
        *,
        full: bool = False,
        run_id: uuid.UUID | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> SyncRunResult:
        self.calls.append((system, full, run_id))
        if self.error is not None:
            raise self.error
        with self.sessions.begin() as session:
            if run_id is not None:
                take_request(session, system, run_id)
            session.add(
                SyncRun(
                    id=run_id or uuid.uuid4(),
                    system=system,
                    mode="full" if full else "incremental",
                    started_at=self.clock(),
                    status="succeeded",
                )
            )
        return _result(system)


def test_requested_runs_start_first_oldest_first_with_their_id_and_mode(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    clock = Clock(slot_utc + dt.timedelta(minutes=45))  # both daily runs due too
    sync = FakeSync(sessions, clock)
    schedule = DailySchedule(
        {"sisdmk": dt.time(1, 0), "kki": dt.time(1, 30)}, WIB, sessions, sync, clock
    )
    kki = _request(sessions, "kki", full=True, at=clock() - dt.timedelta(seconds=2))
    sisdmk = _request(sessions, "sisdmk", full=False, at=clock() - dt.timedelta(seconds=1))

    requested = schedule.run_requested()
    due = schedule.run_due()

    assert [o.system for o in requested] == ["kki", "sisdmk"]
    assert sync.calls[:2] == [("kki", True, kki), ("sisdmk", False, sisdmk)]
    # The requested runs started after the slot: they are today's runs.
    assert due == []
    assert schedule.run_requested() == []


def test_a_request_waits_while_another_process_syncs_its_system(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    clock = Clock(slot_utc - dt.timedelta(hours=2))
    sync = FakeSync(sessions, clock)
    schedule = DailySchedule({"sisdmk": dt.time(1, 0)}, WIB, sessions, sync, clock)
    run_id = _request(sessions, "sisdmk", full=False, at=clock())
    sync.error = LockHeld("sync-sisdmk")

    assert schedule.run_requested() == []

    sync.error = None
    (outcome,) = schedule.run_requested()
    assert outcome.result is not None
    assert sync.calls == [("sisdmk", False, run_id)] * 2


def test_a_request_whose_connection_was_disabled_since_ends_failed_under_its_id(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    clock = Clock(slot_utc - dt.timedelta(hours=2))
    sync = FakeSync(sessions, clock)
    schedule = DailySchedule({"sisdmk": dt.time(1, 0)}, WIB, sessions, sync, clock)
    run_id = _request(sessions, "kki", full=False, at=clock())
    with sessions.begin() as session:
        set_enabled(session, "kki", False, clock=clock)
    sync.error = ConnectionDisabled("kki")

    (outcome,) = schedule.run_requested()

    assert (outcome.system, outcome.result, outcome.skipped) == ("kki", None, "connection disabled")
    with sessions() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        assert (run.status, run.requested_by) == ("failed", SUBJECT)
        assert run.error is not None
        assert "disabled" in run.error
    assert schedule.run_requested() == []


def test_a_due_slot_nothing_has_started_counts_as_overdue_since_the_slot(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    clock = Clock(slot_utc + dt.timedelta(minutes=20))
    schedule = _schedule(sessions, clock, [])
    _run(sessions, "sisdmk", slot_utc - dt.timedelta(days=1), "succeeded")  # yesterday's
    before = _schedule(sessions, Clock(slot_utc - dt.timedelta(minutes=1)), []).decide("sisdmk")
    assert not before.due
    assert before.overdue_s == 0.0
    assert schedule.decide("sisdmk").overdue_s == 20 * 60
    _run(sessions, "sisdmk", clock(), "failed")
    retry = _schedule(sessions, Clock(clock() + dt.timedelta(minutes=1)), []).decide("sisdmk")
    assert retry.due
    assert retry.overdue_s == 0.0, "a retry is not a missed slot"
    _run(sessions, "kki", clock(), "running")
    assert schedule.decide("kki").overdue_s == 0.0


def test_last_successes_are_the_newest_finished_successful_runs_of_scheduled_systems(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    schedule = DailySchedule(
        {"kki": dt.time(1, 30)},
        WIB,
        sessions,
        _schedule(sessions, Clock(slot_utc), [])._run_sync,
        Clock(slot_utc),
    )
    assert schedule.last_successes() == {}
    finished = {
        "old": slot_utc - dt.timedelta(days=2),
        "new": slot_utc - dt.timedelta(days=1),
        "failed": slot_utc - dt.timedelta(hours=1),
    }
    with sessions.begin() as session:
        for label, status in (("old", "succeeded"), ("new", "succeeded"), ("failed", "failed")):
            session.add(
                SyncRun(
                    id=uuid.uuid4(),
                    system="kki",
                    mode="full",
                    started_at=finished[label] - dt.timedelta(minutes=5),
                    finished_at=finished[label],
                    status=status,
                )
            )
        session.add(
            SyncRun(
                id=uuid.uuid4(),
                system="sisdmk",  # its run is not what kki's schedule asks about
                mode="full",
                started_at=slot_utc,
                finished_at=slot_utc,
                status="succeeded",
            )
        )
    last = schedule.last_successes()
    assert set(last) == {"kki"}
    assert last["kki"] == finished["new"]


def test_a_stop_asked_during_a_run_lets_it_finish_and_starts_no_other(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    """SIGTERM during the SISDMK run: that run finishes (the CLI's promise), and the KKI run,
    due too, used to start right after it."""
    clock = Clock(slot_utc + dt.timedelta(hours=2))  # both slots passed
    ran: list[str] = []
    stop: list[bool] = []

    def run_sync(system: str, **kwargs: Any) -> SyncRunResult:
        ran.append(system)
        stop.append(True)  # the signal arrives while this run works
        _run(sessions, system, clock(), "succeeded")
        return _result(system)

    times = {"sisdmk": dt.time(1, 0), "kki": dt.time(1, 30)}
    schedule = DailySchedule(times, WIB, sessions, run_sync, clock, stopping=lambda: bool(stop))

    outcomes = schedule.run_due()

    assert ran == ["sisdmk"]
    assert [o.system for o in outcomes] == ["sisdmk"]
    assert schedule.decide("kki").due, "still due for the next scheduler"


def test_a_run_that_keeps_dying_is_restarted_with_backoff(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    """Each restart of a run that dies the same way (out of memory on one page) marks the one
    before abandoned (failed): the restarts back off like failed runs, not every poll."""
    started = slot_utc + dt.timedelta(minutes=1)
    for _ in range(3):  # three died before, each marked failed by the next run
        _run(sessions, "sisdmk", started, "failed")
        started += dt.timedelta(seconds=30)
    _run(sessions, "sisdmk", started, "running")  # and the newest died too
    clock = Clock(started + dt.timedelta(minutes=7))
    schedule = _schedule(sessions, clock, [])

    assert not schedule.decide("sisdmk").due, "8 minutes after the 4th start, not 7"
    clock.now = started + dt.timedelta(minutes=8)
    assert schedule.decide("sisdmk").due


def test_the_backoff_never_overflows_however_many_failures(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    """Uncapped, the 42nd failure asked for 2**41 minutes: OverflowError in the scheduler (a
    crash loop), in the worker's every fetch failure and in every live look-up."""
    clock = Clock(slot_utc + dt.timedelta(minutes=1))
    with sessions.begin() as session:
        for _ in range(60):
            state = record_failure(session, "kki", "UpstreamUnavailable: down", clock=clock)
    assert state.next_attempt_at == clock() + dt.timedelta(hours=1)
    for _ in range(60):
        _run(sessions, "sisdmk", clock(), "failed")
    assert not _schedule(sessions, clock, []).decide("sisdmk").due


def test_a_run_that_dies_long_after_its_start_waits_from_its_last_committed_page(
    sessions: sessionmaker[Session], slot_utc: dt.datetime
) -> None:
    started = slot_utc + dt.timedelta(minutes=1)
    run_id = uuid.uuid4()
    with sessions.begin() as session:
        session.add(
            SyncRun(id=run_id, system="sisdmk", mode="full", started_at=started, status="running")
        )
    with sessions.begin() as session:
        session.add(
            SyncCheckpoint(
                system="sisdmk",
                run_id=run_id,
                cursor="c-70",
                committed_at=started + dt.timedelta(minutes=70),  # alive until then
            )
        )
    clock = Clock(started + dt.timedelta(minutes=70, seconds=30))
    schedule = _schedule(sessions, clock, [])
    assert not schedule.decide("sisdmk").due, "a minute after its last page, not its start"
    clock.now = started + dt.timedelta(minutes=71)
    assert schedule.decide("sisdmk").due
