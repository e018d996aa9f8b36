"""Webhooks from a real mock process to a real local receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import time
from collections.abc import Iterator

import httpx
import pytest

from harness.receiver import WebhookReceiver
from tests.support.mock_servers import Mock

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as rx:
        yield rx


def subscribe(kki: httpx.Client, receiver: WebhookReceiver, **extra: object) -> dict:  # type: ignore[type-arg]
    response = kki.post("/v1/webhook-subscriptions", json={"url": receiver.url, **extra})
    assert response.status_code == 201, response.text
    body = response.json()
    receiver.secret = body["secret"]
    return body  # type: ignore[no-any-return]


def expected_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(signed).decode()


def final_delivery(mock: Mock, event_id: str, timeout_s: float = 10.0) -> dict:  # type: ignore[type-arg]
    """The logged delivery of `event_id` once it has stopped (the receiver may see the last
    attempt a moment before the sender records its answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        [logged] = mock.admin.get("/deliveries", params={"event_id": event_id}).json()["data"]
        if logged["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return logged  # type: ignore[no-any-return]
        time.sleep(0.05)


def any_registration(kki: httpx.Client) -> dict:  # type: ignore[type-arg]
    return kki.get("/v1/registrations", params={"limit": 1}).json()["data"][0]  # type: ignore[no-any-return]


def test_status_change_sends_signed_events_without_personal_data(
    kki: httpx.Client, kki_mock: Mock, receiver: WebhookReceiver
) -> None:
    sub = subscribe(kki, receiver)
    reg = any_registration(kki)
    kki_mock.admin.post(
        f"/registrations/{reg['str_number']}/status",
        json={"status": "NONAKTIF_SEMENTARA", "reason": "SKP tidak mencukupi"},
    )
    received = receiver.wait_for(2)
    events = {r.event["type"]: r.event for r in received}  # delivered concurrently: any order
    assert set(events) == {"registration.status_changed", "registration.suspended"}
    change = events["registration.status_changed"]
    assert change["data"]["from"] == reg["certification"]["status"]
    assert change["data"]["to"] == "NONAKTIF_SEMENTARA"
    assert change["subject"]["str_number"] == reg["str_number"]
    for r in received:
        assert r.verified, r.verify_error
        assert r.headers["webhook-signature"].split(" ")[0] == expected_signature(
            sub["secret"], r.headers["webhook-id"], r.headers["webhook-timestamp"], r.body
        )
        assert reg["nik"].encode() not in r.body
        assert reg["full_name"].encode() not in r.body
    key = base64.b64decode(sub["secret"].removeprefix("whsec_"))
    assert change["subject"]["nik_hash"] == hmac.new(key, reg["nik"].encode(), "sha256").hexdigest()


def test_event_type_filter_limits_what_a_subscription_gets(
    kki: httpx.Client, kki_mock: Mock, receiver: WebhookReceiver
) -> None:
    subscribe(kki, receiver, event_types=["registration.revoked"])
    reg = any_registration(kki)
    kki_mock.admin.post(f"/registrations/{reg['str_number']}/status", json={"status": "DICABUT"})
    received = receiver.wait_for(1)
    time.sleep(0.5)  # give a wrongly sent second event the chance to arrive
    assert [r.event["type"] for r in receiver.received] == ["registration.revoked"]
    assert received[0].verified


def test_receiver_5xx_is_retried_with_growing_gaps(
    kki: httpx.Client, kki_mock: Mock, receiver: WebhookReceiver
) -> None:
    kki_mock.admin.put(
        "/webhook-policy",
        json={
            "max_attempts": 5,
            "base_delay_ms": 200,
            "max_delay_ms": 5000,
            "timeout_ms": 2000,
            "jitter": False,
        },
    )
    receiver.respond = lambda n: 500 if n <= 3 else 204
    subscribe(kki, receiver)
    kki_mock.admin.post("/events", json={"type": "skp.credited", "count": 1})
    received = receiver.wait_for(4, timeout_s=30)
    assert len({r.webhook_id for r in received}) == 1, "a retry re-sends the same event id"
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(received)]
    # Never earlier than the policy's doubling delays (200, 400, 800 ms); a busy machine may
    # make one later, so growth is read from the first to the third, four times apart.
    assert all(gap >= least for gap, least in zip(gaps, (0.18, 0.36, 0.72), strict=True)), gaps
    assert gaps[0] < gaps[2]
    logged = final_delivery(kki_mock, received[0].webhook_id)
    assert logged["status"] == "succeeded"
    assert [a.get("status_code") for a in logged["attempts"]] == [500, 500, 500, 204]


def test_duplicate_mode_sends_same_event_id_n_times(
    kki: httpx.Client, kki_mock: Mock, receiver: WebhookReceiver
) -> None:
    subscribe(kki, receiver)
    kki_mock.admin.post(
        "/events", json={"type": "training.completed", "count": 1, "mode": "duplicate", "copies": 5}
    )
    received = receiver.wait_for(5)
    assert len({r.webhook_id for r in received}) == 1
    assert all(r.verified for r in received)


def test_bad_signature_mode_fails_verification(
    kki: httpx.Client, kki_mock: Mock, receiver: WebhookReceiver
) -> None:
    subscribe(kki, receiver)
    kki_mock.admin.post("/events", json={"type": "sip.recorded", "mode": "bad_signature"})
    [received] = receiver.wait_for(1)
    assert not received.verified


def test_stale_timestamp_mode_is_signed_but_old(
    kki: httpx.Client, kki_mock: Mock, receiver: WebhookReceiver
) -> None:
    sub = subscribe(kki, receiver)
    kki_mock.admin.post("/events", json={"type": "sip.expiring", "mode": "stale_timestamp"})
    [received] = receiver.wait_for(1)
    timestamp = received.headers["webhook-timestamp"]
    assert time.time() - int(timestamp) >= 300
    assert not received.verified  # outside the receiver's tolerance window
    assert received.headers["webhook-signature"].split(" ")[0] == expected_signature(
        sub["secret"], received.webhook_id, timestamp, received.body
    )


def test_out_of_order_mode_delivers_newest_first(
    kki: httpx.Client, kki_mock: Mock, receiver: WebhookReceiver
) -> None:
    subscribe(kki, receiver)
    kki_mock.admin.post(
        "/events", json={"type": "registration.corrected", "count": 4, "mode": "out_of_order"}
    )
    received = receiver.wait_for(4)
    occurred = [r.event["occurred_at"] for r in received]
    assert occurred == sorted(occurred, reverse=True)


def test_redeliver_resends_the_same_event(
    kki: httpx.Client, kki_mock: Mock, receiver: WebhookReceiver
) -> None:
    subscribe(kki, receiver)
    emitted = kki_mock.admin.post("/events", json={"type": "skp.period_rolled"}).json()
    event_id = emitted["events"][0]["event_id"]
    receiver.wait_for(1)
    [delivery] = kki_mock.admin.get("/deliveries", params={"event_id": event_id}).json()["data"]
    again = kki_mock.admin.post(f"/deliveries/{delivery['id']}/redeliver")
    assert again.status_code == 202
    first, second = receiver.wait_for(2)
    assert first.webhook_id == second.webhook_id == event_id
    assert first.event == second.event
    assert second.verified


def test_subscription_with_bad_url_is_rejected(kki: httpx.Client) -> None:
    response = kki.post("/v1/webhook-subscriptions", json={"url": "ftp://example.com/x"})
    assert response.status_code in (400, 422)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert kki.get("/v1/webhook-subscriptions").json() == {"data": []}


def test_sisdmk_worker_change_sends_worker_event(
    sisdmk: httpx.Client, sisdmk_mock: Mock, receiver: WebhookReceiver
) -> None:
    response = sisdmk.post("/v1/webhook-subscriptions", json={"url": receiver.url})
    assert response.status_code == 201, response.text
    receiver.secret = response.json()["data"]["secret"]
    worker = sisdmk.get("/v1/health-workers", params={"limit": 1}).json()["data"][0]
    sisdmk_mock.admin.patch(
        f"/records/health-workers/{worker['worker_id']}", json={"is_active": False}
    )
    [received] = receiver.wait_for(1)
    assert received.verified
    assert received.event["type"] == "worker.deactivated"
    assert received.event["subject"]["worker_id"] == worker["worker_id"]
    assert worker["nik"].encode() not in received.body
