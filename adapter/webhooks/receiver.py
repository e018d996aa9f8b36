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

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from adapter.observability.event_metrics import EventMetrics
from adapter.queue.messages import EventMessage, EventPublisher
from adapter.settings import Settings
from adapter.webhooks.batching import Batcher
from adapter.webhooks.envelope import SOURCES, EventEnvelope, load_schemas, parse_envelope
from adapter.webhooks.inbox import WebhookInbox
from adapter.webhooks.outbox import publish_events
from adapter.webhooks.signature import SignatureVerifier, WebhookRejected

log = logging.getLogger("adapter.webhooks")

JSON_MEDIA_TYPES: Final = frozenset({"application/json"})
# Rows per group commit and messages per confirmed publish: more than a process has request
# threads, so a batch is never cut short under load; a bound on one statement's size all the same.
MAX_BATCH: Final = 256
# Errors of one row, not of the database: a batch that meets one is committed row by row, so
# one bad row fails only its own request.
ROW_ERRORS: Final = (IntegrityError, DataError)


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
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._metrics = metrics
        self._relayed = publisher.needs_relay
        self._max_body_bytes = settings.webhook_max_body_bytes
        load_schemas()
        self._commits: Batcher[tuple[EventEnvelope, str | None], uuid.UUID | None] = Batcher(
            "hf-inbox-commit", self._commit, max_batch=MAX_BATCH
        )
        self._publishes: Batcher[EventMessage, None] = Batcher(
            "hf-outbox-publish", self._publish, max_batch=MAX_BATCH
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
        """Handle one delivery; `WebhookRejected` (a 4xx, nothing stored) when it is refused.

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
        event_id = self._commits.submit((envelope, traceparent)).result()
        if event_id is None:
            return Receipt(200, "duplicate")
        if self._relayed:
            self._publishes.submit(EventMessage(event_id, source, envelope.event_type, traceparent))
        return Receipt(202, "accepted")

    def _commit(
        self, entries: Sequence[tuple[EventEnvelope, str | None]]
    ) -> Sequence[uuid.UUID | Exception | None]:
        """One transaction for the batch; row by row if a row of it is refused."""
        published = not self._relayed  # the embedded queue's row is its message
        try:
            return self._insert(entries, published=published)
        except ROW_ERRORS:
            if len(entries) == 1:
                raise
        outcomes: list[uuid.UUID | Exception | None] = []
        for entry in entries:
            try:
                outcomes.append(self._insert([entry], published=published)[0])
            except ROW_ERRORS as exc:
                outcomes.append(exc)
        return outcomes

    def _insert(
        self, entries: Sequence[tuple[EventEnvelope, str | None]], *, published: bool
    ) -> list[uuid.UUID | None]:
        with self._sessions() as session:
            # One statement is its own transaction: autocommit saves the BEGIN and COMMIT
            # round trips, and the statement returns only once committed (durable).
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            return WebhookInbox(session).record_many(entries, published=published)

    def _publish(self, messages: Sequence[EventMessage]) -> Sequence[None]:
        unavailable = publish_events(
            self._sessions, self._publisher, messages, path="receiver", metrics=self._metrics
        )
        if unavailable is not None:
            # Committed already: the outbox relay publishes them when the broker is back.
            log.warning("%d events kept in the outbox: %s", len(messages), unavailable.message)
        return [None] * len(messages)


def _too_large(limit: int) -> WebhookRejected:
    return WebhookRejected(
        413, "too_large", f"the body is larger than {limit} bytes (WEBHOOK_MAX_BODY_BYTES)"
    )


def _label(source: str) -> str:
    # Metric labels come from a closed set: an unknown path segment is not a new time series.
    return source if source in SOURCES else "unknown"
