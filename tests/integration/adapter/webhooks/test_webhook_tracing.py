"""A webhook's W3C ``traceparent`` is the trace of everything the event causes; a bad one is
ignored (a new trace), never stored.

The first tests post to the app in-process (Flask's test client) on PostgreSQL, whose column
for the stored ``traceparent`` holds 55 characters. The last runs real `hf-adapter serve` and
`worker` processes, RabbitMQ, the KKI mock behind a proxy that records what it is sent, and
an OTLP endpoint the processes export their spans to.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient
from kombu import Connection, Queue
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from adapter.app import create_app
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.embedded import EmbeddedPublisher
from adapter.queue.topology import EVENT_ROUTING_KEY, QueueTopology
from adapter.settings import Settings, load_settings
from adapter.store.models import AuditEvent, WebhookEvent
from adapter.webhooks.signature import sign
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import (
    Adapter,
    adapter_stack,
    migrated_engine,
    stack_environment,
)
from tests.integration.adapter.webhooks.test_webhook_rejections import kki_event, signed
from tests.support.breaking_proxy import Breakage, BreakingProxy, Exchange
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
OURS = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


@pytest.fixture(scope="module")
def engine(postgres_server: Any) -> Iterator[Engine]:
    engine = migrated_engine(postgres_server.create_database())
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def settings(engine: Engine) -> Settings:
    environment = stack_environment(
        engine.url.render_as_string(hide_password=False),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        broker=None,
        prefix=None,
    )
    return load_settings(environment)


@pytest.fixture
def client(settings: Settings, engine: Engine) -> FlaskClient:
    metrics = EventMetrics.for_registry(CollectorRegistry())
    app = create_app(settings, engine=engine, publisher=EmbeddedPublisher(), metrics=metrics)
    return app.test_client()


def deliver(client: FlaskClient, settings: Settings, traceparent: str) -> tuple[Any, str | None]:
    """Post one signed KKI event with `traceparent`: the response and the stored value."""
    event = kki_event()
    body = json.dumps(event).encode()
    headers = signed(
        body, settings.kki_webhook_secret.get_secret_value(), webhook_id=event["event_id"]
    )
    response = client.post(
        "/webhooks/kki", data=body, headers={**headers, "traceparent": traceparent}
    )
    with Session(client.application.extensions["hf_engine"]) as session:
        stored = session.scalars(
            select(WebhookEvent.traceparent).where(WebhookEvent.webhook_id == event["event_id"])
        ).one()
    return response, stored


def test_webhook_traceparent_is_continued_and_stored_as_the_receivers_span(
    client: FlaskClient, settings: Settings
) -> None:
    response, stored = deliver(client, settings, TRACEPARENT)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.headers["X-Trace-Id"] == TRACE_ID
    assert stored is not None
    match = OURS.fullmatch(stored)
    assert match is not None
    assert match.groups() == (TRACE_ID, match.group(2))
    assert match.group(2) != CALLER_SPAN  # the receiver's own span, child of the caller's
    assert response.headers["traceresponse"] == stored


@pytest.mark.parametrize(
    "traceparent",
    [
        pytest.param(f"{TRACEPARENT}-{'x' * 60}", id="version-00-with-a-tail"),
        pytest.param(f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01", id="upper-case"),
        pytest.param(f"00-{'0' * 32}-{CALLER_SPAN}-01", id="zero-trace-id"),
        pytest.param(f"00-{TRACE_ID}-{'0' * 16}-01", id="zero-span-id"),
        pytest.param(f"ff-{TRACE_ID}-{CALLER_SPAN}-01", id="version-ff"),
        pytest.param(f"00-{TRACE_ID}-{CALLER_SPAN}", id="no-flags"),
        pytest.param("not a traceparent", id="garbage"),
        pytest.param(f"00-{TRACE_ID * 20}-{CALLER_SPAN}-01", id="700-characters"),
    ],
)
def test_invalid_webhook_traceparent_starts_a_new_trace_and_is_not_stored(
    client: FlaskClient, settings: Settings, traceparent: str
) -> None:
    response, stored = deliver(client, settings, traceparent)
    assert response.status_code == 202, response.get_data(as_text=True)
    new_trace = response.headers["X-Trace-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", new_trace)
    assert new_trace != TRACE_ID
    assert stored is not None
    match = OURS.fullmatch(stored)
    assert match is not None
    assert match.group(1) == new_trace


def test_future_version_traceparent_is_continued_and_stored_in_version_00(
    client: FlaskClient, settings: Settings
) -> None:
    # A later version may append fields (W3C Trace Context, §3.2.4): the ids are still read.
    response, stored = deliver(client, settings, f"01-{TRACE_ID}-{CALLER_SPAN}-01-{'a' * 80}")
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.headers["X-Trace-Id"] == TRACE_ID
    assert stored is not None
    assert len(stored) == 55
    assert stored.startswith(f"00-{TRACE_ID}-")


# -- one trace from the webhook to the applied change, through real processes ---------------


class RecordingBreakage(Breakage):
    """Changes nothing; keeps the path and headers of every request the adapter makes."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def request(self, exchange: Exchange) -> None:
        with self._lock:
            self.requests.append(
                (exchange.path, {k.lower(): v for k, v in exchange.headers.items()})
            )

    def seen(self, path: str) -> list[dict[str, str]]:
        with self._lock:
            return [headers for seen_path, headers in self.requests if seen_path == path]


@pytest.fixture
def recorded_kki(kki_mock: Mock) -> Iterator[tuple[BreakingProxy, RecordingBreakage]]:
    proxy = BreakingProxy(kki_mock.url)
    recording = RecordingBreakage()
    proxy.breakage = recording
    try:
        yield proxy, recording
    finally:
        proxy.close()


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


def post_kki_event(adapter: Adapter, registration: dict[str, Any], traceparent: str) -> Any:
    """A signed ``registration.corrected`` event about `registration`, with `traceparent`."""
    event_id = str(uuid.uuid4())
    str_number = registration["str_number"]
    body = json.dumps(
        {
            "event_id": event_id,
            "type": "registration.corrected",
            "occurred_at": "2026-02-01T09:30:00.000000Z",
            "source": "kki",
            "subject": {"nik_hash": "0" * 64, "str_number": str_number},
            "data": {
                "str_number": str_number,
                "version": registration["version"],
                "status": registration["certification"]["status"],
            },
            "version": "1",
        }
    ).encode()
    moment = int(time.time())
    secret = adapter.environment["KKI_WEBHOOK_SECRET"]
    return httpx.post(
        f"{adapter.url}/webhooks/kki",
        content=body,
        headers={
            "webhook-id": event_id,
            "webhook-timestamp": str(moment),
            "webhook-signature": sign(secret, event_id, moment, body),
            "content-type": "application/json",
            "traceparent": traceparent,
        },
        timeout=10,
    )


@pytest.mark.slow
@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_webhook_traceparent_is_the_trace_of_the_message_the_fetch_the_audit_and_the_log(
    empty_database_url: URL,
    mocks: tuple[Mock, Mock],
    broker: str,
    recorded_kki: tuple[BreakingProxy, RecordingBreakage],
    otlp: OtlpReceiver,
) -> None:
    kki, sisdmk = mocks
    proxy, recording = recorded_kki
    extra_env = {"KKI_BASE_URL": proxy.url, "LOG_FORMAT": "json", **otlp.environment()}
    with (
        adapter_stack(
            empty_database_url, kki, sisdmk, broker=broker, extra_env=extra_env
        ) as adapter,
        Connection(broker, connect_timeout=5) as connection,
    ):
        # A queue of the test's own on the events exchange: a copy of every message published.
        topology = QueueTopology(adapter.environment["BROKER_QUEUE_PREFIX"], 1, (1.0,))
        copies = Queue(
            f"{topology.prefix}.test-copies",
            exchange=topology.events_exchange,
            routing_key=EVENT_ROUTING_KEY,
            exclusive=True,
        )(connection.default_channel)
        copies.declare()
        registration = kki.records("registrations")[0]
        str_number = registration["str_number"]
        # The first attempt fails (a call and the client's quick retry), the second applies it.
        kki.fault({"route": "getRegistration", "kind": "error", "status": 503, "times": 2})

        response = post_kki_event(adapter, registration, TRACEPARENT)
        assert response.status_code == 202, response.text
        assert response.headers["X-Trace-Id"] == TRACE_ID

        adapter.start_worker(concurrency=2)
        adapter.wait_for(lambda: adapter.counts().get("done", 0) == 1, what="the event applied")
        (event,) = adapter.events()
        messages = []
        while (message := copies.get(no_ack=True)) is not None:
            messages.append(message)
        with Session(adapter.engine) as session:
            applied = [
                entry
                for entry in session.scalars(
                    select(AuditEvent).where(AuditEvent.action == "event.apply")
                )
                if str(event.id) in json.loads(entry.detail or "{}").get("event_ids", [])
            ]
        (worker,) = adapter.workers
        worker_lines = json_lines(worker.output(1_000_000))
        # The spans of both processes, exported under the webhook's trace.
        trace_id = bytes.fromhex(TRACE_ID)
        otlp.wait_for(trace_id, b"POST /webhooks/<source>")
        otlp.wait_for(trace_id, b"process registration.corrected")
        otlp.wait_for(trace_id, b"KKI getRegistration")

    # The inbox row and every message (the first and the one back from the retry tier).
    assert event.traceparent is not None
    assert event.traceparent.startswith(f"00-{TRACE_ID}-")
    assert len(messages) == 2
    for message in messages:
        assert message.headers["traceparent"] == event.traceparent
        assert json.loads(message.body)["traceparent"] == event.traceparent

    # The audit entry of the change the worker applied.
    assert [entry.trace_id for entry in applied] == [TRACE_ID]

    # Every call to KKI for the resource: one span of the trace per attempt.
    calls = recording.seen(f"/v1/registrations/{str_number}")
    assert len(calls) == 3
    parents = [OURS.fullmatch(headers["traceparent"]) for headers in calls]
    assert all(match is not None and match.group(1) == TRACE_ID for match in parents)
    assert len({match.group(2) for match in parents if match is not None}) == 3

    # The worker's line about the failed attempt.
    retried = [line for line in worker_lines if f"event {event.id} " in str(line.get("event"))]
    assert retried, worker_lines
    assert {line["trace_id"] for line in retried} == {TRACE_ID}
    assert all(re.fullmatch(r"[0-9a-f]{16}", line["span_id"]) for line in retried)
