"""HTTPS webhook receivers are verified against SSL_CERT_FILE when no --webhook-ca-bundle is
given, as the docs say (the dispatcher's client ignores the rest of the environment)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.pki import CertificateAuthority
from e2e.stack import RecordingSink
from mocks.core.webhooks import Dispatcher, SubscriptionRegistry, WebhookEvent, WebhookPolicy

EVENT = WebhookEvent(
    event_id="0e7c6f0e-9b7a-4e43-a1b5-0e2f58f0a1c4",
    type="registration.revoked",
    occurred_at=dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC),
    source="kki",
    subject={"str_number": "KK0123456789"},
    data={"to": "DICABUT", "from": "AKTIF"},
    nik=None,
)


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.new(tmp_path / "pki", "receivers")


@pytest.fixture
def sink(authority: CertificateAuthority) -> Iterator[RecordingSink]:
    receiver = RecordingSink(authority.issue("sink"))
    yield receiver
    receiver.close()


def deliver_once(url: str) -> str:
    async def run() -> str:
        registry = SubscriptionRegistry(event_types=("registration.revoked",))
        registry.create(f"{url}/hooks")
        dispatcher = Dispatcher(registry, policy=WebhookPolicy(max_attempts=1))
        dispatcher.start()
        try:
            dispatcher.publish(EVENT)
            await dispatcher.wait_idle()
            (delivery,) = dispatcher.deliveries()
            return delivery.status
        finally:
            await dispatcher.aclose()

    return asyncio.run(run())


def test_a_receiver_the_ssl_cert_file_vouches_for_gets_the_webhook(
    sink: RecordingSink, authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.bundle))
    assert deliver_once(sink.url) == "succeeded"
    assert [path for path, _ in sink.posts] == ["/hooks"]


def test_without_it_the_receiver_is_not_trusted(
    sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert deliver_once(sink.url) == "failed"
    assert sink.posts == []
