"""Envelope parsing against the contracts' WebhookEvent schemas."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from adapter.webhooks.envelope import MAX_RESOURCE_VERSION, parse_envelope
from adapter.webhooks.signature import WebhookRejected

WORKER = "0f8e6a52-3b1d-4c4e-9a7f-2d6b8c1e4f30"


def sisdmk_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": "worker.updated",
        "occurred_at": "2026-02-01T09:30:00.000000Z",
        "source": "sisdmk",
        "subject": {"nik_hash": "a" * 64, "worker_id": WORKER},
        "data": {"worker_id": WORKER, "version": 3},
        "version": "1",
    }
    event.update(changes)
    return event


def test_worker_event_names_the_worker_to_fetch() -> None:
    event = sisdmk_event()
    envelope = parse_envelope("sisdmk", event["event_id"], json.dumps(event).encode())
    assert (envelope.resource_id, envelope.resource_version) == (WORKER, 3)
    assert envelope.occurred_at.tzinfo is not None


def test_facility_event_names_the_facility() -> None:
    event = sisdmk_event(
        type="facility.updated",
        subject={"facility_code": "3171014"},
        data={"facility_code": "3171014", "version": 2},
    )
    envelope = parse_envelope("sisdmk", event["event_id"], json.dumps(event).encode())
    assert envelope.resource_id == "3171014"


@pytest.mark.parametrize(
    "change",
    [
        {"source": "kki"},
        {"version": "2"},
        {"data": {"worker_id": WORKER}},
        {"subject": {"nik": "3174054506900012", "worker_id": WORKER}},
    ],
    ids=["wrong-source", "envelope-version", "no-version", "nik-in-clear"],
)
def test_schema_violations_rejected_without_echoing_values(change: dict[str, Any]) -> None:
    event = sisdmk_event(**change)
    with pytest.raises(WebhookRejected) as caught:
        parse_envelope("sisdmk", event["event_id"], json.dumps(event).encode())
    assert (caught.value.status, caught.value.reason) == (422, "schema")
    assert "3174054506900012" not in caught.value.message


def test_non_json_body_rejected() -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_envelope("kki", "x", b"\xff\xfe")
    assert caught.value.reason == "json"


def test_body_nested_too_deeply_rejected() -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_envelope("kki", "x", b"[" * 8_000 + b"]" * 8_000)
    assert (caught.value.status, caught.value.reason) == (400, "json")


@pytest.mark.parametrize("version", [MAX_RESOURCE_VERSION + 1, 2**63, 10**30])
def test_a_version_past_what_the_inbox_holds_is_rejected_naming_the_bound(version: int) -> None:
    event = sisdmk_event(data={"worker_id": WORKER, "version": version})
    with pytest.raises(WebhookRejected) as caught:
        parse_envelope("sisdmk", event["event_id"], json.dumps(event).encode())
    assert (caught.value.status, caught.value.reason) == (422, "version_out_of_range")
    assert str(MAX_RESOURCE_VERSION) in caught.value.message


def test_the_largest_version_the_inbox_holds_is_accepted() -> None:
    event = sisdmk_event(data={"worker_id": WORKER, "version": MAX_RESOURCE_VERSION})
    envelope = parse_envelope("sisdmk", event["event_id"], json.dumps(event).encode())
    assert envelope.resource_version == MAX_RESOURCE_VERSION


def test_a_number_too_long_to_read_is_a_400_not_a_crash() -> None:
    body = json.dumps(sisdmk_event()).replace('"version": 3', '"version": ' + "9" * 5_000)
    with pytest.raises(WebhookRejected) as caught:
        parse_envelope("sisdmk", "x", body.encode())
    assert (caught.value.status, caught.value.reason) == (400, "json")


def test_nan_in_a_body_is_a_400_naming_it() -> None:
    body = json.dumps(sisdmk_event()).replace('"version": 3', '"version": 3, "score": NaN')
    assert "NaN" in body
    with pytest.raises(WebhookRejected) as caught:
        parse_envelope("sisdmk", "x", body.encode())
    assert (caught.value.status, caught.value.reason) == (400, "json")
    assert caught.value.message == "the body is not valid JSON: NaN is not a JSON number"


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_instant_outside_the_years_once_in_utc_is_a_422_not_a_crash(occurred_at: str) -> None:
    event = sisdmk_event(occurred_at=occurred_at)
    with pytest.raises(WebhookRejected) as caught:
        parse_envelope("sisdmk", event["event_id"], json.dumps(event).encode())
    assert (caught.value.status, caught.value.reason) == (422, "schema")
    assert "occurred_at" in caught.value.message
