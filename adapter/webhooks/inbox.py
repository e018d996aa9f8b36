"""`WebhookInbox`: the inbox table's queries, for the receiver, the relay, the worker and operators.

An event is inserted once per (source, webhook-id): the unique constraint decides, so duplicates
arriving at the same instant on several processes still give one row. ``published_at`` is the
transactional outbox: NULL until the broker has confirmed the event's message.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

from sqlalchemy import (
    Column,
    ColumnElement,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate, Update
from sqlalchemy.sql.selectable import TableValuedAlias

from adapter.clock import Clock
from adapter.store.models import WebhookEvent
from adapter.webhooks.envelope import EventEnvelope

# Ids one statement names at most (PostgreSQL binds at most 65,535 values in a statement; SQLite
# 32,766 by default): larger sets go in chunks.
IDS_PER_STATEMENT: Final = 10_000


def _chunks(ids: Sequence[uuid.UUID]) -> Iterator[list[uuid.UUID]]:
    """`ids` without repeats, `IDS_PER_STATEMENT` at a time."""
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), IDS_PER_STATEMENT):
        yield unique[start : start + IDS_PER_STATEMENT]


@dataclass(frozen=True)
class ReplayResult:
    replayed: list[uuid.UUID]
    skipped: int
    # What the messages of the replayed events need, read by the UPDATE that replayed them:
    # (id, source, event type, traceparent).
    messages: list[tuple[uuid.UUID, str, str, str | None]] = field(default_factory=list)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class WebhookInbox:
    """Queries on ``webhook_events`` within the caller's session (the caller commits)."""

    def __init__(self, session: Session, *, clock: Clock | None = None) -> None:
        self._session = session
        self._clock = clock if clock is not None else now

    # -- receiving ------------------------------------------------------------------------

    def record(
        self, envelope: EventEnvelope, *, traceparent: str | None, published: bool
    ) -> uuid.UUID | None:
        """Insert the event; its new id, or ``None`` when (source, webhook-id) is already in."""
        return self.record_many([(envelope, traceparent)], published=published)[0]

    def record_many(
        self, entries: Sequence[tuple[EventEnvelope, str | None]], *, published: bool
    ) -> list[uuid.UUID | None]:
        """Insert the events (envelope, traceparent) in one statement; for each, in order, its
        new id or ``None`` when its (source, webhook-id) was already in, or earlier in `entries`.

        Rows go in sorted by (source, webhook-id): two processes inserting overlapping ids then
        take the unique index's entries in the same order, and cannot deadlock on PostgreSQL.
        """
        moment = self._clock()
        rows: list[dict[str, Any]] = [
            {
                "id": uuid.uuid4(),
                "source": envelope.source,
                "webhook_id": envelope.event_id,
                "event_type": envelope.event_type,
                "resource_id": envelope.resource_id,
                "resource_version": envelope.resource_version,
                "occurred_at": envelope.occurred_at,
                "traceparent": traceparent,
            }
            for envelope, traceparent in entries
        ]
        in_order = sorted(rows, key=lambda row: (row["source"], row["webhook_id"]))
        shared = {
            "received_at": moment,
            "available_at": moment,
            "state": "pending",
            "published_at": moment if published else None,
        }
        inserted: set[uuid.UUID]
        if self._on_postgresql():
            # One statement text whatever the batch size (the rows as one array per column), so
            # SQLAlchemy compiles it once and PostgreSQL can keep it prepared; a multi-row
            # VALUES is a new statement for every row count, compiled again each batch.
            columns = {name: [row[name] for row in in_order] for name in _ARRAY_COLUMNS}
            inserted = set(self._session.scalars(_postgresql_insert(), columns | shared))
        else:
            # One INSERT … VALUES (…), (…) for the batch: its RETURNING says which rows went in.
            statement = (
                sqlite_insert(WebhookEvent)
                .values([row | shared for row in in_order])
                .on_conflict_do_nothing(index_elements=["source", "webhook_id"])
                .returning(WebhookEvent.id)
            )
            inserted = set(self._session.scalars(statement))
        return [row["id"] if row["id"] in inserted else None for row in rows]

    # -- the outbox -----------------------------------------------------------------------

    def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        if event_ids:
            if self._on_postgresql():
                # In id order, as the done marks: the two may meet on a row (a relay publishing
                # an event a worker is applying), and each locks its rows in the arrays' order.
                self._session.execute(
                    _postgresql_mark_published(),
                    {"ids": sorted(set(event_ids)), "moment": self._clock()},
                )
            else:
                table = _table()
                self._session.execute(
                    update(table)
                    .where(table.c.id.in_(event_ids))
                    .values(published_at=self._clock())
                )

    def to_relay(
        self,
        *,
        limit: int,
        republish_before: dt.datetime,
        unpublished_before: dt.datetime | None = None,
    ) -> list[WebhookEvent]:
        """Pending events never published (received or replayed before `unpublished_before`:
        younger ones are the receiver's or the replay's to publish), or published so long ago
        that the message is lost."""
        never_published: ColumnElement[bool] = WebhookEvent.published_at.is_(None)
        if unpublished_before is not None:
            never_published = and_(never_published, WebhookEvent.available_at < unpublished_before)
        query = (
            select(WebhookEvent)
            .where(
                WebhookEvent.state == "pending",
                or_(
                    never_published,
                    and_(
                        WebhookEvent.published_at < republish_before,
                        WebhookEvent.available_at < republish_before,
                    ),
                ),
            )
            .order_by(WebhookEvent.received_at)
            .limit(limit)
        )
        return list(self._session.scalars(query))

    # -- the worker -----------------------------------------------------------------------

    def get(self, event_id: uuid.UUID, *, for_update: bool = False) -> WebhookEvent | None:
        query = select(WebhookEvent).where(WebhookEvent.id == event_id)
        if for_update:
            query = query.with_for_update()
        return self._session.scalars(query).one_or_none()

    def get_many(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, WebhookEvent]:
        """These events (those that exist), by id, in one statement."""
        if not event_ids:
            return {}
        query = select(WebhookEvent).where(WebhookEvent.id.in_(list(event_ids)))
        return {event.id: event for event in self._session.scalars(query)}

    def mark_applied(self, event_id: uuid.UUID, outcome: str) -> bool:
        """Pending → done, counted once; False when another worker got there first.

        A worker only applies what it received from the queue, so the event was published:
        ``published_at`` is set if the publisher's own mark was lost (its process killed between
        the broker's confirm and that transaction's commit)."""
        return bool(self.mark_applied_many({event_id: outcome}))

    def mark_applied_many(self, outcomes: Mapping[uuid.UUID, str]) -> set[uuid.UUID]:
        """`mark_applied` for several events in one statement (each with its outcome); the ids
        it moved from pending to done, the others having been taken by another worker."""
        if not outcomes:
            return set()
        moment = self._clock()
        if self._on_postgresql():
            # One statement text for any number of events (the events as two arrays), in id
            # order: a batch's plan (a nested loop over the arrays) locks the rows in the
            # arrays' order, so two workers marking overlapping events (a redelivery) lock
            # them in one order and cannot deadlock, as with the IN list before.
            parameters = _in_id_order(outcomes) | {"moment": moment}
            return set(self._session.scalars(_postgresql_mark_applied(), parameters))
        table = _table()
        marked = self._session.scalars(
            update(table)
            .where(table.c.id.in_(list(outcomes)), table.c.state == "pending")
            .values(
                state="done",
                outcome=case(dict(outcomes), value=table.c.id),
                processed_at=moment,
                published_at=func.coalesce(table.c.published_at, moment),
                applied_count=table.c.applied_count + 1,
                last_error=None,
            )
            .returning(table.c.id)
        )
        return set(marked)

    def set_outcomes(self, outcomes: Mapping[uuid.UUID, str]) -> None:
        """The outcome of each of these (already marked) events, in one statement."""
        if not outcomes:
            return
        if self._on_postgresql():
            self._session.execute(_postgresql_set_outcomes(), _in_id_order(outcomes))
            return
        table = _table()
        self._session.execute(
            update(table)
            .where(table.c.id.in_(list(outcomes)))
            .values(outcome=case(dict(outcomes), value=table.c.id))
        )

    def _on_postgresql(self) -> bool:
        return self._session.get_bind().dialect.name == "postgresql"

    def mark_retry(self, event_id: uuid.UUID, error: str, *, available_at: dt.datetime) -> int:
        """Count a failed attempt; the attempts spent so far (0 when no longer pending)."""
        self._session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id, WebhookEvent.state == "pending")
            .values(
                attempts=WebhookEvent.attempts + 1,
                last_error=error,
                available_at=available_at,
            )
        )
        attempts = self._session.scalar(
            select(WebhookEvent.attempts).where(
                WebhookEvent.id == event_id, WebhookEvent.state == "pending"
            )
        )
        return int(attempts or 0)

    def hold(self, event_id: uuid.UUID, note: str, *, available_at: dt.datetime) -> None:
        """Put a pending event back until `available_at` without counting an attempt.

        The hand-over ended in a verdict, so the embedded queue's claim is taken back too:
        held events never reach the delivery limit (which catches hand-overs with none).
        """
        self._session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id, WebhookEvent.state == "pending")
            .values(
                last_error=note,
                available_at=available_at,
                deliveries=case(
                    (WebhookEvent.deliveries > 0, WebhookEvent.deliveries - 1), else_=0
                ),
            )
        )

    def mark_failed(self, event_id: uuid.UUID, error: str, *, count_attempt: bool) -> bool:
        """Pending → failed (dead-lettered) with the last error; False when not pending."""
        values: dict[str, Any] = {
            "state": "failed",
            "last_error": error,
            "processed_at": self._clock(),
        }
        if count_attempt:
            values["attempts"] = WebhookEvent.attempts + 1
        result = self._session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id, WebhookEvent.state == "pending")
            .values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def claim(self, *, limit: int, lease_s: float) -> list[WebhookEvent]:
        """Embedded queue: take up to `limit` due events, hidden from others for `lease_s`.

        PostgreSQL skips rows another worker holds. SQLite takes no lock for the SELECT (its
        driver begins a transaction at the first write), so two workers may select the same
        events: the UPDATE takes only those still due, as one write, and what it returns is
        what this worker claimed.
        """
        moment = self._clock()
        due: Select[uuid.UUID] = (
            select(WebhookEvent.id)
            .where(WebhookEvent.state == "pending", WebhookEvent.available_at <= moment)
            .order_by(WebhookEvent.available_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        selected = list(self._session.scalars(due))
        if not selected:
            return []
        ids = list(
            self._session.scalars(
                update(WebhookEvent)
                .where(
                    WebhookEvent.id.in_(selected),
                    WebhookEvent.state == "pending",
                    WebhookEvent.available_at <= moment,
                )
                .values(
                    available_at=moment + dt.timedelta(seconds=lease_s),
                    deliveries=WebhookEvent.deliveries + 1,
                )
                .returning(WebhookEvent.id)
                .execution_options(synchronize_session=False)
            )
        )
        if not ids:
            return []
        return list(
            self._session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.id.in_(ids))
                .order_by(WebhookEvent.received_at)
            )
        )

    def depths(self) -> dict[str, int]:
        """Events by queue-ish state: pending, unpublished (outbox), failed."""
        pending = self._session.scalar(select(func.count()).where(WebhookEvent.state == "pending"))
        unpublished = self._session.scalar(
            select(func.count()).where(
                WebhookEvent.state == "pending", WebhookEvent.published_at.is_(None)
            )
        )
        failed = self._session.scalar(select(func.count()).where(WebhookEvent.state == "failed"))
        return {
            "inbox_pending": int(pending or 0),
            "outbox_unpublished": int(unpublished or 0),
            "failed": int(failed or 0),
        }

    # -- operators ------------------------------------------------------------------------

    def states(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The state of each of these events that exists."""
        found: dict[uuid.UUID, str] = {}
        for chunk in _chunks(event_ids):
            rows = self._session.execute(
                select(WebhookEvent.id, WebhookEvent.state).where(WebhookEvent.id.in_(chunk))
            )
            found.update({row.id: row.state for row in rows})
        return found

    def count(self, *, state: str) -> int:
        return int(
            self._session.scalar(select(func.count()).where(WebhookEvent.state == state)) or 0
        )

    def replay(self, event_ids: Sequence[uuid.UUID] | None) -> ReplayResult:
        """Failed events (these, or all of them) back to pending with fresh retries.

        One guarded UPDATE (ids in chunks: a statement binds at most 65,535 values on
        PostgreSQL, and an outage may leave more failed events than that); what it returns is
        what was replayed, so two operators replaying at once never both count an event.
        """
        moment = self._clock()
        replay = (
            update(WebhookEvent)
            .where(WebhookEvent.state == "failed")
            .values(
                state="pending",
                attempts=0,
                deliveries=0,
                available_at=moment,
                published_at=None,
                replays=WebhookEvent.replays + 1,
            )
            .returning(
                WebhookEvent.id,
                WebhookEvent.source,
                WebhookEvent.event_type,
                WebhookEvent.traceparent,
            )
            .execution_options(synchronize_session=False)
        )
        if event_ids is None:
            rows = list(self._session.execute(replay))
            skipped = 0
        else:
            rows = []
            for chunk in _chunks(event_ids):
                rows.extend(self._session.execute(replay.where(WebhookEvent.id.in_(chunk))))
            skipped = len(set(event_ids)) - len(rows)
        messages = [(row.id, row.source, row.event_type, row.traceparent) for row in rows]
        return ReplayResult([row.id for row in rows], skipped, messages)

    def purge(self, event_ids: Sequence[uuid.UUID] | None, *, reason: str) -> list[uuid.UUID]:
        """Failed events (these, or all of them) set aside for good, with the operator's reason;
        the ids of those purged."""
        query = update(WebhookEvent).where(WebhookEvent.state == "failed")
        if event_ids is not None:
            query = query.where(WebhookEvent.id.in_(event_ids))
        purged = self._session.execute(
            query.values(state="purged", purge_reason=reason, processed_at=self._clock()).returning(
                WebhookEvent.id
            )
        )
        return list(purged.scalars())


# The columns `record_many` sends as one array each; the others are the same for the batch.
_ARRAY_COLUMNS: Final = (
    "id",
    "source",
    "webhook_id",
    "event_type",
    "resource_id",
    "resource_version",
    "occurred_at",
    "traceparent",
)
_SHARED_COLUMNS: Final = ("received_at", "available_at", "state", "published_at")


@cache
def _postgresql_insert() -> ReturningInsert[tuple[uuid.UUID]]:
    """``INSERT … SELECT … FROM unnest(:id, :source, …) WITH ORDINALITY ORDER BY ordinality
    ON CONFLICT DO NOTHING RETURNING id``: the batch's rows in the order given (sorted by the
    caller), skipping any (source, webhook-id) already in or earlier in the batch."""
    table = _table()
    rows = (
        func.unnest(*[bindparam(name, type_=_array_of(table.c[name])) for name in _ARRAY_COLUMNS])
        .table_valued(*_ARRAY_COLUMNS, with_ordinality="ordinality")
        .render_derived()
    )
    chosen = select(
        *[rows.c[name] for name in _ARRAY_COLUMNS],
        *[bindparam(name, type_=table.c[name].type) for name in _SHARED_COLUMNS],
    ).order_by(rows.c.ordinality)
    return (
        # On the table, not the mapped class: an ORM insert with parameters is a bulk insert.
        postgresql_insert(table)
        .from_select([*_ARRAY_COLUMNS, *_SHARED_COLUMNS], chosen)
        .on_conflict_do_nothing(index_elements=["source", "webhook_id"])
        .returning(table.c.id)
    )


def _array_of(column: Column[Any]) -> ARRAY[Any]:
    """The array type `column`'s values are bound as: a string column's unbounded, since the
    bind renders as a cast (``::VARCHAR(64)[]``), and an explicit cast to a VARCHAR(n) cuts a
    longer value silently where the column's own check refuses it."""
    if isinstance(column.type, String):
        return ARRAY(String())
    return ARRAY(column.type)


def _in_id_order(outcomes: Mapping[uuid.UUID, str]) -> dict[str, list[Any]]:
    """The ``ids`` and ``outcomes`` arrays of the marks, in id order."""
    ordered = sorted(outcomes.items())
    return {
        "ids": [event_id for event_id, _ in ordered],
        "outcomes": [outcome for _, outcome in ordered],
    }


def _table() -> Table:
    table = WebhookEvent.__table__
    assert isinstance(table, Table)
    return table


# The worker's and the publisher's updates on PostgreSQL: statements on the table (Core, not
# the ORM's bulk update), each one text whatever the number of events, so SQLAlchemy compiles
# it once and psycopg can keep it prepared.


@cache
def _postgresql_mark_published() -> Update:
    """``UPDATE … SET published_at = :moment FROM unnest(:ids) AS given(id) WHERE id = given.id``:
    a nested loop over the ids in their order, as the done marks (``= ANY(:ids)`` was planned as
    a bitmap scan, which locks the rows in their order on disk)."""
    table = _table()
    given = (
        func.unnest(bindparam("ids", type_=ARRAY(table.c.id.type)))
        .table_valued("id")
        .render_derived(name="given")
    )
    return (
        update(table)
        .where(table.c.id == given.c.id)
        .values(published_at=bindparam("moment", type_=table.c.published_at.type))
    )


def _events_and_outcomes(table: Table) -> TableValuedAlias:
    """``unnest(:ids, :outcomes) AS given(id, outcome)``."""
    return (
        func.unnest(
            bindparam("ids", type_=ARRAY(table.c.id.type)),
            # Unbounded, not the column's VARCHAR(32): a cast to it would cut a longer outcome
            # silently; the assignment to the column refuses it, as the IN-list update did.
            bindparam("outcomes", type_=ARRAY(String())),
        )
        .table_valued("id", "outcome")
        .render_derived(name="given")
    )


@cache
def _postgresql_mark_applied() -> ReturningUpdate[tuple[uuid.UUID]]:
    """Pending → done for each given (id, outcome), ``RETURNING id`` of those it moved."""
    table = _table()
    given = _events_and_outcomes(table)
    moment = bindparam("moment", type_=table.c.processed_at.type)
    return (
        update(table)
        .where(table.c.id == given.c.id, table.c.state == "pending")
        .values(
            state="done",
            outcome=given.c.outcome,
            processed_at=moment,
            published_at=func.coalesce(table.c.published_at, moment),
            applied_count=table.c.applied_count + 1,
            last_error=None,
        )
        .returning(table.c.id)
    )


@cache
def _postgresql_set_outcomes() -> Update:
    table = _table()
    given = _events_and_outcomes(table)
    return update(table).where(table.c.id == given.c.id).values(outcome=given.c.outcome)
