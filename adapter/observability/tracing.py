"""Trace context through OpenTelemetry: spans, the W3C ``traceparent`` in and out, current ids.

Entry points open a span with `start_span` (continuing an incoming ``traceparent``); outbound
calls `inject` the current span's context; log lines and audit entries read its ids. Spans are
exported only with ``OTEL_TRACES_EXPORTER=otlp`` (`configure_tracing`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Final, NamedTuple

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from adapter.errors import ConfigurationError

__all__ = [
    "EXPORTERS",
    "TRACEPARENT",
    "SpanKind",
    "TraceIds",
    "configure_tracing",
    "current_ids",
    "current_trace_id",
    "current_traceparent",
    "inject",
    "start_span",
    "trace_id_of",
]

TRACEPARENT: Final = "traceparent"
SERVICE: Final = "hf-adapter"
#: Values of ``OTEL_TRACES_EXPORTER`` the adapter knows; ``none`` (no export) is the default.
EXPORTERS: Final = ("none", "otlp")
INSTRUMENTATION_SCOPE: Final = "adapter"

# W3C Trace Context only, whatever OTEL_PROPAGATORS says: the stored and queued `traceparent`
# values are read back by this same propagator.
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_lock = threading.Lock()
_exporters: list[str] = []
_cached_tracer: tuple[TracerProvider, Tracer] | None = None


class TraceIds(NamedTuple):
    trace_id: str
    span_id: str


def configure_tracing(exporter: str | None = None) -> None:
    """Set up tracing for this process (idempotent): with `exporter` (default
    ``OTEL_TRACES_EXPORTER``, else ``none``) ``otlp``, spans go in batches over OTLP/HTTP to
    where the SDK's ``OTEL_EXPORTER_OTLP_*`` variables say (``http://localhost:4318/v1/traces``).
    """
    chosen = (exporter or os.environ.get("OTEL_TRACES_EXPORTER") or "none").strip().lower()
    if chosen not in EXPORTERS:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER must be one of {', '.join(EXPORTERS)}, not {chosen!r}"
        )
    provider = _provider()
    with _lock:
        if chosen == "otlp" and chosen not in _exporters:
            provider.add_span_processor(_otlp_processor())
            _exporters.append(chosen)


def _otlp_processor() -> SpanProcessor:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigurationError(
            "OTEL_TRACES_EXPORTER=otlp needs the exporter: "
            "pip install 'healthforce-integration[otlp]'"
        ) from None
    return BatchSpanProcessor(OTLPSpanExporter())


def _provider() -> TracerProvider:
    """The process's SDK tracer provider, installed on first use (ids need the SDK: the API's
    default provider makes no spans)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    with _lock:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            return current
        service = os.environ.get("OTEL_SERVICE_NAME") or SERVICE
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        trace.set_tracer_provider(provider)
        return provider


@contextmanager
def start_span(
    name: str, traceparent: str | None = None, *, kind: SpanKind = SpanKind.INTERNAL
) -> Iterator[Span]:
    """A span, current for the block.

    With `traceparent` (a W3C header value, e.g. an incoming request's) the span continues that
    trace, and an invalid value starts a new one; without it the span is a child of the
    current span, or the first of a new trace.
    """
    parent = _PROPAGATOR.extract({TRACEPARENT: traceparent}) if traceparent is not None else None
    with _tracer().start_as_current_span(name, context=parent, kind=kind) as span:
        yield span


def _tracer() -> Tracer:
    """The provider's tracer, made once per provider: `get_tracer` builds a new tracer and
    instrumentation scope on every call, about a quarter of a span's cost in the worker."""
    global _cached_tracer
    provider = _provider()
    cached = _cached_tracer
    if cached is None or cached[0] is not provider:
        cached = (provider, provider.get_tracer(INSTRUMENTATION_SCOPE))
        _cached_tracer = cached
    return cached[1]


def current_ids() -> TraceIds | None:
    """The current span's trace and span ids (lower-case hex), or None outside any span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return TraceIds(trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id))


def current_trace_id() -> str | None:
    ids = current_ids()
    return ids.trace_id if ids is not None else None


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (lower-case hex) a W3C ``traceparent`` value names, or None if invalid."""
    if traceparent is None:
        return None
    parent = _PROPAGATOR.extract({TRACEPARENT: traceparent})
    context = trace.get_current_span(parent).get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def current_traceparent() -> str | None:
    """The current span as a version-00 ``traceparent`` value (55 characters), or None."""
    return inject({}).get(TRACEPARENT)


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """`headers` with the current span's ``traceparent`` (and ``tracestate``) added."""
    _PROPAGATOR.inject(headers)
    return headers
