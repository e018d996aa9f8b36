"""Retry tiers, the message format and the RabbitMQ topology's arguments."""

from __future__ import annotations

import uuid

import pytest

from adapter.queue.messages import EventMessage, MalformedMessage
from adapter.queue.retry import RetrySchedule
from adapter.queue.topology import QueueTopology

SCHEDULE = RetrySchedule((1.0, 5.0, 30.0), max_attempts=5)


@pytest.mark.parametrize(("attempts", "tier"), [(1, 0), (2, 1), (3, 2), (4, 2)])
def test_each_failure_moves_up_a_tier_and_the_last_repeats(attempts: int, tier: int) -> None:
    assert SCHEDULE.tier(attempts) == tier


def test_delay_has_equal_jitter_within_half_and_full_tier() -> None:
    assert SCHEDULE.delay_s(2, lambda: 0.0) == 2.5
    assert SCHEDULE.delay_s(2, lambda: 1.0) == 5.0


@pytest.mark.parametrize(
    ("attempts", "share", "not_before_s", "expected"),
    [
        (1, 1.0, None, (0, 1.0)),  # nothing said: the schedule's own tier and delay
        (1, 0.0, None, (0, 0.5)),
        (1, 1.0, 0.4, (0, 1.0)),  # sooner than the schedule's delay: the schedule
        (1, 0.0, 0.7, (0, 0.7)),  # the draw fell below the wait, the tier is long enough
        (1, 1.0, 0.7, (0, 1.0)),
        (1, 0.0, 3.2, (1, 3.2)),  # longer than tier 0: up to tier 1, no sooner than asked
        (1, 1.0, 3.2, (1, 4.1)),  # ... and spread up to half way to the tier's delay
        (2, 0.0, 5.0, (1, 5.0)),
        (1, 0.5, 30.0, (2, 30.0)),
        (1, 0.0, 3600.0, (2, 30.0)),  # longer than every tier: the longest, whole
    ],
)
def test_a_wait_the_system_asked_for_is_kept_in_a_tier_long_enough(
    attempts: int, share: float, not_before_s: float | None, expected: tuple[int, float]
) -> None:
    tier, delay = SCHEDULE.after(attempts, lambda: share, not_before_s=not_before_s)
    assert (tier, delay) == pytest.approx(expected)


def test_exhausted_after_max_attempts() -> None:
    assert not SCHEDULE.exhausted(4)
    assert SCHEDULE.exhausted(5)


def test_message_carries_ids_and_trace_only() -> None:
    message = EventMessage(
        uuid.uuid4(), "kki", "registration.revoked", "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )
    body = message.to_body()
    assert set(body) == {"event_id", "source", "type", "traceparent"}
    assert EventMessage.from_body(body) == message


@pytest.mark.parametrize("body", [b"not json", {"event_id": "nope"}, [], None])
def test_malformed_message_is_refused(body: object) -> None:
    with pytest.raises(MalformedMessage):
        EventMessage.from_body(body)


def test_topology_uses_quorum_queues_with_delivery_limit_and_dead_letters() -> None:
    topology = QueueTopology("hf-x", 5, (0.5, 2.0))
    events = topology.events_queue.queue_arguments
    assert events["x-queue-type"] == "quorum"
    assert events["x-delivery-limit"] == 5
    assert events["x-dead-letter-exchange"] == "hf-x.dead"
    retry = topology.retry_queue(1).queue_arguments
    assert retry["x-message-ttl"] == 2000
    assert retry["x-dead-letter-exchange"] == "hf-x.events"
    assert [q.name for q in topology.all_queues] == [
        "hf-x.events",
        "hf-x.events.retry.0",
        "hf-x.events.retry.1",
        "hf-x.events.dead",
    ]
