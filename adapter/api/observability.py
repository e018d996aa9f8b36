"""Per-request trace ids and request metrics for the whole app (API, webhooks, health).

An incoming W3C ``traceparent`` gives the trace id, else a new one is made; it is current for
outbound calls and the audit trail (`adapter.clients.tracing`), bound for log lines (structlog
contextvars) and returned in ``traceresponse`` and ``X-Trace-Id``. Metric labels are the route
template, method and status: never a path with ids in it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Final

import structlog
from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from adapter.clients.tracing import current_trace_id, new_span_id, new_trace_id
from adapter.observability.metric_sets import MetricSet

TRACE_HEADER: Final = "X-Trace-Id"
_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


@dataclass(frozen=True)
class RequestMetrics(MetricSet):
    requests: Counter
    latency: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry) -> RequestMetrics:
        return cls(
            requests=Counter(
                "hf_http_requests",
                "HTTP requests answered, by route template, method and status.",
                ["route", "method", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "hf_http_request_duration_seconds",
                "Time to answer an HTTP request, by route template and method.",
                ["route", "method"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )


def trace_id_from(traceparent: str | None) -> str | None:
    """The trace id of a valid version-00 ``traceparent``, else None."""
    match = _TRACEPARENT.fullmatch((traceparent or "").strip().lower())
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return match.group(1)


def init_app(app: Flask, metrics: RequestMetrics | None = None) -> None:
    """Trace and measure every request of `app`."""
    measured = metrics if metrics is not None else RequestMetrics.for_registry()

    @app.before_request
    def start_trace() -> None:
        trace_id = trace_id_from(request.headers.get("traceparent")) or new_trace_id()
        g.hf_trace_token = current_trace_id.set(trace_id)
        g.hf_trace_id = trace_id
        g.hf_started = time.perf_counter()
        structlog.contextvars.bind_contextvars(trace_id=trace_id)

    @app.after_request
    def finish(response: Response) -> Response:
        trace_id = g.get("hf_trace_id")
        if trace_id is not None:
            response.headers[TRACE_HEADER] = trace_id
            response.headers["traceresponse"] = f"00-{trace_id}-{new_span_id()}-01"
        route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        measured.requests.labels(route, request.method, str(response.status_code)).inc()
        started = g.get("hf_started")
        if started is not None:
            measured.latency.labels(route, request.method).observe(time.perf_counter() - started)
        return response

    @app.teardown_request
    def end_trace(_error: BaseException | None) -> None:
        token = g.pop("hf_trace_token", None)
        if token is not None:
            current_trace_id.reset(token)
        structlog.contextvars.unbind_contextvars("trace_id")
