"""Dead-letter alerts to an https ``ALERT_WEBHOOK_URL`` are verified like every outbound call:
against ``CA_BUNDLE`` when it is set, never sent to a receiver that does not chain to it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from adapter.clients.http import verify_from
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.alerts import DeadLetterAlert, DeadLetterAlerts
from e2e.pki import CertificateAuthority
from e2e.stack import RecordingSink

ALERT = DeadLetterAlert("e-1", "kki", "registration.revoked", "max_attempts", 8, "HTTP 503")


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.new(tmp_path / "pki", "alerts")


@pytest.fixture
def sink(authority: CertificateAuthority) -> Iterator[RecordingSink]:
    receiver = RecordingSink(authority.issue("sink"))
    yield receiver
    receiver.close()


def send(url: str, verify: str | bool) -> tuple[float, float]:
    """Raise ALERT once; (sent, failed) as the metric counts them."""
    registry = CollectorRegistry()
    alerts = DeadLetterAlerts(url, EventMetrics.for_registry(registry), verify=verify)
    alerts.raise_alert(ALERT)
    alerts.close()  # waits for the background send

    def count(result: str) -> float:
        return registry.get_sample_value("hf_event_alerts_total", {"result": result}) or 0.0

    return count("sent"), count("failed")


def test_an_alert_reaches_a_receiver_the_ca_bundle_vouches_for(
    sink: RecordingSink, authority: CertificateAuthority
) -> None:
    assert send(f"{sink.url}/alerts", verify_from(authority.bundle)) == (1.0, 0.0)
    assert [alert["event_id"] for alert in sink.alerts()] == ["e-1"]


def test_an_alert_is_not_sent_to_a_receiver_outside_the_trust(
    sink: RecordingSink, tmp_path: Path
) -> None:
    other = CertificateAuthority.new(tmp_path / "other", "other")
    for verify in (verify_from(other.bundle), verify_from(None)):
        assert send(f"{sink.url}/alerts", verify) == (0.0, 1.0)
    assert sink.alerts() == []


def test_a_failed_alert_logs_the_receivers_host_never_its_secret_path_or_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A chat webhook's URL is its secret; httpx's error text quotes the whole URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Forbidden(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forbidden)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/services/T0001/SECRETpath?token=SECRETq"
    try:
        with caplog.at_level("WARNING", "adapter.alerts"):
            assert send(url, verify=True) == (0.0, 1.0)
    finally:
        server.shutdown()
        server.server_close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "answered 403" in logged
    assert "SECRET" not in logged


class HeldReceiver:
    """Accepts connections and answers nothing until released, then closes them."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.release = threading.Event()
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/alerts"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        held = []
        self.server.settimeout(0.05)
        while not self.release.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(self.server.accept()[0])
        for connection in held:
            connection.close()
        self.server.close()


def test_alerts_waiting_beyond_the_bound_are_dropped_and_shutdown_does_not_wait_for_them() -> None:
    """A receiver that never answers during a mass dead-lettering: every alert queued for it
    (5 s each), and stopping the worker waited for them all."""
    receiver = HeldReceiver()
    registry = CollectorRegistry()
    alerts = DeadLetterAlerts(receiver.url, EventMetrics.for_registry(registry), max_queued=2)
    for _ in range(5):
        alerts.raise_alert(ALERT)

    def count(result: str) -> float:
        return registry.get_sample_value("hf_event_alerts_total", {"result": result}) or 0.0

    assert count("dropped") == 3, "two waiting at most (the one being posted counts)"
    closing = threading.Thread(target=alerts.close)
    closing.start()
    # Released only once close() has cancelled what waits (the executor sets its flag and
    # cancels under one lock): released sooner, the queued alert could still be posted.
    pool = alerts._pool
    while not pool._shutdown:  # type: ignore[attr-defined]
        time.sleep(0.01)
    with pool._shutdown_lock:  # type: ignore[attr-defined]
        pass
    receiver.release.set()  # the post under way fails; the one queued behind it was cancelled
    closing.join(timeout=30)
    assert not closing.is_alive()
    assert (count("sent"), count("failed"), count("dropped")) == (0.0, 1.0, 4.0)
