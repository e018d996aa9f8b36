"""Operators' lists over the store: sync runs, webhook events, the audit trail; keyset-paginated.

Each answer holds ids, counts, states and error lines only, never personal data. Paging and
cursors are `adapter.store.keyset`'s. No web framework here.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapter.store.keyset import Page, keyset_page
from adapter.store.models import AuditEvent, SyncRequest, SyncRun, WebhookEvent


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
    query = select(SyncRun)
    if system is not None:
        query = query.where(SyncRun.system == system)
    key = (SyncRun.started_at, SyncRun.id)
    return keyset_page(
        session,
        query,
        key,
        cursor=cursor,
        limit=limit,
        document=sync_run_document,
        descending=True,
    )


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
    query = select(WebhookEvent)
    if state is not None:
        query = query.where(WebhookEvent.state == state)
    if source is not None:
        query = query.where(WebhookEvent.source == source)
    key = (WebhookEvent.received_at, WebhookEvent.id)
    return keyset_page(
        session,
        query,
        key,
        cursor=cursor,
        limit=limit,
        document=webhook_event_document,
        descending=True,
    )


def audit_events(session: Session, where: AuditFilter, *, cursor: str | None, limit: int) -> Page:
    """Sealed entries oldest first, in chain order (`seq` is their place in the chain)."""
    query = select(AuditEvent).where(AuditEvent.chain_seq.is_not(None))
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
    return keyset_page(
        session,
        query,
        (AuditEvent.chain_seq,),
        cursor=cursor,
        limit=limit,
        document=audit_document,
    )


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
        "seq": row.chain_seq,
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
