"""What travels through the broker: an event's ids, type and trace context, never personal data.

`EventPublisher` is the port the receiver, the outbox relay and replays publish through; the
RabbitMQ and embedded implementations live in `adapter.queue.rabbit` and `adapter.queue.embedded`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adapter.errors import AdapterError


class BrokerUnavailable(AdapterError):
    """The broker could not be reached or did not confirm; the outbox keeps the events."""

    default_reason = "broker_unavailable"


class MalformedMessage(AdapterError):
    """A message body that is not an event message (dead-lettered at once)."""

    default_reason = "malformed_message"


@dataclass(frozen=True)
class EventMessage:
    """The inbox row's id (the store holds the rest), for routing and logs its source and type."""

    event_id: uuid.UUID
    source: str
    event_type: str
    traceparent: str | None = None

    def to_body(self) -> dict[str, Any]:
        return {
            "event_id": str(self.event_id),
            "source": self.source,
            "type": self.event_type,
            "traceparent": self.traceparent,
        }

    @classmethod
    def from_body(cls, body: Any) -> EventMessage:
        if isinstance(body, (bytes, str)):
            try:
                body = json.loads(body)
            except ValueError:
                raise MalformedMessage("the message body is not JSON") from None
        try:
            return cls(
                event_id=uuid.UUID(str(body["event_id"])),
                source=str(body["source"]),
                event_type=str(body["type"]),
                traceparent=body.get("traceparent"),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MalformedMessage("the message is not an event message") from None


class EventPublisher(Protocol):
    """Hands events to the broker; returns once it has them durably (publisher confirms)."""

    #: False for the embedded queue, whose inbox row is the message: nothing to relay.
    needs_relay: bool

    def publish(self, messages: Sequence[EventMessage], *, path: str) -> None:
        """Publish every message or raise `BrokerUnavailable`."""
        ...

    def close(self) -> None: ...
