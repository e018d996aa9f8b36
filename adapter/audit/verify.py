"""Verifying the audit trail: walk the chain up to its head, through the operator's anchors,
and report the first broken link."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapter.audit.anchors import Anchor
from adapter.audit.trail import audit_keys, entry_hash, timestamp
from adapter.store.crypto import KeyRing
from adapter.store.models import AUDIT_GENESIS, AuditChainHead, AuditEvent

_VERIFY_BATCH: Final = 5_000


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
                f"differs from the anchor made at {timestamp(anchor.at)} (the entry, or one "
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
                    f"the anchor made at {timestamp(anchor.at)} vouches for entry "
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
