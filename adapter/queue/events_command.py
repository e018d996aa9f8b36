"""`hf-adapter events list|show|replay|purge`: the operator's view of the inbox.

``list`` shows dead-lettered events (state ``failed``) by default; ``replay`` puts failed events
back in the queue with fresh retries; ``purge`` sets them aside for good, with a reason.
Tables to stdout, advice to stderr. Nothing shown is personal data (ids, types, reasons).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from typing import Final

from rich.console import Console
from rich.table import Table

from adapter.errors import AdapterError
from adapter.queue.messages import BrokerUnavailable, EventMessage
from adapter.queue.wiring import publisher_from
from adapter.settings import load_settings
from adapter.store import database
from adapter.store.models import WebhookEvent
from adapter.webhooks.inbox import WebhookInbox

EXIT_OK: Final = 0
EXIT_PROBLEM: Final = 1


class EventNotFound(AdapterError):
    default_reason = "event_not_found"


def parse_ids(values: Sequence[str]) -> list[uuid.UUID]:
    ids = []
    for value in values:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            raise AdapterError(f"not an event id (a UUID): {value!r}", reason="bad_id") from None
    return ids


def list_events(*, state: str | None, source: str | None, limit: int) -> int:
    settings = load_settings()
    engine = database.create_engine_from_settings(settings)
    try:
        with database.session_factory(engine)() as session:
            inbox = WebhookInbox(session)
            events = inbox.list(state=state, source=source, limit=limit)
            failed = inbox.count(state="failed")
    finally:
        engine.dispose()
    table = Table(title=f"webhook events ({state or 'any state'}): {len(events)} shown")
    for column in ("id", "source", "type", "state", "attempts", "received", "last error"):
        table.add_column(column, overflow="fold")
    for event in events:
        table.add_row(
            str(event.id),
            event.source,
            event.event_type,
            event.state,
            str(event.attempts),
            f"{event.received_at:%Y-%m-%d %H:%M:%S}",
            event.last_error or "",
        )
    Console(width=200).print(table)
    print(f"{failed} event(s) dead-lettered (state failed) in all", file=sys.stderr)
    return EXIT_OK


def show_event(event_id: str) -> int:
    (parsed,) = parse_ids([event_id])
    settings = load_settings()
    engine = database.create_engine_from_settings(settings)
    try:
        with database.session_factory(engine)() as session:
            event = WebhookInbox(session).get(parsed)
    finally:
        engine.dispose()
    if event is None:
        raise EventNotFound(f"no event with id {event_id}")
    table = Table(title=f"event {event.id}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for name, value in _fields(event):
        table.add_row(name, value)
    Console(width=200).print(table)
    return EXIT_OK


def replay(event_ids: Sequence[str], *, replay_all: bool) -> int:
    ids = None if replay_all else parse_ids(event_ids)
    settings = load_settings()
    engine = database.create_engine_from_settings(settings)
    publisher = publisher_from(settings)
    try:
        sessions = database.session_factory(engine)
        with sessions() as session, session.begin():
            result = WebhookInbox(session).replay(ids)
            rows = [WebhookInbox(session).get(event_id) for event_id in result.replayed]
            messages = [
                EventMessage(row.id, row.source, row.event_type, row.traceparent)
                for row in rows
                if row is not None
            ]
        published = False
        if messages:
            try:
                publisher.publish(messages, path="replay")
                published = True
            except BrokerUnavailable as exc:
                print(f"broker unavailable ({exc.message}); the worker's relay publishes them")
            if published:
                with sessions() as session, session.begin():
                    WebhookInbox(session).mark_published([m.event_id for m in messages])
    finally:
        publisher.close()
        engine.dispose()
    table = Table(title="replay")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("replayed (back in the queue)", f"{len(result.replayed):,}")
    table.add_row("skipped (not failed, or unknown)", f"{result.skipped:,}")
    Console().print(table)
    return EXIT_OK if not result.skipped or replay_all else EXIT_PROBLEM


def purge(event_ids: Sequence[str], *, purge_all: bool, reason: str) -> int:
    if not reason.strip():
        raise AdapterError("--reason must say why the events are set aside", reason="no_reason")
    ids = None if purge_all else parse_ids(event_ids)
    settings = load_settings()
    engine = database.create_engine_from_settings(settings)
    try:
        with database.session_factory(engine)() as session, session.begin():
            purged = WebhookInbox(session).purge(ids, reason=reason.strip())
    finally:
        engine.dispose()
    table = Table(title="purge")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("purged (state purged, kept for the record)", f"{purged:,}")
    Console().print(table)
    if ids is not None and purged < len(set(ids)):
        print("some ids were not failed events; only failed events can be purged", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


def _fields(event: WebhookEvent) -> list[tuple[str, str]]:
    def when(value: object) -> str:
        return "" if value is None else str(value)

    return [
        ("source", event.source),
        ("webhook id", event.webhook_id),
        ("type", event.event_type),
        ("resource", f"{event.resource_id} (version {event.resource_version})"),
        ("state", event.state),
        ("outcome", event.outcome or ""),
        ("attempts", str(event.attempts)),
        ("deliveries", str(event.deliveries)),
        ("replays", str(event.replays)),
        ("occurred at", when(event.occurred_at)),
        ("received at", when(event.received_at)),
        ("published at", when(event.published_at)),
        ("processed at", when(event.processed_at)),
        ("last error", event.last_error or ""),
        ("purge reason", event.purge_reason or ""),
        ("traceparent", event.traceparent or ""),
    ]
