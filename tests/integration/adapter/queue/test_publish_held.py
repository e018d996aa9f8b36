"""A worker whose retry publishes fail keeps its consumer: the messages stay in hand and their
publishes are tried again, not delivered again. Real RabbitMQ; the publisher reaches it through
a TCP proxy that the test takes down and brings back, or its retry exchange is deleted."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection

from adapter.queue.processor import Verdict
from adapter.queue.rabbit import RabbitConsumer, RabbitPublisher, declare_topology
from adapter.queue.topology import QueueTopology
from tests.integration.adapter.queue.tcp_proxy import TcpFaultProxy
from tests.integration.adapter.queue.worker_support import bare_worker, publish_events, started
from tests.integration.adapter.webhooks.support import broker_url, delete_topology

pytestmark = pytest.mark.integration

RETRIES = "30,60"  # long: nothing comes back from the retry queue during a test
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


@pytest.fixture
def topology() -> Iterator[QueueTopology]:
    url = broker_url()
    prefix = f"hf-test-held-{secrets.token_hex(4)}"
    topology = QueueTopology(prefix, 5, tuple(float(d) for d in RETRIES.split(",")))
    with Connection(url, connect_timeout=3) as connection:
        declare_topology(connection, topology)
    yield topology
    delete_topology(url, prefix, RETRIES)


def _depth(queue: str) -> int:
    with Connection(broker_url(), connect_timeout=3) as connection:
        declared = connection.default_channel.queue_declare(queue=queue, passive=True)
        return int(declared.message_count)


def _wait_for(done: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():
        time.sleep(0.1)


def test_failed_retry_publishes_hold_the_messages_without_closing_the_consumer(
    topology: QueueTopology,
) -> None:
    url = broker_url()
    proxy, through_proxy = TcpFaultProxy.before_broker(url)
    processor = AlwaysRetry()
    retry_queue = topology.retry_queues[0].name
    try:
        publish_events(url, topology, EVENTS)
        proxy.down()  # the publisher cannot reach the broker; the consumer can
        worker = bare_worker(processor)
        thread, raised = started(
            worker,
            RabbitConsumer(url, topology, prefetch=8),
            RabbitPublisher(through_proxy, topology),
            topology,
        )
        _wait_for(lambda: len(processor.calls) >= EVENTS)
        time.sleep(3.5)  # three tries of the publishes, a second apart, all failing
        held = dict(processor.calls)
        retried_while_down = _depth(retry_queue)
        proxy.up()
        _wait_for(lambda: _depth(retry_queue) >= EVENTS)
        retried, left = _depth(retry_queue), _depth(topology.events_queue.name)
        worker.stop()
        thread.join(timeout=15)
    finally:
        proxy.close()
    assert raised == [], f"the worker stopped: {raised!r}"
    assert len(held) == EVENTS
    # Each event was applied once: its message was held, not delivered again.
    assert set(held.values()) == {1}, held
    assert processor.calls == held
    assert retried_while_down == 0
    assert (retried, left) == (EVENTS, 0)


def test_a_retry_exchange_deleted_under_a_running_worker_is_declared_again(
    topology: QueueTopology,
) -> None:
    """A 404 on publish (the exchange gone) failed every later retry publish for ever: the
    publisher declared the topology once, with its first connection."""
    url = broker_url()
    processor = AlwaysRetry()
    publisher = RabbitPublisher(url, topology)
    consumer = RabbitConsumer(url, topology, prefetch=8)
    worker = bare_worker(processor)
    retry_queue = topology.retry_queues[0].name
    try:
        publisher.publish([], path="test")  # declares the topology, as a first publish would
        thread, raised = started(worker, consumer, publisher, topology)
        _wait_for(lambda: consumer.connected)
        assert consumer.connected
        with Connection(url, connect_timeout=3) as connection:
            # Deleted after both declared it: nothing of the worker declares it again at once.
            connection.default_channel.exchange_delete(topology.retry_exchange.name)
        publish_events(url, topology, EVENTS)
        _wait_for(lambda: _depth(retry_queue) >= EVENTS, seconds=30)
        retried = _depth(retry_queue)
    finally:
        worker.stop()
        publisher.close()
    thread.join(timeout=15)
    assert raised == []
    assert retried == EVENTS
    assert set(processor.calls.values()) == {1}


def test_stopping_while_publishes_fail_acks_every_message_that_needs_no_publish(
    topology: QueueTopology,
) -> None:
    """On the way out, a failed publish no longer ends the settling: finished messages after
    it are acked, the held one is left to be delivered again."""
    url = broker_url()
    proxy, through_proxy = TcpFaultProxy.before_broker(url)
    processor = RetryTheFirst(retries=1)
    try:
        publish_events(url, topology, EVENTS + 2)
        proxy.down()
        worker = bare_worker(processor, concurrency=1)  # one at a time: the retried one first
        thread, raised = started(
            worker,
            RabbitConsumer(url, topology, prefetch=8),
            RabbitPublisher(through_proxy, topology),
            topology,
        )
        _wait_for(lambda: len(processor.calls) >= EVENTS + 2, seconds=30)
        worker.stop()  # the publishes still fail
        thread.join(timeout=30)
    finally:
        proxy.close()
    assert not thread.is_alive()
    assert raised == []
    assert len(processor.calls) == EVENTS + 2
    # Only the retried one is back in the queue; the done ones were acked on the way out.
    assert _depth(topology.events_queue.name) == 1
