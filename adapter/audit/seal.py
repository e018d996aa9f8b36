"""Sealing the audit trail: chaining the committed pending entries, one sealer at a time.

`seal_pending` takes the chain's head (a row lock on PostgreSQL, the write lock on SQLite), reads
the pending entries committed so far in the order of `seq`, checks each one's MAC, and gives
each its place (`chain_seq`), its predecessor's hash and its chain hash, in one transaction per
batch; the database checks that the seals follow the head, in order, refuses them if not, and
moves the head (on PostgreSQL a batch is one statement, checked once; on SQLite entry by
entry). A sealer killed mid-batch leaves that batch pending (its transaction rolls back) and
the next run seals it. `Sealer` runs it in a thread of each long-running process (`serve`,
`worker`, `schedule`); on PostgreSQL an advisory lock lets only one of them seal at a time, the
others skip their turn. ``hf-adapter audit seal`` runs it once. The chain is thus in commit
order to within one turn: on PostgreSQL an entry inserted earlier (a lower `seq`) but committed
after a turn is sealed at the next one, after entries inserted later.
"""

from __future__ import annotations

import datetime as dt
import hmac
import itertools
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from typing import Final

from prometheus_client import Gauge
from sqlalchemy import Table, Update, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from adapter.audit.trail import audit_keys, entry_mac, seal_hash, timestamp
from adapter.errors import AdapterError
from adapter.store.models import AuditChainHead, AuditEvent

log = logging.getLogger("adapter.audit")

SEAL_BATCH: Final = 1_000
# How often an idle sealer looks for pending entries (a read of one index; nothing is locked
# unless there are some).
SEAL_INTERVAL_S: Final = 0.2
# pg_try_advisory_xact_lock key: one sealer at a time across the processes of a deployment.
SEALER_LOCK: Final = 0x6866_6175_6469_7401  # "hfaudit" + 1
# How long a seal waits for the sealing lock or the chain head's row on PostgreSQL: a turn of
# the sealer thread (which skips the turn when another sealer has the lock), and `audit seal` /
# `audit anchor` (which wait for that sealer). A session holding either longer is no sealer:
# it would stall sealing, and with it the bound on how long an entry stays pending.
TURN_LOCK_TIMEOUT_S: Final = 5
WAIT_LOCK_TIMEOUT_S: Final = 60
# The sealer thread warns when entries have waited this long to be sealed (checked, at most
# every `STALL_CHECK_S`, only while its turns are skipped or fail).
STALL_WARNING_S: Final = 60.0
STALL_CHECK_S: Final = 30.0
# While entries wait, the sealer reads the oldest one's age at most this often for its gauge
# (`hf_audit_sealing_lag_seconds`); with none waiting the gauge is 0 at every look.
LAG_CHECK_S: Final = 5.0
# PostgreSQL's lock_not_available: lock_timeout ran out.
_LOCK_NOT_AVAILABLE: Final = "55P03"


class SealingBlocked(AdapterError):
    """The sealing lock or the chain head's row was held longer than a seal waits."""

    default_reason = "sealing_blocked"


@dataclass(frozen=True)
class SealResult:
    sealed: int
    # Pending entries left out: a MAC that does not verify (forged or edited) or an audit key
    # that is not in AUDIT_KEYS; `hf-adapter audit verify` names them.
    refused: int = 0
    # Another sealer held the lock (PostgreSQL): nothing was done this turn.
    busy: bool = False


def seal_pending(
    sessions: sessionmaker[Session],
    *,
    batch: int = SEAL_BATCH,
    refused: set[int] | None = None,
    wait: bool = False,
    lock_timeout_s: int | None = None,
) -> SealResult:
    """Seal up to `batch` pending entries in one transaction. `refused` (entries' `seq`) are
    skipped, and entries refused now are added to it, so that a forged entry is not re-read
    on every turn. While another sealer works, return at once (`busy`), or `wait` for it. On
    PostgreSQL a lock held longer than `lock_timeout_s` (by default `WAIT_LOCK_TIMEOUT_S` with
    `wait`, else `TURN_LOCK_TIMEOUT_S`) raises `SealingBlocked`."""
    skip = refused if refused is not None else set()
    with sessions.begin() as session:
        keys = audit_keys(session)
        postgresql = session.get_bind().dialect.name == "postgresql"
        timeout_s = lock_timeout_s or (WAIT_LOCK_TIMEOUT_S if wait else TURN_LOCK_TIMEOUT_S)
        try:
            if postgresql:
                session.execute(text(f"SET LOCAL lock_timeout = '{timeout_s}s'"))
                if wait:
                    session.execute(select(func.pg_advisory_xact_lock(SEALER_LOCK)))
                elif not session.scalar(select(func.pg_try_advisory_xact_lock(SEALER_LOCK))):
                    return SealResult(0, busy=True)
            head_seq, head_hash = session.execute(
                update(AuditChainHead)
                .where(AuditChainHead.id == 1)
                .values(changed_at=dt.datetime.now(dt.UTC))
                .returning(AuditChainHead.seq, AuditChainHead.hash)
                .execution_options(synchronize_session=False)
            ).one()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            raise SealingBlocked(
                f"the audit sealing lock or the chain head's row was held for {timeout_s} s by "
                "a session that is not sealing, and entries stay pending meanwhile: find it in "
                "pg_locks (an advisory lock, or a row lock on audit_chain_head) and "
                "pg_stat_activity, and end it"
            ) from None
        query = select(AuditEvent).where(AuditEvent.chain_seq.is_(None))
        if skip:
            query = query.where(AuditEvent.seq.not_in(skip))
        pending = session.scalars(query.order_by(AuditEvent.seq).limit(batch)).all()
        seals: list[dict[str, object]] = []
        newly_refused = 0
        for entry in pending:
            problem = _pending_problem(entry, keys.kids)
            if problem is None:
                key, mac = keys.get(entry.key_id or ""), entry.entry_mac or ""
                if hmac.compare_digest(entry_mac(entry, key), mac):
                    previous, head_seq = head_hash, head_seq + 1
                    head_hash = seal_hash(head_seq, previous, mac, key)
                    seals.append(
                        {
                            "seq": entry.seq,
                            "chain_seq": head_seq,
                            "prev_hash": previous,
                            "hash": head_hash,
                        }
                    )
                    continue
                problem = "its content does not match its MAC (edited, or forged without the key)"
            skip.add(entry.seq)
            newly_refused += 1
            log.error(
                "audit entry %s (inserted at %s) left unsealed: %s",
                entry.seq,
                timestamp(entry.at),
                problem,
            )
        if seals and postgresql:
            # One statement for the batch: the database's statement trigger checks the entries
            # in the order of their places against the head, and moves it once.
            session.execute(
                _postgresql_seal(),
                {f"{column}s": [seal[column] for seal in seals] for column in _SEAL_COLUMNS},
            )
        elif seals:
            # SQLite's triggers are per row: one UPDATE per entry, in order.
            session.execute(update(AuditEvent), seals)
        return SealResult(len(seals), newly_refused)


_SEAL_COLUMNS: Final = ("seq", "chain_seq", "prev_hash", "hash")


@cache
def _postgresql_seal() -> Update:
    """``UPDATE audit_events SET chain_seq = given.chain_seq, … FROM unnest(:seqs, :chain_seqs,
    :prev_hashs, :hashs) AS given(…) WHERE seq = given.seq``: a batch's seals in one statement,
    one text whatever the batch's size (compiled once, kept prepared)."""
    table = AuditEvent.__table__
    assert isinstance(table, Table)
    given = (
        func.unnest(
            *[bindparam(f"{name}s", type_=ARRAY(table.c[name].type)) for name in _SEAL_COLUMNS]
        )
        .table_valued(*_SEAL_COLUMNS)
        .render_derived(name="given")
    )
    return (
        update(table)
        .where(table.c.seq == given.c.seq)
        .values(chain_seq=given.c.chain_seq, prev_hash=given.c.prev_hash, hash=given.c.hash)
    )


def _pending_problem(entry: AuditEvent, kids: Collection[str]) -> str | None:
    if entry.entry_mac is None or entry.key_id is None or entry.writer_id is None:
        return "it has no MAC, key id or writer (inserted around the database's triggers)"
    if entry.key_id not in kids:
        return (
            f"it is signed with audit key {entry.key_id!r}, which is not in AUDIT_KEYS (add it "
            "back after the active key if it was retired; otherwise the entry is forged)"
        )
    return None


def seal_all(
    sessions: sessionmaker[Session],
    *,
    batch: int = SEAL_BATCH,
    wait: bool = True,
    max_batches: int | None = None,
) -> SealResult:
    """Seal every entry pending now, batch after batch (``hf-adapter audit seal``, and the
    audit listing before it lists); waits for another sealer unless `wait` is False, and stops
    after `max_batches` batches if given (under sustained appends the backlog may never end)."""
    sealed = refused_count = 0
    refused: set[int] = set()
    for _ in itertools.count() if max_batches is None else range(max_batches):
        result = seal_pending(sessions, batch=batch, refused=refused, wait=wait)
        if result.busy:
            return SealResult(sealed, refused_count, busy=True)
        sealed, refused_count = sealed + result.sealed, refused_count + result.refused
        if result.sealed + result.refused < batch:
            break
    return SealResult(sealed, refused_count)


class Sealer:
    """`seal_pending` in a daemon thread: at once while there is a backlog, otherwise every
    `interval_s`; a failed turn is logged and retried at the next."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        interval_s: float = SEAL_INTERVAL_S,
        batch: int = SEAL_BATCH,
        stall_warning_s: float = STALL_WARNING_S,
        stall_check_s: float = STALL_CHECK_S,
        lag: Gauge | None = None,
        lag_check_s: float = LAG_CHECK_S,
    ) -> None:
        self._sessions = sessions
        self._lag = lag
        self._lag_check_s = lag_check_s
        self._last_lag_check = float("-inf")
        self._interval_s = interval_s
        self._batch = batch
        self._stall_warning_s = stall_warning_s
        self._stall_check_s = stall_check_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: set[int] = set()
        self._last_stall_check = float("-inf")

    def start(self) -> Sealer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the turn under way, then seal once more what this process left pending
        (best effort: another process's sealer, or ``hf-adapter audit seal``, does it too)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
            try:
                seal_all(self._sessions, batch=self._batch, wait=False)
            except Exception:  # logged: the entries stay pending, and are sealed later
                log.exception("sealing the audit trail at exit failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                backlog = self._turn()
            except SealingBlocked as exc:  # no traceback: the message says what to look for
                log.warning("sealing the audit trail: %s", exc)
                self._watch_for_a_stall()
                backlog = False
            except Exception:  # logged, and tried again at the next turn
                log.exception("sealing the audit trail failed; retrying")
                self._watch_for_a_stall()
                backlog = False
            if not backlog:
                self._stop.wait(self._interval_s)

    def _watch_for_a_stall(self) -> None:
        """After a turn that sealed nothing while entries wait: warn if the oldest has waited
        `stall_warning_s` (another sealer holding the lock for its turns is normal; one holding
        it for a minute is not). At most every `stall_check_s`."""
        now = time.monotonic()
        if now - self._last_stall_check < self._stall_check_s:
            return
        self._last_stall_check = now
        try:
            with self._sessions() as session:
                session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                # Entries this sealer refused (forged, or under a key not configured) stay
                # pending for ever: `audit verify` reports them, they are no stall.
                pending = select(func.min(AuditEvent.at)).where(AuditEvent.chain_seq.is_(None))
                if self._refused:
                    pending = pending.where(AuditEvent.seq.not_in(self._refused))
                oldest = session.scalar(pending)
                # Every sealer's turn moves the head's `changed_at`, whichever process it is.
                last_turn = session.scalar(
                    select(AuditChainHead.changed_at).where(AuditChainHead.id == 1)
                )
        except Exception:  # noqa: BLE001 - the turn's own failure is logged already
            return
        if oldest is None:
            return
        moment = dt.datetime.now(dt.UTC)
        waited = (moment - oldest).total_seconds()
        idle = (moment - last_turn).total_seconds() if last_turn is not None else waited
        if min(waited, idle) >= self._stall_warning_s:
            log.warning(
                "audit entries have waited %.0f s to be sealed, and no sealer has taken a turn "
                "for %.0f s: a session that is no sealer may hold the sealing lock or the "
                "chain head (hf-adapter audit seal says so)",
                waited,
                idle,
            )

    def _turn(self) -> bool:
        """One turn; whether a full batch was sealed (so more may be waiting)."""
        with self._sessions() as session:
            # The look is one statement in autocommit: no BEGIN and ROLLBACK around it. Every
            # long-running process looks every `interval_s`, busy or idle, so this is most of
            # what an idle deployment asks of its database.
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            query = select(AuditEvent.seq).where(AuditEvent.chain_seq.is_(None))
            if self._refused:
                query = query.where(AuditEvent.seq.not_in(self._refused))
            if session.scalar(query.limit(1)) is None:
                if self._lag is not None:
                    self._lag.set(0)
                return False
            self._measure_lag(session)
        result = seal_pending(self._sessions, batch=self._batch, refused=self._refused)
        if result.busy:
            self._watch_for_a_stall()
        return result.sealed + result.refused >= self._batch

    def _measure_lag(self, session: Session) -> None:
        """The oldest waiting entry's age into the gauge, at most every `lag_check_s`: a
        sealer that keeps sealing full batches and never catches up warns nowhere else."""
        now = time.monotonic()
        if self._lag is None or now - self._last_lag_check < self._lag_check_s:
            return
        self._last_lag_check = now
        oldest = select(func.min(AuditEvent.at)).where(AuditEvent.chain_seq.is_(None))
        if self._refused:
            oldest = oldest.where(AuditEvent.seq.not_in(self._refused))
        at = session.scalar(oldest)
        waited = 0.0 if at is None else (dt.datetime.now(dt.UTC) - at).total_seconds()
        self._lag.set(max(0.0, waited))


def pending_count(session: Session) -> int:
    """Entries committed and not sealed yet (a read of the pending entries' partial index)."""
    return int(
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.chain_seq.is_(None))
        )
        or 0
    )
