"""The transactional outbox's one publish: hand events to the broker, then mark them published.

The receiver, the worker's outbox relay and replays all publish through `publish_events`. When
the broker is unavailable the events stay unpublished (``published_at`` NULL) and the outbox
relay publishes them once it is back.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from adapter.observability.event_metrics import EventMetrics
from adapter.queue.messages import BrokerUnavailable, EventMessage, EventPublisher
from adapter.store.models import WebhookEvent
from adapter.webhooks.inbox import WebhookInbox


def event_message(event: WebhookEvent) -> EventMessage:
    """The message of an inbox row: its id, and for routing and logs its source and type."""
    return EventMessage(event.id, event.source, event.event_type, event.traceparent)


def publish_events(
    sessions: sessionmaker[Session],
    publisher: EventPublisher,
    messages: Sequence[EventMessage],
    *,
    path: str,
    metrics: EventMetrics,
) -> BrokerUnavailable | None:
    """Publish `messages`, then mark their events published in a transaction of their own.

    Returns None when the broker confirmed them (or there was nothing to publish), otherwise the
    broker's `BrokerUnavailable`, not raised: the events are committed and wait for the relay.
    `path` (receiver, relay, replay) labels the metrics.
    """
    if not messages:
        return None
    try:
        publisher.publish(messages, path=path)
    except BrokerUnavailable as unavailable:
        metrics.publish_failures.labels(path).inc(len(messages))
        return unavailable
    with sessions() as session:
        # One UPDATE, committed on its own (autocommit: no BEGIN / COMMIT round trips).
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        WebhookInbox(session).mark_published([message.event_id for message in messages])
    metrics.published.labels(path).inc(len(messages))
    return None
