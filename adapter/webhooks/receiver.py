"""`WebhookReceiver`: verify, store in the inbox, answer, publish. No web framework here.

Checks run cheapest first and each failure has its own reason: declared size, content type,
actual size (read at most one byte past the limit), headers, timestamp window, signature over
the raw bytes, JSON, schema. Only then is anything stored. The answer waits for the inbox row's
commit, made together with the rows of the requests that arrived meanwhile (group commit: one
commit per batch, one committing thread per process). The publish follows the commit (the
transactional outbox), batched too and off the request: if the broker is unreachable the event
stays unpublished and the outbox relay publishes it later.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from adapter.errors import AdapterError
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.messages import EventMessage, EventPublisher
from adapter.settings import Settings
from adapter.webhooks.batching import Batcher, BatcherFull, BatcherStopped
from adapter.webhooks.envelope import SOURCES, EventEnvelope, load_schemas, parse_envelope
from adapter.webhooks.inbox import WebhookInbox
from adapter.webhooks.outbox import publish_events
from adapter.webhooks.signature import SignatureVerifier, WebhookRejected

log = logging.getLogger("adapter.webhooks")

JSON_MEDIA_TYPES: Final = frozenset({"application/json"})
# Rows per group commit and messages per confirmed publish: more than a process has request
# threads, so a batch is never cut short under load; a bound on one statement's size all the same.
MAX_BATCH: Final = 256
# Messages waiting for the publishing thread; beyond that the outbox relay publishes them.
MAX_QUEUED_PUBLISHES: Final = 10_000
# Events waiting for the committing thread: each is a request waiting for its answer, so more
# than a process's request threads only while the database hangs; beyond it, a 503 at once.
MAX_QUEUED_COMMITS: Final = 4 * MAX_BATCH
# How long a request waits for its batch's commit before it is answered 503: under the senders'
# own timeouts (the mocks' is 5 s), so they hear why. The promise holds: a row committed after
# that is answered 200 duplicate when the sender retries.
COMMIT_WAIT_S: Final = 4.0
# Seconds a sender is asked to wait (Retry-After) when the inbox cannot take its event now.
RETRY_AFTER_S: Final = 5
# The database, not a row, failed: every request of the batch is answered 503. Any other error
# is taken to be a row's own: the batch is committed row by row and each refused row gets 422.
DATABASE_UNAVAILABLE: Final = (OperationalError, PoolTimeoutError)
# The SQLSTATE classes of an error a row itself causes: a data exception (22) and an integrity
# constraint violation (23). Any other error is the database's state — read-only (a standby
# after a fail-over), a right or a column missing (a deploy before its migration) — or the
# adapter's own, and answered 503 like an unreachable database: a sender drops an event
# answered 4xx for good, and retrying one loses nothing.
ROW_ERROR_CLASSES: Final = frozenset({"22", "23"})
# Deadlock and serialization failure: retried once, as a whole batch.
RETRIED_SQLSTATES: Final = frozenset({"40P01", "40001"})


class WebhookUnavailable(AdapterError):
    """The event could not be stored now (503 with Retry-After); the sender retries it."""

    default_reason = "database_unavailable"
    status = 503

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = RETRY_AFTER_S


@dataclass(frozen=True)
class Receipt:
    """The answer: 202 for a new event, 200 for one already in the inbox."""

    status: int
    result: str  # accepted | duplicate


class WebhookReceiver:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        publisher: EventPublisher,
        metrics: EventMetrics,
        clock: Callable[[], float] = time.time,
        commit_wait_s: float = COMMIT_WAIT_S,
        max_queued_commits: int = MAX_QUEUED_COMMITS,
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._metrics = metrics
        self._relayed = publisher.needs_relay
        self._max_body_bytes = settings.webhook_max_body_bytes
        self._commit_wait_s = commit_wait_s
        load_schemas()
        self._commits: Batcher[tuple[EventEnvelope, str | None], uuid.UUID | None] = Batcher(
            "hf-inbox-commit", self.commit_batch, max_batch=MAX_BATCH, max_queued=max_queued_commits
        )
        self._publishes: Batcher[EventMessage, None] = Batcher(
            "hf-outbox-publish", self._publish, max_batch=MAX_BATCH, max_queued=MAX_QUEUED_PUBLISHES
        )
        self._verifiers = {
            source: SignatureVerifier(
                settings.webhook_secrets(source),
                tolerance_s=settings.webhook_timestamp_tolerance_s,
                clock=clock,
            )
            for source in SOURCES
        }

    @property
    def max_body_bytes(self) -> int:
        return self._max_body_bytes

    def close(self) -> None:
        """Commit and publish what is queued, then stop this process's two threads."""
        self._commits.close()
        self._publishes.close()

    def receive(
        self,
        source: str,
        headers: Mapping[str, str],
        read_body: Callable[[int], bytes],
        *,
        traceparent: str | None = None,
    ) -> Receipt:
        """Handle one delivery; `WebhookRejected` (a 4xx, nothing stored) when it is refused,
        `WebhookUnavailable` (503) when the inbox cannot take it now.

        `headers` is case-insensitive on lower-case names; `read_body(n)` returns at most `n`
        bytes of the request body.
        """
        started = time.perf_counter()
        try:
            receipt = self._receive(source, headers, read_body, traceparent)
        except WebhookRejected as exc:
            self._metrics.rejected.labels(_label(source), exc.reason).inc()
            log.info("webhook rejected: source=%s reason=%s", _label(source), exc.reason)
            raise
        except WebhookUnavailable as exc:
            # Logged once per batch where it happened, not once per waiting request.
            self._metrics.unavailable.labels(_label(source), exc.reason).inc()
            raise
        self._metrics.received.labels(source, receipt.result).inc()
        self._metrics.receive_duration.labels(source).observe(time.perf_counter() - started)
        return receipt

    def _receive(
        self,
        source: str,
        headers: Mapping[str, str],
        read_body: Callable[[int], bytes],
        traceparent: str | None,
    ) -> Receipt:
        verifier = self._verifiers.get(source)
        if verifier is None:
            raise WebhookRejected(404, "unknown_source", "no webhook receiver for that source")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise _too_large(self._max_body_bytes)
        media_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
        if media_type not in JSON_MEDIA_TYPES:
            raise WebhookRejected(
                415, "content_type", "the body must be application/json (Standard Webhooks)"
            )
        body = read_body(self._max_body_bytes + 1)
        if len(body) > self._max_body_bytes:
            raise _too_large(self._max_body_bytes)
        signed = verifier.verify(headers, body)
        envelope = parse_envelope(source, signed.webhook_id, body)
        if envelope.source != source:  # the schema's enum already says so; belt and braces
            raise WebhookRejected(422, "schema", "source does not match the receiver")

        # Waits for the commit of the batch this row joined: a 2xx is never sent before it.
        try:
            committing = self._commits.submit((envelope, traceparent))
        except BatcherFull:
            raise WebhookUnavailable(
                "too many events are waiting for the inbox; retry the event",
                reason="receiver_busy",
            ) from None
        except BatcherStopped as exc:
            raise WebhookUnavailable(
                "the receiver is restarting; retry the event", reason="receiver_stopped"
            ) from exc
        try:
            event_id = committing.result(self._commit_wait_s)
        except TimeoutError:
            # Not yet in a batch: dropped, so what waits for a slow database stays bounded by
            # the waiting requests. Already in one: it may still be committed.
            dropped = committing.cancel()
            log.warning(
                "webhook not committed within %g s (%s); answered 503",
                self._commit_wait_s,
                "dropped" if dropped else "its batch is still in the database",
            )
            raise WebhookUnavailable(
                f"the event was not stored within {self._commit_wait_s:g} s; retry it"
                + (
                    "" if dropped else " (if it was stored meanwhile, the retry is a 200 duplicate)"
                ),
                reason="commit_timeout",
            ) from None
        except BatcherStopped as exc:
            raise WebhookUnavailable(
                "the receiver is restarting; retry the event", reason="receiver_stopped"
            ) from exc
        if event_id is None:
            return Receipt(200, "duplicate")
        if self._relayed:
            message = EventMessage(event_id, source, envelope.event_type, traceparent)
            try:
                self._publishes.submit(message)
            except (BatcherFull, BatcherStopped):
                # Committed unpublished: the outbox relay publishes it.
                self._metrics.publish_failures.labels("receiver").inc()
        return Receipt(202, "accepted")

    def commit_batch(
        self, entries: Sequence[tuple[EventEnvelope, str | None]]
    ) -> Sequence[uuid.UUID | Exception | None]:
        """One statement for the batch; row by row if it fails for a row's own error (not
        `_database_wide`). Never raises: each waiter gets its own outcome."""
        try:
            return self._insert(entries)
        except Exception as exc:  # noqa: BLE001 - the database's state, or a row's own error
            if _database_wide(exc):
                log.warning("inbox: a batch of %d not stored: %s", len(entries), _brief(exc))
                return [_unavailable(exc) for _ in entries]
            log.warning("inbox: a batch of %d refused (%s); row by row", len(entries), _brief(exc))
        outcomes: list[uuid.UUID | Exception | None] = []
        away: Exception | None = None
        for entry in entries:
            if away is not None:  # gone meanwhile: the rest are not tried
                outcomes.append(_unavailable(away))
                continue
            try:
                outcomes.append(self._insert([entry])[0])
            except Exception as exc:  # noqa: BLE001 - this row alone is refused: a 422
                if _database_wide(exc):
                    log.warning("inbox: the database went away row by row: %s", _brief(exc))
                    away = exc
                    outcomes.append(_unavailable(exc))
                    continue
                log.warning("inbox: an event refused by the store: %s", _brief(exc))
                refused = WebhookRejected(
                    422,
                    "store_refused",
                    f"the inbox cannot store this event ({type(exc).__name__}); a field is "
                    "outside what the store holds",
                )
                refused.__cause__ = exc
                outcomes.append(refused)
        return outcomes

    def _insert(
        self, entries: Sequence[tuple[EventEnvelope, str | None]]
    ) -> list[uuid.UUID | None]:
        """Insert the rows; a deadlock or serialization failure is retried once."""
        try:
            return self._insert_once(entries)
        except OperationalError as exc:
            if _sqlstate(exc) not in RETRIED_SQLSTATES:
                raise
            log.warning("inbox: %s; the batch of %d retried once", _brief(exc), len(entries))
            return self._insert_once(entries)

    def _insert_once(
        self, entries: Sequence[tuple[EventEnvelope, str | None]]
    ) -> list[uuid.UUID | None]:
        published = not self._relayed  # the embedded queue's row is its message
        with self._sessions() as session:
            # One statement is its own transaction: autocommit saves the BEGIN and COMMIT
            # round trips, and the statement returns only once committed (durable).
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            return WebhookInbox(session).record_many(entries, published=published)

    def _publish(self, messages: Sequence[EventMessage]) -> Sequence[None]:
        try:
            unavailable = publish_events(
                self._sessions, self._publisher, messages, path="receiver", metrics=self._metrics
            )
        except Exception:  # the thread's edge: committed events wait for the relay
            log.exception("publishing %d events failed; the outbox relay will", len(messages))
            self._metrics.publish_failures.labels("receiver").inc(len(messages))
            return [None] * len(messages)
        if unavailable is not None:
            # Committed already: the outbox relay publishes them when the broker is back.
            log.warning("%d events kept in the outbox: %s", len(messages), unavailable.message)
        return [None] * len(messages)


def _too_large(limit: int) -> WebhookRejected:
    return WebhookRejected(
        413, "too_large", f"the body is larger than {limit} bytes (WEBHOOK_MAX_BODY_BYTES)"
    )


def _unavailable(exc: Exception) -> WebhookUnavailable:
    """One waiter's own error, chained from the batch's (which is logged once, not per waiter)."""
    unavailable = WebhookUnavailable(
        f"the database is unavailable ({type(exc).__name__}); the event was not stored, retry it"
    )
    unavailable.__cause__ = exc
    return unavailable


def _database_wide(exc: Exception) -> bool:
    """Whether `exc` is anything but this row's own refusal (422): a database error in
    `ROW_ERROR_CLASSES` on PostgreSQL, an integrity or data error on SQLite (which names no
    SQLSTATE), or SQLite's integer past 64 bits. All else — unreachable, another SQLSTATE, a
    bug in the adapter — is a 503."""
    if isinstance(exc, OverflowError):
        return False
    if isinstance(exc, DATABASE_UNAVAILABLE) or not isinstance(exc, DBAPIError):
        return True
    state = _sqlstate(exc)
    if state is None:
        return not isinstance(exc, IntegrityError | DataError)
    return state[:2] not in ROW_ERROR_CLASSES


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _brief(exc: BaseException) -> str:
    # The class and the driver's first line, never the statement or its parameters.
    orig = getattr(exc, "orig", None) or exc
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(exc).__name__}: {first_line}"[:200]


def _label(source: str) -> str:
    # Metric labels come from a closed set: an unknown path segment is not a new time series.
    return source if source in SOURCES else "unknown"
