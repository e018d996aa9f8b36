"""A RabbitMQ worker run in a thread of the test, with no database and no outbox relay: for
tests of what the worker does with messages (the processor is the test's own)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from kombu import Connection
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from adapter.observability.event_metrics import EventMetrics
from adapter.queue.messages import EventMessage
from adapter.queue.rabbit import RabbitConsumer, RabbitPublisher
from adapter.queue.topology import EVENT_ROUTING_KEY, QueueTopology
from adapter.queue.worker import Worker


class IdleRelay:
    def run(self, stop: threading.Event) -> None:
        stop.wait(60)


class NoDatabase:
    """The queue depths the worker samples are unavailable: it logs that and goes on."""

    def __call__(self) -> Any:
        raise SQLAlchemyError("no database in this test")


class NeverCalled:
    """A processor for tests where no event message can reach it."""

    def process(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no event message was to reach the processor")


def bare_worker(
    processor: Any,
    *,
    concurrency: int = 2,
    sessions: Any = None,
    registry: CollectorRegistry | None = None,
) -> Worker:
    """A worker around `processor`; without `sessions`, with no database at all; its metrics
    in `registry` (a registry of its own without)."""
    return Worker(
        processor=processor,
        sessions=sessions if sessions is not None else NoDatabase(),
        metrics=EventMetrics.for_registry(
            registry if registry is not None else CollectorRegistry()
        ),
        concurrency=concurrency,
    )


def started(
    worker: Worker, consumer: RabbitConsumer, publisher: RabbitPublisher, topology: QueueTopology
) -> tuple[threading.Thread, list[BaseException]]:
    """`worker.run_rabbit` running in a daemon thread, and what it raised (if it stopped)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            worker.run_rabbit(consumer, publisher, topology, IdleRelay())  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported by the test's assertions
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def publish_events(url: str, topology: QueueTopology, count: int) -> None:
    """`count` event messages of new ids onto the events exchange, as the receiver sends them:
    each confirmed by the broker before this returns (in the queue, not only on the wire)."""
    with Connection(
        url, connect_timeout=3, transport_options={"confirm_publish": True}
    ) as connection:
        producer = connection.Producer(serializer="json")
        for _ in range(count):
            producer.publish(
                EventMessage(uuid.uuid4(), "kki", "registration.updated").to_body(),
                exchange=topology.events_exchange,
                routing_key=EVENT_ROUTING_KEY,
                delivery_mode=2,
            )
