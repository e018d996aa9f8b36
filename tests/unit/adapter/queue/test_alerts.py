"""Dead-letter alerts to an https ``ALERT_WEBHOOK_URL`` are verified like every outbound call:
against ``CA_BUNDLE`` when it is set, never sent to a receiver that does not chain to it."""

from __future__ import annotations

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
