"""Verifying the audit trail: walk the chain up to its head, through the operator's anchors,
check the entries not sealed yet, and count every writer's entries; report the first broken
link or the first inconsistency."""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from adapter.audit.anchors import Anchor
from adapter.audit.trail import audit_keys, entry_hash, entry_mac, seal_hash, timestamp
from adapter.store.crypto import KeyRing
from adapter.store.models import AUDIT_GENESIS, AuditChainHead, AuditEvent, AuditWriter

_VERIFY_BATCH: Final = 5_000


@dataclass(frozen=True)
class ChainReport:
    entries: int
    last_seq: int
    last_hash: str = AUDIT_GENESIS
    # The place in the chain of the first broken link (None when what is wrong has no place
    # in the chain yet: a pending entry, a writer's missing entry).
    broken_at: int | None = None
    problem: str | None = None
    # Entries from before the chain was keyed (plain SHA-256): they prove order, not origin.
    unkeyed: int = 0
    anchors: int = 0
    # Entries not sealed yet (their MACs checked), and when the oldest was written.
    pending: int = 0
    oldest_pending_at: dt.datetime | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify_chain(session: Session, anchors: Sequence[Anchor] = ()) -> ChainReport:
    """Walk the sealed trail in chain order up to the head, through `anchors`; then check the
    pending entries' MACs and that every writer's entries are all there (1 to its count).

    The head is read first and bounds the walk, so entries sealed meanwhile are left for the
    next run instead of looking like a cut tail; on PostgreSQL the whole check is one snapshot
    (REPEATABLE READ) when `session` has not begun a transaction yet.
    """
    keys = audit_keys(session)
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql and not session.in_transaction():
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
                .where(AuditEvent.chain_seq > after, AuditEvent.chain_seq <= head_seq)
                .order_by(AuditEvent.chain_seq)
                .limit(_VERIFY_BATCH)
            )
        )
        for entry in batch:
            if not walk.step(entry):
                break
        if len(batch) < _VERIFY_BATCH:
            break
        after = batch[-1].chain_seq or 0
        session.expunge_all()  # keep memory flat on a long trail
    if walk.broken is None:
        walk.finish(head_seq, head_hash)
    if walk.broken is None:
        # Nothing is sealed beyond the head unless it was put there around the triggers: a seal
        # moves the head in its own transaction. The head is read again in the same statement
        # (one snapshot on either backend), so an entry sealed since the walk began is no
        # finding on SQLite, where the whole check is not one snapshot.
        current_head = select(AuditChainHead.seq).where(AuditChainHead.id == 1).scalar_subquery()
        beyond = session.execute(
            select(AuditEvent.chain_seq, current_head)
            .where(AuditEvent.chain_seq > current_head)
            .limit(1)
        ).first()
        if beyond is not None:
            entry, head_now = beyond
            walk.fail(
                head_now + 1,
                f"entry {entry} lies beyond the chain head (#{head_now}): it was added "
                "around the database's triggers",
            )
    if walk.broken is None:
        # Places start at 1: an entry given 0 or less is out of both the walk and the pending
        # check, so it is looked for on its own (an edited or forged entry hidden there).
        before = session.execute(
            select(AuditEvent.seq, AuditEvent.chain_seq)
            .where(AuditEvent.chain_seq < 1)
            .order_by(AuditEvent.chain_seq)
            .limit(1)
        ).first()
        if before is not None:
            seq, place = before
            walk.fail(
                None,
                f"entry inserted as {seq} has place {place} in the chain, before its first "
                "(#1): it was put there around the database's triggers",
            )
    if walk.broken is None:
        _check_writers(session, walk)
    if walk.broken is None:
        _check_pending(session, walk)
    return walk.report(len(vouched))


def _check_writers(session: Session, walk: _Walk) -> None:
    """Every writer's entries numbered 1 to its count are there, and none lies beyond it.

    Each statement is one snapshot (on SQLite, where the whole check is not, an entry appended
    meanwhile raises its writer's count and its own number together).
    """
    twice = session.execute(
        select(AuditEvent.writer_id, AuditEvent.writer_n, func.count(AuditEvent.seq))
        .where(AuditEvent.writer_id.is_not(None))
        .group_by(AuditEvent.writer_id, AuditEvent.writer_n)
        .having(func.count(AuditEvent.seq) > 1)
        .limit(1)
    ).first()
    if twice is not None:
        # Only with the table's unique constraint dropped: a copy standing in for a deleted
        # entry would otherwise keep its writer's count right.
        writer, number, copies = twice
        walk.fail(
            None,
            f"entry {number} of writer {writer} is there {copies} times: copies were inserted "
            "around the database's constraints (one may stand in for a deleted entry)",
        )
        return
    counted = func.count(AuditEvent.seq)
    short = session.execute(
        select(AuditWriter.id, AuditWriter.n, counted)
        .outerjoin(
            AuditEvent,
            and_(AuditEvent.writer_id == AuditWriter.id, AuditEvent.writer_n <= AuditWriter.n),
        )
        .group_by(AuditWriter.id, AuditWriter.n)
        .having(counted != AuditWriter.n)
        .limit(1)
    ).first()
    if short is not None:
        writer, count, found = short
        walk.fail(None, _missing(session, writer, count, found))
        return
    stray = session.execute(
        select(AuditEvent.seq, AuditEvent.chain_seq, AuditEvent.writer_id, AuditEvent.writer_n)
        .outerjoin(AuditWriter, AuditWriter.id == AuditEvent.writer_id)
        .where(
            AuditEvent.writer_id.is_not(None),
            or_(AuditWriter.id.is_(None), AuditEvent.writer_n > AuditWriter.n),
        )
        .limit(1)
    ).first()
    if stray is not None:
        seq, chain_seq, stray_writer, number = stray
        walk.fail(
            chain_seq,
            f"entry {_named(seq, chain_seq)} is number {number} of writer {stray_writer}, "
            "which has not counted that many: the writers' counts were rewound or removed "
            "(entries after it were deleted, around the database's triggers)",
        )


def _missing(session: Session, writer: uuid.UUID, count: int, found: int) -> str:
    numbers = session.execute(
        select(AuditEvent.writer_n, AuditEvent.seq, AuditEvent.chain_seq)
        .where(AuditEvent.writer_id == writer, AuditEvent.writer_n <= count)
        .order_by(AuditEvent.writer_n)
    ).all()
    expected, before = 1, None
    for number, seq, chain_seq in numbers:
        if number != expected:
            break
        expected, before = expected + 1, _named(seq, chain_seq)
    after = next(
        (_named(seq, chain) for number, seq, chain in numbers if (number or 0) > expected), None
    )
    where = "".join(
        (
            f"; the writer's entry before it is {before}" if before else "",
            f"; the one after it is {after}" if after else "",
        )
    )
    return (
        f"entry {expected} of writer {writer} is missing ({count} written, {found} found): it "
        f"was deleted{where}"
    )


def _named(seq: int, chain_seq: int | None) -> str:
    return f"#{chain_seq}" if chain_seq is not None else f"pending (inserted as {seq})"


def _check_pending(session: Session, walk: _Walk) -> None:
    after = 0
    while walk.broken is None:
        batch = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.chain_seq.is_(None), AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(_VERIFY_BATCH)
            )
        )
        for entry in batch:
            if not walk.pending_step(entry):
                break
        if len(batch) < _VERIFY_BATCH:
            break
        after = batch[-1].seq
        session.expunge_all()


class _Walk:
    """The state of one `verify_chain` walk: what has been verified, the first broken link."""

    def __init__(self, keys: KeyRing, vouched: Mapping[int, Anchor]) -> None:
        self._keys = keys
        self._vouched = vouched
        self.expected_prev, self.expected_seq, self.count, self.unkeyed = AUDIT_GENESIS, 1, 0, 0
        self.legacy = 0  # chained before 0009 (no writer, no MAC)
        self.pending = 0
        self.oldest_pending_at: dt.datetime | None = None
        self.broken: tuple[int | None, str] | None = None

    def step(self, entry: AuditEvent) -> bool:
        """Check `entry` as the next one; False (and `broken` set) at the first broken link."""
        seq = self.expected_seq
        if entry.chain_seq != seq:
            return self.fail(seq, f"entry {seq} is missing")
        if entry.prev_hash != self.expected_prev:
            return self.fail(
                seq, "prev_hash does not match the entry before (an entry was replaced)"
            )
        problem = self._content_problem(entry)
        if problem is not None:
            return self.fail(seq, problem)
        anchor = self._vouched.get(seq)
        if anchor is not None and not hmac.compare_digest(anchor.hash, entry.hash or ""):
            return self.fail(
                seq,
                f"differs from the anchor made at {timestamp(anchor.at)} (the entry, or one "
                "before it, was replaced)",
            )
        self.expected_prev, self.expected_seq, self.count = (
            entry.hash or "",
            seq + 1,
            self.count + 1,
        )
        return True

    def pending_step(self, entry: AuditEvent) -> bool:
        """Check a pending entry's MAC; False (and `broken` set) if it does not verify."""
        problem = self._mac_problem(entry)
        if problem is not None:
            return self.fail(None, f"pending entry (inserted as {entry.seq}): {problem}")
        self.pending += 1
        if self.oldest_pending_at is None or entry.at < self.oldest_pending_at:
            self.oldest_pending_at = entry.at
        return True

    def _mac_problem(self, entry: AuditEvent) -> str | None:
        if entry.entry_mac is None or entry.writer_id is None or entry.key_id is None:
            return "it has no MAC, key id or writer: it was inserted around the database's triggers"
        if entry.key_id not in self._keys.kids:
            return (
                f"signed with audit key {entry.key_id!r}, which is not in AUDIT_KEYS (add it "
                "back after the active key if it was retired; otherwise the entry is forged)"
            )
        expected = entry_mac(entry, self._keys.get(entry.key_id))
        if not hmac.compare_digest(expected, entry.entry_mac):
            return "content does not match its HMAC (edited, or signed without the audit key)"
        return None

    def _content_problem(self, entry: AuditEvent) -> str | None:
        if entry.entry_mac is not None or entry.writer_id is not None:
            problem = self._mac_problem(entry)
            if problem is not None:
                return problem
            mac, kid = entry.entry_mac or "", entry.key_id or ""
            expected = seal_hash(
                self.expected_seq,
                self.expected_prev,
                mac,
                self._keys.get(kid),
            )
            if not hmac.compare_digest(expected, entry.hash or ""):
                return (
                    "its chain hash does not match its place and the entry before (re-chained "
                    "without the audit key)"
                )
            return None
        if self.count > self.legacy:
            # The database refuses entries without a writer and MAC since 0009.
            return (
                "chained without a writer and MAC although entries before it have them: it was "
                "rewritten around the database's triggers"
            )
        self.legacy += 1
        return self._legacy_problem(entry)

    def _legacy_problem(self, entry: AuditEvent) -> str | None:
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
        if not hmac.compare_digest(expected, entry.hash or ""):
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

    def fail(self, seq: int | None, problem: str) -> bool:
        self.broken = (seq, problem)
        return False

    def report(self, anchors: int) -> ChainReport:
        broken_at, problem = self.broken if self.broken is not None else (None, None)
        return ChainReport(
            pending=self.pending,
            oldest_pending_at=self.oldest_pending_at,
            entries=self.count,
            last_seq=self.expected_seq - 1,
            last_hash=self.expected_prev,
            broken_at=broken_at,
            problem=problem,
            unkeyed=self.unkeyed,
            anchors=anchors,
        )
