"""The worker and the broker misbehave; every accepted event is still applied exactly once.

Real `hf-adapter serve` and `worker` processes, real mocks sending signed webhooks, PostgreSQL,
and RabbitMQ (through a fault proxy where the broker has to go away).
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from kombu.connection import Connection
from sqlalchemy.engine import URL

from harness.processes import free_port
from tests.integration.adapter.queue.tcp_proxy import TcpFaultProxy
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import (
    Adapter,
    adapter_stack,
    deliveries,
    emit,
    hang_fetches_after,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 200


def assert_each_applied_once(adapter: Adapter, expected: set[str]) -> None:
    events = adapter.events()
    assert {event.webhook_id for event in events} == expected
    assert {(event.state, event.applied_count) for event in events} == {("done", 1)}


class AlertReceiver:
    """A local HTTP endpoint standing in for ALERT_WEBHOOK_URL."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def alert_receiver() -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    yield receiver
    receiver.close()


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    empty_database_url: URL, mocks: tuple[Mock, Mock], broker: str
) -> None:
    kki, sisdmk = mocks
    with adapter_stack(empty_database_url, kki, sisdmk, broker=broker) as adapter:
        # Fetches after the 25th of each source hang: the first worker cannot have applied
        # every event when the test kills it, however slow the machine. The kill comes once 20
        # are done, which the 25 answered fetches reach before any hang can hold them up.
        hang_fetches_after(sisdmk, "getHealthWorker", 25)
        emitted = emit(sisdmk, "employment.changed", count=BATCH)["events"]
        expected = {event["event_id"] for event in emitted}
        first = adapter.start_worker(concurrency=6)
        adapter.wait_for(lambda: adapter.counts().get("done", 0) >= 20, what="20 events done")
        first.signal(signal.SIGKILL)  # mid-batch: messages in hand are never acked
        first.process.wait(timeout=10)  # type: ignore[union-attr]
        assert adapter.counts().get("done", 0) < BATCH
        sisdmk.admin.delete("/faults").raise_for_status()
        adapter.start_worker(concurrency=6)
        adapter.wait_for(lambda: adapter.counts().get("done", 0) == BATCH, what="every event")
        assert_each_applied_once(adapter, expected)


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_broker_unreachable_during_storm_every_accepted_event_is_applied(
    empty_database_url: URL, mocks: tuple[Mock, Mock], broker: str
) -> None:
    kki, sisdmk = mocks
    proxy, through_proxy = TcpFaultProxy.before_broker(broker)
    try:
        with adapter_stack(
            empty_database_url, kki, sisdmk, broker=broker, extra_env={"BROKER_URL": through_proxy}
        ) as adapter:
            adapter.start_worker(concurrency=4)
            emitted = emit(kki, "skp.credited", count=BATCH // 2)["events"]
            adapter.wait_for(lambda: sum(adapter.counts().values()) >= 20, what="first webhooks")
            proxy.down()
            # The receiver keeps answering 2xx: the events wait in the outbox.
            emitted += emit(sisdmk, "worker.updated", count=BATCH // 2)["events"]
            adapter.wait_for(
                lambda: any(e.published_at is None for e in adapter.events()),
                what="events kept in the outbox while the broker is away",
            )
            time.sleep(2)
            proxy.up()
            expected = {event["event_id"] for event in emitted}
            adapter.wait_for(lambda: adapter.counts().get("done", 0) == BATCH, what="every event")
            assert_each_applied_once(adapter, expected)
            for mock in (kki, sisdmk):
                assert deliveries(mock, status="failed") == []
    finally:
        proxy.close()


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("retry_after_s", "first", "second"),
    [
        # No wait asked for: each tier's delay with equal jitter (0.1 to 0.2 s, then 0.2 to 0.4 s).
        (0, (0.1, 0.2), (0.2, 0.4)),
        # `Retry-After: 1`: never sooner, in the first tier as long (1.6 s), at most half way.
        (1, (1.0, 1.3), (1.0, 1.3)),
    ],
    ids=["tiers", "retry-after"],
)
def test_source_failing_for_a_while_is_retried_with_spread_out_delays(
    empty_database_url: URL,
    mocks: tuple[Mock, Mock],
    broker: str,
    retry_after_s: int,
    first: tuple[float, float],
    second: tuple[float, float],
) -> None:
    kki, sisdmk = mocks
    with adapter_stack(empty_database_url, kki, sisdmk, broker=broker) as adapter:
        adapter.start_worker(concurrency=2)
        # Four failed calls: two attempts, each a call and the client's one quick retry.
        kki.fault(
            {
                "route": "getRegistration",
                "kind": "error",
                "status": 503,
                "retry_after_s": retry_after_s,
                "times": 4,
            }
        )
        (event,) = emit(kki, "registration.corrected")["events"]
        adapter.wait_for(lambda: adapter.counts().get("done", 0) == 1, what="the event applied")
        (stored,) = adapter.events()
        assert stored.webhook_id == event["event_id"]
        assert (stored.state, stored.applied_count) == ("done", 1)
        assert stored.attempts == 2  # two attempts failed, the third succeeded
        assert stored.processed_at is not None
        log = adapter.workers[0].output(20000)
        delays = [float(d) for d in re.findall(r"retry \d+ in (\d+\.\d) s", log)]
        assert len(delays) == 2, log
        # Each "retry N in X s" line, rounded to 0.1 s, within its range.
        for delay, (low, high) in zip(delays, (first, second), strict=True):
            assert low <= delay <= high, delays


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_source_always_failing_dead_letters_alerts_and_replay_applies(
    empty_database_url: URL,
    mocks: tuple[Mock, Mock],
    broker: str,
    alert_receiver: AlertReceiver,
) -> None:
    kki, sisdmk = mocks
    with adapter_stack(
        empty_database_url,
        kki,
        sisdmk,
        broker=broker,
        extra_env={"ALERT_WEBHOOK_URL": alert_receiver.url},
    ) as adapter:
        adapter.start_worker(concurrency=2)
        # No Retry-After: the retry tiers and the breaker pace the attempts, not the source.
        sisdmk.fault(
            {"route": "getHealthWorker", "kind": "error", "status": 503, "retry_after_s": 0}
        )
        (event,) = emit(sisdmk, "worker.updated")["events"]
        adapter.wait_for(lambda: adapter.counts().get("failed", 0) == 1, what="a dead letter")
        (stored,) = adapter.events()
        assert (stored.attempts, stored.applied_count) == (4, 0)
        # The source down, then the client's breaker open: transient errors, all retried.
        assert (stored.last_error or "").startswith(("upstream_unavailable", "circuit_open"))
        adapter.wait_for(lambda: len(alert_receiver.alerts) == 1, what="the alert webhook")
        alert = alert_receiver.alerts[0]
        assert (alert["event_id"], alert["source"]) == (str(stored.id), "sisdmk")
        # The dead-letter queue holds its message; the inbox holds the state.
        prefix = adapter.environment["BROKER_QUEUE_PREFIX"]

        def dead_letters() -> int:
            with Connection(broker) as connection:
                declared = connection.default_channel.queue_declare(
                    queue=f"{prefix}.events.dead", passive=True
                )
            return int(declared.message_count)

        adapter.wait_for(lambda: dead_letters() == 1, what="the dead-letter queue's message")

        status, listing = adapter.cli("events", "list")
        assert status == 0
        assert str(stored.id) in listing
        sisdmk.admin.delete("/faults").raise_for_status()
        status, output = adapter.cli("events", "replay", str(stored.id))
        assert status == 0, output
        adapter.wait_for(lambda: adapter.counts().get("done", 0) == 1, what="the replayed event")
        (replayed,) = adapter.events()
        assert (replayed.applied_count, replayed.replays) == (1, 1)
        assert replayed.webhook_id == event["event_id"]


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_worker_metrics_count_dead_letters_for_the_alert_rules(
    empty_database_url: URL, mocks: tuple[Mock, Mock], broker: str
) -> None:
    kki, sisdmk = mocks
    port = free_port()
    with adapter_stack(empty_database_url, kki, sisdmk, broker=broker) as adapter:
        adapter.start_worker(concurrency=1, extra=("--metrics-port", str(port)))
        kki.fault({"route": "getRegistration", "kind": "error", "status": 404})
        emit(kki, "registration.revoked")
        adapter.wait_for(lambda: adapter.counts().get("failed", 0) == 1, what="a dead letter")
        (stored,) = adapter.events()
        assert stored.attempts == 1  # a permanent error burns no retries
        # The row says `failed` at its commit; the counter moves just after, in the worker.
        dead_letter = 'hf_event_dead_letters_total{reason="not_found",source="kki"} 1.0'
        adapter.wait_for(
            lambda: dead_letter in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text,
            what="the dead letter counted in the worker's metrics",
        )
