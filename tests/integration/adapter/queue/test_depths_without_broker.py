"""While the worker cannot reach RabbitMQ, it still reports the inbox's depths: the outbox
filling up is what HfWebhookOutboxStuck is for, and it fills exactly then. Real PostgreSQL and
SQLite; the broker's URL points at a port where nothing listens."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from adapter.queue.rabbit import RabbitConsumer, RabbitPublisher
from adapter.queue.topology import QueueTopology
from adapter.webhooks.inbox import WebhookInbox
from tests.integration.adapter.queue.worker_support import NeverCalled, bare_worker, started
from tests.integration.adapter.webhooks.test_inbox_marks import received

pytestmark = pytest.mark.integration

NOBODY = "amqp://guest:guest@127.0.0.1:9//"


def test_the_outbox_depth_is_reported_while_the_broker_is_away(
    sessions: sessionmaker[Session],
) -> None:
    received(sessions, 3, published=False)  # accepted, waiting for the broker
    with sessions() as session:
        expected = WebhookInbox(session).depths()["outbox_unpublished"]
    registry = CollectorRegistry()
    worker = bare_worker(NeverCalled(), concurrency=1, sessions=sessions, registry=registry)
    topology = QueueTopology("hf-test-nobody", 5, (1.0,))
    thread, raised = started(
        worker,
        RabbitConsumer(NOBODY, topology, prefetch=1),
        RabbitPublisher(NOBODY, topology),
        topology,
    )
    try:
        deadline = time.monotonic() + 30  # a guard against hanging, not a timing check
        sampled = None
        while sampled is None and time.monotonic() < deadline and thread.is_alive():
            sampled = registry.get_sample_value(
                "hf_event_queue_depth", {"queue": "outbox_unpublished"}
            )
            time.sleep(0.1)
    finally:
        worker.stop()
        thread.join(timeout=15)
    assert raised == []
    assert expected >= 3
    assert sampled == expected
