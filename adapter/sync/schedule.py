"""The daily batch sync of each system at its configured time, and retries of a degraded one.

The scheduler keeps no state of its own: whether a system is due is read from `sync_runs` and
`connections`, and the sync lock keeps two runs of one system apart, so any number of
`hf-adapter schedule` processes (on any number of machines) run each daily sync once.

A system is due when today's slot (its time in `SYNC_TIMEZONE`) has passed and
- no run of it has started since the slot, or
- the last run since the slot failed and the connection's `next_attempt_at` has passed
  (exponential backoff, set by the failed run), so a source that was down is retried later;
  a run that failed for a reason that is not the source's (a key retired too early, the
  database refusing writes) set none, so it is retried after the same backoff counted from its
  end and the failed runs since the slot (1 minute, 2, 4, … up to an hour), or
- the last run since the slot is still `running` but no process holds its lock: its process
  died (SIGKILL, out of memory), and the next run marks it abandoned and resumes.
A disabled connection is never due.

Runs requested through the API (`adapter.sync.requests`) are started at the next poll, before
any daily run, under the same lock; one whose connection was disabled meanwhile ends failed.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from adapter.clock import Clock, utc_now
from adapter.sdmk_integration_manager import (
    ConnectionDisabled,
    ConnectionState,
    connection_state,
)
from adapter.sdmk_integration_manager.connections import backoff
from adapter.store.locks import LockHeld
from adapter.store.models import SyncCheckpoint, SyncRun
from adapter.sync.requests import (
    RunNotRequested,
    pending_requests,
    refuse_request,
    sync_lock_held,
)
from adapter.sync.service import NoLongerWanted, SyncRunResult

log = logging.getLogger("adapter.schedule")


class RunSync(Protocol):
    """Runs one sync of `system`; with `run_id`, the run requested under that id."""

    def __call__(
        self,
        system: str,
        *,
        full: bool = False,
        run_id: uuid.UUID | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> SyncRunResult: ...


@dataclass(frozen=True)
class Decision:
    system: str
    due: bool
    why: str
    slot: dt.datetime
    # Due and nothing has started since the slot: how long the slot has been waiting.
    overdue_s: float = 0.0


@dataclass(frozen=True)
class Outcome:
    system: str
    result: SyncRunResult | None
    skipped: str | None = None  # why nothing ran although the system was due


class DailySchedule:
    """Runs the requested runs and the systems due through `run_sync`, one at a time."""

    def __init__(
        self,
        times: Mapping[str, dt.time],
        timezone: str,
        session_factory: sessionmaker[Session],
        run_sync: RunSync,
        clock: Clock = utc_now,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._times = dict(times)
        self._zone = ZoneInfo(timezone)
        self._sessions = session_factory
        self._run_sync = run_sync
        self._clock = clock
        # Asked before each run is started: once it says yes (SIGTERM), the run in progress
        # finishes and no other starts.
        self._stopping = stopping

    def slot(self, system: str, now: dt.datetime) -> dt.datetime:
        """The most recent start time of `system`'s daily sync at or before `now` (UTC)."""
        local = now.astimezone(self._zone)
        today = dt.datetime.combine(local.date(), self._times[system], tzinfo=self._zone)
        if today > local:
            today -= dt.timedelta(days=1)
        return today.astimezone(dt.UTC)

    def decide(self, system: str, *, holding_its_lock: bool = False) -> Decision:
        """Whether `system` is due now; `holding_its_lock` when the caller holds the system's
        sync lock (a `running` row is then a dead process's, not a live run)."""
        now = self._clock()
        slot = self.slot(system, now)
        with self._sessions() as session:
            state = connection_state(session, system)
            last = session.scalars(
                select(SyncRun)
                .where(SyncRun.system == system, SyncRun.started_at >= slot)
                .order_by(SyncRun.started_at.desc())
                .limit(1)
            ).first()
            checkpoint = session.get(SyncCheckpoint, system)
            failed_since_slot = int(
                session.scalar(
                    select(func.count()).where(
                        SyncRun.system == system,
                        SyncRun.started_at >= slot,
                        SyncRun.status == "failed",
                    )
                )
                or 0
            )
        if not state.enabled:
            return Decision(system, False, "connection disabled", slot)
        if last is None:
            waited = (now - slot).total_seconds()
            return Decision(system, True, "daily slot reached", slot, overdue_s=waited)
        if last.status == "running":
            if not holding_its_lock and self._lock_held(system):
                return Decision(system, False, "a run is in progress", slot)
            # Its process died (the next run marks it abandoned: failed). A run that dies the
            # same way each time (out of memory on one page) backs off like any failed one.
            # From its last sign of life: its newest committed page, else its start (a run
            # dying an hour in, every time, is not restarted at once each time).
            alive_at = last.started_at
            if checkpoint is not None and checkpoint.run_id == last.id:
                alive_at = max(alive_at, checkpoint.committed_at)
            restart_at = alive_at + backoff(failed_since_slot + 1)
            if restart_at <= now:
                return Decision(system, True, "retrying after a run whose process ended", slot)
            return Decision(system, False, f"next attempt at {restart_at:%H:%M} UTC", slot)
        if last.status == "succeeded":
            return Decision(system, False, "done for today", slot)
        due_at = state.next_attempt_at
        if due_at is None or due_at < last.started_at:
            # The connection recorded no failure of this run: not the source's fault, but no
            # reason to run again at every poll either.
            due_at = (last.finished_at or last.started_at) + backoff(failed_since_slot)
        if due_at <= now:
            return Decision(system, True, "retrying after a failed run", slot)
        return Decision(system, False, f"next attempt at {due_at:%H:%M} UTC", slot)

    def _lock_held(self, system: str) -> bool:
        engine = self._sessions.kw.get("bind")
        return isinstance(engine, Engine) and sync_lock_held(engine, system)

    def now(self) -> dt.datetime:
        """The schedule's clock (a test's own)."""
        return self._clock()

    def oldest_request_at(self) -> dt.datetime | None:
        """When the oldest sync run requested through the API and not yet started was asked for."""
        with self._sessions() as session:
            waiting = pending_requests(session)
        return waiting[0].requested_at if waiting else None

    def connections(self) -> list[ConnectionState]:
        """The scheduled systems' connections as the store holds them now."""
        with self._sessions() as session:
            return [connection_state(session, system) for system in self._times]

    def last_successes(self) -> dict[str, dt.datetime]:
        """When each scheduled system's last successful batch sync finished (any process's)."""
        with self._sessions() as session:
            rows = session.execute(
                select(SyncRun.system, func.max(SyncRun.finished_at))
                .where(SyncRun.status == "succeeded", SyncRun.system.in_(list(self._times)))
                .group_by(SyncRun.system)
            ).all()
        return {system: finished for system, finished in rows if finished is not None}

    def run_requested(self) -> list[Outcome]:
        """Start the runs requested through the API, oldest first, one at a time.

        A request waits (no outcome) while another process syncs its system, and is gone
        when another scheduler took it; either way the run happens once.
        """
        with self._sessions() as session:
            pending = [(r.system, r.run_id, r.full) for r in pending_requests(session)]
        outcomes: list[Outcome] = []
        for system, run_id, full in pending:
            if self._stopping():
                break
            log.info("requested sync", extra={"system": system, "run_id": str(run_id)})
            try:
                outcomes.append(Outcome(system, self._run_sync(system, full=full, run_id=run_id)))
            except (LockHeld, RunNotRequested) as exc:
                # Every poll until the other run ends: not worth more than a debug line.
                log.debug(
                    "requested sync not started here: %s", exc.reason, extra={"system": system}
                )
            except ConnectionDisabled as exc:
                with self._sessions.begin() as session:
                    refuse_request(
                        session, system, run_id, f"ConnectionDisabled: {exc.message}", self._clock()
                    )
                outcomes.append(Outcome(system, None, "connection disabled"))
        return outcomes

    def _still_due(self, system: str) -> Callable[[], bool]:
        # Asked by `sync_system` once it holds the lock.
        return lambda: self.decide(system, holding_its_lock=True).due

    def run_due(self) -> list[Outcome]:
        """Run every system that is due now, in the configured order."""
        outcomes: list[Outcome] = []
        for system in self._times:
            if self._stopping():
                break
            decision = self.decide(system)
            if not decision.due:
                continue
            log.info("scheduled sync due", extra={"system": system, "why": decision.why})
            try:
                run = self._run_sync(system, still_wanted=self._still_due(system))
                outcomes.append(Outcome(system, run))
            except LockHeld:
                # Another scheduler (or an operator) got there first: that run counts.
                outcomes.append(Outcome(system, None, "another process is running it"))
            except NoLongerWanted:
                # … and finished between our decision and our lock: that run counts too.
                outcomes.append(Outcome(system, None, "another process has just run it"))
            except ConnectionDisabled:
                outcomes.append(Outcome(system, None, "connection disabled"))
        return outcomes
