"""`EventProcessor`: apply one inbox event by fetching the authoritative resource and upserting it.

The document is written by `adapter.apply.apply_documents`, as the batch sync and the live
look-up write theirs: with an ``event.apply`` audit entry naming the event, and the source's
connection marked healthy (a failed fetch counts a failure). While the connection is disabled
the event is held: back in the queue at a calm retry tier, no attempt spent, never
dead-lettered. The event is marked done in the SAME transaction as the write, and the marking
is a guarded update (pending → done) taken first, so two workers holding the same event apply
it once: the second finds it done.
Transient failures (the source down, 5xx, 429, a database hiccup) come back as a retry verdict;
permanent ones (404, a contract violation, a 4xx, a record the store refuses) dead-letter the
event at once. No web framework, no broker here: the transports act on the verdict.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import select
from sqlalchemy.exc import DataError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from adapter.apply import NOT_A_RECORD, Origin, RecordRefused, apply_documents, created_meanwhile
from adapter.audit import WORKER
from adapter.clients.errors import (
    AuthenticationFailed,
    CircuitOpen,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from adapter.clients.kki import KkiClient
from adapter.clients.sisdmk import SisdmkClient
from adapter.errors import AdapterError
from adapter.observability.event_metrics import EventMetrics
from adapter.observability.tracing import SpanKind, start_span, trace_id_of
from adapter.queue.alerts import DeadLetterAlert, DeadLetterAlerts
from adapter.queue.retry import RetrySchedule
from adapter.sdmk_integration_manager import ConnectionDisabled, enabled_switches, record_outcome
from adapter.store.models import HealthWorker, Registration, WebhookEvent
from adapter.store.repositories import HealthWorkerRepository
from adapter.webhooks.batching import Batcher
from adapter.webhooks.envelope import FACILITY_EVENT
from adapter.webhooks.inbox import WebhookInbox, now

log = logging.getLogger("adapter.worker")
# An event handed over more than this before its `available_at` is put back unprocessed (the
# slack covers the clocks of two worker hosts).
EARLY_TOLERANCE_S: Final = 1.0

Kind = Literal["done", "skip", "retry", "dead"]
# What a record the store refuses raises (as the batch sync's RECORD_ERRORS): permanent,
# unless `_not_the_records` says the store's state raised it.
RECORD_ERRORS: Final = (AdapterError, KeyError, ValueError, TypeError, DBAPIError)
MAX_ERROR_LENGTH: Final = 500
# Events of one source marked done and written in one transaction, at most.
APPLY_BATCH: Final = 32
# Events whose rows (and stored versions) are read in one go, at most.
READ_BATCH: Final = 64


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    outcome: str
    delay_s: float = 0.0
    tier: int = 0
    reason: str = ""


@dataclass(frozen=True)
class _Looked:
    enabled: bool
    stored_version: int


# An event as read (None: unknown), with what decides the fetch (None: no longer pending).
_Read = tuple[WebhookEvent | None, _Looked | None]


class TransientFailure(AdapterError):
    """Worth another attempt later: no sooner than ``not_before_s`` when that is known."""

    default_reason = "transient"

    def __init__(
        self, message: str, *, reason: str | None = None, not_before_s: float | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.not_before_s = not_before_s


class PermanentFailure(AdapterError):
    """No attempt will do better: dead-letter now."""

    default_reason = "permanent"


class EventProcessor:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        kki: KkiClient,
        sisdmk: SisdmkClient,
        repository_factory: Callable[[Session], HealthWorkerRepository],
        schedule: RetrySchedule,
        delivery_limit: int,
        metrics: EventMetrics,
        alerts: DeadLetterAlerts,
        draw: Callable[[], float] | None = None,
        batch_limit: int = APPLY_BATCH,
    ) -> None:
        self._sessions = sessions
        self._kki = kki
        self._sisdmk = sisdmk
        self._repository_factory = repository_factory
        self._schedule = schedule
        self._delivery_limit = delivery_limit
        self._metrics = metrics
        self._alerts = alerts
        self._draw = draw if draw is not None else random.random
        self._batch_limit = batch_limit
        self._batchers: dict[str, Batcher[_Write, str]] = {}
        self._read_batcher: Batcher[uuid.UUID, _Read] | None = None
        self._batchers_lock = threading.Lock()

    def process(
        self, event_id: uuid.UUID, *, unfinished_deliveries: int = 0, from_broker: bool = False
    ) -> Verdict:
        """Apply the event; `unfinished_deliveries`: earlier hand-overs that ended in no verdict;
        `from_broker`: handed over by a broker message, which may come before the event's retry
        is due (the embedded queue claims only due events, and leases them by moving
        `available_at` on)."""
        if self._batch_limit <= 1:
            event, looked = self._read([event_id])[0]
        else:
            event, looked = self._reader().submit(event_id).result()
        if event is None:
            return Verdict("skip", "unknown")
        if looked is None:
            return Verdict("skip", f"already_{event.state}")
        early = (event.available_at - now()).total_seconds()
        if from_broker and event.attempts > 0 and early > EARLY_TOLERANCE_S:
            # Handed over again before its retry is due: the broker connection was lost after
            # its retry was recorded, and the message came back with every other unacked one.
            # Put back until then, no attempt spent; processed now, it spent an attempt per
            # reconnect and dead-lettered healthy events within seconds. Only a retried event:
            # a new or replayed one's `available_at` is another host's clock (the database's,
            # the API's), and skew between them must not delay it.
            tier = self._schedule.tier_for_wait(early)
            return Verdict("retry", "not_yet_due", delay_s=early, tier=tier, reason="early")
        # The trace the webhook's request started (its `traceparent` was stored with the event).
        with start_span(f"process {event.event_type}", event.traceparent, kind=SpanKind.CONSUMER):
            self._metrics.event_age.labels(event.source).observe(
                max(0.0, (now() - event.received_at).total_seconds())
            )
            if unfinished_deliveries >= self._delivery_limit:
                return self._dead(
                    event,
                    "delivery_limit",
                    f"delivery_limit: handed to a worker {unfinished_deliveries + 1} times "
                    "without a result (the worker crashed or was killed each time)",
                    count_attempt=False,
                )
            try:
                outcome = self._apply(event, looked)
            except ConnectionDisabled:
                return self._hold(event)
            except TransientFailure as exc:
                return self._retry(event, exc.reason, exc.message, not_before_s=exc.not_before_s)
            except PermanentFailure as exc:
                return self._dead(event, exc.reason, exc.message, count_attempt=True)
            except SQLAlchemyError:
                raise  # the database went away: nothing can be counted; the worker says so
            except AdapterError as exc:
                # One of ours that no class above names (a proxy refusing the connection is a
                # ConfigurationError): the state of the system, retried, no traceback.
                return self._retry(event, exc.reason, exc.message)
            except Exception as exc:  # a bug, or an error no class above names
                # Counted as an attempt like a transient failure: left to the worker, it came
                # back every second for ever (no attempt counted, no dead letter, no alert).
                log.exception("event %s: unexpected error while applying it", event.id)
                return self._retry(
                    event,
                    "unexpected",
                    f"{type(exc).__name__} (the worker's log has the traceback)",
                )
        if outcome == "skipped":
            return Verdict("skip", "already_done")
        self._metrics.processed.labels(event.source, event.event_type, outcome).inc()
        self._metrics.end_to_end_lag.labels(event.source).observe(
            max(0.0, (now() - event.occurred_at).total_seconds())
        )
        return Verdict("done", outcome)

    # -- applying ---------------------------------------------------------------------------

    def _reader(self) -> Batcher[uuid.UUID, _Read]:
        with self._batchers_lock:
            if self._read_batcher is None:
                self._read_batcher = Batcher("hf-read-events", self._read, max_batch=READ_BATCH)
            return self._read_batcher

    def _read(self, event_ids: Sequence[uuid.UUID]) -> list[_Read]:
        """The events, and for each pending one what decides whether to fetch: the connection's
        switch and the version stored. A statement per kind of row for all the events."""
        with self._sessions() as session:
            # Reads only, in one session without a transaction: each statement stands alone,
            # with no BEGIN and ROLLBACK round trips.
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            events = WebhookInbox(session).get_many(event_ids)
            pending = [
                event
                for event in events.values()
                if event.state == "pending" and event.event_type != FACILITY_EVENT
            ]
            enabled = enabled_switches(session, {event.source for event in pending})
            versions = _stored_versions(session, pending)
            session.expunge_all()
        reads: list[_Read] = []
        for event_id in event_ids:
            event = events.get(event_id)
            if event is None or event.state != "pending":
                reads.append((event, None))
            elif event.event_type == FACILITY_EVENT:
                reads.append((event, _Looked(enabled=True, stored_version=0)))
            else:
                version = versions.get((event.source, event.resource_id), 0)
                reads.append(
                    (event, _Looked(enabled=enabled[event.source], stored_version=version))
                )
        return reads

    def _apply(self, event: WebhookEvent, looked: _Looked) -> str:
        if event.event_type == FACILITY_EVENT:
            # SISDMK has no single-facility read in the client, and no sync stores facilities.
            return self._commit(event, "ignored", None)
        if not looked.enabled:
            raise ConnectionDisabled(event.source)
        if looked.stored_version >= event.resource_version:
            # The store already holds this version or a newer one (a late or duplicate event).
            # Only saves a fetch: the upsert re-checks the version under the row's lock, since
            # another thread or a sync page may store a newer one before this commits.
            return self._commit(event, "superseded", None)
        document = self._fetch(event)
        return self._commit(event, None, document)

    def _fetch(self, event: WebhookEvent) -> dict[str, Any]:
        client: KkiClient | SisdmkClient = self._kki if event.source == "kki" else self._sisdmk
        try:
            if event.source == "kki":
                return self._kki.get_registration(event.resource_id)
            return self._sisdmk.get_health_worker(event.resource_id)
        except UpstreamError as exc:
            self._record_outcome(event.source, client, exc)
            if isinstance(
                exc, UpstreamUnavailable | UpstreamRateLimited | AuthenticationFailed
            ) or (exc.status is not None and exc.status >= 500):
                raise TransientFailure(
                    _describe(exc), reason=exc.reason, not_before_s=_not_before_s(exc)
                ) from None
            # NotFound, ContractViolation, UpstreamRejected: the next attempt gets the same.
            raise PermanentFailure(_describe(exc), reason=exc.reason) from None

    def _record_outcome(
        self, system: str, client: object, error: BaseException | None = None
    ) -> None:
        try:
            with self._sessions.begin() as session:
                record_outcome(session, system, client, error)
        except SQLAlchemyError as exc:  # the event's own verdict matters more than the gauge
            log.warning("could not record %s's connection state: %s", system, type(exc).__name__)

    def _commit(self, event: WebhookEvent, outcome: str | None, document: Any) -> str:
        """Mark the event done and write its document (if any): in a batch of this source's
        events that reached this point together, or alone when batching is off."""
        write = _Write(event, outcome, document)
        if self._batch_limit <= 1:
            return self._commit_one(write)
        return self._batcher(event.source).submit(write).result()

    def _batcher(self, source: str) -> Batcher[_Write, str]:
        with self._batchers_lock:
            batcher = self._batchers.get(source)
            if batcher is None:
                batcher = Batcher(
                    f"hf-apply-{source}", self._commit_writes, max_batch=self._batch_limit
                )
                self._batchers[source] = batcher
            return batcher

    def close(self) -> None:
        """Stop the batch threads (each finishes what it holds)."""
        with self._batchers_lock:
            batchers: list[Batcher[Any, Any]] = list(self._batchers.values())
            if self._read_batcher is not None:
                batchers.append(self._read_batcher)
            self._batchers, self._read_batcher = {}, None
        for batcher in batchers:
            batcher.close()

    def _commit_writes(self, writes: Sequence[_Write]) -> list[str | Exception]:
        """The batch thread's work: one transaction per round of distinct resources (two
        versions of one record never share a transaction: the later waits for the next round)."""
        outcomes: list[str | Exception] = [""] * len(writes)
        for indices in _rounds(writes):
            batch = [writes[index] for index in indices]
            # The audit entry and the spans carry the first event's trace.
            with start_span("apply events", batch[0].event.traceparent, kind=SpanKind.CONSUMER):
                results = self._commit_batch(batch)
            for index, result in zip(indices, results, strict=True):
                outcomes[index] = result
        return outcomes

    def _commit_batch(
        self, batch: Sequence[_Write], *, again_at_once: bool = True
    ) -> list[str | Exception]:
        if len(batch) > 1:
            failure: BaseException
            try:
                return list(self._commit_together(batch))
            except RecordRefused as refused:
                if refused.index is not None and not _not_the_records(refused.cause):
                    # That record goes its own way (dead letter); the others again, together.
                    culprit = refused.index
                    rest = [write for index, write in enumerate(batch) if index != culprit]
                    again = self._commit_batch(rest)
                    again.insert(culprit, self._commit_batch([batch[culprit]])[0])
                    return again
                failure = refused.cause
            except (AdapterError, SQLAlchemyError, *RECORD_ERRORS) as exc:
                failure = exc
            if again_at_once and created_meanwhile(failure):
                # As `_commit_one`: the other writer has committed, so the whole batch again
                # reads that record and updates it, instead of one transaction per event.
                log.info(
                    "a batch of %d %s events met a unique key taken meanwhile (most likely "
                    "another writer created one of its records); applying it again at once",
                    len(batch),
                    batch[0].event.source,
                )
                return self._commit_batch(batch, again_at_once=False)
            # A refused record, a race with another writer, a disabled connection: nothing
            # of the batch was written; each event goes its own way, as if alone.
            log.info(
                "a batch of %d %s events failed (%s); applying them one by one",
                len(batch),
                batch[0].event.source,
                type(failure).__name__,
            )
        results: list[str | Exception] = []
        for write in batch:
            try:
                results.append(self._commit_one(write))
            except (AdapterError, SQLAlchemyError) as exc:
                results.append(exc)
        return results

    def _commit_together(self, batch: Sequence[_Write]) -> list[str]:
        """Several events of one source in ONE transaction: the inbox rows marked in one
        statement first (the guard, as `_commit_one`), the documents through one
        `apply_documents` with one audit entry naming every event and written record."""
        source = batch[0].event.source
        fetched_at = now()
        outcomes: dict[uuid.UUID, str] = {}
        with self._sessions() as session, session.begin():
            inbox = WebhookInbox(session)
            ours = inbox.mark_applied_many(
                {write.event.id: write.outcome or "applying" for write in batch}
            )
            taken = [write for write in batch if write.event.id in ours]
            outcomes.update({w.event.id: w.outcome or "applied" for w in taken})
            positions = [
                index
                for index, write in enumerate(batch)
                if write.event.id in ours and write.document is not None
            ]
            fetched = [batch[index] for index in positions]
            if fetched:
                try:
                    applied = apply_documents(
                        session,
                        self._repository_factory(session),
                        source,
                        [write.document for write in fetched],
                        fetched_at=fetched_at,
                        origin=_origin(fetched),
                    )
                except RecordRefused as refused:
                    if refused.index is None:
                        raise
                    # The refused document's place in the batch, not among those fetched.
                    raise RecordRefused(positions[refused.index], refused.cause) from refused
                written = {
                    write.event.id: str(result.value)
                    for write, result in zip(fetched, applied.results, strict=True)
                }
                inbox.set_outcomes(written)
                outcomes.update(written)
                record_outcome(session, source, self._kki if source == "kki" else self._sisdmk)
        return [outcomes.get(write.event.id, "skipped") for write in batch]

    def _commit_one(self, write: _Write) -> str:
        """`write` in a transaction of its own; once more at once when another writer created
        the record meanwhile (the next attempt reads the row and updates it)."""
        try:
            return self._commit_one_attempt(write)
        except _CreatedMeanwhile:
            event = write.event
            log.info(
                "event %s (%s %s): a unique key was taken meanwhile (most likely another writer "
                "created the same record); applying it again at once",
                event.id,
                event.source,
                event.event_type,
            )
        # A second collision is a TransientFailure as any: the event is retried later.
        return self._commit_one_attempt(write)

    def _commit_one_attempt(self, write: _Write) -> str:
        event, outcome, document = write.event, write.outcome, write.document
        fetched_at = now()
        try:
            with self._sessions() as session, session.begin():
                inbox = WebhookInbox(session)
                # First statement of the transaction: the row (PostgreSQL) or the database
                # (SQLite) is ours until commit, so a second worker waits, then finds it done.
                if not inbox.mark_applied(event.id, outcome or "applying"):
                    return "skipped"
                if document is not None:
                    applied = apply_documents(
                        session,
                        self._repository_factory(session),
                        event.source,
                        [document],
                        fetched_at=fetched_at,
                        origin=_origin([write]),
                    )
                    outcome = str(applied.results[0].value)
                    inbox.set_outcomes({event.id: outcome})
                    client = self._kki if event.source == "kki" else self._sisdmk
                    record_outcome(session, event.source, client)
        except ConnectionDisabled:
            raise  # disabled since the check: nothing written, the event is held
        except RecordRefused as refused:
            if _not_the_records(refused.cause):
                # A concurrent insert of the same person: the next attempt finds the row.
                raise _transient(refused.cause) from None
            cause = refused.cause
            reason = cause.reason if isinstance(cause, AdapterError) else "record_refused"
            raise PermanentFailure(
                f"store refused the record: {type(cause).__name__}", reason=reason
            ) from None
        except RECORD_ERRORS as exc:  # DBAPIError among them: every database error
            if _not_the_records(exc):
                raise _transient(exc) from None
            reason = exc.reason if isinstance(exc, AdapterError) else "record_refused"
            raise PermanentFailure(
                f"store refused the record: {type(exc).__name__}", reason=reason
            ) from None
        return outcome or "applied"

    def _hold(self, event: WebhookEvent) -> Verdict:
        """A disabled connection holds its events: back later, no attempt spent, never dead."""
        tier = self._schedule.hold_tier()
        delay = self._schedule.delays_s[tier]
        with self._sessions() as session, session.begin():
            WebhookInbox(session).hold(
                event.id,
                f"held: the {event.source} connection is disabled",
                available_at=now() + dt.timedelta(seconds=delay),
            )
        self._metrics.processed.labels(event.source, event.event_type, "held").inc()
        log.info(
            "event %s (%s %s) held: connection disabled, looked at again in %.0f s",
            event.id,
            event.source,
            event.event_type,
            delay,
        )
        return Verdict("retry", "held", delay_s=delay, tier=tier, reason="connection_disabled")

    # -- failing ----------------------------------------------------------------------------

    def _retry(
        self, event: WebhookEvent, reason: str, message: str, *, not_before_s: float | None = None
    ) -> Verdict:
        attempts = event.attempts + 1
        if self._schedule.exhausted(attempts):
            return self._dead(
                event,
                reason,
                f"{message} (after {attempts} attempts)",
                count_attempt=True,
            )
        tier, delay = self._schedule.after(attempts, self._draw, not_before_s=not_before_s)
        try:
            with self._sessions() as session, session.begin():
                WebhookInbox(session).mark_retry(
                    event.id,
                    _bounded(f"{reason}: {message}"),
                    available_at=now() + dt.timedelta(seconds=delay),
                )
        except SQLAlchemyError as exc:
            # Without the database the count is not kept; the message comes back anyway.
            log.warning("could not record the retry of %s: %s", event.id, type(exc).__name__)
        self._metrics.retries.labels(event.source, reason).inc()
        self._metrics.processed.labels(event.source, event.event_type, "retry").inc()
        log.info(
            "event %s (%s %s) failed (%s), retry %d in %.1f s",
            event.id,
            event.source,
            event.event_type,
            reason,
            attempts,
            delay,
        )
        return Verdict("retry", "retry", delay_s=delay, tier=tier, reason=reason)

    def _dead(
        self, event: WebhookEvent, reason: str, message: str, *, count_attempt: bool
    ) -> Verdict:
        error = _bounded(f"{reason}: {message}")
        with self._sessions() as session, session.begin():
            changed = WebhookInbox(session).mark_failed(
                event.id, error, count_attempt=count_attempt
            )
        if not changed:
            return Verdict("skip", "already_final")
        self._metrics.dead_letters.labels(event.source, reason).inc()
        self._metrics.processed.labels(event.source, event.event_type, "failed").inc()
        self._alerts.raise_alert(
            DeadLetterAlert(
                event_id=str(event.id),
                source=event.source,
                event_type=event.event_type,
                reason=reason,
                attempts=event.attempts + (1 if count_attempt else 0),
                last_error=error,
            )
        )
        return Verdict("dead", "failed", reason=reason)


class _CreatedMeanwhile(TransientFailure):
    """A unique key another transaction inserted and committed after this one read: the same
    new person (or record) from two events at once, one of each source, say."""


def _not_the_records(exc: BaseException) -> bool:
    """Whether `exc` comes from the store's state, not from the event's record: a race with
    another writer (an `IntegrityError`) or a dropped connection (an `OperationalError`), any
    other database error but a data exception (a read-only database; a table, column or right
    missing, as during a deploy ahead of its migration), the keys or the settings
    (`NOT_A_RECORD`). The event is tried again later; dead-lettering it would give up a record
    nothing is wrong with."""
    if isinstance(exc, NOT_A_RECORD):
        return True
    return isinstance(exc, DBAPIError) and not isinstance(exc, DataError)


def _transient(exc: BaseException) -> TransientFailure:
    message = f"store: {type(exc).__name__} (retried)"
    if created_meanwhile(exc):
        return _CreatedMeanwhile(message, reason="database")
    reason = exc.reason if isinstance(exc, AdapterError) else "database"
    return TransientFailure(message, reason=reason)


def _describe(error: UpstreamError) -> str:
    # Client messages name the system, operation and status, never ids or personal values.
    return f"{type(error).__name__}: {error.message}"


def _not_before_s(error: UpstreamError) -> float | None:
    """When the system said to come back: its breaker's next trial, or its ``Retry-After``."""
    if isinstance(error, CircuitOpen):
        return error.retry_in_s
    return error.retry_after_s


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


@dataclass(frozen=True)
class _Write:
    """An event ready to be marked done: with the fetched document, or with its outcome
    (``ignored``, ``superseded``) and nothing to write."""

    event: WebhookEvent
    outcome: str | None
    document: Any


def _rounds(writes: Sequence[_Write]) -> list[list[int]]:
    """Indices of `writes` in rounds where each resource appears once, first come first."""
    rounds: list[list[int]] = []
    seen: list[set[tuple[str, str]]] = []
    for index, write in enumerate(writes):
        key = (write.event.source, write.event.resource_id)
        depth = sum(1 for keys in seen if key in keys)
        if depth == len(rounds):
            rounds.append([])
            seen.append(set())
        rounds[depth].append(index)
        seen[depth].add(key)
    return rounds


def _origin(writes: Sequence[_Write]) -> Origin:
    """The audit entry's actor and detail: every event applied, in the documents' order, with
    each event's own trace (the entry's `trace_id` is the first event's)."""
    return Origin(
        WORKER,
        "event.apply",
        {
            "event_ids": [str(write.event.id) for write in writes],
            "event_types": [write.event.event_type for write in writes],
            "trace_ids": [trace_id_of(write.event.traceparent) for write in writes],
        },
    )


def _stored_versions(
    session: Session, events: Sequence[WebhookEvent]
) -> dict[tuple[str, str], int]:
    """(source, resource id) → the version the store holds, for the records these events name
    (one statement per source)."""
    versions: dict[tuple[str, str], int] = {}
    str_numbers = {event.resource_id for event in events if event.source == "kki"}
    if str_numbers:
        rows = session.execute(
            select(Registration.str_number, Registration.source_version).where(
                Registration.str_number.in_(str_numbers)
            )
        )
        versions.update({("kki", row[0]): int(row[1] or 0) for row in rows})
    worker_ids: dict[uuid.UUID, str] = {}
    for event in events:
        if event.source == "sisdmk":
            try:
                worker_ids[uuid.UUID(event.resource_id)] = event.resource_id
            except ValueError:
                continue  # no such record: stored version 0
    if worker_ids:
        workers = session.execute(
            select(HealthWorker.sisdmk_worker_id, HealthWorker.source_version).where(
                HealthWorker.sisdmk_worker_id.in_(worker_ids),
                HealthWorker.source_system == "sisdmk",
            )
        )
        for worker_id, version in workers:
            if worker_id is None:
                continue
            key = ("sisdmk", worker_ids[worker_id])
            versions[key] = max(versions.get(key, 0), int(version or 0))
    return versions
