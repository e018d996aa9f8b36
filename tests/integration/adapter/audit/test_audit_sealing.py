"""The sealed chain: appending takes no lock but its writer's, pending entries are
tamper-evident before they are sealed, the sealer chains them (in a thread, concurrently with
another, or as a command) and resumes after being killed."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine, event, func, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from adapter.api.listings import AuditFilter
from adapter.api.services import ApiServices
from adapter.audit import (
    Actor,
    Sealer,
    SealingBlocked,
    entry_mac,
    record_audit,
    seal_all,
    seal_pending,
    verify_chain,
)
from adapter.audit import seal as seal_module
from adapter.audit.seal import SEALER_LOCK
from adapter.audit.trail import audit_keys, seal_hash
from adapter.observability.sync_metrics import SealerMetrics
from adapter.store.crypto import Key
from adapter.store.models import AuditChainHead, AuditEvent, AuditWriter
from tests.integration.adapter.sync.support import adapter_environment
from tests.integration.adapter.sync.test_sync_cli_crash import HF_ADAPTER
from tests.support.databases import BACKENDS

pytestmark = pytest.mark.integration

ALICE = Actor("user", "7d1f0c1e-5a7c-4c1e-9a53-2f4d1c0b9e11", "healthforce-portal")
GUESSED_KEY = Key("audit-1", os.urandom(32))


def _append(sessions: sessionmaker[Session], count: int, *, start: int = 0) -> None:
    for n in range(start, start + count):
        with sessions.begin() as session:
            record_audit(
                session, ALICE, "healthworker.read", "health-workers", resource_id=f"w-{n}"
            )


def _pending(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.chain_seq.is_(None))
            )
            or 0
        )


def _around_the_triggers(engine: Engine, change: Callable[[Connection], None]) -> None:
    """Change the trail as the tables' owner, who may switch the triggers off (DDL)."""
    tables = ("audit_events", "audit_chain_head", "audit_writers")
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            for table in tables:
                connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            change(connection)
            for table in tables:
                connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        else:
            for trigger in connection.scalars(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).all():
                connection.execute(text(f'DROP TRIGGER "{trigger}"'))
            change(connection)


# -- appending ------------------------------------------------------------------------------


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_appending_does_not_wait_for_the_chain_head(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with engine.connect() as holder:
        holding = holder.begin()
        holder.execute(text("SELECT seq FROM audit_chain_head WHERE id = 1 FOR UPDATE"))
        # Before the sealed chain every append locked the head: this one would time out.
        with sessions.begin() as session:
            session.execute(text("SET LOCAL lock_timeout = '3s'"))
            record_audit(session, ALICE, "healthworker.read", "health-workers")
        with sessions.begin() as session:
            session.execute(text("SET LOCAL lock_timeout = '3s'"))
            record_audit(session, ALICE, "healthworker.read", "health-workers")
        holding.rollback()
    assert _pending(sessions) == 2
    assert seal_all(sessions).sealed == 2
    with sessions() as session:
        report = verify_chain(session)
    assert (report.intact, report.entries, report.pending) == (True, 2, 0)


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_rolled_back_append_takes_its_number_back(sessions: sessionmaker[Session]) -> None:
    _append(sessions, 1)

    def failing_change() -> None:
        with sessions.begin() as session:
            record_audit(session, ALICE, "healthworker.read", "health-workers")
            raise RuntimeError("the change it describes failed")

    with pytest.raises(RuntimeError, match="the change it describes failed"):
        failing_change()
    _append(sessions, 1)
    with sessions() as session:
        numbers = session.scalars(select(AuditEvent.writer_n).order_by(AuditEvent.seq)).all()
        counts = session.scalars(select(AuditWriter.n)).all()
        report = verify_chain(session)
    assert numbers == [1, 2]
    assert counts == [2]
    assert report.intact, report.problem
    assert (report.entries, report.pending) == (0, 2)


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_detail_that_cannot_be_written_takes_no_number(sessions: sessionmaker[Session]) -> None:
    """A caller that goes on after a refused entry commits no hole in its writer's numbers."""
    with sessions.begin() as session:
        record_audit(session, ALICE, "healthworker.read", "health-workers", resource_id="w-0")
        with pytest.raises(TypeError):
            # Keys that cannot be sorted: json.dumps(sort_keys=True) refuses them.
            record_audit(
                session, ALICE, "healthworker.read", "health-workers", detail={1: "a", "b": 2}
            )
        record_audit(session, ALICE, "healthworker.read", "health-workers", resource_id="w-1")
    seal_all(sessions)
    with sessions() as session:
        numbers = session.scalars(select(AuditEvent.writer_n).order_by(AuditEvent.seq)).all()
        counts = session.scalars(select(AuditWriter.n)).all()
        report = verify_chain(session)
    assert numbers == [1, 2]
    assert counts == [2]
    assert report.intact, report.problem
    assert report.entries == 2


# -- pending entries are tamper-evident -------------------------------------------------------


def _edit(connection: Connection) -> None:
    connection.execute(
        text("UPDATE audit_events SET resource_id = 'w-x' WHERE resource_id = 'w-4'")
    )


def _delete(connection: Connection) -> None:
    connection.execute(text("DELETE FROM audit_events WHERE resource_id = 'w-4'"))


def _forge(connection: Connection) -> None:
    forged = AuditEvent(
        id=uuid.uuid4(),
        at=dt.datetime.now(dt.UTC),
        actor_kind="user",
        actor_subject=ALICE.subject,
        actor_client=ALICE.client,
        action="healthworker.read",
        resource_type="health-workers",
        outcome="success",
        writer_id=uuid.uuid4(),
        writer_n=1,
        key_id="audit-1",
    )
    forged.entry_mac = entry_mac(forged, GUESSED_KEY)
    with Session(connection) as session:
        if connection.dialect.name != "postgresql":  # there `seq` is GENERATED ALWAYS
            forged.seq = int(session.scalar(select(func.max(AuditEvent.seq))) or 0) + 1
        session.add(AuditWriter(id=forged.writer_id, n=1))
        session.add(forged)
        session.flush()


def _rewind(connection: Connection) -> None:
    connection.execute(text("UPDATE audit_writers SET n = n - 1"))


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
@pytest.mark.parametrize(
    ("tamper", "problem", "refused"),
    [
        (_edit, "content does not match its HMAC", 1),
        (_delete, "entry 5 of writer", 0),
        (_forge, "content does not match its HMAC", 1),
        (_rewind, "which has not counted that many", 0),
    ],
    ids=["edited", "deleted", "forged", "count rewound"],
)
def test_tampering_with_pending_entries_is_found_and_they_are_not_sealed(
    engine: Engine,
    sessions: sessionmaker[Session],
    tamper: Callable[[Connection], None],
    problem: str,
    refused: int,
) -> None:
    _append(sessions, 3)
    seal_all(sessions)
    _append(sessions, 3, start=3)  # w-3, w-4, w-5: pending, numbers 4 to 6 of this writer
    _around_the_triggers(engine, tamper)

    with sessions() as session:
        report = verify_chain(session)
    assert not report.intact
    assert report.problem is not None
    assert problem in report.problem, report.problem
    assert report.broken_at is None, "a pending entry has no place in the chain yet"
    assert report.entries == 3, "the sealed entries before it verified"

    result = seal_all(sessions)
    assert result.refused == refused
    with sessions() as session:
        refused_left = session.scalars(
            select(AuditEvent.resource_id).where(AuditEvent.chain_seq.is_(None))
        ).all()
    assert len(refused_left) == refused, "only what does not verify is left unsealed"


# -- the sealer -----------------------------------------------------------------------------


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_sealer_threads_chain_what_writers_append(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    postgresql = engine.dialect.name == "postgresql"
    # Two sealers contend on PostgreSQL (one seals at a time); SQLite has one writer anyway.
    sealers = [Sealer(sessions, interval_s=0.01, batch=7) for _ in range(2 if postgresql else 1)]
    for sealer in sealers:
        sealer.start()
    writers = [
        threading.Thread(target=_append, args=(sessions, 40), kwargs={"start": 1000 * w})
        for w in range(3 if postgresql else 1)
    ]
    try:
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=120)
    finally:
        for sealer in sealers:
            sealer.stop()  # after its turn, it seals what is left
    with sessions() as session:
        report = verify_chain(session)
        writer_counts = session.scalars(select(AuditWriter.n)).all()
    assert report.intact, report.problem
    assert (report.entries, report.pending) == (40 * len(writers), 0)
    assert sorted(writer_counts) == [40] * len(writers)


# -- a batch in one statement (PostgreSQL) -----------------------------------------------------


def _seals(sessions: sessionmaker[Session]) -> list[dict[str, object]]:
    """The seals `seal_pending` would give every pending entry, in `seq` order."""
    with sessions() as session:
        keys = audit_keys(session)
        head_seq, head_hash = session.execute(select(AuditChainHead.seq, AuditChainHead.hash)).one()
        pending = session.scalars(
            select(AuditEvent).where(AuditEvent.chain_seq.is_(None)).order_by(AuditEvent.seq)
        ).all()
        seals: list[dict[str, object]] = []
        for entry in pending:
            previous, head_seq = head_hash, head_seq + 1
            head_hash = seal_hash(head_seq, previous, entry.entry_mac or "", keys.active)
            seals.append(
                {"seq": entry.seq, "chain_seq": head_seq, "prev_hash": previous, "hash": head_hash}
            )
        return seals


SEAL_COLUMNS = ("seq", "chain_seq", "prev_hash", "hash")


def _seal_in_one_statement(engine: Engine, seals: list[dict[str, object]]) -> None:
    """The seals in one UPDATE, as an older sealer or someone holding the runtime role might."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE audit_events AS e SET chain_seq = given.chain_seq, "
                "prev_hash = given.prev_hash, hash = given.hash "
                "FROM unnest(CAST(:seq AS bigint[]), CAST(:chain_seq AS bigint[]), "
                "CAST(:prev_hash AS text[]), CAST(:hash AS text[])) "
                "AS given(seq, chain_seq, prev_hash, hash) WHERE e.seq = given.seq"
            ),
            {
                name: [seal[name] for seal in seals]
                for name in ("seq", "chain_seq", "prev_hash", "hash")
            },
        )


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_batch_is_sealed_in_one_statement(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _append(sessions, 25)
    # One item per UPDATE of audit_events the server runs (an executemany runs one per row).
    updates: list[int] = []

    def seen(
        _conn: object,
        _cursor: object,
        statement: str,
        parameters: object,
        _context: object,
        many: bool,
    ) -> None:
        if statement.lstrip().upper().startswith("UPDATE AUDIT_EVENTS"):
            updates.extend([1] * len(parameters) if many and isinstance(parameters, list) else [1])

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert seal_all(sessions, batch=10).sealed == 25
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(updates) == 3, "one UPDATE per batch of 10 (10, 10 and 5 entries), not per entry"
    with sessions() as session:
        report = verify_chain(session)
        head = session.execute(select(AuditChainHead.seq, AuditChainHead.hash)).one()
        newest = session.execute(
            select(AuditEvent.chain_seq, AuditEvent.hash).where(AuditEvent.chain_seq == 25)
        ).one()
    assert report.intact, report.problem
    assert (report.entries, report.pending) == (25, 0)
    assert tuple(head) == tuple(newest), "the head moved to the batch's last entry"


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_an_idle_look_for_pending_entries_opens_no_transaction(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _append(sessions, 3)
    sealer = Sealer(sessions)
    assert sealer._turn() is False  # seals the three; fewer than a batch
    # The server's transaction state right after each statement of the next (idle) turn.
    states: list[tuple[str, str]] = []

    def after(
        conn: Connection,
        _cursor: object,
        statement: str,
        _parameters: object,
        _context: object,
        _many: bool,
    ) -> None:
        status = conn.connection.dbapi_connection.info.transaction_status
        states.append((statement.split()[0], status.name))

    event.listen(engine, "after_cursor_execute", after)
    try:
        assert sealer._turn() is False
    finally:
        event.remove(engine, "after_cursor_execute", after)

    # One SELECT, outside a transaction: no BEGIN before it, no ROLLBACK after it.
    assert states == [("SELECT", "IDLE")]
    assert _pending(sessions) == 0


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_the_sealers_gauge_says_how_long_the_oldest_entry_has_waited_and_0_when_none_does(
    sessions: sessionmaker[Session],
) -> None:
    # A sealer sealing full batches that never catches up warned nowhere: its turns are not
    # skipped, so the stall warning never looked, and `audit verify` runs from cron.
    registry = CollectorRegistry()
    lag = SealerMetrics.for_registry(registry).lag
    _append(sessions, 5)
    time.sleep(0.3)
    sealer = Sealer(sessions, batch=2, lag=lag, lag_check_s=0)

    def seen() -> float:
        return registry.get_sample_value("hf_audit_sealing_lag_seconds") or 0.0

    assert sealer._turn() is True  # a full batch of 2: more waiting
    assert seen() >= 0.3  # the oldest's age when the turn looked (the entries it then sealed)
    assert sealer._turn() is True
    assert sealer._turn() is False  # the fifth
    assert seen() >= 0.3
    assert sealer._turn() is False  # none waiting
    assert seen() == 0.0
    assert _pending(sessions) == 0


def _sealed_again(seals: list[dict[str, object]]) -> None:
    """An entry sealed already (seq 1), sealed again at the batch's end."""
    last = int(str(seals[-1]["chain_seq"]))
    seals.append(
        {"seq": 1, "chain_seq": last + 1, "prev_hash": seals[-1]["hash"], "hash": "0" * 64}
    )


def _moved_on(seals: list[dict[str, object]]) -> None:
    """Each seal's place one further on (a gap before the first of `seals`)."""
    for seal in seals:
        seal["chain_seq"] = int(str(seal["chain_seq"])) + 1


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("spoil", "refusal"),
    [
        (lambda seals: seals[0].update(prev_hash="0" * 64), "does not follow the chain head"),
        (lambda seals: seals[1].update(prev_hash=seals[2]["hash"]), "does not follow"),
        (lambda seals: _moved_on(seals[2:]), "does not follow"),
        (_moved_on, "does not follow"),
        (lambda seals: seals.pop(0), "does not follow"),
        (_sealed_again, "append-only"),
    ],
    ids=[
        "the first not after the head's hash",
        "a wrong predecessor in the middle",
        "a gap",
        "not after the head",
        "the first left out",
        "a sealed entry sealed again",
    ],
)
def test_the_database_refuses_a_batch_of_seals_out_of_turn_as_a_whole(
    engine: Engine,
    sessions: sessionmaker[Session],
    spoil: Callable[[list[dict[str, object]]], object],
    refusal: str,
) -> None:
    _append(sessions, 2)
    seal_all(sessions)
    _append(sessions, 4, start=2)
    seals = _seals(sessions)
    spoil(seals)
    with pytest.raises(DBAPIError, match=refusal):
        _seal_in_one_statement(engine, seals)
    with sessions() as session:
        head = session.scalar(select(AuditChainHead.seq))
    assert (head, _pending(sessions)) == (2, 4), "nothing of the batch was sealed"

    # The right seals, given in any row order, are taken together and move the head once.
    _seal_in_one_statement(engine, list(reversed(_seals(sessions))))
    with sessions() as session:
        report = verify_chain(session)
        head = session.scalar(select(AuditChainHead.seq))
    assert report.intact, report.problem
    assert (report.entries, report.pending, head) == (6, 0, 6)


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_sealer_of_before_migration_0010_still_seals_entry_by_entry(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # During a rolling upgrade an older process seals one UPDATE per entry: each is a statement
    # of one row, checked against the head as before.
    _append(sessions, 5)
    with sessions.begin() as session:
        session.execute(update(AuditEvent), _seals(sessions))
    with sessions() as session:
        report = verify_chain(session)
        head = session.scalar(select(AuditChainHead.seq))
    assert report.intact, report.problem
    assert (report.entries, report.pending, head) == (5, 0, 5)


@dataclass(frozen=True)
class AuditCommand:
    """``hf-adapter audit ...`` against the test's database."""

    environment: dict[str, str]

    def argv(self, *args: str) -> list[str]:
        return [str(HF_ADAPTER), "audit", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.fixture
def hf_adapter(empty_database_url: URL) -> AuditCommand:
    return AuditCommand(
        adapter_environment(
            empty_database_url.render_as_string(hide_password=False),
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
        )
    )


BACKLOG = 3000
# Small batches: over 400 transactions, about a second of sealing, so the kill after the first
# one lands mid-way even when this process waits for a CPU (batches of 20 sealed it in ~0.3 s).
BATCH = 7


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_the_sealer_resumes_after_a_crash_and_the_chain_verifies(
    sessions: sessionmaker[Session], hf_adapter: AuditCommand
) -> None:
    with sessions.begin() as session:
        for n in range(BACKLOG):
            record_audit(session, ALICE, "healthworker.read", "health-workers", detail={"n": n})

    sealer = subprocess.Popen(
        hf_adapter.argv("seal", "--batch", str(BATCH)),
        env=hf_adapter.environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while _pending(sessions) == BACKLOG and sealer.poll() is None:
            assert time.monotonic() < deadline, "the sealer sealed nothing"
            time.sleep(0.005)
        sealer.send_signal(signal.SIGKILL)
    finally:
        sealer.wait(timeout=60)
    assert sealer.returncode == -signal.SIGKILL, "killed before it finished"
    left = _pending(sessions)
    assert 0 < left < BACKLOG
    assert (BACKLOG - left) % BATCH == 0, "whole batches only: the one under way rolled back"

    halfway = hf_adapter.run("verify")
    assert halfway.returncode == 0, halfway.stderr
    assert f"{left:,} more not sealed yet (their MACs verify" in halfway.stdout
    resumed = hf_adapter.run("seal")
    assert resumed.returncode == 0, resumed.stderr
    assert f"sealed {left:,} audit entries" in resumed.stdout
    verified = hf_adapter.run("verify")
    assert verified.returncode == 0, verified.stderr
    assert f"audit trail intact: {BACKLOG:,} entries, newest is #{BACKLOG}" in verified.stdout
    assert "not sealed yet" not in verified.stdout


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_seal_command_leaves_a_forged_entry_pending_and_exits_1(
    engine: Engine, sessions: sessionmaker[Session], hf_adapter: AuditCommand
) -> None:
    _append(sessions, 2)
    _around_the_triggers(engine, _forge)
    sealed = hf_adapter.run("seal")
    assert sealed.returncode == 1
    assert "sealed 2 audit entries" in sealed.stdout
    assert "1 pending entries were left unsealed" in sealed.stderr
    verified = hf_adapter.run("verify")
    assert verified.returncode == 1
    assert "audit trail broken: pending entry (inserted as 3): content does not match" in (
        verified.stderr
    )
    assert "entries #1-#2 verified" in verified.stderr


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("held", ["the sealing lock", "the chain head's row"])
def test_a_seal_waits_for_a_held_lock_only_so_long_then_says_why(
    engine: Engine, sessions: sessionmaker[Session], held: str
) -> None:
    """A session that is no sealer holds the advisory lock, or a row lock on the head: `audit
    seal` and `audit anchor` waited for ever, and the sealer threads blocked on the head."""
    _append(sessions, 2)
    with engine.connect() as holder:
        if held == "the sealing lock":
            holder.execute(select(func.pg_advisory_lock(SEALER_LOCK)))
        else:
            holder.execute(text("BEGIN"))
            holder.execute(text("SELECT seq FROM audit_chain_head WHERE id = 1 FOR UPDATE"))
        started = time.monotonic()
        with pytest.raises(SealingBlocked, match="held for 1 s by a session that is not sealing"):
            seal_pending(sessions, wait=True, lock_timeout_s=1)
        assert time.monotonic() - started < 30
        if held != "the sealing lock":  # a turn of a sealer thread (it skips a held lock)
            with pytest.raises(SealingBlocked):
                seal_pending(sessions, lock_timeout_s=1)
        holder.rollback()
        if held == "the sealing lock":
            holder.execute(select(func.pg_advisory_unlock(SEALER_LOCK)))
    assert seal_all(sessions).sealed == 2, "free again: sealed as usual"


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_the_sealer_thread_warns_when_entries_wait_while_the_lock_is_held(
    engine: Engine, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    _append(sessions, 1)
    assert seal_all(sessions).sealed == 1  # a sealer's turn: the head's changed_at is set
    sealer = Sealer(sessions, interval_s=0.05, stall_warning_s=0.5, stall_check_s=0.2)
    with engine.connect() as holder, caplog.at_level(logging.WARNING, logger="adapter.audit"):
        holder.execute(select(func.pg_advisory_lock(SEALER_LOCK)))
        _append(sessions, 1)
        sealer.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                "waited" in r.getMessage() for r in caplog.records
            ):
                time.sleep(0.05)
        finally:
            sealer._stop.set()
            holder.execute(select(func.pg_advisory_unlock(SEALER_LOCK)))
            holder.commit()
            sealer.stop()
    warnings = [r.getMessage() for r in caplog.records if "waited" in r.getMessage()]
    assert warnings, "no warning while the entry waited"
    assert "no sealer has taken a turn" in warnings[0]
    assert _pending(sessions) == 0, "sealed once the lock was free (at stop)"


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_no_stall_is_reported_while_another_sealer_works_through_a_backlog(
    engine: Engine, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """Another process's sealer holds the lock turn after turn (so every turn of this one is
    skipped) while an entry it cannot seal waits: that is a backlog being worked, not a stall.
    The warning used to look only at the oldest entry's age."""
    _append(sessions, 1)

    def forge(connection: Connection) -> None:  # pending, with a MAC under a guessed key
        connection.execute(
            update(AuditEvent)
            .where(AuditEvent.chain_seq.is_(None))
            # An hour old: far past the warning's threshold, with no wait for it.
            .values(entry_mac="0" * 64, at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        )

    _around_the_triggers(engine, forge)
    # The threshold well above the other sealer's 0.1 s turns, so a busy machine delaying one
    # of them does not make it look idle; the turns go on past it.
    sealer = Sealer(sessions, interval_s=0.05, stall_warning_s=2.0, stall_check_s=0.1)
    with engine.connect() as other, caplog.at_level(logging.WARNING, logger="adapter.audit"):
        other.execute(select(func.pg_advisory_lock(SEALER_LOCK)))
        other.commit()

        def other_sealers_turn() -> None:  # each of its turns moves the head's changed_at
            other.execute(
                update(AuditChainHead)
                .where(AuditChainHead.id == 1)
                .values(changed_at=dt.datetime.now(dt.UTC))
            )
            other.commit()

        other_sealers_turn()  # before this sealer's first look
        sealer.start()
        try:
            for _ in range(35):  # 3.5 s or more: past the threshold
                other_sealers_turn()
                time.sleep(0.1)
        finally:
            sealer._stop.set()
            other.execute(select(func.pg_advisory_unlock(SEALER_LOCK)))
            other.commit()
            sealer.stop()
    assert not [r for r in caplog.records if "waited" in r.getMessage()]


def listing_only(engine: Engine, sessions: sessionmaker[Session]) -> ApiServices:
    """The API's services for the audit listing alone (it needs only the store)."""
    return ApiServices(
        engine=engine,
        sessions=sessions,
        cipher=None,  # type: ignore[arg-type]
        blind_index=None,  # type: ignore[arg-type]
        lookup=None,  # type: ignore[arg-type]
        publisher=None,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_the_audit_listing_lists_what_is_sealed_while_the_head_is_held(
    engine: Engine, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing seals first; with the head's row held by a session that is no sealer, the
    seal gives up (SealingBlocked), and the listing used to answer 500 with it."""
    monkeypatch.setattr(seal_module, "TURN_LOCK_TIMEOUT_S", 1)
    _append(sessions, 2)
    assert seal_all(sessions).sealed == 2
    _append(sessions, 1)
    api = listing_only(engine, sessions)
    with engine.connect() as holder:
        holder.execute(text("BEGIN"))
        holder.execute(text("SELECT seq FROM audit_chain_head WHERE id = 1 FOR UPDATE"))
        page, pending = api.audit_events(AuditFilter(), cursor=None, limit=10)
        holder.rollback()
    assert (len(page.items), pending) == (2, 1)


@pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)
def test_the_audit_listing_on_sqlite_lists_what_is_sealed_while_another_writer_holds_it(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """SQLite says "database is locked" after its busy timeout, which is no SealingBlocked:
    the listing answered 500 while another writer held the database."""
    _append(sessions, 2)
    assert seal_all(sessions).sealed == 2
    _append(sessions, 1)
    api = listing_only(engine, sessions)
    with engine.connect() as writer:
        writer.exec_driver_sql("BEGIN IMMEDIATE")  # holds SQLite's write lock
        page, pending = api.audit_events(AuditFilter(), cursor=None, limit=10)
        writer.rollback()
    assert (len(page.items), pending) == (2, 1)
