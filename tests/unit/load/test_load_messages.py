"""The load users' deliveries are what the adapter's receiver accepts (or, forged, refuses),
and the sent log reads back as written."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from adapter.webhooks.envelope import parse_envelope
from adapter.webhooks.signature import SignatureVerifier, WebhookRejected
from load.messages import EVENT_VERSION, SentLog, forged_secret, new_event, read_sent, signed

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = dt.datetime(2026, 2, 1, 9, 30, tzinfo=dt.UTC)
RESOURCES = {"kki": "QZ00011234567890", "sisdmk": str(uuid.UUID(int=7))}


def verifier() -> SignatureVerifier:
    return SignatureVerifier([SECRET], tolerance_s=300, clock=NOW.timestamp)


@pytest.mark.parametrize("source", ["kki", "sisdmk"])
def test_new_event_is_signed_and_shaped_as_the_source_sends_it(source: str) -> None:
    event_id, body = new_event(source, RESOURCES[source], now=NOW)
    delivery = signed(source, event_id, body, SECRET, now=NOW)

    message = verifier().verify(delivery.headers, delivery.body)
    envelope = parse_envelope(source, message.webhook_id, delivery.body)

    assert envelope.event_id == event_id
    assert envelope.resource_id == RESOURCES[source]
    assert envelope.resource_version == EVENT_VERSION
    assert envelope.occurred_at == NOW


def test_forged_delivery_is_refused_as_a_bad_signature() -> None:
    event_id, body = new_event("kki", RESOURCES["kki"], now=NOW)
    delivery = signed("kki", event_id, body, forged_secret(), now=NOW)

    with pytest.raises(WebhookRejected) as refused:
        verifier().verify(delivery.headers, delivery.body)

    assert (refused.value.status, refused.value.reason) == (401, "signature")


def test_sent_logs_of_several_processes_read_back_together(tmp_path: Path) -> None:
    first, second = SentLog(tmp_path, "host-1"), SentLog(tmp_path, "host-2")
    first.record("kki", "a", "new", 202, 1.0)
    second.record("sisdmk", "b", "forged", 401, 2.0)
    first.close()
    second.close()

    lines = sorted(read_sent(tmp_path), key=lambda line: line["id"])

    assert [(line["s"], line["id"], line["k"], line["st"]) for line in lines] == [
        ("kki", "a", "new", 202),
        ("sisdmk", "b", "forged", 401),
    ]
