# mypy: disallow-untyped-calls=False
"""The RabbitMQ topology, every name under ``BROKER_QUEUE_PREFIX``.

```
<p>.events (direct) --event--> <p>.events            quorum, x-delivery-limit, DLX <p>.dead
<p>.retry  (direct) --tier-N-> <p>.events.retry.N    quorum, TTL = tier delay, DLX <p>.events
<p>.dead   (direct) --dead---> <p>.events.dead       quorum, kept DEAD_LETTER_TTL
```

The worker never requeues: a transient failure is published to a retry tier (it comes back
through the events exchange when its TTL ends), a final failure to the dead-letter exchange.
The delivery limit catches what the worker cannot: a message that kills the worker every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kombu.entity import Exchange, Queue

EVENT_ROUTING_KEY: Final = "event"
DEAD_ROUTING_KEY: Final = "dead"
# A dead letter is a copy for inspection; the inbox row (state failed) is the record.
DEAD_LETTER_TTL_MS: Final = 14 * 24 * 3600 * 1000


@dataclass(frozen=True)
class QueueTopology:
    prefix: str
    delivery_limit: int
    retry_delays_s: tuple[float, ...]

    @property
    def events_exchange(self) -> Exchange:
        return Exchange(f"{self.prefix}.events", type="direct", durable=True)

    @property
    def retry_exchange(self) -> Exchange:
        return Exchange(f"{self.prefix}.retry", type="direct", durable=True)

    @property
    def dead_exchange(self) -> Exchange:
        return Exchange(f"{self.prefix}.dead", type="direct", durable=True)

    @property
    def events_queue(self) -> Queue:
        return Queue(
            f"{self.prefix}.events",
            exchange=self.events_exchange,
            routing_key=EVENT_ROUTING_KEY,
            durable=True,
            queue_arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dead_exchange.name,
                "x-dead-letter-routing-key": DEAD_ROUTING_KEY,
            },
        )

    def retry_routing_key(self, tier: int) -> str:
        return f"tier-{tier}"

    def retry_queue(self, tier: int) -> Queue:
        return Queue(
            f"{self.prefix}.events.retry.{tier}",
            exchange=self.retry_exchange,
            routing_key=self.retry_routing_key(tier),
            durable=True,
            queue_arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": max(1, round(self.retry_delays_s[tier] * 1000)),
                "x-dead-letter-exchange": self.events_exchange.name,
                "x-dead-letter-routing-key": EVENT_ROUTING_KEY,
                # Expired messages move on at least once (3.10+; needs reject-publish).
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )

    @property
    def retry_queues(self) -> list[Queue]:
        return [self.retry_queue(tier) for tier in range(len(self.retry_delays_s))]

    @property
    def dead_queue(self) -> Queue:
        return Queue(
            f"{self.prefix}.events.dead",
            exchange=self.dead_exchange,
            routing_key=DEAD_ROUTING_KEY,
            durable=True,
            queue_arguments={"x-queue-type": "quorum", "x-message-ttl": DEAD_LETTER_TTL_MS},
        )

    @property
    def all_queues(self) -> list[Queue]:
        return [self.events_queue, *self.retry_queues, self.dead_queue]
