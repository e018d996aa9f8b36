"""Messages a worker cannot read go to the dead-letter queue; the worker goes on. Real
RabbitMQ; the processor is never reached (these messages name no event)."""

from __future__ import annotations

import json
import secrets
import time

import pytest
from kombu import Connection

from adapter.queue.rabbit import RabbitConsumer, RabbitPublisher, declare_topology
from adapter.queue.topology import EVENT_ROUTING_KEY, QueueTopology
from tests.integration.adapter.queue.worker_support import NeverCalled, bare_worker, started
from tests.integration.adapter.webhooks.support import broker_url, delete_topology

pytestmark = pytest.mark.integration

RETRIES = "1,5"
UNREADABLE = (
    # (body, content type): not JSON at all; JSON's label on a body that is not JSON; JSON
    # that is not an event message (the worker's own check).
    ("not json at all", "text/plain"),
    ("{not json", "application/json"),
    (json.dumps({"hello": "world"}), "application/json"),
)


def test_unreadable_messages_are_dead_lettered_and_the_worker_keeps_running() -> None:
    url = broker_url()
    prefix = f"hf-test-undecodable-{secrets.token_hex(4)}"
    topology = QueueTopology(prefix, 5, tuple(float(d) for d in RETRIES.split(",")))
    try:
        with Connection(url, connect_timeout=3) as connection:
            declare_topology(connection, topology)
            producer = connection.Producer()
            for body, content_type in UNREADABLE:
                producer.publish(
                    body,
                    exchange=topology.events_exchange,
                    routing_key=EVENT_ROUTING_KEY,
                    content_type=content_type,
                    content_encoding="utf-8",
                    delivery_mode=2,
                )
        worker = bare_worker(NeverCalled())
        thread, raised = started(
            worker,
            RabbitConsumer(url, topology, prefetch=4),
            RabbitPublisher(url, topology),
            topology,
        )
        deadline = time.monotonic() + 30
        dead = 0
        while time.monotonic() < deadline and dead < len(UNREADABLE) and thread.is_alive():
            time.sleep(0.2)
            with Connection(url, connect_timeout=3) as connection:
                declared = connection.default_channel.queue_declare(
                    queue=topology.dead_queue.name, passive=True
                )
                dead = int(declared.message_count)
        still_running = thread.is_alive()
        worker.stop()
        thread.join(timeout=15)

        assert raised == [], f"the worker stopped: {raised!r}"
        assert still_running
        assert dead == len(UNREADABLE)
        with Connection(url, connect_timeout=3) as connection:
            left = connection.default_channel.queue_declare(
                queue=topology.events_queue.name, passive=True
            )
        assert int(left.message_count) == 0
    finally:
        delete_topology(url, prefix, RETRIES)
