"""Spans leave the process over OTLP only when ``OTEL_TRACES_EXPORTER=otlp`` says so."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
# A process that sets tracing up as `hf-adapter` does and makes one span.
SCRIPT = f"""
from adapter.observability.tracing import configure_tracing, start_span
configure_tracing()
with start_span("export probe", "00-{TRACE_ID}-00f067aa0ba902b7-01"):
    pass
"""


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


def run(environment: dict[str, str]) -> None:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**inherited, **environment}, check=True, timeout=60
    )


def test_spans_are_not_exported_by_default_even_with_an_endpoint(receiver: OtlpReceiver) -> None:
    run({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    # The process has ended: an exporter, had there been one, flushed on the way out.
    assert receiver.exports == []


def test_spans_are_exported_with_otlp_chosen(receiver: OtlpReceiver) -> None:
    run(receiver.environment())
    assert receiver.received(bytes.fromhex(TRACE_ID), b"export probe")
