"""Operators' lists over the store: sync runs, webhook events, the audit trail; keyset-paginated.

Each answer holds ids, counts, states and error lines only, never personal data. Cursors are
opaque (base64 of the last row's sort key). No web framework here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from adapter.store.models import AuditEvent, SyncRequest, SyncRun, WebhookEvent
from adapter.workforce.directory import InvalidQuery, Page, page_size


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    actor_subject: str | None = None
    outcome: str | None = None
    since: dt.datetime | None = None


def sync_runs(session: Session, *, system: str | None, cursor: str | None, limit: int) -> Page:
    """Runs newest first."""
    limit = page_size(limit)
    query = select(SyncRun)
    if system is not None:
        query = query.where(SyncRun.system == system)
    after = _decode(cursor)
    if after is not None:
        started, run_id = _instant(after[0]), _uuid(after[1])
        query = query.where(
            or_(
                SyncRun.started_at < started,
                and_(SyncRun.started_at == started, SyncRun.id < run_id),
            )
        )
    rows = list(
        session.scalars(
            query.order_by(SyncRun.started_at.desc(), SyncRun.id.desc()).limit(limit + 1)
        )
    )
    more, rows = len(rows) > limit, rows[:limit]
    next_cursor = _encode([iso(rows[-1].started_at), str(rows[-1].id)]) if more else None
    return Page([sync_run_document(row) for row in rows], next_cursor)


def sync_run(session: Session, run_id: uuid.UUID) -> dict[str, Any] | None:
    """The run, or the request waiting to become it (``status: requested``)."""
    # The request first: the scheduler deletes it in the transaction that inserts the run, so
    # one of the two reads sees it whenever it happens in between.
    request = session.scalars(select(SyncRequest).where(SyncRequest.run_id == run_id)).first()
    if request is not None:
        return sync_request_document(request)
    row = session.get(SyncRun, run_id)
    return None if row is None else sync_run_document(row)


def webhook_events(
    session: Session, *, state: str | None, source: str | None, cursor: str | None, limit: int
) -> Page:
    """Events newest first (by arrival)."""
    limit = page_size(limit)
    query = select(WebhookEvent)
    if state is not None:
        query = query.where(WebhookEvent.state == state)
    if source is not None:
        query = query.where(WebhookEvent.source == source)
    after = _decode(cursor)
    if after is not None:
        received, event_id = _instant(after[0]), _uuid(after[1])
        query = query.where(
            or_(
                WebhookEvent.received_at < received,
                and_(WebhookEvent.received_at == received, WebhookEvent.id < event_id),
            )
        )
    order = (WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    more, rows = len(rows) > limit, rows[:limit]
    next_cursor = _encode([iso(rows[-1].received_at), str(rows[-1].id)]) if more else None
    return Page([webhook_event_document(row) for row in rows], next_cursor)


def audit_events(session: Session, where: AuditFilter, *, cursor: str | None, limit: int) -> Page:
    """Entries oldest first, in chain order."""
    limit = page_size(limit)
    query = select(AuditEvent)
    for column, value in (
        (AuditEvent.action, where.action),
        (AuditEvent.resource_type, where.resource_type),
        (AuditEvent.resource_id, where.resource_id),
        (AuditEvent.actor_subject, where.actor_subject),
        (AuditEvent.outcome, where.outcome),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(AuditEvent.at >= where.since)
    after = _decode(cursor)
    if after is not None:
        if not isinstance(after[0], int) or isinstance(after[0], bool):
            raise _bad_cursor()
        query = query.where(AuditEvent.seq > after[0])
    rows = list(session.scalars(query.order_by(AuditEvent.seq).limit(limit + 1)))
    more, rows = len(rows) > limit, rows[:limit]
    return Page([audit_document(row) for row in rows], _encode([rows[-1].seq]) if more else None)


def sync_run_document(row: SyncRun) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "system": row.system,
        "mode": row.mode,
        "status": row.status,
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "fetched": row.fetched,
        "created": row.created,
        "updated": row.updated,
        "unchanged": row.unchanged,
        "rejected": row.rejected,
        "findings": row.findings,
        "error": row.error,
        "requested_at": iso(row.requested_at),
        "requested_by": row.requested_by,
    }


def sync_request_document(request: SyncRequest) -> dict[str, Any]:
    """A requested run as `sync_run_document` shows it, before the scheduler starts it."""
    return {
        "id": str(request.run_id),
        "system": request.system,
        "mode": "full" if request.full else "incremental",
        "status": "requested",
        "started_at": None,
        "finished_at": None,
        "fetched": 0,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "findings": 0,
        "error": None,
        "requested_at": iso(request.requested_at),
        "requested_by": request.requested_by,
    }


def webhook_event_document(row: WebhookEvent) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "source": row.source,
        "webhook_id": row.webhook_id,
        "event_type": row.event_type,
        "resource_id": row.resource_id,
        "resource_version": row.resource_version,
        "state": row.state,
        "attempts": row.attempts,
        "deliveries": row.deliveries,
        "replays": row.replays,
        "occurred_at": iso(row.occurred_at),
        "received_at": iso(row.received_at),
        "processed_at": iso(row.processed_at),
        "outcome": row.outcome,
        "last_error": row.last_error,
    }


def audit_document(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "id": str(row.id),
        "at": iso(row.at),
        "actor_kind": row.actor_kind,
        "actor_subject": row.actor_subject,
        "actor_client": row.actor_client,
        "action": row.action,
        "resource_type": row.resource_type,
        "resource_id": row.resource_id,
        "fields": json.loads(row.fields) if row.fields else [],
        "outcome": row.outcome,
        "trace_id": row.trace_id,
        "detail": json.loads(row.detail) if row.detail else None,
        "hash": row.hash,
        "prev_hash": row.prev_hash,
    }


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def _encode(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_cursor() from None
    if not isinstance(key, list) or not key:
        raise _bad_cursor()
    return key


def _instant(value: Any) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise _bad_cursor() from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise _bad_cursor() from None


def _bad_cursor() -> InvalidQuery:
    return InvalidQuery("cursor is not one this API issued; start again without it")
