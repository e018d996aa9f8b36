"""The RabbitMQ publisher against a real broker: a connection kept between batches that the
broker has closed meanwhile is replaced at once, not taken for an outage."""

from __future__ import annotations

import select
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from kombu.connection import Connection

from adapter.queue import rabbit
from adapter.queue.messages import BrokerUnavailable, EventMessage
from adapter.queue.rabbit import RabbitPublisher
from adapter.queue.topology import QueueTopology
from tests.integration.adapter.webhooks.support import own_topology, queued

pytestmark = pytest.mark.integration


@pytest.fixture
def topology(broker: str) -> Iterator[QueueTopology]:
    with own_topology(broker) as own:
        yield own


def message() -> EventMessage:
    return EventMessage(uuid.uuid4(), "kki", "registration.status_changed")


def wait_until_closed_by_the_peer(connection: Connection, timeout_s: float) -> None:
    """Until the broker has closed `connection`'s socket (its end readable: EOF or a reset)."""
    sock = connection.connection.transport.sock  # py-amqp's socket under kombu's connection
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return
            except OSError:
                return
            # A frame from the broker (its heartbeat, or the close): read on until the end.
            sock.recv(65536)
    raise AssertionError(f"the broker did not close the connection within {timeout_s} s")


def test_a_kept_connection_the_broker_closed_is_replaced_and_the_batch_published(
    broker: str, topology: QueueTopology, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing sends heartbeats on a publisher's connection between batches, so the broker
    closes one idle past two of them (30 s each by default; 1 s here, so that it happens
    within the test): the next batch must still be published, at once and with no pause."""
    monkeypatch.setattr(rabbit, "HEARTBEAT_S", 1)
    publisher = RabbitPublisher(broker, topology)
    try:
        publisher.publish([message()], path="receiver")
        kept = publisher._local.connection  # the connection the next batch would reuse
        wait_until_closed_by_the_peer(kept, timeout_s=30)
        publisher.publish([message(), message()], path="receiver")
        assert publisher._local.connection is not kept
        publisher.publish([message()], path="receiver")  # no pause after it: not an outage
    finally:
        publisher.close()
    assert queued(broker, topology) == 4


def test_a_failed_set_up_closes_its_connection(
    broker: str, topology: QueueTopology, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue declared with other arguments (an older delivery limit, say) fails the
    publisher's set-up; each attempt must not leave its connection open at the broker."""
    with Connection(broker) as other:  # the events queue, with another delivery limit
        QueueTopology(topology.prefix, 9, (0.2, 0.4)).events_queue(other.default_channel).declare()
    real, opened = rabbit.open_connection, []

    def recorded(url: str) -> Connection:
        opened.append(real(url))
        return opened[-1]

    monkeypatch.setattr(rabbit, "open_connection", recorded)
    publisher = RabbitPublisher(broker, topology)
    try:
        with pytest.raises(BrokerUnavailable, match="PreconditionFailed"):
            publisher.publish([message()], path="receiver")
    finally:
        publisher.close()
    assert len(opened) == 1
    assert not opened[0].connected


def wait_for_queued(broker: str, topology: QueueTopology, count: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while (seen := queued(broker, topology)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


@pytest.mark.parametrize("deleted", ["events", "retry tier 0"])
def test_a_queue_deleted_by_hand_is_declared_again_and_the_batch_published_into_it(
    broker: str, topology: QueueTopology, deleted: str
) -> None:
    """The broker confirms a message no queue took (it drops it): publishes are mandatory, so
    one that comes back makes the publisher declare the queues again and send it once more."""
    publisher = RabbitPublisher(broker, topology)
    try:
        publisher.publish([message()], path="receiver")  # declares the topology
        assert wait_for_queued(broker, topology, 1, timeout_s=5) == 1
        with Connection(broker) as connection:
            queue = topology.events_queue if deleted == "events" else topology.retry_queue(0)
            connection.default_channel.queue_delete(queue.name)
        if deleted == "events":
            publisher.publish([message(), message()], path="receiver")
            expected = 2  # the first message went with its queue
        else:  # a worker's retry: back in the events queue once its 0.2 s are up
            publisher.publish_to(
                [message(), message()], exchange="retry", routing_key=topology.retry_routing_key(0)
            )
            expected = 3
    finally:
        publisher.close()
    assert wait_for_queued(broker, topology, expected, timeout_s=10) == expected
