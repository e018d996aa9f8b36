"""Sync runs requested through the API: recorded by the web process, run by the scheduler.

A request is a `SyncRequest` row (one per system at most) until `hf-adapter schedule` takes
it: `take_request` deletes it in the transaction that creates its `SyncRun` under the sync
lock, so the run belongs to the scheduler's process, not to the web worker that answered.
No web framework here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from adapter.errors import AdapterError
from adapter.sdmk_integration_manager import ConnectionDisabled, connection_state
from adapter.store.locks import held
from adapter.store.models import SYSTEMS, SyncRequest, SyncRun


class SyncInProgress(AdapterError):
    """A run of the system is already requested or running: that run answers the request."""

    default_reason = "sync_in_progress"

    def __init__(self, system: str, run_id: uuid.UUID, status: str) -> None:
        super().__init__(
            f"a {system} sync is already {status} (run {run_id}); follow that run, or ask "
            "again once it has finished"
        )
        self.system = system
        self.run_id = run_id
        self.status = status


class RunNotRequested(AdapterError):
    """The run is no longer waiting: another scheduler process took it first."""

    default_reason = "run_not_requested"

    def __init__(self, system: str, run_id: uuid.UUID) -> None:
        super().__init__(f"the {system} run {run_id} is not waiting for the scheduler any more")


def request_run(
    session: Session,
    engine: Engine,
    system: str,
    *,
    full: bool,
    requested_by: str,
    now: dt.datetime,
) -> SyncRequest:
    """Record a run of `system` for the scheduler to start; flushed, committed by the caller.

    `ConnectionDisabled` when the connection is off, `SyncInProgress` when a run of `system`
    is already requested or running. Two callers racing past these checks meet the primary
    key: the later flush raises `IntegrityError`.
    """
    if system not in SYSTEMS:
        raise ValueError(f"system must be one of {', '.join(SYSTEMS)}")
    if not connection_state(session, system).enabled:
        raise ConnectionDisabled(system)
    waiting = session.get(SyncRequest, system)
    if waiting is not None:
        raise SyncInProgress(system, waiting.run_id, "requested")
    running = session.scalars(
        select(SyncRun)
        .where(SyncRun.system == system, SyncRun.status == "running")
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    ).first()
    # A `running` row whose lock is free belongs to a process that died: the next run marks
    # it abandoned, so it must not refuse requests meanwhile.
    if running is not None and sync_lock_held(engine, system):
        raise SyncInProgress(system, running.id, "running")
    request = SyncRequest(
        system=system,
        run_id=uuid.uuid4(),
        full=full,
        requested_at=now,
        requested_by=requested_by,
    )
    session.add(request)
    session.flush()
    return request


def waiting_request(session: Session, system: str) -> SyncRequest | None:
    return session.get(SyncRequest, system)


def pending_requests(session: Session) -> Sequence[SyncRequest]:
    """The requests waiting for the scheduler, oldest first."""
    return session.scalars(select(SyncRequest).order_by(SyncRequest.requested_at)).all()


def take_request(session: Session, system: str, run_id: uuid.UUID) -> SyncRequest:
    """Remove the waiting request `run_id` of `system` and return it, for its run to begin.

    Called under the sync lock, in the transaction that inserts the run: `RunNotRequested`
    when another process took it already.
    """
    request = session.get(SyncRequest, system, with_for_update=True)
    if request is None or request.run_id != run_id:
        raise RunNotRequested(system, run_id)
    session.delete(request)
    return request


def refuse_request(
    session: Session, system: str, run_id: uuid.UUID, error: str, now: dt.datetime
) -> bool:
    """End a request that cannot run (its connection was disabled since) as a failed run.

    The run keeps its id, so whoever follows its URL sees why. False when the request was
    already taken.
    """
    try:
        request = take_request(session, system, run_id)
    except RunNotRequested:
        return False
    session.add(
        SyncRun(
            id=run_id,
            system=system,
            mode="full" if request.full else "incremental",
            started_at=now,
            finished_at=now,
            status="failed",
            error=error[:2000],
            requested_at=request.requested_at,
            requested_by=request.requested_by,
        )
    )
    return True


def sync_lock_held(engine: Engine, system: str) -> bool:
    """Whether a process (this one included) holds `system`'s sync lock now (the lock
    `sync_system` holds; on PostgreSQL looked up, not taken)."""
    return held(engine, f"sync-{system}")
