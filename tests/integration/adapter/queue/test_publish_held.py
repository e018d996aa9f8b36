"""A worker whose retry publishes fail keeps its consumer: the messages stay in hand and their
publishes are tried again, not delivered again. Real RabbitMQ; the publisher reaches it through
a TCP proxy that the test takes down and brings back."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from typing import Any

import pytest
from kombu import Connection
from prometheus_client import CollectorRegistry

from adapter.observability.event_metrics import EventMetrics
from adapter.queue.messages import EventMessage
from adapter.queue.processor import Verdict
from adapter.queue.rabbit import RabbitConsumer, RabbitPublisher, declare_topology
from adapter.queue.topology import EVENT_ROUTING_KEY, QueueTopology
from adapter.queue.worker import Worker
from tests.integration.adapter.queue.tcp_proxy import TcpFaultProxy
from tests.integration.adapter.queue.test_undecodable_messages import IdleRelay, NoDatabase
from tests.integration.adapter.webhooks.support import broker_url, delete_topology

pytestmark = pytest.mark.integration

RETRIES = "30,60"  # long: nothing comes back from the retry queue during the test
EVENTS = 3


class AlwaysRetry:
    """Every event's verdict is a retry (a source that is down), counted per event."""

    def __init__(self) -> None:
        self.calls: dict[Any, int] = {}
        self._lock = threading.Lock()

    def process(self, event_id: Any, **kwargs: Any) -> Verdict:
        with self._lock:
            self.calls[event_id] = self.calls.get(event_id, 0) + 1
        return Verdict("retry", "retry", delay_s=30.0, tier=0, reason="upstream_unavailable")


def _depth(url: str, queue: str) -> int:
    with Connection(url, connect_timeout=3) as connection:
        declared = connection.default_channel.queue_declare(queue=queue, passive=True)
        return int(declared.message_count)


def test_failed_retry_publishes_hold_the_messages_without_closing_the_consumer() -> None:
    url = broker_url()
    prefix = f"hf-test-held-{secrets.token_hex(4)}"
    topology = QueueTopology(prefix, 5, tuple(float(d) for d in RETRIES.split(",")))
    proxy, through_proxy = TcpFaultProxy.before_broker(url)
    processor = AlwaysRetry()
    try:
        with Connection(url, connect_timeout=3) as connection:
            declare_topology(connection, topology)
            producer = connection.Producer(serializer="json")
            for _ in range(EVENTS):
                message = EventMessage(uuid.uuid4(), "kki", "registration.updated")
                producer.publish(
                    message.to_body(),
                    exchange=topology.events_exchange,
                    routing_key=EVENT_ROUTING_KEY,
                    delivery_mode=2,
                )
        proxy.down()  # the publisher cannot reach the broker; the consumer can
        worker = Worker(
            processor=processor,  # type: ignore[arg-type]
            sessions=NoDatabase(),  # type: ignore[arg-type]
            metrics=EventMetrics.for_registry(CollectorRegistry()),
            concurrency=2,
        )
        raised: list[BaseException] = []

        def run() -> None:
            try:
                worker.run_rabbit(
                    RabbitConsumer(url, topology, prefetch=8),
                    RabbitPublisher(through_proxy, topology),
                    topology,
                    IdleRelay(),  # type: ignore[arg-type]
                )
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                raised.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(processor.calls) < EVENTS:
            time.sleep(0.1)
        time.sleep(3.5)  # three tries of the publishes, a second apart, all failing
        held = dict(processor.calls)
        retried_while_down = _depth(url, topology.retry_queues[0].name)
        proxy.up()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _depth(url, topology.retry_queues[0].name) < EVENTS:
            time.sleep(0.2)
        retried = _depth(url, topology.retry_queues[0].name)
        left = _depth(url, topology.events_queue.name)
        worker.stop()
        thread.join(timeout=15)

        assert raised == [], f"the worker stopped: {raised!r}"
        assert len(held) == EVENTS
        # Each event was applied once: its message was held, not delivered again.
        assert set(held.values()) == {1}, held
        assert processor.calls == held
        assert retried_while_down == 0
        assert (retried, left) == (EVENTS, 0)
    finally:
        proxy.close()
        delete_topology(url, prefix, RETRIES)
