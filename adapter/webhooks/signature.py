"""Standard Webhooks verification over the raw body: constant-time, several signatures, a window.

Every failure is a `WebhookRejected` with its own reason, so metrics and tests tell a bad
signature from a stale timestamp or a missing header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from adapter.errors import AdapterError

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SIGNATURE_VERSION: Final = "v1"
# webhook-id: the Standard Webhooks msg id; the mocks send the event's UUID. Printable ASCII
# without the '.' that separates the signed parts.
_WEBHOOK_ID: Final = re.compile(r"[A-Za-z0-9_\-:]{1,64}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")
MAX_SIGNATURE_HEADER: Final = 2048


class WebhookRejected(AdapterError):
    """The webhook is refused with a 4xx; nothing is stored. `status` is the HTTP status."""

    default_reason = "rejected"

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)
        self.status = status


@dataclass(frozen=True)
class SignedMessage:
    webhook_id: str
    timestamp: int


class SignatureVerifier:
    """Checks `webhook-id`, `webhook-timestamp` and `webhook-signature` against the secrets.

    Several secrets (during a rotation on our side) and several signatures in the header
    (during a rotation on the sender's) are both accepted: any match of any pair passes.
    """

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise ValueError("at least one signing secret is needed")
        self._keys = tuple(decode_secret(secret) for secret in secrets)
        self._tolerance_s = tolerance_s
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> SignedMessage:
        webhook_id = _header(headers, "webhook-id")
        timestamp_text = _header(headers, "webhook-timestamp")
        signature_header = _header(headers, "webhook-signature")
        if not _WEBHOOK_ID.fullmatch(webhook_id):
            raise WebhookRejected(400, "headers", "webhook-id is not a valid message id")
        if not _TIMESTAMP.fullmatch(timestamp_text):
            raise WebhookRejected(400, "headers", "webhook-timestamp is not whole unix seconds")
        timestamp = int(timestamp_text)
        skew = self._clock() - timestamp
        if abs(skew) > self._tolerance_s:
            raise WebhookRejected(
                401,
                "timestamp",
                f"webhook-timestamp is {abs(skew):.0f} s {'old' if skew > 0 else 'ahead'}; "
                f"the window is ±{self._tolerance_s} s (replayed message or clock skew)",
            )
        if len(signature_header) > MAX_SIGNATURE_HEADER:
            raise WebhookRejected(400, "headers", "webhook-signature is too long")
        candidates = _signatures(signature_header)
        if not candidates:
            raise WebhookRejected(
                400, "headers", "webhook-signature holds no 'v1,<base64>' signature"
            )
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        for key in self._keys:
            expected = hmac.new(key, signed, hashlib.sha256).digest()
            # Every candidate is compared, so timing says nothing about which one was close.
            matched = False
            for candidate in candidates:
                matched |= hmac.compare_digest(expected, candidate)
            if matched:
                return SignedMessage(webhook_id, timestamp)
        raise WebhookRejected(401, "signature", "no webhook-signature matches the body")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the settings have already checked it)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature a sender puts in ``webhook-signature`` (tests, bench)."""
    digest = hmac.new(
        decode_secret(secret), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256
    ).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None or not value.strip():
        raise WebhookRejected(400, "headers", f"the {name} header is missing")
    return value.strip()


def _signatures(header: str) -> list[bytes]:
    """The decoded v1 signatures of a space-separated header; malformed entries are skipped."""
    found: list[bytes] = []
    for entry in header.split():
        version, comma, encoded = entry.partition(",")
        if not comma or version != SIGNATURE_VERSION:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found
