"""Retry timing, secrets, subject hashing and the delivery log, without a network."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import random

import pytest

from mocks.core.webhooks import (
    Delivery,
    DeliveryLog,
    Subscription,
    SubscriptionNotFound,
    SubscriptionRegistry,
    WebhookConfigError,
    WebhookEvent,
    WebhookPolicy,
    build_body,
    classify_status,
    decode_secret,
    generate_secret,
    nik_hash,
)

EVENT_TYPES = ("registration.issued", "registration.revoked", "skp.credited")
NIK = "3174054506900012"
SECRET = "whsec_" + base64.b64encode(bytes(range(24))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
NOW = dt.datetime(2026, 11, 2, 8, 0, 0, tzinfo=dt.UTC)


def subscription(secret: str = SECRET) -> Subscription:
    return Subscription(
        id="5b1c1c83-2a5b-4f3e-9d0e-6c8f3c1d2e10",
        url="http://127.0.0.1:9/hooks",
        event_types=(),
        secret=secret,
        created_at=NOW,
    )


def event(nik: str | None = NIK) -> WebhookEvent:
    return WebhookEvent(
        event_id="0e7c6f0e-9b7a-4e43-a1b5-0e2f58f0a1c4",
        type="registration.revoked",
        occurred_at=NOW,
        source="kki",
        subject={"str_number": "KK0123456789"},
        data={"to": "DICABUT", "from": "AKTIF"},
        nik=nik,
    )


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_doubles_from_base_until_capped_without_jitter() -> None:
    policy = WebhookPolicy(base_delay_ms=500, max_delay_ms=60_000, jitter=False)
    rng = random.Random(1)
    delays = [policy.backoff_ms(n, rng) for n in range(1, 10)]
    assert delays == [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]


def test_backoff_stays_at_cap_for_huge_attempt_numbers() -> None:
    policy = WebhookPolicy(base_delay_ms=500, max_delay_ms=60_000, jitter=False)
    assert policy.backoff_ms(10_000, random.Random(1)) == 60_000


def test_backoff_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        WebhookPolicy().backoff_ms(0, random.Random(1))


def test_full_jitter_spreads_between_zero_and_the_capped_delay() -> None:
    policy = WebhookPolicy(base_delay_ms=500, max_delay_ms=3000, jitter=True)
    rng = random.Random(7)
    for attempt, cap in [(1, 500), (2, 1000), (3, 2000), (4, 3000), (9, 3000)]:
        samples = [policy.backoff_ms(attempt, rng) for _ in range(300)]
        assert all(0 <= s <= cap for s in samples)
        assert min(samples) < 0.1 * cap
        assert max(samples) > 0.9 * cap


def test_full_jitter_is_reproducible_with_the_same_seed() -> None:
    policy = WebhookPolicy(jitter=True)
    first = [policy.backoff_ms(n, random.Random(42)) for n in range(1, 9)]
    second = [policy.backoff_ms(n, random.Random(42)) for n in range(1, 9)]
    other = [policy.backoff_ms(n, random.Random(43)) for n in range(1, 9)]
    assert first == second
    assert first != other


def test_retry_after_replaces_backoff_and_is_capped() -> None:
    policy = WebhookPolicy(base_delay_ms=100, max_delay_ms=5000, jitter=True)
    rng = random.Random(1)
    assert policy.retry_delay_ms(1, rng, retry_after_s=2) == 2000
    assert policy.retry_delay_ms(1, rng, retry_after_s=0) == 0
    assert policy.retry_delay_ms(1, rng, retry_after_s=3600) == 5000
    assert 0 <= policy.retry_delay_ms(1, rng, retry_after_s=None) <= 100


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be between 1 and 20, got 0"),
        ({"max_attempts": 21}, "max_attempts must be between 1 and 20, got 21"),
        ({"base_delay_ms": -1}, "base_delay_ms must be between 0 and 3600000"),
        (
            {"base_delay_ms": 900, "max_delay_ms": 800},
            r"max_delay_ms must be between base_delay_ms \(900\) and 86400000, got 800",
        ),
        ({"timeout_ms": 0}, "timeout_ms must be between 1 and 600000"),
    ],
)
def test_policy_rejects_inconsistent_settings(changes: dict[str, int], message: str) -> None:
    with pytest.raises(WebhookConfigError, match=message):
        WebhookPolicy(**changes)  # type: ignore[arg-type]


def test_policy_defaults_and_serialisation() -> None:
    assert WebhookPolicy().to_dict() == {
        "max_attempts": 8,
        "base_delay_ms": 500,
        "max_delay_ms": 60_000,
        "timeout_ms": 5_000,
        "jitter": True,
    }


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "succeeded"),
        (204, "succeeded"),
        (299, "succeeded"),
        (301, "rejected"),
        (400, "rejected"),
        (401, "rejected"),
        (404, "rejected"),
        (410, "rejected"),
        (422, "rejected"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (599, "retry"),
    ],
)
def test_status_codes_decide_retry_or_final(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome


# -- secrets ----------------------------------------------------------------------------------


def test_generated_secret_is_whsec_with_24_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_")
    assert len(decode_secret(first)) == 24
    assert first != second


def test_secret_without_padding_decodes_like_the_padded_one() -> None:
    key = bytes(range(1, 26))  # 25 bytes: base64 needs padding
    padded = base64.b64encode(key).decode()
    assert padded.endswith("=")
    assert decode_secret("whsec_" + padded) == key
    assert decode_secret("whsec_" + padded.rstrip("=")) == key


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "must start with 'whsec_'"),
        ("whsec_", "nothing after 'whsec_'"),
        ("whsec_" + "ab-_" * 8, "not standard base64"),
        ("whsec_abc!", "not standard base64"),
        ("whsec_a", "does not decode as base64"),
        ("whsec_" + base64.b64encode(b"x" * 16).decode(), "between 24 and 64 bytes, got 16"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "between 24 and 64 bytes, got 65"),
        (12345, "must be a string"),
    ],
)
def test_bad_secrets_are_refused_with_the_reason(secret: object, message: str) -> None:
    with pytest.raises(WebhookConfigError, match=message):
        decode_secret(secret)


def test_registry_keeps_a_given_secret_and_generates_one_otherwise() -> None:
    registry = SubscriptionRegistry(EVENT_TYPES)
    given = registry.create("https://hooks.example.id/kki", secret=SECRET)
    generated = registry.create("https://hooks.example.id/kki")
    assert given.secret == SECRET
    assert len(decode_secret(generated.secret)) == 24
    assert "secret" not in given.to_dict()
    assert given.to_dict(include_secret=True)["secret"] == SECRET


def test_registry_refuses_a_bad_secret() -> None:
    registry = SubscriptionRegistry(EVENT_TYPES)
    with pytest.raises(WebhookConfigError, match="must start with 'whsec_'"):
        registry.create("https://hooks.example.id/kki", secret="hunter2")
    assert registry.list() == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "scheme must be http or https, got 'ftp'"),
        ("example.com/hooks", "scheme must be http or https, got '\\(none\\)'"),
        ("http:///hooks", "must name a host"),
        ("https://user:pw@example.com/hooks", "must not embed credentials"),
        ("http://example.com:99999/hooks", "invalid port"),
        ("http://example.com/a b", "whitespace or control characters"),
        ("http://example.com/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_registry_refuses_bad_urls(url: str, message: str) -> None:
    with pytest.raises(WebhookConfigError, match=message):
        SubscriptionRegistry(EVENT_TYPES).create(url)


def test_registry_refuses_unknown_event_types_and_names_the_known_ones() -> None:
    registry = SubscriptionRegistry(EVENT_TYPES)
    with pytest.raises(WebhookConfigError, match=r"unknown event type 'worker\.updated'.*skp"):
        registry.create("http://127.0.0.1:8000/h", event_types=["skp.credited", "worker.updated"])


def test_registry_event_type_filter() -> None:
    registry = SubscriptionRegistry(EVENT_TYPES)
    everything = registry.create("http://127.0.0.1:8000/a")
    revoked = registry.create(
        "http://127.0.0.1:8000/b", event_types=["registration.revoked", "registration.revoked"]
    )
    assert revoked.event_types == ("registration.revoked",)
    assert registry.matching("registration.revoked") == [everything, revoked]
    assert registry.matching("skp.credited") == [everything]


def test_registry_get_and_delete_unknown_ids() -> None:
    registry = SubscriptionRegistry(EVENT_TYPES)
    created = registry.create("http://127.0.0.1:8000/a")
    assert registry.get(created.id) == created
    registry.delete(created.id)
    with pytest.raises(SubscriptionNotFound):
        registry.get(created.id)
    with pytest.raises(SubscriptionNotFound):
        registry.delete(created.id)


# -- subject hashing and the body -------------------------------------------------------------


def test_nik_hash_is_deterministic_lowercase_hex_hmac() -> None:
    expected = hmac.new(bytes(range(24)), NIK.encode(), hashlib.sha256).hexdigest()
    assert nik_hash(NIK, SECRET) == nik_hash(NIK, SECRET) == expected
    assert len(expected) == 64
    assert expected == expected.lower()


def test_nik_hash_differs_per_subscription_secret() -> None:
    assert nik_hash(NIK, SECRET) != nik_hash(NIK, OTHER_SECRET)


@pytest.mark.parametrize("nik", ["317405450690001", "31740545069000121", "3174O54506900012", ""])
def test_nik_hash_refuses_what_is_not_a_nik(nik: str) -> None:
    with pytest.raises(ValueError, match="16 ASCII digits"):
        nik_hash(nik, SECRET)


def test_body_is_compact_sorted_and_carries_the_hash_not_the_nik() -> None:
    body = build_body(event(), subscription())
    assert NIK.encode() not in body
    assert body == build_body(event(), subscription())
    parsed = json.loads(body)
    assert body == json.dumps(parsed, separators=(",", ":"), sort_keys=True).encode()
    assert parsed == {
        "event_id": "0e7c6f0e-9b7a-4e43-a1b5-0e2f58f0a1c4",
        "type": "registration.revoked",
        "occurred_at": "2026-11-02T08:00:00.000000Z",
        "source": "kki",
        "subject": {"str_number": "KK0123456789", "nik_hash": nik_hash(NIK, SECRET)},
        "data": {"from": "AKTIF", "to": "DICABUT"},
        "version": "1",
    }
    assert NIK not in repr(event())


def test_body_hash_differs_per_subscription() -> None:
    mine = json.loads(build_body(event(), subscription(SECRET)))
    theirs = json.loads(build_body(event(), subscription(OTHER_SECRET)))
    assert mine["subject"]["nik_hash"] != theirs["subject"]["nik_hash"]


def test_body_without_a_person_has_no_nik_hash() -> None:
    parsed = json.loads(build_body(event(nik=None), subscription()))
    assert "nik_hash" not in parsed["subject"]


def test_event_refuses_a_nik_in_its_payload() -> None:
    with pytest.raises(ValueError, match="never in the payload"):
        WebhookEvent(
            event_id="e",
            type="registration.revoked",
            occurred_at=NOW,
            source="kki",
            subject={},
            data={"nik": NIK},
        )


def test_body_refuses_a_nik_smuggled_into_data() -> None:
    leaky = WebhookEvent(
        event_id="e",
        type="registration.revoked",
        occurred_at=NOW,
        source="kki",
        subject={},
        data={"note": f"owner {NIK}"},
        nik=NIK,
    )
    with pytest.raises(ValueError, match="NIK in clear text"):
        build_body(leaky, subscription())


# -- the delivery log -------------------------------------------------------------------------


def logged(delivery_id: str, status: str) -> Delivery:
    return Delivery(
        id=delivery_id,
        event_id="e-" + delivery_id,
        subscription_id="s",
        url="http://127.0.0.1:9/hooks",
        event_type="skp.credited",
        mode="normal",
        created_at=NOW,
        body=b"{}",
        status=status,  # type: ignore[arg-type]
    )


def test_full_log_drops_oldest_succeeded_then_failed_and_never_one_still_to_be_sent() -> None:
    # It dropped the oldest of all at last: a pending delivery, never sent, nothing said.
    ring = DeliveryLog(capacity=3)
    for delivery_id, status in [("a", "pending"), ("b", "succeeded"), ("c", "failed")]:
        delivery = logged(delivery_id, status)
        ring.add(delivery)
        if status != "pending":
            ring.finished(delivery)
    assert ring.add(logged("d", "pending")) == ["b"]
    assert ring.add(logged("e", "pending")) == ["c"]
    assert ring.add(logged("f", "pending")) == []
    assert [d.id for d in ring.list()] == ["f", "e", "d", "a"]
    assert ring.unfinished == 4


def test_an_emit_that_would_leave_more_unsent_than_the_log_keeps_is_refused_before_it_touches() -> (
    None
):
    # 10,000 events to 6 subscriptions (60,000 deliveries) dropped the first 10,000 unsent
    # while answering `deliveries_scheduled: 60000`.
    from mocks.core.provider_states import ProviderStates
    from mocks.core.runtime import MockRuntime, MockSettings
    from mocks.core.webhooks import DeliveryBacklogFull
    from mocks.kki.system import KkiSystem

    runtime = MockRuntime.build(KkiSystem(), MockSettings(size=6, seed=3))
    runtime.dispatcher._log.capacity = 10  # never started: every delivery waits
    for _ in range(2):
        runtime.subscriptions.create("http://127.0.0.1:9/hooks")
    before = {r.key: r.updated_at for r in runtime.store("registrations").records()}

    _, scheduled = runtime.emit_events(
        "registration.status_changed",
        key=None,
        count=4,
        mode="normal",
        copies=2,
        subscription_id=None,
    )
    assert scheduled == 8
    with pytest.raises(
        DeliveryBacklogFull,
        match=r"^8 webhook deliveries are waiting to be sent "
        r"and this would add 6: the mock keeps at most 10 unsent",
    ):
        runtime.emit_events(
            "registration.status_changed",
            key=None,
            count=3,
            mode="normal",
            copies=2,
            subscription_id=None,
        )
    after = {r.key: r.updated_at for r in runtime.store("registrations").records()}
    touched = [key for key in before if after[key] != before[key]]
    assert 1 <= len(touched) <= 4  # the first emit's draws (with repeats); the refused, none
    assert len(runtime.dispatcher.deliveries(limit=100)) == 8
    runtime.emit_events(  # room for 2 more: exactly full
        "registration.status_changed",
        key=None,
        count=1,
        mode="normal",
        copies=2,
        subscription_id=None,
    )
    key = next(iter(before))
    with pytest.raises(DeliveryBacklogFull):  # a change announced to both subscriptions
        runtime.patch_record("registrations", key, {"full_name": "Budi"})
    assert runtime.store("registrations").require(key)["full_name"] != "Budi"
    states = ProviderStates(runtime)
    documents = [runtime.store("registrations").require(key)]
    with pytest.raises(DeliveryBacklogFull):  # refused before its deletes: nothing half-done
        states.apply(
            "only these records exist",
            {"collection": "registrations", "documents": documents},
            "setup",
        )
    assert len(runtime.store("registrations")) == len(before)
    runtime.delete_record("registrations", key)  # announces nothing: never refused
    assert len(runtime.store("registrations")) == len(before) - 1


def test_log_filters_newest_first_with_limit() -> None:
    ring = DeliveryLog()
    for delivery_id in "abcde":
        ring.add(logged(delivery_id, "pending"))
    assert [d.id for d in ring.list(limit=2)] == ["e", "d"]
    assert [d.id for d in ring.list(event_id="e-c")] == ["c"]
    assert ring.list(status="succeeded") == []
