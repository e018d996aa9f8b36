"""How many NIK queries one caller may make: a moving window per subject and client (`limits`).

The NIK search and the look-up by NIK answer whether a NIK exists, so unlimited they enumerate
NIKs. The windows live in this process's memory: with ``serve --workers N`` a caller gets up to N
times the limit (docs/security.md, "Rate limits"). No web framework here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Final

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from adapter.errors import AdapterError

log = logging.getLogger("adapter.api.rate_limits")

NAMESPACE: Final = "nik-query"


class RateLimited(AdapterError):
    """The caller has used up a limit; `retry_after_s` says when the window lets one more in."""

    default_reason = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class RateLimitMetrics:
    refused: Counter

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> RateLimitMetrics:
        target = registry if registry is not None else REGISTRY
        with _lock:
            existing = _registered.get(target)
            if existing is None:
                existing = _registered[target] = cls(
                    refused=Counter(
                        "hf_nik_queries_refused",
                        "NIK queries refused by the per-caller rate limit, by SSO client "
                        "(never by subject or NIK).",
                        ["client"],
                        registry=target,
                    )
                )
            return existing


_lock = threading.Lock()
_registered: dict[CollectorRegistry, RateLimitMetrics] = {}


class NikQueryLimiter:
    """Counts each caller's NIK queries against every limit of `limits` ("30/minute;500/day")."""

    def __init__(
        self,
        limits: str,
        *,
        metrics: RateLimitMetrics | None = None,
    ) -> None:
        self._limits = parse_many(limits)
        self._windows = MovingWindowRateLimiter(MemoryStorage())
        self._metrics = metrics if metrics is not None else RateLimitMetrics.for_registry()
        # Test-then-hit over several limits must be one step, or two threads overshoot.
        self._step = threading.Lock()
        self._refused: set[tuple[str, str]] = set()

    def hit(self, subject: str, client_id: str) -> None:
        """Count one query of this caller; `RateLimited` (nothing counted) when over a limit."""
        caller = (client_id, subject)
        with self._step:
            full = [
                limit
                for limit in self._limits
                if not self._windows.test(limit, NAMESPACE, client_id, subject)
            ]
            if not full:
                for limit in self._limits:
                    self._windows.hit(limit, NAMESPACE, client_id, subject)
                self._refused.discard(caller)
                return
            retry_after_s = max(self._retry_after_s(limit, caller) for limit in full)
            first_refusal = caller not in self._refused
            self._refused.add(caller)
        self._metrics.refused.labels(client_id).inc()
        if first_refusal:  # one line per burst, not one per refused request
            log.warning(
                "NIK queries refused: caller over the rate limit %s (subject %s, client %s); "
                "a burst like this is how NIKs are enumerated",
                "; ".join(str(limit) for limit in full),
                subject,
                client_id,
            )
        raise RateLimited(
            f"too many NIK queries; try again in {retry_after_s} s",
            retry_after_s=retry_after_s,
        )

    def _retry_after_s(self, limit: RateLimitItem, caller: tuple[str, str]) -> int:
        client_id, subject = caller
        stats = self._windows.get_window_stats(limit, NAMESPACE, client_id, subject)
        # `limits` keeps its windows on the wall clock.
        return max(1, math.ceil(stats.reset_time - time.time()))
