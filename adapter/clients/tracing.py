"""W3C trace context for outbound calls: the current trace id lives in a contextvar.

Entry points set it with `trace()` (or leave it unset, and each outbound call starts a trace).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

current_trace_id: ContextVar[str | None] = ContextVar("hf_current_trace_id", default=None)

_TRACE_ID: Final = re.compile(r"[0-9a-f]{32}")
_INVALID_TRACE_ID: Final = "0" * 32


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def is_valid_trace_id(value: str) -> bool:
    return bool(_TRACE_ID.fullmatch(value)) and value != _INVALID_TRACE_ID


def active_or_new_trace_id() -> str:
    trace_id = current_trace_id.get()
    return trace_id if trace_id is not None else new_trace_id()


def traceparent(trace_id: str, span_id: str | None = None) -> str:
    """A version-00 `traceparent` header value, sampled, with a fresh span id unless given."""
    return f"00-{trace_id}-{span_id or new_span_id()}-01"


@contextmanager
def trace(trace_id: str | None = None) -> Iterator[str]:
    """Make `trace_id` (a new one when ``None`` or invalid) current for the block."""
    value = trace_id if trace_id is not None and is_valid_trace_id(trace_id) else new_trace_id()
    token = current_trace_id.set(value)
    try:
        yield value
    finally:
        current_trace_id.reset(token)
