"""Schemathesis' settings: the rate limiter `--rate-limit` gives it."""

from __future__ import annotations

import time

from conformance.fuzzing import even_limiter


def test_the_rate_limiter_never_lets_requests_go_faster_than_asked() -> None:
    # Schemathesis was given "120/m" for 2/s, a sliding window that let a burst of 120 go at
    # once; one request every 1/R s never does (a lower bound only: a busy machine is slower).
    limiter = even_limiter(50.0)
    started = time.monotonic()
    for _ in range(11):
        limiter.try_acquire("provider")
    assert time.monotonic() - started >= 10 / 50
