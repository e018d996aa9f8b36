"""Real mocks send real signed webhooks to `hf-adapter serve`; `hf-adapter worker` applies them
through RabbitMQ into PostgreSQL. Effects are counted by event id: each exactly once."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import URL

from adapter.store.models import WebhookEvent
from adapter.webhooks.signature import sign
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import adapter_stack, deliveries, emit

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def assert_each_applied_once(events: list[WebhookEvent], expected_ids: set[str]) -> None:
    by_id = {event.webhook_id: event for event in events}
    assert set(by_id) == expected_ids
    assert {event.state for event in events} == {"done"}
    assert {event.applied_count for event in events} == {1}


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_1000_deliveries_of_one_event_20_at_once_give_one_effect(
    empty_database_url: URL, mocks: tuple[Mock, Mock], broker: str
) -> None:
    kki, sisdmk = mocks
    with adapter_stack(empty_database_url, kki, sisdmk, broker=broker) as adapter:
        adapter.start_worker(concurrency=4)
        registration = kki.records("registrations")[0]
        event_id = str(uuid.uuid4())
        body = json.dumps(
            {
                "event_id": event_id,
                "type": "registration.corrected",
                "occurred_at": "2026-02-01T09:30:00.000000Z",
                "source": "kki",
                "subject": {"nik_hash": "0" * 64, "str_number": registration["str_number"]},
                "data": {
                    "str_number": registration["str_number"],
                    "version": registration["version"],
                    "status": registration["certification"]["status"],
                },
                "version": "1",
            }
        ).encode()
        secret = adapter.environment["KKI_WEBHOOK_SECRET"]

        def deliver(client: httpx.Client) -> int:
            moment = int(time.time())
            headers = {
                "webhook-id": event_id,
                "webhook-timestamp": str(moment),
                "webhook-signature": sign(secret, event_id, moment, body),
                "content-type": "application/json",
            }
            return client.post(
                f"{adapter.url}/webhooks/kki", content=body, headers=headers
            ).status_code

        with (
            httpx.Client(timeout=30, limits=httpx.Limits(max_connections=20)) as client,
            concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool,
        ):
            statuses = list(pool.map(lambda _: deliver(client), range(1000)))
        assert statuses.count(202) == 1
        assert statuses.count(200) == 999
        adapter.wait_for(lambda: adapter.counts().get("done", 0) == 1, what="the event applied")
        time.sleep(1.0)  # time for any stray second application to show
        events = adapter.events()
        assert len(events) == 1
        assert (events[0].state, events[0].applied_count) == ("done", 1)


def test_mock_misbehaviour_modes_are_each_handled(
    tmp_path: Any, mocks: tuple[Mock, Mock], broker: str
) -> None:
    """Duplicates and reordered batches apply once; stale and badly signed ones are refused."""
    kki, sisdmk = mocks
    url = URL.create("sqlite", database=str(tmp_path / "adapter.sqlite3"))
    with adapter_stack(url, kki, sisdmk, broker=broker) as adapter:
        adapter.start_worker(concurrency=2)
        duplicated = emit(sisdmk, "worker.updated", mode="duplicate", copies=5)["events"]
        reordered = emit(kki, "skp.credited", count=5, mode="out_of_order")["events"]
        stale = emit(kki, "registration.issued", mode="stale_timestamp")["events"]
        forged = emit(sisdmk, "employment.changed", mode="bad_signature")["events"]
        good = {event["event_id"] for event in duplicated + reordered}
        adapter.wait_for(lambda: adapter.counts().get("done", 0) == len(good), what="good events")

        def final(mock: Mock, event_id: str) -> list[dict[str, Any]]:
            found = deliveries(mock, event_id=event_id)
            return [d for d in found if d["status"] in ("succeeded", "failed")]

        for mock, event in ((kki, stale[0]), (sisdmk, forged[0])):
            adapter.wait_for(lambda m=mock, e=event: bool(final(m, e["event_id"])), what="refusal")
            (delivery,) = final(mock, event["event_id"])
            assert delivery["status"] == "failed"
            assert delivery["attempts"][-1]["status_code"] == 401
        assert_each_applied_once(adapter.events(), good)
