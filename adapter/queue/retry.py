"""How an event that failed is retried: exponential tiers with jitter, then the dead letter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

HOLD_S: Final = 30.0


@dataclass(frozen=True)
class RetrySchedule:
    """``delays_s[n-1]`` after the n-th failure (the last tier repeats), `max_attempts` in all."""

    delays_s: tuple[float, ...]
    max_attempts: int

    def exhausted(self, attempts: int) -> bool:
        """True when `attempts` failures leave no retry."""
        return attempts >= self.max_attempts

    def tier(self, attempts: int) -> int:
        """The retry tier after `attempts` (>= 1) failures."""
        return min(attempts, len(self.delays_s)) - 1

    def hold_tier(self) -> int:
        """The tier an event waits in while its connection is disabled: the first tier of at
        least `HOLD_S` (the longest when none is), so held events are looked at calmly."""
        for tier, delay in enumerate(self.delays_s):
            if delay >= HOLD_S:
                return tier
        return len(self.delays_s) - 1

    def tier_for_wait(self, wait_s: float) -> int:
        """The first tier at least `wait_s` long (the longest when none is): on RabbitMQ a
        tier queue's TTL caps the delay of the messages in it."""
        for tier, delay in enumerate(self.delays_s):
            if delay >= wait_s:
                return tier
        return len(self.delays_s) - 1

    def delay_s(self, attempts: int, draw: Callable[[], float] = random.random) -> float:
        """Equal jitter on the tier's delay: uniform in [delay/2, delay]."""
        delay = self.delays_s[self.tier(attempts)]
        return delay / 2 + draw() * delay / 2

    def after(
        self,
        attempts: int,
        draw: Callable[[], float] = random.random,
        *,
        not_before_s: float | None = None,
    ) -> tuple[int, float]:
        """The tier and the delay after `attempts` failures.

        ``not_before_s`` is when the system said to come back: its ``Retry-After``, or its
        circuit breaker's next trial. An attempt sooner would fail the same way and spend an
        attempt for nothing, so the delay is at least that. A wait longer than the tier's moves
        the event up to the first tier as long (on RabbitMQ a tier queue's TTL caps its
        messages' delay), the longest tier at most. Within that tier the delay is drawn from
        [wait, (wait + tier) / 2]: the events one open breaker refused do not all come back at
        the instant of its one trial call.
        """
        share = draw()
        tier = self.tier(attempts)
        delay = self.delay_s(attempts, lambda: share)
        if not_before_s is None or not_before_s <= delay:
            return tier, delay
        while tier < len(self.delays_s) - 1 and self.delays_s[tier] < not_before_s:
            tier += 1
        tier_delay = self.delays_s[tier]
        if tier_delay <= not_before_s:
            return tier, tier_delay  # a tier exactly as long, or the longest: its whole delay
        return tier, not_before_s + share * (tier_delay - not_before_s) / 2
