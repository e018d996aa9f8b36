"""The audit trail: who did what to which personal data, when, with what outcome.

`record_audit` appends an entry in the caller's session, so it commits (or rolls back) with the
change it describes. Entries are numbered and chained: each one's `hash` is SHA-256 over its
own canonical content and the previous entry's hash. Appending first locks the chain's head
row, so concurrent writers (any number of processes) chain one at a time. `verify_chain` walks
the trail and reports the first broken link: an edited entry, a removed one, or a cut-off tail.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from adapter.observability.tracing import current_trace_id
from adapter.store.models import AUDIT_GENESIS, AuditChainHead, AuditEvent
from adapter.store.personal_fields import PERSONAL_FIELDS

_VERIFY_BATCH: Final = 5_000


@dataclass(frozen=True)
class Actor:
    """Who acts: a person or service with an SSO token, or the adapter itself."""

    kind: str  # user | service | system
    subject: str | None = None
    client: str | None = None


SYSTEM_SYNC: Final = Actor("system", "hf-adapter sync")
WORKER: Final = Actor("system", "hf-adapter worker")
# The audit trail's client for actions taken at the console (beside SSO clients' ids).
CLI_CLIENT: Final = "hf-adapter-cli"


def command_line_operator() -> Actor:
    """Who runs an ``hf-adapter`` command by hand: the OS user (its uid when the system has
    no name for it)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (some containers)
        name = f"uid:{os.getuid()}"
    return Actor("user", name, CLI_CLIENT)


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
    """
    named = sorted(set(fields))
    unknown = set(named) - PERSONAL_FIELDS
    if unknown:
        raise ValueError(f"not personal fields: {', '.join(sorted(unknown))}")
    # Taking the head first (a row lock on PostgreSQL, the write lock on SQLite) orders the
    # appenders; it is released when the caller's transaction ends.
    session.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(changed_at=_now()))
    head = session.scalars(select(AuditChainHead).where(AuditChainHead.id == 1)).one()
    entry = AuditEvent(
        seq=head.seq + 1,
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
        prev_hash=head.hash,
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    return entry


def entry_hash(entry: AuditEvent) -> str:
    """SHA-256 over the entry's content and its predecessor's hash (canonical JSON)."""
    content = {
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
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    entries: int
    last_seq: int
    broken_at: int | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(session: Session) -> ChainReport:
    """Walk the trail in order; the first broken link, if any."""
    expected_prev, expected_seq, count = AUDIT_GENESIS, 1, 0
    after = 0
    while True:
        batch = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(_VERIFY_BATCH)
            )
        )
        for entry in batch:
            if entry.seq != expected_seq:
                return ChainReport(
                    count, expected_seq - 1, expected_seq, f"entry {expected_seq} is missing"
                )
            if entry.prev_hash != expected_prev:
                return ChainReport(
                    count,
                    expected_seq - 1,
                    entry.seq,
                    "prev_hash does not match the entry before (an entry was replaced)",
                )
            if entry_hash(entry) != entry.hash:
                return ChainReport(
                    count, expected_seq - 1, entry.seq, "content does not match its hash (edited)"
                )
            expected_prev, expected_seq, count = entry.hash, entry.seq + 1, count + 1
        if len(batch) < _VERIFY_BATCH:
            break
        after = batch[-1].seq
        session.expunge_all()  # keep memory flat on a long trail
    head = session.get(AuditChainHead, 1)
    last = expected_seq - 1
    if head is not None and (head.seq, head.hash) != (last, expected_prev):
        return ChainReport(
            count,
            last,
            last + 1,
            f"the chain head says entry {head.seq} is the newest, the trail ends at {last} "
            "(entries were removed from the end)",
        )
    return ChainReport(count, last)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
