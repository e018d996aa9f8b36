"""Per-request spans and request metrics for the whole app (API, webhooks, health).

Each request is a server span (`adapter.observability.tracing`) continuing a valid incoming W3C
``traceparent``, else starting a new trace; its ids are on the log lines, its trace id in the
audit entries and on outbound calls, and it comes back in ``traceresponse`` and ``X-Trace-Id``.
Metric labels are the route template, method and status: never a path with ids in it.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Final

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from adapter.observability.metric_sets import MetricSet
from adapter.observability.tracing import (
    TRACEPARENT,
    SpanKind,
    current_trace_id,
    current_traceparent,
    start_span,
)

TRACE_HEADER: Final = "X-Trace-Id"
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


# The methods of RFC 9110 and PATCH (RFC 5789): OpenTelemetry's known HTTP methods.
HTTP_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


def init_app(app: Flask, metrics: RequestMetrics | None = None) -> None:
    """Trace and measure every request of `app`."""
    measured = metrics if metrics is not None else RequestMetrics.for_registry()

    @app.before_request
    def start_trace() -> None:
        route, method = _route(), _method()
        span_scope = ExitStack()
        span = span_scope.enter_context(
            start_span(
                f"{method} {route}",
                request.headers.get(TRACEPARENT),
                kind=SpanKind.SERVER,
            )
        )
        span.set_attribute("http.request.method", method)
        if method != request.method:
            span.set_attribute("http.request.method_original", request.method[:32])
        span.set_attribute("http.route", route)
        g.hf_span_scope = span_scope
        g.hf_span = span
        g.hf_started = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        trace_id, traceparent = current_trace_id(), current_traceparent()
        if trace_id is not None and traceparent is not None:
            response.headers[TRACE_HEADER] = trace_id
            response.headers["traceresponse"] = traceparent
        span = g.get("hf_span")
        if span is not None:
            span.set_attribute("http.response.status_code", response.status_code)
        route, method = _route(), _method()
        measured.requests.labels(route, method, str(response.status_code)).inc()
        started = g.get("hf_started")
        if started is not None:
            measured.latency.labels(route, method).observe(time.perf_counter() - started)
        return response

    @app.teardown_request
    def end_trace(_error: BaseException | None) -> None:
        g.pop("hf_span", None)
        span_scope: ExitStack | None = g.pop("hf_span_scope", None)
        if span_scope is not None:
            span_scope.close()


def _method() -> str:
    """The request's method as a label: any method a caller makes up (gunicorn takes any of up
    to 20 characters, answered 405 before a token is checked) is one series, ``_OTHER`` (as
    OpenTelemetry's HTTP conventions name it), not a new one each."""
    return request.method if request.method in HTTP_METHODS else "_OTHER"


def _route() -> str:
    return request.url_rule.rule if request.url_rule is not None else "(unmatched)"
