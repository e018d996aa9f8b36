"""`hf-adapter events list|show|replay|purge`: the operator's view of the inbox.

Each action calls `WebhookEventAdmin`, the service behind ``/api/v1/webhook-events`` too;
replays and purges are audited with the operator (the OS user running the command) as actor.
``list`` shows dead-lettered events (state ``failed``) by default. Tables to stdout, advice to
stderr. Nothing shown is personal data (ids, types, reasons).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from prometheus_client import CollectorRegistry
from rich.table import Table

from adapter.audit import command_line_operator
from adapter.cli.consoles import table_console
from adapter.composition import build_services
from adapter.errors import AdapterError
from adapter.observability.event_metrics import EventMetrics
from adapter.settings import load_settings
from adapter.webhooks.event_admin import EventFilter, WebhookEventAdmin

EXIT_OK: Final = 0
EXIT_PROBLEM: Final = 1


def parse_ids(values: Sequence[str]) -> list[uuid.UUID]:
    ids = []
    for place, value in enumerate(values, start=1):
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            # Not quoted: what was typed in its place may be a NIK.
            raise AdapterError(
                f"id {place} of {len(values)} is not an event id (a UUID such as "
                "0b9d2c1e-5f1a-4c7e-9a57-3f0c2d1e4b6a); `hf-adapter events list` shows them",
                reason="bad_id",
            ) from None
    return ids


@contextmanager
def event_admin() -> Iterator[WebhookEventAdmin]:
    """The events service on the configured store and broker, closed after the block."""
    with build_services(load_settings()) as services:
        # Nobody scrapes a one-shot command: its counters stay in a registry of their own.
        yield services.event_admin(EventMetrics.for_registry(CollectorRegistry()))


def list_events(*, state: str | None, source: str | None, limit: int, cursor: str | None) -> int:
    with event_admin() as events:
        page = events.list(EventFilter(state=state, source=source), cursor=cursor, limit=limit)
        failed = events.count(state="failed")
    table = Table(title=f"webhook events ({state or 'any state'}): {len(page.items)} shown")
    for column in ("id", "source", "type", "state", "attempts", "received", "last error"):
        table.add_column(column, overflow="fold")
    for event in page.items:
        table.add_row(
            event["id"],
            event["source"],
            event["event_type"],
            event["state"],
            str(event["attempts"]),
            _when(event["received_at"]),
            event["last_error"] or "",
        )
    table_console().print(table)
    if page.next_cursor is not None:
        print(f"more: add --cursor {page.next_cursor}", file=sys.stderr)
    print(f"{failed} event(s) dead-lettered (state failed) in all", file=sys.stderr)
    return EXIT_OK


def show_event(event_id: str) -> int:
    (parsed,) = parse_ids([event_id])
    with event_admin() as events:
        event = events.show(parsed)
    table = Table(title=f"event {event['id']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for name, value in _fields(event):
        table.add_row(name, value)
    table_console().print(table)
    return EXIT_OK


def replay(event_ids: Sequence[str], *, replay_all: bool) -> int:
    ids = None if replay_all else parse_ids(event_ids)
    with event_admin() as events:
        result = events.replay(command_line_operator(), ids)
    table = Table(title="replay")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("replayed (back in the queue)", f"{len(result.replayed):,}")
    table.add_row("skipped (no longer failed)", f"{result.skipped:,}")
    table_console().print(table)
    if result.replayed and not result.published:
        print("broker unavailable: the worker's outbox relay publishes them", file=sys.stderr)
    return EXIT_PROBLEM if result.skipped else EXIT_OK


def purge(event_ids: Sequence[str], *, purge_all: bool, reason: str) -> int:
    ids = None if purge_all else parse_ids(event_ids)
    with event_admin() as events:
        result = events.purge(command_line_operator(), ids, reason=reason)
    table = Table(title="purge")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("purged (state purged, kept for the record)", f"{len(result.purged):,}")
    table.add_row("skipped (no longer failed)", f"{result.skipped:,}")
    table_console().print(table)
    return EXIT_PROBLEM if result.skipped else EXIT_OK


def _when(value: str | None) -> str:
    return "" if value is None else value.replace("T", " ")[:19]


def _fields(event: dict[str, Any]) -> list[tuple[str, str]]:
    def text(name: str) -> str:
        value = event[name]
        return "" if value is None else str(value)

    return [
        ("source", text("source")),
        ("webhook id", text("webhook_id")),
        ("type", text("event_type")),
        ("resource", f"{event['resource_id']} (version {event['resource_version']})"),
        ("state", text("state")),
        ("outcome", text("outcome")),
        ("attempts", text("attempts")),
        ("deliveries", text("deliveries")),
        ("replays", text("replays")),
        ("occurred at", text("occurred_at")),
        ("received at", text("received_at")),
        ("published at", text("published_at")),
        ("processed at", text("processed_at")),
        ("last error", text("last_error")),
        ("purge reason", text("purge_reason")),
        ("traceparent", text("traceparent")),
    ]
