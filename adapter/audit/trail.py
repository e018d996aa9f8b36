"""Appending to the audit trail: who did what to which personal data, when, with what outcome.

`record_audit` appends an entry in the caller's session, so it commits (or rolls back) with the
change it describes, and takes no lock but its own writer's row: entries are inserted *pending*.
Each carries its writer (one per process thread, `audit_writers`) and that writer's next number
(1, 2, 3 ... counted in the same transaction, so a rollback leaves no gap), and `entry_mac`, an
HMAC-SHA256 under a key of ``AUDIT_KEYS`` (never stored in the database) over its content,
writer and number. The sealer (`adapter.audit.seal`) later chains the committed pending entries
one at a time: each gets its place (`chain_seq`), its predecessor's hash and its own chain hash,
an HMAC over its `entry_mac`, place and predecessor. Only the database moves the chain's head
(a trigger on each seal).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from sqlalchemy import BigInteger, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate

from adapter.audit.actors import Actor
from adapter.errors import AdapterError
from adapter.observability.tracing import current_trace_id
from adapter.store.crypto import BlindIndex, Key, KeyRing
from adapter.store.database import AUDIT_KEYS_INFO
from adapter.store.models import AuditEvent, AuditWriter
from adapter.store.personal_fields import PERSONAL_FIELDS

# Domain separation: an entry's MAC can never pass for a seal's or an anchor's, nor the other
# way round. `_ENTRY_LABEL` is what entries chained before migration 0009 were hashed under.
_ENTRY_LABEL: Final = b"hf-adapter/audit-entry/v1\n"
_PENDING_LABEL: Final = b"hf-adapter/audit-entry/v2\n"
_SEAL_LABEL: Final = b"hf-adapter/audit-seal/v1\n"


class AuditKeysMissing(AdapterError):
    """A session without the audit keys tried to append or verify (a wiring mistake)."""

    default_reason = "audit_keys_missing"


class EntryContent(Protocol):
    """What an entry's MAC covers (an `AuditEvent`, or a row of its columns)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def at(self) -> dt.datetime: ...
    @property
    def actor_kind(self) -> str: ...
    @property
    def actor_subject(self) -> str | None: ...
    @property
    def actor_client(self) -> str | None: ...
    @property
    def action(self) -> str: ...
    @property
    def resource_type(self) -> str: ...
    @property
    def resource_id(self) -> str | None: ...
    @property
    def fields(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def detail(self) -> str | None: ...
    @property
    def writer_id(self) -> uuid.UUID | None: ...
    @property
    def writer_n(self) -> int | None: ...


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
) -> uuid.UUID:
    """Append one pending entry in `session`'s transaction; its id. `detail` holds ids and
    counts only.

    `fields` are names from `adapter.store.personal_fields` (the log redaction covers the same).
    `session` must come from a factory made with the audit keys
    (``database.session_factory(engine, audit_keys=...)``, as the composition root does).
    """
    appended = _append(
        session, actor, action, resource_type, resource_id, fields, outcome, detail, alone=False
    )
    assert appended is not None
    return appended


def record_audit_alone(
    session: Session,
    actor: Actor,
    action: str,
    resource_type: str,
    *,
    resource_id: str | None = None,
    fields: Iterable[str] = (),
    outcome: str = "success",
    detail: Mapping[str, Any] | None = None,
) -> uuid.UUID | None:
    """`record_audit` in ONE statement or not at all, for a PostgreSQL session in autocommit
    (``session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})``): the statement
    that claims this thread's writer's next number and inserts the entry is its own transaction,
    committed when it returns — no BEGIN, no COMMIT round trip. None when the number was not the
    writer's next (nothing was written): append with `record_audit` in a transaction then.
    """
    if session.get_bind().dialect.name != "postgresql":
        raise ValueError("an entry in one statement is only for PostgreSQL")
    return _append(
        session, actor, action, resource_type, resource_id, fields, outcome, detail, alone=True
    )


def _append(
    session: Session,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: str | None,
    fields: Iterable[str],
    outcome: str,
    detail: Mapping[str, Any] | None,
    *,
    alone: bool,
) -> uuid.UUID | None:
    named = sorted(set(fields))
    unknown = set(named) - PERSONAL_FIELDS
    if unknown:
        raise ValueError(f"not personal fields: {', '.join(sorted(unknown))}")
    key = audit_keys(session).active
    # Serialised before the writer's number is taken: a `detail` that cannot be written fails
    # here, not after the count has grown (which a caller that goes on would commit as a hole
    # in the writer's numbers, the mark of a deleted entry).
    fields_json = json.dumps(named) if named else None
    detail_json = None if detail is None else json.dumps(detail, sort_keys=True, default=str)
    writer = writer_id()
    dialect = session.get_bind().dialect.name
    content: dict[str, Any] = {
        "id": uuid.uuid4(),
        "at": _now(),
        "actor_kind": actor.kind,
        "actor_subject": actor.subject,
        "actor_client": actor.client,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "fields": fields_json,
        "outcome": outcome,
        "trace_id": current_trace_id(),
        "detail": detail_json,
        "writer_id": writer,
        "key_id": key.kid,
    }
    if dialect == "postgresql":
        # This thread's next number as the process last saw it, claimed in the same statement
        # as the insert: the database takes the entry only if that is its writer's next number.
        guess = _last_number() + 1
        entry = AuditEvent(**content, writer_n=guess)
        values = _columns(entry, key)
        parameters = {f"entry_{name}": value for name, value in values.items()}
        parameters |= {"claim_writer": writer, "claim_n": guess}
        claimed = session.execute(_claimed_insert(tuple(values), first=guess == 1), parameters)
        if claimed.first() is not None:
            _remember_number(guess)
            return entry.id
        # Taken back by a rollback since, or another session of this thread appended meanwhile.
        if alone:
            return None
    # This writer's next number: its own row, locked until the transaction ends (a thread runs
    # one transaction at a time, so nobody waits on it); a rollback takes the number back.
    upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(AuditWriter)
    number = session.execute(
        upsert.values(id=writer, n=1)
        .on_conflict_do_update(index_elements=[AuditWriter.id], set_={"n": AuditWriter.n + 1})
        .returning(AuditWriter.n)
    ).scalar_one()
    entry = AuditEvent(**content, writer_n=number)
    values = _columns(entry, key)
    if dialect != "postgresql":
        # SQLite has one writer at a time (its write lock), so the next number is the largest
        # one plus one; PostgreSQL takes it from the column's identity, without a lock.
        values["seq"] = select(func.coalesce(func.max(AuditEvent.seq), 0) + 1).scalar_subquery()
    session.execute(insert(AuditEvent).values(values))
    _remember_number(number)
    return entry.id


def _columns(entry: AuditEvent, key: Key) -> dict[str, Any]:
    values: dict[str, Any] = {
        column.key: getattr(entry, column.key)
        for column in AuditEvent.__table__.columns
        if getattr(entry, column.key) is not None
    }
    values["entry_mac"] = entry_mac(entry, key)
    return values


@functools.lru_cache(maxsize=32)
def _claimed_insert(names: tuple[str, ...], *, first: bool) -> ReturningInsert[tuple[uuid.UUID]]:
    """``WITH claimed AS (<the writer's count becomes :claim_n>) INSERT INTO audit_events (names)
    SELECT :entry_<name>… FROM claimed RETURNING id``: one round trip; no row when :claim_n is
    not the writer's next number (its row is then left as it was). Built once per column set,
    with bound parameters, so neither this nor SQLAlchemy's compiling runs per entry."""
    writer = bindparam("claim_writer", type_=AuditWriter.__table__.c.id.type)
    number = bindparam("claim_n", type_=BigInteger())
    claim: ReturningInsert[tuple[int]] | ReturningUpdate[tuple[int]]
    if first:
        claim = (
            postgresql.insert(AuditWriter)
            .values(id=writer, n=number)
            .on_conflict_do_nothing(index_elements=[AuditWriter.id])
            .returning(AuditWriter.n)
        )
    else:
        claim = (
            update(AuditWriter)
            .where(AuditWriter.id == writer, AuditWriter.n == number - 1)
            .values(n=number)
            .returning(AuditWriter.n)
        )
    claimed = claim.cte("claimed")
    table = AuditEvent.__table__
    assert isinstance(table, Table)
    # Not named after the columns: an UPDATE would take a parameter named `id` as a SET.
    row = select(*[bindparam(f"entry_{name}", type_=table.c[name].type) for name in names])
    return (
        insert(table)
        .from_select(list(names), row.select_from(claimed))
        .add_cte(claimed)
        .returning(table.c.id)
    )


def _last_number() -> int:
    """The number this thread's writer last appended, as far as this process knows."""
    writer_id()
    number: int = _writer.n
    return number


def _remember_number(number: int) -> None:
    _writer.n = number


_writer = threading.local()


def writer_id() -> uuid.UUID:
    """This thread's writer id (a new one in a forked child: a writer is one process thread)."""
    mine: tuple[int, uuid.UUID] | None = getattr(_writer, "id", None)
    if mine is None or mine[0] != os.getpid():
        mine = (os.getpid(), uuid.uuid4())
        _writer.id, _writer.n = mine, 0
    return mine[1]


def nik_reference(blind_index: BlindIndex, nik: str) -> dict[str, str | None]:
    """How an entry's `detail` names a NIK asked for: its blind-index digest and that key's id
    (a NIK with no digits has no digest), never the NIK."""
    try:
        digest: str | None = blind_index.digest(nik, purpose="nik")
    except ValueError:
        digest = None
    return {"nik_digest": digest, "blind_index_key": blind_index.kid}


def str_reference(blind_index: BlindIndex, str_number: str) -> dict[str, str | None]:
    """How an entry's `detail` names an STR number asked for that no registration answered
    to (it may be a NIK typed in the wrong field): its blind-index digest and that key's id."""
    try:
        digest: str | None = blind_index.digest(str_number, purpose="str_number")
    except ValueError:
        digest = None
    return {"str_digest": digest, "blind_index_key": blind_index.kid}


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
    """The hash of an entry chained before migration 0009 (no writer, no `entry_mac`):
    HMAC-SHA256 under `key` of its content and its predecessor's hash (canonical JSON, the key id
    included); plain SHA-256 of the same without a key id for an entry written before the chain
    was keyed (`key` None). Its place was then its `seq`, which is its `chain_seq` since."""
    content: dict[str, Any] = {
        "seq": entry.chain_seq if entry.chain_seq is not None else entry.seq,
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


def entry_mac(entry: EntryContent, key: Key) -> str:
    """HMAC-SHA256 under `key` of a pending entry's content, writer and writer's number
    (canonical JSON, the key id included): what makes an entry tamper-evident before it is
    sealed. The insertion number `seq` is not covered; the place in the chain is, by the seal."""
    content: dict[str, Any] = {
        "id": str(entry.id),
        "at": timestamp(entry.at),
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
        "writer_id": None if entry.writer_id is None else str(entry.writer_id),
        "writer_n": entry.writer_n,
        "key_id": key.kid,
    }
    return hmac.new(key.material, _PENDING_LABEL + canonical(content), hashlib.sha256).hexdigest()


def seal_hash(chain_seq: int, prev_hash: str, mac: str, key: Key) -> str:
    """An entry's chain hash: HMAC-SHA256 under `key` of its place, its predecessor's hash and
    its `entry_mac` (so of its content too)."""
    content = {"chain_seq": chain_seq, "prev_hash": prev_hash, "entry_mac": mac, "key_id": key.kid}
    return hmac.new(key.material, _SEAL_LABEL + canonical(content), hashlib.sha256).hexdigest()


def canonical(content: Mapping[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
