"""Connection state per external system, as syncs, look-ups and workers last saw it.

A failure to reach a system (down, breaker open, 5xx after retries, rate limited) marks its
connection ``degraded`` and sets ``next_attempt_at`` with exponential backoff; the scheduler
retries then, and live look-ups meanwhile serve the stored copy. `DOWN_AFTER` failures in a
row make it ``down``. One success makes it ``healthy`` again. Functions work in the caller's
session and never commit.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import and_, not_, select, update
from sqlalchemy.orm import Session

from adapter.clients.errors import NotFound, UpstreamError, UpstreamRejected
from adapter.clock import Clock, utc_now
from adapter.errors import AdapterError
from adapter.store.models import SYSTEMS, Connection

DOWN_AFTER: Final = 3
# A system that answers these refused the request as invalid: it answered, it is not down.
INVALID_REQUEST_STATUSES: Final = frozenset({400, 422})
# Retry after 1, 2, 4 … minutes, at most an hour: soon enough to catch a short outage,
# far enough apart not to hammer a system that is struggling.
FIRST_RETRY: Final = dt.timedelta(minutes=1)
LONGEST_RETRY: Final = dt.timedelta(hours=1)
# Doublings past which FIRST_RETRY is beyond LONGEST_RETRY anyway.
_MOST_DOUBLINGS: Final = math.ceil(math.log2(LONGEST_RETRY / FIRST_RETRY))
# A healthy connection's success is written at most this often: every worker transaction that
# applied fetched documents records one (as do look-ups and sync runs), and writing the row each
# time made the writers of a system update it in turn (a row version, and a row lock held until
# each one's commit) for a time read to the second.
SUCCESS_RESOLUTION: Final = dt.timedelta(seconds=1)


class ConnectionDisabled(AdapterError):
    """An operator disabled the connection: no sync, look-up or event processing for it."""

    default_reason = "connection_disabled"

    def __init__(self, system: str) -> None:
        super().__init__(
            f"the {system} connection is disabled; enable it (integration manager) to sync"
        )
        self.system = system


@dataclass(frozen=True)
class ConnectionState:
    """A connection as operators see it."""

    system: str
    enabled: bool
    status: str
    breaker_state: str
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    last_error: str | None
    consecutive_failures: int
    error_count: int
    next_attempt_at: dt.datetime | None

    def lag_s(self, now: dt.datetime) -> float | None:
        """Seconds from the last success to `now` (None: never succeeded)."""
        if self.last_success_at is None:
            return None
        return (now - self.last_success_at).total_seconds()


def breaker_state_of(client: object) -> str:
    """A client's circuit breaker as the connections table spells it (closed if it has none)."""
    breaker = getattr(client, "breaker", None)
    state = getattr(breaker, "state", None)
    return "closed" if state is None else str(state.name).lower()


def record_success(
    session: Session, system: str, *, breaker_state: str = "closed", clock: Clock = utc_now
) -> None:
    """Mark `system`'s connection healthy, unless it is healthy already with this breaker
    state and a success less than `SUCCESS_RESOLUTION` old: one guarded ``UPDATE`` judged on
    the row as committed (not on a copy this session read earlier), so a failure committed
    meanwhile by another process is still overwritten."""
    now = clock()
    fresh = and_(
        Connection.last_success_at.is_not(None),
        Connection.last_success_at > now - SUCCESS_RESOLUTION,
        Connection.status == "healthy",
        Connection.breaker_state == breaker_state,
        Connection.consecutive_failures == 0,
        Connection.next_attempt_at.is_(None),
    )
    result = session.execute(
        update(Connection)
        .where(Connection.system == system, not_(fresh))
        .values(
            status="healthy",
            breaker_state=breaker_state,
            last_success_at=now,
            consecutive_failures=0,
            next_attempt_at=None,
            changed_at=now,
        )
        .execution_options(synchronize_session="fetch")
    )
    if result.rowcount:  # type: ignore[attr-defined]
        return
    if session.scalar(select(Connection.system).where(Connection.system == system)) is None:
        # No row yet (a test's bare schema; the migrations make one per system).
        row = _row(session, system, now)
        row.status, row.breaker_state, row.last_success_at = "healthy", breaker_state, now


def record_failure(
    session: Session,
    system: str,
    error: str,
    *,
    breaker_state: str = "closed",
    clock: Clock = utc_now,
) -> ConnectionState:
    """Count a failure to reach `system`; `error` is an operator's line, never personal data.

    The next attempt is due `clock()` plus the backoff: pass the clock that will later decide
    whether it is due (the scheduler's), so both use one notion of now.
    """
    now = clock()
    row = _row(session, system, now)
    row.consecutive_failures = (row.consecutive_failures or 0) + 1
    row.error_count = (row.error_count or 0) + 1
    row.status = "down" if row.consecutive_failures >= DOWN_AFTER else "degraded"
    row.breaker_state = breaker_state
    row.last_failure_at = now
    row.last_error = error[:2000]
    row.next_attempt_at = now + backoff(row.consecutive_failures)
    row.changed_at = now
    return _state(row)


def backoff(failures: int) -> dt.timedelta:
    """The wait after `failures` failures in a row: `FIRST_RETRY`, doubling, `LONGEST_RETRY` at
    most. The exponent is capped before the wait is built: uncapped, the 42nd failure asked
    for 2**41 minutes, which no timedelta holds (OverflowError in every writer of the row)."""
    doublings = min(max(failures, 1) - 1, _MOST_DOUBLINGS)
    wait: dt.timedelta = FIRST_RETRY * (2**doublings)
    return min(wait, LONGEST_RETRY)


def record_outcome(
    session: Session,
    system: str,
    client: object,
    error: BaseException | None = None,
    *,
    clock: Clock = utc_now,
) -> None:
    """What every door does after calling `system` (sync, look-up, worker), the same way.

    An answer — `NotFound` included: the system answered — marks the connection healthy; so
    does a request refused as invalid (400, 422: a NIK that cannot exist, which any reader
    can send: counted as a failure, it would let a caller mark the connection down and push
    the failed sync's retry back). Any other `UpstreamError` (unreachable, 5xx, 401, 403,
    429, an answer outside the contract) counts a failure with the operator's line of it;
    anything else (the store failing, a bug) says nothing about the connection and is not
    recorded.
    """
    breaker = breaker_state_of(client)
    if error is None or isinstance(error, NotFound) or _refused_as_invalid(error):
        record_success(session, system, breaker_state=breaker, clock=clock)
    elif isinstance(error, UpstreamError):
        record_failure(
            session,
            system,
            f"{type(error).__name__}: {error.message}",
            breaker_state=breaker,
            clock=clock,
        )


def _refused_as_invalid(error: BaseException) -> bool:
    return isinstance(error, UpstreamRejected) and error.status in INVALID_REQUEST_STATUSES


def set_enabled(
    session: Session, system: str, enabled: bool, *, clock: Clock = utc_now
) -> ConnectionState:
    now = clock()
    row = _row(session, system, now)
    row.enabled = enabled
    row.changed_at = now
    return _state(row)


def connection_state(session: Session, system: str) -> ConnectionState:
    """The state of `system`'s connection (``unknown`` and enabled until first used)."""
    return _state(_row(session, system, None))


def enabled_switches(session: Session, systems: Iterable[str]) -> dict[str, bool]:
    """Whether each of `systems` is enabled, in one statement of two columns (no ORM objects:
    the worker asks before every batch of events); a system without its row is enabled, as in
    `connection_state`."""
    wanted = sorted(set(systems))
    if unknown := [system for system in wanted if system not in SYSTEMS]:
        raise ValueError(f"system must be one of {', '.join(SYSTEMS)}, not {unknown[0]!r}")
    if not wanted:
        return {}
    query = select(Connection.system, Connection.enabled).where(Connection.system.in_(wanted))
    switches = {system: enabled for system, enabled in session.execute(query)}
    return {system: bool(switches.get(system, True)) for system in wanted}


def list_connections(session: Session) -> list[ConnectionState]:
    return [connection_state(session, system) for system in SYSTEMS]


def _row(session: Session, system: str, now: dt.datetime | None) -> Connection:
    if system not in SYSTEMS:
        raise ValueError(f"system must be one of {', '.join(SYSTEMS)}")
    row = session.get(Connection, system)
    if row is None:  # migration 0002 creates one per system; a test's bare schema may not
        row = Connection(
            system=system,
            enabled=True,
            status="unknown",
            breaker_state="closed",
            consecutive_failures=0,
            error_count=0,
            changed_at=now or utc_now(),
        )
        session.add(row)
    return row


def _state(row: Connection) -> ConnectionState:
    return ConnectionState(
        system=row.system,
        enabled=bool(row.enabled),
        status=row.status,
        breaker_state=row.breaker_state,
        last_success_at=row.last_success_at,
        last_failure_at=row.last_failure_at,
        last_error=row.last_error,
        consecutive_failures=row.consecutive_failures or 0,
        error_count=row.error_count or 0,
        next_attempt_at=row.next_attempt_at,
    )
