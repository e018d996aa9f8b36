"""Trace context: spans continue a valid W3C ``traceparent``, start a new trace otherwise, and
hand their ids to logs, audit entries and outbound headers."""

from __future__ import annotations

import re

import pytest

from adapter.errors import ConfigurationError
from adapter.observability.tracing import (
    configure_tracing,
    current_ids,
    current_trace_id,
    current_traceparent,
    inject,
    start_span,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


def test_span_continues_a_valid_traceparent_with_a_span_of_its_own() -> None:
    with start_span("receive", TRACEPARENT):
        ids = current_ids()
        traceparent = current_traceparent()
    assert ids is not None
    assert ids.trace_id == TRACE_ID
    assert ids.span_id != CALLER_SPAN
    assert traceparent == f"00-{TRACE_ID}-{ids.span_id}-01"


@pytest.mark.parametrize(
    "traceparent",
    [
        f"{TRACEPARENT}-extra",
        f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",
        "",
        "garbage",
        "x" * 1000,
    ],
    ids=["tail-on-version-00", "upper-case", "zero-trace-id", "empty", "garbage", "1000-chars"],
)
def test_invalid_traceparent_starts_a_new_trace(traceparent: str) -> None:
    with start_span("outer"), start_span("receive", traceparent):
        trace_id = current_trace_id()
        header = current_traceparent()
    assert trace_id is not None
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert trace_id != TRACE_ID
    assert header is not None
    assert len(header) == 55


def test_span_without_traceparent_is_a_child_of_the_current_one() -> None:
    with start_span("outer", TRACEPARENT):
        outer = current_ids()
        with start_span("inner"):
            inner = current_ids()
    assert outer is not None
    assert inner is not None
    assert inner.trace_id == outer.trace_id == TRACE_ID
    assert inner.span_id != outer.span_id


def test_two_spans_without_a_parent_are_two_traces() -> None:
    with start_span("first"):
        first = current_trace_id()
    with start_span("second"):
        second = current_trace_id()
    assert first is not None
    assert second is not None
    assert first != second


def test_outside_any_span_there_is_no_trace_and_nothing_is_injected() -> None:
    assert current_ids() is None
    assert current_trace_id() is None
    assert current_traceparent() is None
    assert inject({"Accept": "application/json"}) == {"Accept": "application/json"}


def test_inject_adds_the_current_spans_traceparent() -> None:
    with start_span("call", TRACEPARENT):
        headers = inject({"Accept": "application/json"})
        expected = current_traceparent()
    assert headers == {"Accept": "application/json", "traceparent": expected}


def test_unknown_exporter_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER"):
        configure_tracing("jaeger")
