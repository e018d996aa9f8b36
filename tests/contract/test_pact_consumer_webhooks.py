"""Message pacts: every webhook event type in the contracts, as the adapter's receiver parses it
(`parse_envelope`: schema check, then ids, type, version and time; the worker fetches the rest).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pact import match

from adapter.webhooks.envelope import FACILITY_EVENT, parse_envelope
from conformance.pacts import MESSAGE_DESCRIPTION
from tests.contract.pact_support import EXAMPLE_INSTANT, RFC3339_UTC, PactFactory, event_types

pytestmark = pytest.mark.contract

EVENT_ID = "3f2a8c1d-5b6e-4f70-9a8b-1c2d3e4f5a6b"
NIK_HASH = "9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab"
STR_NUMBER = "QZ00011234567890"
WORKER_ID = "0f8e6a52-3b1d-4c4e-9a7f-2d6b8c1e4f30"
FACILITY_CODE = "3171014"
VERSION = 3


def envelope(source: str, event_type: str, subject: Any, data: Any) -> dict[str, Any]:
    return {
        "event_id": match.uuid(EVENT_ID, format="lowercase"),
        "type": event_type,  # exact: the worker decides by it
        "occurred_at": match.regex(EXAMPLE_INSTANT, regex=RFC3339_UTC),
        "source": source,
        "subject": subject,
        "data": data,
        "version": "1",
    }


def kki_event(event_type: str) -> dict[str, Any]:
    str_number = match.regex(STR_NUMBER, regex=r"^[A-Z0-9]{1,50}$")
    return envelope(
        "kki",
        event_type,
        {"nik_hash": match.regex(NIK_HASH, regex=r"^[0-9a-f]{64}$"), "str_number": str_number},
        {
            "str_number": str_number,
            "version": match.int(VERSION),
            "status": match.regex(
                "AKTIF", regex=r"^(AKTIF|NONAKTIF_SEMENTARA|DICABUT|KEDALUWARSA)$"
            ),
        },
    )


def sisdmk_event(event_type: str) -> dict[str, Any]:
    if event_type == FACILITY_EVENT:
        code = match.regex(FACILITY_CODE, regex=r"^[0-9]{7}$")
        return envelope(
            "sisdmk",
            event_type,
            {"facility_code": code},
            {"facility_code": code, "version": match.int(VERSION)},
        )
    worker_id = match.uuid(WORKER_ID, format="lowercase")
    return envelope(
        "sisdmk",
        event_type,
        {"nik_hash": match.regex(NIK_HASH, regex=r"^[0-9a-f]{64}$"), "worker_id": worker_id},
        {"worker_id": worker_id, "version": match.int(VERSION)},
    )


def received_as(source: str, event_type: str, resource_id: str, calls: list[str]) -> Any:
    """The message handler: what the adapter's receiver makes of the body."""

    def handle(body: str | bytes | None, metadata: dict[str, object]) -> None:
        calls.append(event_type)
        raw = body.encode() if isinstance(body, str) else body or b""
        kept = parse_envelope(source, json.loads(raw)["event_id"], raw)
        assert (kept.event_type, kept.resource_id, kept.resource_version) == (
            event_type,
            resource_id,
            VERSION,
        )
        assert kept.occurred_at.isoformat() == "2026-01-31T08:00:00+00:00"

    return handle


@pytest.mark.parametrize("event_type", event_types("kki.yaml"))
def test_kki_event_is_parsed_into_what_the_worker_fetches(
    new_pact: PactFactory, event_type: str
) -> None:
    pact = new_pact("kki-webhooks")
    (
        pact.upon_receiving(MESSAGE_DESCRIPTION.format(type=event_type), "Async").with_body(
            kki_event(event_type), content_type="application/json"
        )
    )
    calls: list[str] = []
    pact.verify(received_as("kki", event_type, STR_NUMBER, calls), "Async")
    assert calls == [event_type]


@pytest.mark.parametrize("event_type", event_types("sisdmk.yaml"))
def test_sisdmk_event_is_parsed_into_what_the_worker_fetches(
    new_pact: PactFactory, event_type: str
) -> None:
    resource = FACILITY_CODE if event_type == FACILITY_EVENT else WORKER_ID
    pact = new_pact("sisdmk-webhooks")
    (
        pact.upon_receiving(MESSAGE_DESCRIPTION.format(type=event_type), "Async").with_body(
            sisdmk_event(event_type), content_type="application/json"
        )
    )
    calls: list[str] = []
    pact.verify(received_as("sisdmk", event_type, resource, calls), "Async")
    assert calls == [event_type]
