"""The adapter's wall clock: one `Clock` handed to everything that takes part in a time decision.

Code that compares or stores times takes a `Clock` (default `utc_now`) instead of reading the
system clock itself, so a scheduler, its connection state and its sync runs agree on "now".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The current time, aware and in UTC."""
    return dt.datetime.now(dt.UTC)
