"""`WebhookReceiver`: verify, store in the inbox, publish, answer. No web framework here.

Checks run cheapest first and each failure has its own reason: declared size, content type,
actual size (read at most one byte past the limit), headers, timestamp window, signature over
the raw bytes, JSON, schema. Only then is anything stored. The inbox insert is committed before
the publish (the transactional outbox): if the broker is unreachable the event stays unpublished
and the relay publishes it later, so the sender still gets its 2xx.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from adapter.observability.event_metrics import EventMetrics
from adapter.queue.messages import EventMessage, EventPublisher
from adapter.settings import Settings
from adapter.webhooks.envelope import SOURCES, parse_envelope
from adapter.webhooks.inbox import WebhookInbox
from adapter.webhooks.outbox import publish_events
from adapter.webhooks.signature import SignatureVerifier, WebhookRejected

log = logging.getLogger("adapter.webhooks")

JSON_MEDIA_TYPES: Final = frozenset({"application/json"})


@dataclass(frozen=True)
class Receipt:
    """The answer: 202 for a new event, 200 for one already in the inbox."""

    status: int
    result: str  # accepted | duplicate
    published: bool


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
        self._max_body_bytes = settings.webhook_max_body_bytes
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

        relayed = self._publisher.needs_relay
        with self._sessions() as session, session.begin():
            event_id = WebhookInbox(session).record(
                envelope, traceparent=traceparent, published=not relayed
            )
        if event_id is None:
            return Receipt(200, "duplicate", published=True)
        if not relayed:
            return Receipt(202, "accepted", published=True)
        message = EventMessage(event_id, source, envelope.event_type, traceparent)
        unavailable = publish_events(
            self._sessions, self._publisher, [message], path="receiver", metrics=self._metrics
        )
        if unavailable is not None:
            # Committed already: the outbox relay publishes it when the broker is back.
            log.warning("event %s kept in the outbox: %s", event_id, unavailable.message)
        return Receipt(202, "accepted", published=unavailable is None)


def _too_large(limit: int) -> WebhookRejected:
    return WebhookRejected(
        413, "too_large", f"the body is larger than {limit} bytes (WEBHOOK_MAX_BODY_BYTES)"
    )


def _label(source: str) -> str:
    # Metric labels come from a closed set: an unknown path segment is not a new time series.
    return source if source in SOURCES else "unknown"
