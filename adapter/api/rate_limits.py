"""How many queries of a kind one caller may make: a moving window per subject and client
(`limits`).

Two kinds are limited. NIK queries: the NIK search and the look-up by NIK answer whether a NIK
exists, so unlimited they enumerate NIKs. STR look-ups: each is a live call to KKI, whose quota
and capacity every caller of the adapter shares, so one caller in a loop would starve the rest
(and the batch sync). The windows live in this process's memory: with ``serve --workers N`` a
caller gets up to N times the limit (docs/security.md, "Rate limits"). No web framework here.
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


@dataclass(frozen=True)
class LimitedQuery:
    """A kind of query with a per-caller limit: its window's namespace, its name in messages
    and logs, its refusal counter, and why a burst of refusals matters (the warning's end)."""

    namespace: str
    noun: str
    counter: str
    description: str
    why: str


NIK_QUERIES: Final = LimitedQuery(
    namespace="nik-query",
    noun="NIK queries",
    counter="hf_nik_queries_refused",
    description="NIK queries refused by the per-caller rate limit, by SSO client "
    "(never by subject or NIK).",
    why="a burst like this is how NIKs are enumerated",
)
STR_LOOKUPS: Final = LimitedQuery(
    namespace="str-lookup",
    noun="STR look-ups",
    counter="hf_str_lookups_refused",
    description="Look-ups by STR number (each a live KKI call) refused by the per-caller rate "
    "limit, by SSO client (never by subject or STR number).",
    why="each is a live KKI call, and KKI's capacity is shared by every caller and the sync",
)
LIMITED_QUERIES: Final = (NIK_QUERIES, STR_LOOKUPS)


class RateLimited(AdapterError):
    """The caller has used up a limit; `retry_after_s` says when the window lets one more in."""

    default_reason = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class RateLimitMetrics:
    refused: dict[str, Counter]  # by `LimitedQuery.namespace`

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> RateLimitMetrics:
        target = registry if registry is not None else REGISTRY
        with _lock:
            existing = _registered.get(target)
            if existing is None:
                existing = _registered[target] = cls(
                    refused={
                        query.namespace: Counter(
                            query.counter, query.description, ["client"], registry=target
                        )
                        for query in LIMITED_QUERIES
                    }
                )
            return existing


_lock = threading.Lock()
_registered: dict[CollectorRegistry, RateLimitMetrics] = {}


class QueryLimiter:
    """Counts each caller's queries of one kind against every limit of `limits`
    ("30/minute;500/day")."""

    def __init__(
        self,
        limits: str,
        *,
        query: LimitedQuery = NIK_QUERIES,
        metrics: RateLimitMetrics | None = None,
    ) -> None:
        self._query = query
        self._limits = parse_many(limits)
        self._windows = MovingWindowRateLimiter(MemoryStorage())
        metrics = metrics if metrics is not None else RateLimitMetrics.for_registry()
        self._refusals = metrics.refused[query.namespace]
        # Test-then-hit over several limits must be one step, or two threads overshoot.
        self._step = threading.Lock()
        self._refused: set[tuple[str, str]] = set()

    def hit(self, subject: str, client_id: str) -> None:
        """Count one query of this caller; `RateLimited` (nothing counted) when over a limit."""
        caller = (client_id, subject)
        namespace = self._query.namespace
        with self._step:
            full = [
                limit
                for limit in self._limits
                if not self._windows.test(limit, namespace, client_id, subject)
            ]
            if not full:
                for limit in self._limits:
                    self._windows.hit(limit, namespace, client_id, subject)
                self._refused.discard(caller)
                return
            retry_after_s = max(self._retry_after_s(limit, caller) for limit in full)
            first_refusal = caller not in self._refused
            self._refused.add(caller)
        self._refusals.labels(client_id).inc()
        if first_refusal:  # one line per burst, not one per refused request
            log.warning(
                "%s refused: caller over the rate limit %s (subject %s, client %s); %s",
                self._query.noun,
                "; ".join(str(limit) for limit in full),
                subject,
                client_id,
                self._query.why,
            )
        raise RateLimited(
            f"too many {self._query.noun}; try again in {retry_after_s} s",
            retry_after_s=retry_after_s,
        )

    def _retry_after_s(self, limit: RateLimitItem, caller: tuple[str, str]) -> int:
        client_id, subject = caller
        stats = self._windows.get_window_stats(limit, self._query.namespace, client_id, subject)
        # `limits` keeps its windows on the wall clock.
        return max(1, math.ceil(stats.reset_time - time.time()))
