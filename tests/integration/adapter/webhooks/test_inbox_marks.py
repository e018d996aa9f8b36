"""The inbox's marks (done with an outcome, outcomes, published) on both backends: each touches
exactly the events named, the done mark is a guard taken once, and a batch of any size is one
statement text on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.models import WebhookEvent
from adapter.webhooks.envelope import EventEnvelope
from adapter.webhooks.inbox import WebhookInbox
from tests.support.databases import BACKENDS, migrate

pytestmark = pytest.mark.integration

RECEIVED = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
MARKED = RECEIVED + dt.timedelta(seconds=3)


def received(sessions: sessionmaker[Session], count: int, *, published: bool) -> list[uuid.UUID]:
    envelopes = [
        EventEnvelope(
            source="kki",
            event_id=str(uuid.uuid4()),
            event_type="registration.corrected",
            resource_id=f"QZ{index:014d}",
            resource_version=index + 1,
            occurred_at=RECEIVED,
        )
        for index in range(count)
    ]
    with sessions.begin() as session:
        ids = WebhookInbox(session, clock=lambda: RECEIVED).record_many(
            [(envelope, None) for envelope in envelopes], published=published
        )
    assert None not in ids
    return [event_id for event_id in ids if event_id is not None]


def rows(sessions: sessionmaker[Session], ids: list[uuid.UUID]) -> dict[uuid.UUID, WebhookEvent]:
    with sessions() as session:
        found = session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(ids))).all()
        session.expunge_all()
    return {row.id: row for row in found}


def test_done_marks_are_taken_once_with_each_events_outcome(
    sessions: sessionmaker[Session],
) -> None:
    published = received(sessions, 2, published=True)
    unpublished = received(sessions, 2, published=False)
    bystander = received(sessions, 1, published=False)
    chosen = {published[0]: "applied", unpublished[0]: "superseded", published[1]: "applying"}
    with sessions.begin() as session:
        # A failed attempt before: the done mark clears its error.
        WebhookInbox(session).mark_retry(published[0], "timeout", available_at=RECEIVED)
    with sessions.begin() as session:
        inbox = WebhookInbox(session, clock=lambda: MARKED)
        assert inbox.mark_applied_many(chosen) == set(chosen)
        assert inbox.mark_applied(unpublished[1], "ignored")
    with sessions.begin() as session:
        inbox = WebhookInbox(session, clock=lambda: MARKED + dt.timedelta(hours=1))
        # Already done: another worker's second try takes nothing and changes nothing.
        assert inbox.mark_applied_many({**chosen, unpublished[1]: "applied"}) == set()
        assert not inbox.mark_applied(published[0], "applied")
        inbox.set_outcomes({published[1]: "created"})
    found = rows(sessions, [*published, *unpublished, *bystander])
    outcomes = {**chosen, published[1]: "created", unpublished[1]: "ignored"}
    for event_id, outcome in outcomes.items():
        row = found[event_id]
        assert (row.state, row.outcome, row.applied_count) == ("done", outcome, 1)
        assert row.processed_at == MARKED
        assert row.last_error is None
    # Published at receipt: kept; never marked published: the worker's mark says when.
    assert {found[event_id].published_at for event_id in published} == {RECEIVED}
    assert {found[event_id].published_at for event_id in unpublished} == {MARKED}
    untouched = found[bystander[0]]
    assert (untouched.state, untouched.outcome, untouched.published_at) == ("pending", None, None)
    assert untouched.applied_count == 0


def test_published_marks_only_the_events_named(sessions: sessionmaker[Session]) -> None:
    ids = received(sessions, 4, published=False)
    with sessions.begin() as session:
        WebhookInbox(session, clock=lambda: MARKED).mark_published(ids[1:3])
        WebhookInbox(session, clock=lambda: MARKED).mark_published([])
    found = rows(sessions, ids)
    assert [found[event_id].published_at for event_id in ids] == [None, MARKED, MARKED, None]


@pytest.mark.parametrize("migrated_engine", ["postgresql"], indirect=True)
def test_a_batch_of_any_size_is_one_statement_text_on_postgresql(
    sessions: sessionmaker[Session],
) -> None:
    engine = sessions.kw["bind"]
    assert engine.dialect.name == "postgresql"
    texts: set[str] = set()
    sent_ids: list[list[uuid.UUID]] = []

    def seen(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if statement.startswith("UPDATE webhook_events"):
            texts.add(statement)
            sent_ids.append(list(parameters["ids"]))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        for size in (1, 2, 7):
            ids = received(sessions, size, published=False)
            backwards = sorted(ids, reverse=True)
            with sessions.begin() as session:
                inbox = WebhookInbox(session, clock=lambda: MARKED)
                inbox.mark_published(backwards)
                inbox.mark_applied_many(dict.fromkeys(backwards, "applied"))
                inbox.set_outcomes(dict.fromkeys(backwards, "created"))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(texts) == 3, sorted(texts)
    # In id order (the order the rows are locked in), whatever order they were given in.
    assert len(sent_ids) == 9
    assert all(ids == sorted(ids) for ids in sent_ids)
    assert any(len(ids) == 7 for ids in sent_ids)


@pytest.mark.parametrize("migrated_engine", ["postgresql"], indirect=True)
def test_an_outcome_longer_than_its_column_is_refused_not_cut(
    sessions: sessionmaker[Session],
) -> None:
    (event_id,) = received(sessions, 1, published=False)
    with pytest.raises(DBAPIError, match="too long"), sessions.begin() as session:
        WebhookInbox(session, clock=lambda: MARKED).mark_applied_many({event_id: "x" * 40})
    assert rows(sessions, [event_id])[event_id].state == "pending"


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_an_event_two_embedded_workers_select_at_once_is_claimed_by_one(
    empty_database_url: URL,
) -> None:
    """Worker B claims between worker A's SELECT and its UPDATE. On SQLite the SELECT takes no
    lock, so both used to take the event (deliveries 2, the source fetched twice, an attempt
    counted twice); on PostgreSQL B skips the row A holds."""
    first = create_engine_from_url(empty_database_url)
    migrate(first)
    second = create_engine_from_url(empty_database_url)
    try:
        a, b = session_factory(first), session_factory(second)
        (event_id,) = received(a, 1, published=True)
        taken_by_b: list[uuid.UUID] = []
        fired: list[bool] = []

        def between(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT WEBHOOK_EVENTS.ID") and not fired:
                fired.append(True)
                with b.begin() as session:
                    claimed = WebhookInbox(session, clock=lambda: MARKED).claim(
                        limit=10, lease_s=60
                    )
                    taken_by_b.extend(row.id for row in claimed)

        event.listen(first, "after_cursor_execute", between)
        try:
            with a.begin() as session:
                taken_by_a = [
                    row.id
                    for row in WebhookInbox(session, clock=lambda: MARKED).claim(
                        limit=10, lease_s=60
                    )
                ]
        finally:
            event.remove(first, "after_cursor_execute", between)

        assert sorted([*taken_by_a, *taken_by_b]) == [event_id], (taken_by_a, taken_by_b)
        assert rows(a, [event_id])[event_id].deliveries == 1
    finally:
        first.dispose()
        second.dispose()
