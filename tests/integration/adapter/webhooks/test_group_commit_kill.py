"""Group commit keeps the receiver's promise when the server dies mid-stream: a 2xx is sent only
after the commit of the batch holding the event, so every acknowledged webhook is in the inbox
after a SIGKILL, and each is applied once when a worker comes.

Real `hf-adapter serve` (gunicorn) SIGKILLed while 16 senders stream signed webhooks at it,
PostgreSQL, RabbitMQ and the KKI mock the worker fetches from.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from sqlalchemy.engine import URL

from adapter.clients.http import tls_context
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import adapter_stack, signed_correction

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SENDERS = 16
KILL_AFTER = 300  # acknowledged webhooks before the kill: batches are being formed by then


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_serve_killed_mid_stream_keeps_every_acknowledged_webhook(
    empty_database_url: URL, mocks: tuple[Mock, Mock], broker: str
) -> None:
    kki, sisdmk = mocks
    registrations = kki.records("registrations")
    with adapter_stack(empty_database_url, kki, sisdmk, broker=broker) as adapter:
        assert adapter.server is not None
        secret = adapter.environment["KKI_WEBHOOK_SECRET"]
        url = f"{adapter.url}/webhooks/kki"
        acknowledged: set[str] = set()
        unanswered: set[str] = set()  # sent, no 2xx: refused, 503, or cut off by the kill
        cut: set[str] = set()  # in flight when the server died
        # Answers other than 202 or 503, asserted in this thread: a failed assert in a sender thread
        # would be only a warning.
        unexpected: list[tuple[int, str]] = []
        lock = threading.Lock()
        enough = threading.Event()
        stop = threading.Event()

        def sender(index: int) -> None:
            sent = 0
            with httpx.Client(timeout=10, verify=tls_context(None)) as client:
                while not stop.is_set():
                    registration = registrations[(index + sent * SENDERS) % len(registrations)]
                    webhook_id, headers, body = signed_correction(
                        secret, registration, int(time.time())
                    )
                    sent += 1
                    try:
                        response = client.post(url, headers=headers, content=body)
                    except httpx.TransportError as exc:
                        with lock:
                            unanswered.add(webhook_id)
                            if not isinstance(exc, httpx.ConnectError):
                                cut.add(webhook_id)
                        stop.wait(0.05)
                        continue
                    if response.status_code == 503:  # not acknowledged: the sender retries
                        with lock:
                            unanswered.add(webhook_id)
                        stop.wait(0.05)
                        continue
                    if response.status_code != 202:
                        with lock:
                            unexpected.append((response.status_code, response.text[:200]))
                        stop.wait(0.05)
                        continue
                    with lock:
                        acknowledged.add(webhook_id)
                        if len(acknowledged) >= KILL_AFTER:
                            enough.set()

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(SENDERS)]
        for thread in threads:
            thread.start()
        try:
            assert enough.wait(120), f"only {len(acknowledged)} webhooks acknowledged in 120 s"
            adapter.server.signal(signal.SIGKILL)  # the whole process group: master and workers
            stop.wait(1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        assert not unexpected, f"{len(unexpected)} answers were not 202 or 503: {unexpected[:3]}"
        assert cut, "the kill hit no request in flight; the test proved nothing"
        stored = {event.webhook_id: event for event in adapter.events()}
        missing = acknowledged - stored.keys()
        assert not missing, f"{len(missing)} acknowledged webhooks are not in the inbox"
        # Rows committed but never answered (the kill came between commit and answer) are
        # kept too: the sender retries them and gets 200 duplicate.
        assert stored.keys() <= acknowledged | unanswered

        adapter.start_worker(concurrency=4)
        adapter.wait_for(
            lambda: adapter.counts().get("done", 0) == len(stored), what="every stored event"
        )
        events = adapter.events()
        assert {(event.state, event.applied_count) for event in events} == {("done", 1)}
        assert all(event.published_at is not None for event in events)
