"""The `Retry-After` header (RFC 9110 §10.2.3) read as seconds to wait.

One pure function, shared by the adapter's clients, the conformance run and the mocks' webhook
sender.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Final

MAX_DIGITS: Final = 10
LONGEST_S: Final = float(10**MAX_DIGITS - 1)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or any of the HTTP-date forms).

    ``None`` when absent or unparseable (the caller falls back to its own backoff); a date in the
    past means 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        # Any length is delay-seconds; one past 10 digits (over 300 years) is read as the
        # longest one, so that a float comes back, never an overflow.
        digits = text.lstrip("0") or "0"
        return float(int(digits)) if len(digits) <= MAX_DIGITS else LONGEST_S
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" and the asctime form carry no zone: GMT by RFC 9110
        moment = moment.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (moment - reference).total_seconds())


__all__ = ["parse_retry_after"]
