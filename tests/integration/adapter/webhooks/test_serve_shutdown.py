"""A `serve` worker leaving on SIGTERM publishes what it accepted before it goes.

Real `hf-adapter serve` (gunicorn, one worker), PostgreSQL, and RabbitMQ behind a proxy that
can hold the traffic: the events are accepted (committed in the inbox) while the broker does not
answer, the server is told to stop, and the broker answers again. No worker runs, so nothing
else (the outbox relay) could publish them.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from sqlalchemy.engine import URL

from adapter.queue.topology import QueueTopology
from tests.integration.adapter.queue.tcp_proxy import TcpFaultProxy
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import (
    Adapter,
    adapter_stack,
    queued,
    signed_correction,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HELD = 5


def unpublished(adapter: Adapter) -> set[str]:
    return {event.webhook_id for event in adapter.events() if event.published_at is None}


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_worker_stopping_publishes_the_events_it_accepted_before_it_exits(
    empty_database_url: URL,
    mocks: tuple[Mock, Mock],
    broker: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kki, sisdmk = mocks
    registrations = kki.records("registrations")
    proxy, through_proxy = TcpFaultProxy.before_broker(broker)
    # One worker: its kept connection to the broker is the one held below.
    monkeypatch.setenv("HF_TEST_SERVE_WORKERS", "1")
    try:
        with adapter_stack(
            empty_database_url, kki, sisdmk, broker=broker, extra_env={"BROKER_URL": through_proxy}
        ) as adapter:
            assert adapter.server is not None
            secret = adapter.environment["KKI_WEBHOOK_SECRET"]
            url = f"{adapter.url}/webhooks/kki"
            with httpx.Client(timeout=10) as client:

                def send(index: int) -> str:
                    webhook_id, headers, body = signed_correction(
                        secret, registrations[index], int(time.time())
                    )
                    response = client.post(url, headers=headers, content=body)
                    assert response.status_code == 202, response.text
                    return webhook_id

                first = send(0)
                adapter.wait_for(lambda: not unpublished(adapter), what="the first publish")
                proxy.pause()
                held = {send(index) for index in range(1, 1 + HELD)}
            # Accepted, and not published: the broker has not confirmed them.
            assert unpublished(adapter) == held

            adapter.server.signal(signal.SIGTERM)
            time.sleep(0.5)
            proxy.resume()
            assert adapter.server.process is not None
            assert adapter.server.process.wait(timeout=30) == 0, adapter.server.output()

            assert unpublished(adapter) == set(), adapter.server.output()
            topology = QueueTopology(adapter.environment["BROKER_QUEUE_PREFIX"], 1, (1.0,))
            assert queued(broker, topology) == 1 + HELD
            assert {event.webhook_id for event in adapter.events()} == held | {first}
    finally:
        proxy.close()
