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


def test_a_retry_exchange_deleted_under_a_running_worker_is_declared_again() -> None:
    """A 404 on publish (the exchange gone) failed every later retry publish for ever: the
    publisher declared the topology once, with its first connection."""
    url = broker_url()
    prefix = f"hf-test-redeclare-{secrets.token_hex(4)}"
    topology = QueueTopology(prefix, 5, tuple(float(d) for d in RETRIES.split(",")))
    processor = AlwaysRetry()
    publisher = RabbitPublisher(url, topology)
    consumer = RabbitConsumer(url, topology, prefetch=8)
    worker = Worker(
        processor=processor,  # type: ignore[arg-type]
        sessions=NoDatabase(),  # type: ignore[arg-type]
        metrics=EventMetrics.for_registry(CollectorRegistry()),
        concurrency=2,
    )
    thread = threading.Thread(
        target=worker.run_rabbit,
        args=(consumer, publisher, topology, IdleRelay()),
        daemon=True,
    )
    try:
        publisher.publish([], path="test")  # declares the topology, as a first publish would
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not consumer.connected:
            time.sleep(0.1)
        assert consumer.connected
        with Connection(url, connect_timeout=3) as connection:
            # Deleted after both declared it: nothing of the worker declares it again at once.
            connection.default_channel.exchange_delete(topology.retry_exchange.name)
            producer = connection.Producer(serializer="json")
            for _ in range(EVENTS):
                producer.publish(
                    EventMessage(uuid.uuid4(), "kki", "registration.updated").to_body(),
                    exchange=topology.events_exchange,
                    routing_key=EVENT_ROUTING_KEY,
                    delivery_mode=2,
                )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _depth(url, topology.retry_queues[0].name) < EVENTS:
            time.sleep(0.2)
        retried = _depth(url, topology.retry_queues[0].name)
        worker.stop()
        thread.join(timeout=15)
        assert retried == EVENTS
        assert set(processor.calls.values()) == {1}
    finally:
        worker.stop()
        publisher.close()
        delete_topology(url, prefix, RETRIES)


class RetryTheFirst(AlwaysRetry):
    """The first `retries` events seen are retried; every later one is done."""

    def __init__(self, retries: int) -> None:
        super().__init__()
        self.retries = retries

    def process(self, event_id: Any, **kwargs: Any) -> Verdict:
        verdict = super().process(event_id, **kwargs)
        with self._lock:
            if len(self.calls) > self.retries:
                return Verdict("done", "applied")
        return verdict


def test_stopping_while_publishes_fail_acks_every_message_that_needs_no_publish() -> None:
    """On the way out the first failed publish ended the settling: every finished message
    after it went unacked, and so was delivered and applied again."""
    url = broker_url()
    prefix = f"hf-test-leaving-{secrets.token_hex(4)}"
    topology = QueueTopology(prefix, 5, tuple(float(d) for d in RETRIES.split(",")))
    proxy, through_proxy = TcpFaultProxy.before_broker(url)
    processor = RetryTheFirst(retries=1)
    try:
        with Connection(url, connect_timeout=3) as connection:
            declare_topology(connection, topology)
            producer = connection.Producer(serializer="json")
            for _ in range(EVENTS + 2):
                producer.publish(
                    EventMessage(uuid.uuid4(), "kki", "registration.updated").to_body(),
                    exchange=topology.events_exchange,
                    routing_key=EVENT_ROUTING_KEY,
                    delivery_mode=2,
                )
        proxy.down()
        worker = Worker(
            processor=processor,  # type: ignore[arg-type]
            sessions=NoDatabase(),  # type: ignore[arg-type]
            metrics=EventMetrics.for_registry(CollectorRegistry()),
            concurrency=1,  # one at a time: the retried one is first in hand
        )
        thread = threading.Thread(
            target=worker.run_rabbit,
            args=(
                RabbitConsumer(url, topology, prefetch=8),
                RabbitPublisher(through_proxy, topology),
                topology,
                IdleRelay(),
            ),
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(processor.calls) < EVENTS + 2:
            time.sleep(0.1)
        worker.stop()  # the publishes still fail
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert len(processor.calls) == EVENTS + 2
        # Only the retried one is back in the queue; the done ones were acked on the way out.
        assert _depth(url, topology.events_queue.name) == 1
    finally:
        proxy.close()
        delete_topology(url, prefix, RETRIES)
