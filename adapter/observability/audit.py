"""The audit trail: who did what to which personal data, when, with what outcome.

`record_audit` appends an entry in the caller's session, so it commits (or rolls back) with the
change it describes. Entries are numbered and chained: each one's `hash` is HMAC-SHA256, under a
key of ``AUDIT_KEYS`` (never stored in the database), over its own canonical content and the
previous entry's hash. Appending first locks the chain's head row, so concurrent writers (any
number of processes) chain one at a time; the database itself moves the head when an entry is
added. `verify_chain` walks the trail up to the head and through the operator's anchors
(`Anchor`: the head signed and kept outside the database) and reports the first broken link.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from adapter.errors import AdapterError
from adapter.observability.tracing import current_trace_id
from adapter.store.crypto import Key, KeyRing
from adapter.store.database import AUDIT_KEYS_INFO
from adapter.store.models import AUDIT_GENESIS, AuditChainHead, AuditEvent
from adapter.store.personal_fields import PERSONAL_FIELDS

_VERIFY_BATCH: Final = 5_000
# Domain separation: an entry's MAC can never pass for an anchor's, nor the other way round.
_ENTRY_LABEL: Final = b"hf-adapter/audit-entry/v1\n"
_ANCHOR_LABEL: Final = b"hf-adapter/audit-anchor/v1\n"
_ANCHOR_FIELDS: Final = frozenset({"seq", "hash", "at", "key_id", "mac"})


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


class AuditKeysMissing(AdapterError):
    """A session without the audit keys tried to append or verify (a wiring mistake)."""

    default_reason = "audit_keys_missing"


class AnchorError(AdapterError):
    """An anchor file that cannot be read, or whose anchors are not signed by ``AUDIT_KEYS``."""

    default_reason = "audit_anchor"


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
        return hashlib.sha256(_canonical(content)).hexdigest()
    content["key_id"] = key.kid
    return hmac.new(key.material, _ENTRY_LABEL + _canonical(content), hashlib.sha256).hexdigest()


# -- anchors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """The chain's head (entry `seq` has hash `hash`) at time `at`, signed with the audit key
    `key_id`: one JSON line an operator keeps outside the database (`hf-adapter audit anchor`).
    """

    seq: int
    hash: str
    at: dt.datetime
    key_id: str
    mac: str

    @classmethod
    def sign(cls, seq: int, entry_hash: str, at: dt.datetime, key: Key) -> Anchor:
        at = at.astimezone(dt.UTC)
        return cls(seq, entry_hash, at, key.kid, _anchor_mac(seq, entry_hash, at, key))

    def to_json(self) -> str:
        return json.dumps(
            {
                "seq": self.seq,
                "hash": self.hash,
                "at": _timestamp(self.at),
                "key_id": self.key_id,
                "mac": self.mac,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def signed_by(self, keys: KeyRing) -> bool:
        """Whether a key of `keys` made this anchor's MAC (compared in constant time)."""
        if self.key_id not in keys.kids:
            return False
        expected = _anchor_mac(self.seq, self.hash, self.at, keys.get(self.key_id))
        return hmac.compare_digest(expected, self.mac)


def read_anchors(lines: Iterable[str], keys: KeyRing) -> list[Anchor]:
    """The anchors in an anchor file's lines (blank lines skipped), each checked against `keys`;
    `AnchorError` naming the first line that is malformed or not signed by them."""
    anchors: list[Anchor] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        anchor = _parse_anchor(line, number)
        if anchor.key_id not in keys.kids:
            raise AnchorError(
                f"anchor on line {number} is signed with audit key {anchor.key_id!r}, which is "
                "not in AUDIT_KEYS (add it back after the active key to check old anchors)"
            )
        if not anchor.signed_by(keys):
            raise AnchorError(
                f"anchor on line {number} (entry #{anchor.seq}) does not match its signature: "
                "the anchor file was altered, or it belongs to another deployment"
            )
        anchors.append(anchor)
    return anchors


def _parse_anchor(line: str, number: int) -> Anchor:
    problem = f"anchor on line {number} is not an anchor written by `hf-adapter audit anchor`"
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise AnchorError(problem) from None
    if not isinstance(data, dict) or set(data) != _ANCHOR_FIELDS:
        raise AnchorError(problem)
    seq, entry_hash, at, key_id, mac = (
        data[name] for name in ("seq", "hash", "at", "key_id", "mac")
    )
    if (
        not isinstance(seq, int)
        or isinstance(seq, bool)
        or seq < 0
        or not all(isinstance(value, str) for value in (entry_hash, at, key_id, mac))
    ):
        raise AnchorError(problem)
    try:
        moment = dt.datetime.fromisoformat(at)
    except ValueError:
        raise AnchorError(problem) from None
    if moment.tzinfo is None:
        raise AnchorError(problem)
    return Anchor(seq, entry_hash, moment.astimezone(dt.UTC), key_id, mac)


def _anchor_mac(seq: int, entry_hash: str, at: dt.datetime, key: Key) -> str:
    content = {"seq": seq, "hash": entry_hash, "at": _timestamp(at), "key_id": key.kid}
    return hmac.new(key.material, _ANCHOR_LABEL + _canonical(content), hashlib.sha256).hexdigest()


# -- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    entries: int
    last_seq: int
    last_hash: str = AUDIT_GENESIS
    broken_at: int | None = None
    problem: str | None = None
    # Entries from before the chain was keyed (plain SHA-256): they prove order, not origin.
    unkeyed: int = 0
    anchors: int = 0

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(session: Session, anchors: Sequence[Anchor] = ()) -> ChainReport:
    """Walk the trail in order up to the chain's head, through `anchors`; the first broken link.

    The head is read first and bounds the walk, so entries appended meanwhile are left for the
    next run instead of looking like a cut tail; on PostgreSQL the whole walk is one snapshot
    (REPEATABLE READ) when `session` has not begun a transaction yet.
    """
    keys = audit_keys(session)
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )
    head_seq, head_hash = session.execute(
        select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == 1)
    ).one()
    vouched = {anchor.seq: anchor for anchor in anchors if anchor.seq > 0}
    walk = _Walk(keys, vouched)
    after = 0
    while walk.broken is None:
        batch = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > after, AuditEvent.seq <= head_seq)
                .order_by(AuditEvent.seq)
                .limit(_VERIFY_BATCH)
            )
        )
        for entry in batch:
            if not walk.step(entry):
                break
        if len(batch) < _VERIFY_BATCH:
            break
        after = batch[-1].seq
        session.expunge_all()  # keep memory flat on a long trail
    if walk.broken is None:
        walk.finish(head_seq, head_hash)
        if walk.broken is None and session.get_bind().dialect.name == "postgresql":
            # In one snapshot nothing lies beyond the head unless it was put there around the
            # triggers (on SQLite a later entry may simply have been appended meanwhile).
            beyond = session.scalar(
                select(AuditEvent.seq).where(AuditEvent.seq > head_seq).limit(1)
            )
            if beyond is not None:
                walk.fail(
                    head_seq + 1,
                    f"entry {beyond} lies beyond the chain head (#{head_seq}): it was added "
                    "around the database's triggers",
                )
    return walk.report(len(vouched))


class _Walk:
    """The state of one `verify_chain` walk: what has been verified, the first broken link."""

    def __init__(self, keys: KeyRing, vouched: Mapping[int, Anchor]) -> None:
        self._keys = keys
        self._vouched = vouched
        self.expected_prev, self.expected_seq, self.count, self.unkeyed = AUDIT_GENESIS, 1, 0, 0
        self.broken: tuple[int, str] | None = None

    def step(self, entry: AuditEvent) -> bool:
        """Check `entry` as the next one; False (and `broken` set) at the first broken link."""
        seq = self.expected_seq
        if entry.seq != seq:
            return self.fail(seq, f"entry {seq} is missing")
        if entry.prev_hash != self.expected_prev:
            return self.fail(
                seq, "prev_hash does not match the entry before (an entry was replaced)"
            )
        problem = self._content_problem(entry)
        if problem is not None:
            return self.fail(seq, problem)
        anchor = self._vouched.get(seq)
        if anchor is not None and not hmac.compare_digest(anchor.hash, entry.hash):
            return self.fail(
                seq,
                f"differs from the anchor made at {_timestamp(anchor.at)} (the entry, or one "
                "before it, was replaced)",
            )
        self.expected_prev, self.expected_seq, self.count = entry.hash, seq + 1, self.count + 1
        return True

    def _content_problem(self, entry: AuditEvent) -> str | None:
        if entry.key_id is None:
            # Plain SHA-256 is only what entries written before the chain was keyed carry;
            # the database refuses new ones, so one after a keyed entry was forged around it.
            if self.count > self.unkeyed:
                return (
                    "not signed with an audit key (plain SHA-256) although entries before it "
                    "are: it was rewritten without the key"
                )
            self.unkeyed += 1
            if entry_hash(entry, None) != entry.hash:
                return "content does not match its hash (edited)"
            return None
        if entry.key_id not in self._keys.kids:
            return (
                f"signed with audit key {entry.key_id!r}, which is not in AUDIT_KEYS (add it "
                "back after the active key if it was retired; otherwise the entry is forged)"
            )
        expected = entry_hash(entry, self._keys.get(entry.key_id))
        if not hmac.compare_digest(expected, entry.hash):
            return "content does not match its HMAC (edited, or signed without the audit key)"
        return None

    def finish(self, head_seq: int, head_hash: str) -> None:
        """After the last entry: the head and every anchor must have been reached."""
        last = self.expected_seq - 1
        if last < head_seq:
            self.fail(
                last + 1,
                f"the chain head says entry {head_seq} is the newest, the trail ends at {last} "
                "(entries were removed from the end)",
            )
        elif head_hash != self.expected_prev:
            self.fail(last, "does not match the chain head's hash (the newest entry was replaced)")
        else:
            beyond = [anchor for anchor in self._vouched.values() if anchor.seq > last]
            if beyond:
                anchor = max(beyond, key=lambda anchor: anchor.seq)
                self.fail(
                    last + 1,
                    f"the anchor made at {_timestamp(anchor.at)} vouches for entry "
                    f"{anchor.seq}, the trail ends at {last} (entries were removed from the end)",
                )

    def fail(self, seq: int, problem: str) -> bool:
        self.broken = (seq, problem)
        return False

    def report(self, anchors: int) -> ChainReport:
        broken_at, problem = self.broken if self.broken is not None else (None, None)
        return ChainReport(
            entries=self.count,
            last_seq=self.expected_seq - 1,
            last_hash=self.expected_prev,
            broken_at=broken_at,
            problem=problem,
            unkeyed=self.unkeyed,
            anchors=anchors,
        )


def _canonical(content: Mapping[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
