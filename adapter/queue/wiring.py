"""The queue side built from the settings: RabbitMQ with ``BROKER_URL``, else the embedded queue."""

from __future__ import annotations

from adapter.queue.embedded import EmbeddedPublisher
from adapter.queue.messages import EventPublisher
from adapter.queue.rabbit import RabbitPublisher
from adapter.queue.topology import QueueTopology
from adapter.settings import Settings


def topology_from(settings: Settings) -> QueueTopology:
    return QueueTopology(
        prefix=settings.broker_queue_prefix,
        delivery_limit=settings.broker_delivery_limit,
        retry_delays_s=settings.event_retry_delays(),
    )


def publisher_from(settings: Settings) -> EventPublisher:
    if settings.broker_url is None:
        return EmbeddedPublisher()
    return RabbitPublisher(settings.broker_url.get_secret_value(), topology_from(settings))
