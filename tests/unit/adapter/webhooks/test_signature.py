"""Standard Webhooks verification: every failure its own reason, rotation on both sides."""

from __future__ import annotations

import base64

import pytest

from adapter.webhooks.signature import SignatureVerifier, WebhookRejected, sign

SECRET = "whsec_" + base64.b64encode(bytes(range(24))).decode()
OTHER = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
NOW = 1_800_000_000
BODY = b'{"event_id":"abc"}'


def headers(secret: str = SECRET, *, timestamp: int = NOW, msg_id: str = "msg_1") -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, BODY),
    }


def verifier(*secrets: str, tolerance_s: int = 300) -> SignatureVerifier:
    return SignatureVerifier(secrets or (SECRET,), tolerance_s=tolerance_s, clock=lambda: NOW)


def reason(call: object) -> tuple[int, str]:
    with pytest.raises(WebhookRejected) as caught:
        call()  # type: ignore[operator]
    return caught.value.status, caught.value.reason


def test_valid_signature_accepted() -> None:
    signed = verifier().verify(headers(), BODY)
    assert (signed.webhook_id, signed.timestamp) == ("msg_1", NOW)


def test_wrong_secret_rejected_as_signature() -> None:
    assert reason(lambda: verifier().verify(headers(OTHER), BODY)) == (401, "signature")


def test_changed_body_rejected_as_signature() -> None:
    assert reason(lambda: verifier().verify(headers(), BODY + b" ")) == (401, "signature")


@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamp_outside_window_rejected(skew: int) -> None:
    assert reason(lambda: verifier().verify(headers(timestamp=NOW + skew), BODY)) == (
        401,
        "timestamp",
    )


def test_timestamp_at_window_edge_accepted() -> None:
    verifier().verify(headers(timestamp=NOW - 300), BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_rejected(missing: str) -> None:
    sent = headers()
    del sent[missing]
    assert reason(lambda: verifier().verify(sent, BODY)) == (400, "headers")


@pytest.mark.parametrize("value", ["v1", "v1,", "v1,***", "v2,abc", ""])
def test_malformed_signature_header_is_a_4xx_not_a_crash(value: str) -> None:
    sent = headers()
    sent["webhook-signature"] = value
    status, _ = reason(lambda: verifier().verify(sent, BODY))
    assert status in (400, 401)


def test_any_of_several_signatures_matches() -> None:
    sent = headers()
    sent["webhook-signature"] = f"{headers(OTHER)['webhook-signature']} {sent['webhook-signature']}"
    verifier().verify(sent, BODY)


def test_previous_secret_accepted_during_rotation() -> None:
    verifier(OTHER, SECRET).verify(headers(SECRET), BODY)
    verifier(OTHER, SECRET).verify(headers(OTHER), BODY)


def test_webhook_id_with_a_dot_rejected() -> None:
    assert reason(lambda: verifier().verify(headers(msg_id="a.b"), BODY)) == (400, "headers")
