"""The embedded queue: the inbox table itself, for running without RabbitMQ (no server needed).

`serve` and `worker` processes on one machine share it through the database (a SQLite file by
default). Same semantics as the RabbitMQ topology: a worker takes due events under a lease
(visibility timeout) so a crashed worker's events come back; a retry sets the event's
``available_at`` to the backoff; hand-overs without a result count toward the delivery limit;
a dead letter is the row's state ``failed``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from adapter.queue.messages import EventMessage
from adapter.store.models import WebhookEvent
from adapter.webhooks.inbox import WebhookInbox


class EmbeddedPublisher:
    """`EventPublisher` for the embedded queue: the committed inbox row is the message."""

    needs_relay = False

    def publish(self, messages: Sequence[EventMessage], *, path: str) -> None:
        return None

    def close(self) -> None:
        return None


class EmbeddedQueue:
    def __init__(self, sessions: sessionmaker[Session], *, lease_s: float) -> None:
        self._sessions = sessions
        self._lease_s = lease_s

    def take(self, limit: int) -> list[tuple[WebhookEvent, int]]:
        """Due events, leased to this worker, each with its earlier unfinished hand-overs."""
        with self._sessions() as session, session.begin():
            claimed = WebhookInbox(session).claim(limit=limit, lease_s=self._lease_s)
            for event in claimed:
                session.expunge(event)
        # `deliveries` counts this hand-over too; `attempts` those that ended in a retry.
        return [(event, max(0, event.deliveries - 1 - event.attempts)) for event in claimed]
