"""The queue side built from the settings: RabbitMQ with ``BROKER_URL``, else the embedded queue."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from adapter.clients.kki import KkiClient
from adapter.clients.sisdmk import SisdmkClient
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.alerts import DeadLetterAlerts
from adapter.queue.embedded import EmbeddedPublisher
from adapter.queue.messages import EventPublisher
from adapter.queue.processor import EventProcessor
from adapter.queue.rabbit import RabbitPublisher
from adapter.queue.retry import RetrySchedule
from adapter.queue.topology import QueueTopology
from adapter.settings import Settings
from adapter.store.repositories import HealthWorkerRepository


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


def processor_from(
    settings: Settings,
    *,
    sessions: sessionmaker[Session],
    kki: KkiClient,
    sisdmk: SisdmkClient,
    metrics: EventMetrics,
    alerts: DeadLetterAlerts,
) -> EventProcessor:
    cipher = settings.field_cipher()
    blind_index = settings.blind_index()
    return EventProcessor(
        sessions=sessions,
        kki=kki,
        sisdmk=sisdmk,
        repository_factory=lambda session: HealthWorkerRepository(session, cipher, blind_index),
        schedule=RetrySchedule(settings.event_retry_delays(), settings.event_max_attempts),
        delivery_limit=settings.broker_delivery_limit,
        metrics=metrics,
        alerts=alerts,
    )
