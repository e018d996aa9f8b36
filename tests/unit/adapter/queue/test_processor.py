"""EventProcessor verdicts with fake clients: transient errors retry, permanent ones dead-letter
at once, a done event is never applied again. The store is a SQLite file (no server)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from psycopg.errors import (
    ForeignKeyViolation,
    InsufficientPrivilege,
    NumericValueOutOfRange,
    ReadOnlySqlTransaction,
    UndefinedColumn,
    UniqueViolation,
)
from sqlalchemy import select, update
from sqlalchemy.exc import DataError, IntegrityError, InternalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from adapter.clients.errors import (
    CircuitOpen,
    ContractViolation,
    NotFound,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from adapter.errors import ConfigurationError, DecryptionError, KeyNotFoundError
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.alerts import DeadLetterAlert, DeadLetterAlerts
from adapter.queue.embedded import EmbeddedQueue
from adapter.queue.processor import EventProcessor, PermanentFailure, TransientFailure, _Write
from adapter.queue.retry import RetrySchedule
from adapter.sdmk_integration_manager import connection_state, set_enabled
from adapter.store.crypto import Key, KeyRing
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.models import AuditEvent, WebhookEvent
from adapter.store.repositories import UpsertResult
from adapter.webhooks.envelope import EventEnvelope
from adapter.webhooks.inbox import WebhookInbox
from tests.support.databases import migrate


class FakeKki:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.calls = 0

    def get_registration(self, str_number: str) -> dict[str, Any]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return {"str_number": str_number, "version": 9}


class FakeRepository:
    applied: list[str] = []
    workers_removed: list[uuid.UUID] = []

    def prefetch_kki(self, docs: Any) -> None:
        pass

    def upsert_registration_from_kki(self, doc: Any, *, fetched_at: dt.datetime) -> UpsertResult:
        FakeRepository.applied.append(doc["str_number"])
        return UpsertResult.UPDATED

    def write_staged(self, *, last: bool = True) -> None:
        pass


class CollidingRepository(FakeRepository):
    """Its first `collisions` upserts meet a key another transaction committed meanwhile."""

    def __init__(self, error: Exception, collisions: int) -> None:
        self.error = error
        self.collisions = collisions
        self.calls = 0

    def upsert_registration_from_kki(self, doc: Any, *, fetched_at: dt.datetime) -> UpsertResult:
        self.calls += 1
        if self.calls <= self.collisions:
            raise IntegrityError("INSERT INTO health_workers …", None, self.error)
        return UpsertResult.UPDATED


class RecordingAlerts(DeadLetterAlerts):
    def __init__(self) -> None:
        self.raised: list[DeadLetterAlert] = []

    def raise_alert(self, alert: DeadLetterAlert) -> None:
        self.raised.append(alert)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate(engine)
    return session_factory(engine, audit_keys=KeyRing([Key("audit-test", bytes(range(32)))]))


def an_event(sessions: sessionmaker[Session]) -> uuid.UUID:
    envelope = EventEnvelope(
        "kki",
        str(uuid.uuid4()),
        "registration.revoked",
        "QZ00011234567890",
        2,
        dt.datetime.now(dt.UTC),
    )
    with sessions() as session, session.begin():
        event_id = WebhookInbox(session).record(envelope, traceparent=None, published=True)
    assert event_id is not None
    return event_id


def processor(
    sessions: sessionmaker[Session],
    kki: FakeKki,
    alerts: RecordingAlerts,
    repository: FakeRepository | None = None,
) -> EventProcessor:
    return EventProcessor(
        sessions=sessions,
        kki=kki,  # type: ignore[arg-type]
        sisdmk=None,  # type: ignore[arg-type]
        repository_factory=lambda session: repository or FakeRepository(),  # type: ignore[arg-type,return-value]
        schedule=RetrySchedule((0.2, 0.4), max_attempts=3),
        delivery_limit=3,
        metrics=EventMetrics.for_registry(CollectorRegistry()),
        alerts=alerts,
        draw=lambda: 1.0,
    )


def test_applied_once_then_skipped(sessions: sessionmaker[Session]) -> None:
    event_id = an_event(sessions)
    worker = processor(sessions, FakeKki(None), RecordingAlerts())
    assert worker.process(event_id).kind == "done"
    assert worker.process(event_id).kind == "skip"
    with sessions() as session:
        stored = WebhookInbox(session).get(event_id)
    assert stored is not None
    assert (stored.state, stored.applied_count, stored.outcome) == ("done", 1, "updated")


def test_transient_error_retries_then_dead_letters_with_alert(
    sessions: sessionmaker[Session],
) -> None:
    event_id = an_event(sessions)
    alerts = RecordingAlerts()
    down = UpstreamUnavailable("503 after retries", system="kki", operation="getRegistration")
    worker = processor(sessions, FakeKki(down), alerts)
    first, second, third = (worker.process(event_id) for _ in range(3))
    assert (first.kind, first.tier, first.delay_s) == ("retry", 0, 0.2)
    assert (second.kind, second.tier, second.delay_s) == ("retry", 1, 0.4)
    assert third.kind == "dead"
    assert [alert.reason for alert in alerts.raised] == ["upstream_unavailable"]


@pytest.mark.parametrize(
    ("error", "tier", "delay_s"),
    [
        # The breaker opened by earlier failures: back no sooner than its next trial, so a
        # replay after the system recovers is not spent on a breaker still open (a draw of 1.0
        # puts it half way from the trial to the tier's 0.4 s).
        (CircuitOpen(system="kki", operation="getRegistration", retry_in_s=0.3), 1, 0.35),
        (
            UpstreamRateLimited(
                "rate limited (429)", system="kki", operation="getRegistration", retry_after_s=60
            ),
            1,
            0.4,
        ),
        (CircuitOpen(system="kki", operation="getRegistration", retry_in_s=0.1), 0, 0.2),
    ],
)
def test_a_transient_error_is_retried_no_sooner_than_the_system_said(
    sessions: sessionmaker[Session], error: Exception, tier: int, delay_s: float
) -> None:
    event_id = an_event(sessions)
    before = dt.datetime.now(dt.UTC)
    verdict = processor(sessions, FakeKki(error), RecordingAlerts()).process(event_id)
    after = dt.datetime.now(dt.UTC)
    assert (verdict.kind, verdict.tier) == ("retry", tier)
    assert verdict.delay_s == pytest.approx(delay_s)
    with sessions() as session:
        stored = WebhookInbox(session).get(event_id)
    assert stored is not None
    # The embedded queue hands the event out again no sooner either.
    available_at = stored.available_at.replace(tzinfo=dt.UTC)
    delay = dt.timedelta(seconds=delay_s)
    assert before + delay <= available_at <= after + delay


@pytest.mark.parametrize(
    "error",
    [
        NotFound("404", system="kki", operation="getRegistration", status=404),
        ContractViolation("bad body", system="kki", operation="getRegistration"),
    ],
)
def test_permanent_error_dead_letters_without_retrying(
    sessions: sessionmaker[Session], error: Exception
) -> None:
    event_id = an_event(sessions)
    kki = FakeKki(error)
    verdict = processor(sessions, kki, RecordingAlerts()).process(event_id)
    assert verdict.kind == "dead"
    assert kki.calls == 1


@pytest.mark.parametrize(
    ("error", "collisions", "calls", "kind", "attempts"),
    [
        # Another writer created the record meanwhile: applied again at once, no attempt spent.
        (UniqueViolation("duplicate key"), 1, 2, "done", 0),
        # Once more only: a second collision is retried later, as any transient failure.
        (UniqueViolation("duplicate key"), 2, 2, "retry", 1),
        # Not a key created meanwhile: no second try at once.
        (ForeignKeyViolation("no such worker"), 1, 1, "retry", 1),
    ],
    ids=["created-meanwhile", "twice", "other-constraint"],
)
def test_a_key_created_meanwhile_is_applied_again_at_once_only_once(
    sessions: sessionmaker[Session],
    error: Exception,
    collisions: int,
    calls: int,
    kind: str,
    attempts: int,
) -> None:
    event_id = an_event(sessions)
    repository = CollidingRepository(error, collisions)
    verdict = processor(sessions, FakeKki(None), RecordingAlerts(), repository).process(event_id)
    with sessions() as session:
        stored = WebhookInbox(session).get(event_id)
    assert stored is not None
    assert (verdict.kind, repository.calls, stored.attempts) == (kind, calls, attempts)


class RaisingRepository(FakeRepository):
    """Every upsert raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def upsert_registration_from_kki(self, doc: Any, *, fetched_at: dt.datetime) -> UpsertResult:
        raise self.error


# What the store's state raises, not the record: tried again later, never dead-lettered.
NOT_THE_RECORDS = {
    "read-only": InternalError("INSERT …", None, ReadOnlySqlTransaction("read-only")),
    "column-missing": ProgrammingError("SELECT …", None, UndefinedColumn("no such column")),
    "right-missing": ProgrammingError("SELECT …", None, InsufficientPrivilege("denied")),
    "key-retired": KeyNotFoundError("test-0"),
}
# What the record itself causes: dead-lettered, as before.
THE_RECORDS = {
    "data": DataError("COPY …", None, NumericValueOutOfRange("out of range")),
    "refused": ValueError("the store cannot hold this record"),
    # A stored value damaged or moved between rows: no setting brings it back.
    "stored-value-damaged": DecryptionError("cannot decrypt registrations.kki_full_name"),
}


@pytest.mark.parametrize(
    ("error", "kind"),
    [(error, "retry") for error in NOT_THE_RECORDS.values()]
    + [(error, "dead") for error in THE_RECORDS.values()],
    ids=[*NOT_THE_RECORDS, *THE_RECORDS],
)
def test_an_event_is_dead_lettered_only_for_its_records_own_error(
    sessions: sessionmaker[Session], error: Exception, kind: str
) -> None:
    event_id = an_event(sessions)
    repository = RaisingRepository(error)
    verdict = processor(sessions, FakeKki(None), RecordingAlerts(), repository).process(event_id)
    assert verdict.kind == kind
    # In a batch too: the others are not condemned with it, nor is it for the store's state.
    events = events_for(sessions, ["QZ00010000000001", "QZ00010000000002"])
    writes = [_Write(event, None, {"str_number": event.resource_id}) for event in events]
    outcomes = batch_processor(sessions, repository)._commit_writes(writes)
    expected = TransientFailure if kind == "retry" else PermanentFailure
    assert [type(outcome) for outcome in outcomes] == [expected, expected]


def test_delivery_limit_dead_letters_a_message_that_keeps_killing_workers(
    sessions: sessionmaker[Session],
) -> None:
    event_id = an_event(sessions)
    kki = FakeKki(None)
    verdict = processor(sessions, kki, RecordingAlerts()).process(event_id, unfinished_deliveries=3)
    assert (verdict.kind, verdict.reason) == ("dead", "delivery_limit")
    assert kki.calls == 0


def test_an_applied_event_is_audited_in_the_workers_name_and_marks_the_connection_healthy(
    sessions: sessionmaker[Session],
) -> None:
    event_id = an_event(sessions)
    assert processor(sessions, FakeKki(None), RecordingAlerts()).process(event_id).kind == "done"
    with sessions() as session:
        entries = session.scalars(select(AuditEvent)).all()
        state = connection_state(session, "kki")
    assert [(e.actor_kind, e.actor_subject, e.action) for e in entries] == [
        ("system", "hf-adapter worker", "event.apply")
    ]
    assert f'"event_ids": ["{event_id}"]' in (entries[0].detail or "")
    assert '"written_ids": ["QZ00011234567890"]' in (entries[0].detail or "")
    assert (state.status, state.consecutive_failures) == ("healthy", 0)


def test_a_failed_fetch_counts_against_the_connection(sessions: sessionmaker[Session]) -> None:
    event_id = an_event(sessions)
    down = UpstreamUnavailable("503 after retries", system="kki", operation="getRegistration")
    processor(sessions, FakeKki(down), RecordingAlerts()).process(event_id)
    with sessions() as session:
        state = connection_state(session, "kki")
    assert (state.status, state.consecutive_failures) == ("degraded", 1)
    assert state.last_error == "UpstreamUnavailable: kki getRegistration: 503 after retries"


def test_a_disabled_connection_holds_the_event_without_spending_an_attempt(
    sessions: sessionmaker[Session],
) -> None:
    event_id = an_event(sessions)
    with sessions.begin() as session:
        set_enabled(session, "kki", False)
    kki, alerts = FakeKki(None), RecordingAlerts()
    worker = processor(sessions, kki, alerts)
    verdicts = [worker.process(event_id) for _ in range(5)]  # more than max_attempts
    assert {(v.kind, v.outcome, v.reason) for v in verdicts} == {
        ("retry", "held", "connection_disabled")
    }
    assert {v.tier for v in verdicts} == {1}  # the longest tier: none reaches HOLD_S here
    with sessions() as session:
        held = WebhookInbox(session).get(event_id)
    assert held is not None
    assert (held.state, held.attempts) == ("pending", 0)
    assert held.last_error == "held: the kki connection is disabled"
    assert (kki.calls, alerts.raised) == (0, [])

    with sessions.begin() as session:
        set_enabled(session, "kki", True)
    assert worker.process(event_id).kind == "done"
    assert kki.calls == 1


def test_a_held_event_on_the_embedded_queue_never_reaches_the_delivery_limit(
    sessions: sessionmaker[Session],
) -> None:
    event_id = an_event(sessions)
    with sessions.begin() as session:
        set_enabled(session, "kki", False)
    worker, queue = (
        processor(sessions, FakeKki(None), RecordingAlerts()),
        EmbeddedQueue(sessions, lease_s=60),
    )
    for _ in range(5):  # more hand-overs than the delivery limit (3)
        with sessions.begin() as session:  # the hold's delay is over
            session.execute(
                update(WebhookEvent).values(
                    available_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
                )
            )
        ((event, unfinished),) = queue.take(10)
        assert worker.process(event.id, unfinished_deliveries=unfinished).outcome == "held"
    with sessions() as session:
        held = WebhookInbox(session).get(event_id)
    assert held is not None
    assert (held.state, held.attempts) == ("pending", 0)


class RefusingRepository(FakeRepository):
    """Refuses one record, as the store refuses a document it cannot hold."""

    refused = "QZ00019999999999"

    def upsert_registration_from_kki(self, doc: Any, *, fetched_at: dt.datetime) -> UpsertResult:
        if doc["str_number"] == self.refused:
            raise ValueError("the store cannot hold this record")
        return super().upsert_registration_from_kki(doc, fetched_at=fetched_at)


def events_for(
    sessions: sessionmaker[Session],
    str_numbers: list[str],
    traceparents: list[str | None] | None = None,
) -> list[WebhookEvent]:
    envelopes = [
        EventEnvelope(
            "kki",
            str(uuid.uuid4()),
            "registration.corrected",
            str_number,
            2,
            dt.datetime.now(dt.UTC),
        )
        for str_number in str_numbers
    ]
    with sessions() as session, session.begin():
        parents = traceparents or [None] * len(envelopes)
        ids = WebhookInbox(session).record_many(
            list(zip(envelopes, parents, strict=True)), published=True
        )
        events = [WebhookInbox(session).get(event_id) for event_id in ids if event_id is not None]
        for event in events:
            session.expunge(event)  # type: ignore[arg-type]
    return events  # type: ignore[return-value]


def batch_processor(
    sessions: sessionmaker[Session], repository: FakeRepository | None = None
) -> EventProcessor:
    return EventProcessor(
        sessions=sessions,
        kki=FakeKki(None),  # type: ignore[arg-type]
        sisdmk=None,  # type: ignore[arg-type]
        repository_factory=lambda session: repository or RefusingRepository(),  # type: ignore[arg-type,return-value]
        schedule=RetrySchedule((0.2, 0.4), max_attempts=3),
        delivery_limit=3,
        metrics=EventMetrics.for_registry(CollectorRegistry()),
        alerts=RecordingAlerts(),
    )


def apply_entries(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        entries = session.scalars(select(AuditEvent).where(AuditEvent.action == "event.apply"))
        return [json.loads(entry.detail or "{}") for entry in entries]


def test_events_reaching_the_commit_together_are_written_in_one_transaction_with_one_audit_entry(
    sessions: sessionmaker[Session],
) -> None:
    str_numbers = ["QZ00010000000001", "QZ00010000000002", "QZ00010000000003"]
    trace_ids = [f"{n:032x}" for n in (0xA1, 0xB2, 0xC3)]
    events = events_for(sessions, str_numbers, [f"00-{t}-{1:016x}-01" for t in trace_ids])
    writes = [_Write(event, None, {"str_number": event.resource_id}) for event in events]
    assert batch_processor(sessions)._commit_writes(writes) == ["updated"] * 3
    with sessions() as session:
        stored = [WebhookInbox(session).get(event.id) for event in events]
    assert [(e.state, e.applied_count, e.outcome) for e in stored if e is not None] == [
        ("done", 1, "updated")
    ] * 3
    (entry,) = apply_entries(sessions)
    assert entry["event_ids"] == [str(event.id) for event in events]
    assert entry["trace_ids"] == trace_ids  # each event's own trace, not only the first's
    assert entry["written_ids"] == str_numbers


def test_a_refused_record_in_a_batch_fails_alone_and_the_others_are_applied_once(
    sessions: sessionmaker[Session],
) -> None:
    str_numbers = ["QZ00010000000001", RefusingRepository.refused, "QZ00010000000003"]
    events = events_for(sessions, str_numbers)
    writes = [_Write(event, None, {"str_number": event.resource_id}) for event in events]
    first, refused, third = batch_processor(sessions)._commit_writes(writes)
    assert (first, third) == ("updated", "updated")
    # The event's own path: a permanent failure, which `process` dead-letters.
    assert isinstance(refused, PermanentFailure)
    with sessions() as session:
        stored = {event.id: WebhookInbox(session).get(event.id) for event in events}
    states = [(stored[e.id].state, stored[e.id].applied_count) for e in events]  # type: ignore[union-attr]
    assert states == [("done", 1), ("pending", 0), ("done", 1)]
    # The others again together: one entry names both.
    assert [entry["event_ids"] for entry in apply_entries(sessions)] == [
        [str(events[0].id), str(events[2].id)]
    ]


def test_two_versions_of_one_record_never_share_a_transaction(
    sessions: sessionmaker[Session],
) -> None:
    events = events_for(sessions, ["QZ00010000000001", "QZ00010000000001", "QZ00010000000002"])
    writes = [_Write(event, None, {"str_number": event.resource_id}) for event in events]
    assert batch_processor(sessions)._commit_writes(writes) == ["updated"] * 3
    assert [entry["event_ids"] for entry in apply_entries(sessions)] == [
        [str(events[0].id), str(events[2].id)],
        [str(events[1].id)],
    ]


@pytest.mark.parametrize(
    ("error", "collisions", "transactions"),
    [
        # Another writer created one of the records meanwhile: the batch again, together.
        (UniqueViolation("duplicate key"), 1, [[0, 1, 2]]),
        # Once more only: a second collision and each event goes its own way.
        (UniqueViolation("duplicate key"), 2, [[0], [1], [2]]),
        # Not a key created meanwhile: one by one at once.
        (ForeignKeyViolation("no such worker"), 1, [[0], [1], [2]]),
    ],
    ids=["created-meanwhile", "twice", "other-constraint"],
)
def test_a_batch_meeting_a_key_created_meanwhile_is_applied_together_again_at_once(
    sessions: sessionmaker[Session],
    error: Exception,
    collisions: int,
    transactions: list[list[int]],
) -> None:
    events = events_for(sessions, ["QZ00010000000001", "QZ00010000000002", "QZ00010000000003"])
    writes = [_Write(event, None, {"str_number": event.resource_id}) for event in events]
    repository = CollidingRepository(error, collisions)
    outcomes = batch_processor(sessions, repository)._commit_writes(writes)
    assert outcomes == ["updated"] * 3
    with sessions() as session:
        stored = [WebhookInbox(session).get(event.id) for event in events]
    assert [(e.state, e.applied_count, e.attempts) for e in stored if e is not None] == [
        ("done", 1, 0)
    ] * 3
    # One audit entry per transaction that wrote: which events went together.
    assert [entry["event_ids"] for entry in apply_entries(sessions)] == [
        [str(events[index].id) for index in together] for together in transactions
    ]


def test_an_unexpected_error_is_counted_as_an_attempt_and_ends_in_a_dead_letter(
    sessions: sessionmaker[Session],
) -> None:
    """A bug (an error no failure class names) used to leave the processor for the worker,
    which retried the event every second for ever: no attempt counted, no dead letter."""
    event_id = an_event(sessions)
    alerts = RecordingAlerts()
    worker = processor(sessions, FakeKki(RuntimeError("a bug in the adapter")), alerts)
    verdicts = [worker.process(event_id) for _ in range(3)]
    assert [v.kind for v in verdicts] == ["retry", "retry", "dead"]
    assert [alert.reason for alert in alerts.raised] == ["unexpected"]
    with sessions() as session:
        stored = WebhookInbox(session).get(event_id)
    assert stored is not None
    assert (stored.state, stored.attempts) == ("failed", 3)
    assert stored.last_error == (
        "unexpected: RuntimeError (the worker's log has the traceback) (after 3 attempts)"
    )


def test_a_message_handed_over_before_its_retry_is_due_is_put_back_without_an_attempt(
    sessions: sessionmaker[Session],
) -> None:
    """The broker connection was lost after the retry was recorded: the message came back with
    every unacked one, was processed at once and spent an attempt per reconnect (healthy events
    dead-lettered within seconds while a source was down)."""
    event_id = an_event(sessions)
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    with sessions.begin() as session:
        WebhookInbox(session).mark_retry(event_id, "upstream_unavailable: 503", available_at=due)
    kki = FakeKki(None)
    worker = processor(sessions, kki, RecordingAlerts())

    early = worker.process(event_id, from_broker=True)

    assert (early.kind, early.outcome, early.reason) == ("retry", "not_yet_due", "early")
    assert 25 < early.delay_s <= 30
    assert early.tier == 1, "the longest tier (0.2 s, 0.4 s): as near the wait as there is"
    assert kki.calls == 0
    with sessions() as session:
        stored = WebhookInbox(session).get(event_id)
    assert stored is not None
    assert (stored.state, stored.attempts) == ("pending", 1), "no attempt spent"
    # The embedded queue hands over only due events (and leases them by moving available_at).
    assert worker.process(event_id).kind == "done"


def test_a_new_event_whose_database_clock_runs_ahead_is_applied_not_put_back(
    sessions: sessionmaker[Session],
) -> None:
    """A new event's `available_at` is the database's clock, not a worker's: a worker host
    behind it must not put every new event back."""
    event_id = an_event(sessions)
    with sessions.begin() as session:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .values(available_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20))
        )
    verdict = processor(sessions, FakeKki(None), RecordingAlerts()).process(
        event_id, from_broker=True
    )
    assert verdict.kind == "done"


def test_an_adapter_error_no_class_names_is_retried_under_its_own_reason_not_as_a_bug(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy refusing the connection is a ConfigurationError: the state of the system,
    not a bug (no traceback per event and attempt)."""
    event_id = an_event(sessions)
    refused = ConfigurationError("kki getRegistration: cannot send the request (ProxyError)")
    with caplog.at_level(logging.ERROR, logger="adapter.worker"):
        verdict = processor(sessions, FakeKki(refused), RecordingAlerts()).process(event_id)
    assert (verdict.kind, verdict.reason) == ("retry", refused.reason)
    assert not [r for r in caplog.records if r.exc_info]
