"""The receiver refuses what it must, each for its own reason, and stores nothing when it does.

In-process (Flask's test client) against a real PostgreSQL database; signed with the real
Standard Webhooks scheme.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import URL

from adapter.app import create_app
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.embedded import EmbeddedPublisher
from adapter.settings import Settings, load_settings
from adapter.store.models import WebhookEvent
from adapter.webhooks.signature import sign
from tests.integration.adapter.webhooks.support import migrated_engine, stack_environment

pytestmark = pytest.mark.integration

STR_NUMBER = "QZ00011234567890"
NIK_HASH = "9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab"
OLD_SECRET = "whsec_" + base64.b64encode(bytes(range(200, 232))).decode()


@pytest.fixture(scope="module")
def engine(postgres_server: Any) -> Iterator[Engine]:
    url: URL = postgres_server.create_database()
    engine = migrated_engine(url)
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
    environment["KKI_WEBHOOK_PREVIOUS_SECRET"] = OLD_SECRET
    environment["WEBHOOK_MAX_BODY_BYTES"] = "2048"
    return load_settings(environment)


@pytest.fixture
def metrics() -> EventMetrics:
    return EventMetrics.for_registry(CollectorRegistry())


@pytest.fixture
def client(settings: Settings, engine: Engine, metrics: EventMetrics) -> FlaskClient:
    app = create_app(settings, engine=engine, publisher=EmbeddedPublisher(), metrics=metrics)
    return app.test_client()


def kki_event(event_id: str | None = None, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "type": "registration.status_changed",
        "occurred_at": "2026-02-01T09:30:00.000000Z",
        "source": "kki",
        "subject": {"nik_hash": NIK_HASH, "str_number": STR_NUMBER},
        "data": {"str_number": STR_NUMBER, "version": 4, "status": "AKTIF"},
        "version": "1",
    }
    event.update(changes)
    return event


def signed(
    body: bytes, secret: str, *, webhook_id: str, timestamp: int | None = None
) -> dict[str, str]:
    moment = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(moment),
        "webhook-signature": sign(secret, webhook_id, moment, body),
        "content-type": "application/json",
    }


def stored(engine: Engine, webhook_id: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(select(func.count()).where(WebhookEvent.webhook_id == webhook_id))
            or 0
        )


def post(client: FlaskClient, body: bytes, headers: dict[str, str], source: str = "kki") -> Any:
    return client.post(f"/webhooks/{source}", data=body, headers=headers)


def assert_rejected(
    response: Any, status: int, reason: str, engine: Engine, webhook_id: str, metrics: EventMetrics
) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["reason"] == reason
    assert stored(engine, webhook_id) == 0
    assert metrics.rejected.labels("kki", reason)._value.get() == 1


def test_valid_webhook_is_accepted_once_and_a_duplicate_is_acknowledged(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics
) -> None:
    event = kki_event()
    body = json.dumps(event).encode()
    headers = signed(
        body, settings.kki_webhook_secret.get_secret_value(), webhook_id=event["event_id"]
    )
    first = post(client, body, headers)
    again = post(client, body, headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json() == {"status": "duplicate"}
    assert stored(engine, event["event_id"]) == 1
    assert metrics.received.labels("kki", "duplicate")._value.get() == 1


def test_bad_signature_rejected(client: FlaskClient, engine: Engine, metrics: EventMetrics) -> None:
    event = kki_event()
    body = json.dumps(event).encode()
    wrong = "whsec_" + base64.b64encode(bytes(32)).decode()
    response = post(client, body, signed(body, wrong, webhook_id=event["event_id"]))
    assert_rejected(response, 401, "signature", engine, event["event_id"], metrics)


def test_body_changed_after_signing_rejected(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics
) -> None:
    event = kki_event()
    body = json.dumps(event).encode()
    headers = signed(
        body, settings.kki_webhook_secret.get_secret_value(), webhook_id=event["event_id"]
    )
    response = post(client, body.replace(b'"AKTIF"', b'"DICABUT"'), headers)
    assert_rejected(response, 401, "signature", engine, event["event_id"], metrics)


@pytest.mark.parametrize("offset_s", [-301, 301], ids=["stale", "future"])
def test_timestamp_outside_window_rejected(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics, offset_s: int
) -> None:
    event = kki_event()
    body = json.dumps(event).encode()
    headers = signed(
        body,
        settings.kki_webhook_secret.get_secret_value(),
        webhook_id=event["event_id"],
        timestamp=int(time.time()) + offset_s,
    )
    assert_rejected(
        post(client, body, headers), 401, "timestamp", engine, event["event_id"], metrics
    )


def test_oversized_body_rejected_before_verification(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics
) -> None:
    event = kki_event(
        data={"str_number": STR_NUMBER, "version": 4, "status": "AKTIF", "reason": "x" * 3000}
    )
    body = json.dumps(event).encode()
    headers = signed(
        body, settings.kki_webhook_secret.get_secret_value(), webhook_id=event["event_id"]
    )
    assert_rejected(
        post(client, body, headers), 413, "too_large", engine, event["event_id"], metrics
    )


def test_wrong_content_type_rejected(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics
) -> None:
    event = kki_event()
    body = json.dumps(event).encode()
    headers = signed(
        body, settings.kki_webhook_secret.get_secret_value(), webhook_id=event["event_id"]
    )
    headers["content-type"] = "text/plain"
    assert_rejected(
        post(client, body, headers), 415, "content_type", engine, event["event_id"], metrics
    )


def test_missing_signature_header_rejected(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics
) -> None:
    event = kki_event()
    body = json.dumps(event).encode()
    headers = signed(
        body, settings.kki_webhook_secret.get_secret_value(), webhook_id=event["event_id"]
    )
    del headers["webhook-signature"]
    assert_rejected(post(client, body, headers), 400, "headers", engine, event["event_id"], metrics)


def test_body_not_json_rejected(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics
) -> None:
    webhook_id = str(uuid.uuid4())
    body = b"{not json"
    headers = signed(body, settings.kki_webhook_secret.get_secret_value(), webhook_id=webhook_id)
    assert_rejected(post(client, body, headers), 400, "json", engine, webhook_id, metrics)


def test_body_nested_too_deeply_rejected(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics
) -> None:
    webhook_id = str(uuid.uuid4())
    # 1,020 levels fit this module's 2,048-byte limit and are past Python's recursion limit.
    body = b"[" * 1_020 + b"]" * 1_020
    headers = signed(body, settings.kki_webhook_secret.get_secret_value(), webhook_id=webhook_id)
    response = post(client, body, headers)
    assert_rejected(response, 400, "json", engine, webhook_id, metrics)
    assert "nested too deeply" in response.get_json()["detail"]


def test_body_not_matching_event_schema_rejected(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics
) -> None:
    event = kki_event(type="registration.teleported")
    body = json.dumps(event).encode()
    headers = signed(
        body, settings.kki_webhook_secret.get_secret_value(), webhook_id=event["event_id"]
    )
    response = post(client, body, headers)
    assert_rejected(response, 422, "schema", engine, event["event_id"], metrics)
    assert "teleported" not in response.get_data(as_text=True)  # rules named, values not


def test_event_id_differing_from_webhook_id_rejected(
    client: FlaskClient, settings: Settings, engine: Engine, metrics: EventMetrics
) -> None:
    event = kki_event()
    other = str(uuid.uuid4())
    body = json.dumps(event).encode()
    headers = signed(body, settings.kki_webhook_secret.get_secret_value(), webhook_id=other)
    assert_rejected(post(client, body, headers), 422, "id_mismatch", engine, other, metrics)


def test_signatures_of_old_and_new_secret_accepted_during_rotation(
    client: FlaskClient, settings: Settings, engine: Engine
) -> None:
    current = settings.kki_webhook_secret.get_secret_value()
    for secrets_used in ([OLD_SECRET], [current], [OLD_SECRET, current]):
        event = kki_event()
        body = json.dumps(event).encode()
        moment = int(time.time())
        signatures = " ".join(sign(s, event["event_id"], moment, body) for s in secrets_used)
        headers = signed(body, current, webhook_id=event["event_id"], timestamp=moment)
        headers["webhook-signature"] = "v0,ignored " + signatures
        response = post(client, body, headers)
        assert response.status_code == 202, (secrets_used, response.get_data(as_text=True))
        assert stored(engine, event["event_id"]) == 1


def test_unknown_source_is_a_problem_document(client: FlaskClient) -> None:
    response = client.post(
        "/webhooks/dukcapil", data=b"{}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
