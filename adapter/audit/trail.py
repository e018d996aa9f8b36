"""Appending to the audit trail: who did what to which personal data, when, with what outcome.

`record_audit` appends an entry in the caller's session, so it commits (or rolls back) with the
change it describes. Entries are numbered and chained: each one's `hash` is HMAC-SHA256, under a
key of ``AUDIT_KEYS`` (never stored in the database), over its own canonical content and the
previous entry's hash. Appending first locks the chain's head row, so concurrent writers (any
number of processes) chain one at a time; the database itself moves the head when an entry is
added.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

from sqlalchemy import update
from sqlalchemy.orm import Session

from adapter.audit.actors import Actor
from adapter.errors import AdapterError
from adapter.observability.tracing import current_trace_id
from adapter.store.crypto import BlindIndex, Key, KeyRing
from adapter.store.database import AUDIT_KEYS_INFO
from adapter.store.models import AuditChainHead, AuditEvent
from adapter.store.personal_fields import PERSONAL_FIELDS

# Domain separation: an entry's MAC can never pass for an anchor's, nor the other way round.
_ENTRY_LABEL: Final = b"hf-adapter/audit-entry/v1\n"


class AuditKeysMissing(AdapterError):
    """A session without the audit keys tried to append or verify (a wiring mistake)."""

    default_reason = "audit_keys_missing"


def record_audit(
    session: Session,
    actor: Actor,
    action: str,
    resource_type: str,
    *,
    resource_id: str | None = None,
    fields: Iterable[str] = (),
    outcome: str = "success",
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one entry in `session`'s transaction. `detail` holds ids and counts only.

    `fields` are names from `adapter.store.personal_fields` (the log redaction covers the same).
    `session` must come from a factory made with the audit keys
    (``database.session_factory(engine, audit_keys=...)``, as the composition root does).
    """
    named = sorted(set(fields))
    unknown = set(named) - PERSONAL_FIELDS
    if unknown:
        raise ValueError(f"not personal fields: {', '.join(sorted(unknown))}")
    key = audit_keys(session).active
    # Taking the head first (a row lock on PostgreSQL, the write lock on SQLite) orders the
    # appenders; it is released when the caller's transaction ends. Only the database moves
    # the head (a trigger on the insert), so it is read here as columns, never as an object
    # that could go stale in the session.
    head_seq, head_hash = session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == 1)
        .values(changed_at=_now())
        .returning(AuditChainHead.seq, AuditChainHead.hash)
        .execution_options(synchronize_session=False)
    ).one()
    entry = AuditEvent(
        seq=head_seq + 1,
        id=uuid.uuid4(),
        at=_now(),
        actor_kind=actor.kind,
        actor_subject=actor.subject,
        actor_client=actor.client,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        fields=json.dumps(named) if named else None,
        outcome=outcome,
        trace_id=current_trace_id(),
        detail=None if detail is None else json.dumps(detail, sort_keys=True, default=str),
        prev_hash=head_hash,
        key_id=key.kid,
    )
    entry.hash = entry_hash(entry, key)
    session.add(entry)  # flushed before the next append's head read (autoflush) or at commit
    return entry


def nik_reference(blind_index: BlindIndex, nik: str) -> dict[str, str | None]:
    """How an entry's `detail` names a NIK asked for: its blind-index digest and that key's id
    (a NIK with no digits has no digest), never the NIK."""
    try:
        digest: str | None = blind_index.digest(nik, purpose="nik")
    except ValueError:
        digest = None
    return {"nik_digest": digest, "blind_index_key": blind_index.kid}


def audit_keys(session: Session) -> KeyRing:
    """The audit keys `session` carries (see `record_audit`)."""
    keys = session.info.get(AUDIT_KEYS_INFO)
    if not isinstance(keys, KeyRing):
        raise AuditKeysMissing(
            "this database session has no audit keys; build sessions with "
            "database.session_factory(engine, audit_keys=settings.audit_key_ring())"
        )
    return keys


def entry_hash(entry: AuditEvent, key: Key | None) -> str:
    """HMAC-SHA256 under `key` of the entry's content and its predecessor's hash (canonical
    JSON, the key id included); plain SHA-256 of the same without a key id for an entry written
    before the chain was keyed (`key` None)."""
    content: dict[str, Any] = {
        "seq": entry.seq,
        "id": str(entry.id),
        "at": entry.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_kind": entry.actor_kind,
        "actor_subject": entry.actor_subject,
        "actor_client": entry.actor_client,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "fields": entry.fields,
        "outcome": entry.outcome,
        "trace_id": entry.trace_id,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
    }
    if key is None:
        return hashlib.sha256(canonical(content)).hexdigest()
    content["key_id"] = key.kid
    return hmac.new(key.material, _ENTRY_LABEL + canonical(content), hashlib.sha256).hexdigest()


def canonical(content: Mapping[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
