"""The attacks on the audit trail, as tests: each tampering is found by `hf-adapter audit verify`
at the entry it touched, and a busy trail never looks cut. The commands run in this process
(`adapter.cli.main` with the environment a process would get, the database real); as processes
of their own they run in test_audit_trail.py and test_audit_sealing.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from adapter.audit import Actor, entry_hash, entry_mac, record_audit, seal_all, seal_hash
from adapter.store.crypto import Key
from adapter.store.models import AUDIT_GENESIS, AuditEvent, AuditWriter
from tests.integration.adapter.sync.support import adapter_environment
from tests.support.adapter_cli import InProcess
from tests.support.databases import AUDIT_KEYS, BACKENDS

pytestmark = pytest.mark.integration

ALICE = Actor("user", "7d1f0c1e-5a7c-4c1e-9a53-2f4d1c0b9e11", "healthforce-portal")
MALLORY = "0b5e1a7d-3c2f-4e9a-8b61-5d4c3b2a1f00"
# Someone with the database but not AUDIT_KEYS can only guess a key.
GUESSED_KEY = Key("audit-1", os.urandom(32))


@pytest.fixture
def hf_adapter(empty_database_url: URL, hf_adapter_here: InProcess) -> InProcess:
    environment = adapter_environment(
        empty_database_url.render_as_string(hide_password=False),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return hf_adapter_here(environment, "audit", *args)

    return run


def _append(sessions: sessionmaker[Session], count: int, *, start: int = 0) -> None:
    """`count` entries, one transaction each, then sealed (as the sealer thread would)."""
    for n in range(start, start + count):
        with sessions.begin() as session:
            record_audit(
                session,
                ALICE,
                "healthworker.read",
                "health-workers",
                resource_id=f"worker-{n}",
                fields=("nik", "full_name"),
                detail={"n": n},
            )
    seal_all(sessions)


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
            triggers = connection.scalars(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).all()
            for trigger in triggers:
                connection.execute(text(f'DROP TRIGGER "{trigger}"'))
            change(connection)


def _set_head(connection: Connection, seq: int, head_hash: str) -> None:
    connection.execute(
        text("UPDATE audit_chain_head SET seq = :seq, hash = :hash WHERE id = 1"),
        {"seq": seq, "hash": head_hash},
    )


# -- the database refuses -----------------------------------------------------------------


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_the_database_refuses_to_empty_the_trail_or_move_its_head(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _append(sessions, 3)
    postgresql = engine.dialect.name == "postgresql"
    emptying = "TRUNCATE audit_events" if postgresql else "DELETE FROM audit_events"
    refused = {
        emptying: "audit_events",
        "UPDATE audit_chain_head SET seq = 0, hash = :genesis": "audit_chain_head is moved only",
        "UPDATE audit_chain_head SET seq = 2, hash = (SELECT hash FROM audit_events "
        "WHERE seq = 2)": "audit_chain_head is moved only",
        "DELETE FROM audit_chain_head": "audit_chain_head is never deleted",
    }
    if postgresql:
        refused["TRUNCATE audit_chain_head"] = "never truncated"
    for statement, message in refused.items():
        with pytest.raises(DBAPIError, match=message), engine.begin() as connection:
            connection.execute(text(statement), {"genesis": AUDIT_GENESIS})
    for statement, message in {
        # Entries enter pending: only a seal gives them a place, and only the next one.
        "INSERT INTO audit_events (id, at, actor_kind, action, resource_type, outcome, "
        "chain_seq, prev_hash, hash, key_id, entry_mac, writer_id, writer_n) "
        "SELECT :id, :at, 'user', 'x', 'y', 'success', seq + 1, hash, hash, 'audit-1', hash, "
        "(SELECT id FROM audit_writers LIMIT 1), (SELECT n FROM audit_writers LIMIT 1) "
        "FROM audit_chain_head": "enter the trail pending",
        "INSERT INTO audit_events (id, at, actor_kind, action, resource_type, outcome, "
        "writer_id, writer_n) SELECT :id, :at, 'user', 'x', 'y', 'success', id, n "
        "FROM audit_writers": "without a key id or MAC",
        "INSERT INTO audit_events (id, at, actor_kind, action, resource_type, outcome, key_id, "
        "entry_mac, writer_id, writer_n) SELECT :id, :at, 'user', 'x', 'y', 'success', "
        "'audit-1', :genesis, id, n - 1 FROM audit_writers": "writer's next",
        # Sealed entries are never sealed again; a seal must follow the head.
        "UPDATE audit_events SET chain_seq = 7 WHERE chain_seq = 2": "append-only",
        # A writer's count only grows by one, and is never removed.
        "UPDATE audit_writers SET n = n - 1": "grows by one",
        "UPDATE audit_writers SET n = n + 2": "grows by one",
        "DELETE FROM audit_writers": "never deleted",
    }.items():
        with pytest.raises(DBAPIError, match=message), engine.begin() as connection:
            connection.execute(
                text(statement),
                {"id": os.urandom(16).hex(), "at": dt.datetime.now(dt.UTC), "genesis": "0" * 64},
            )
    if postgresql:
        with pytest.raises(DBAPIError, match="never truncated"), engine.begin() as connection:
            connection.execute(text("TRUNCATE audit_writers"))
    with sessions.begin() as session:  # a pending entry, sealed out of turn
        record_audit(session, ALICE, "healthworker.read", "health-workers")
    with pytest.raises(DBAPIError, match="does not follow the chain head"), engine.begin() as db:
        db.execute(
            text(
                "UPDATE audit_events SET chain_seq = 9, prev_hash = :genesis, hash = :genesis "
                "WHERE chain_seq IS NULL"
            ),
            {"genesis": AUDIT_GENESIS},
        )
    with sessions() as session:
        assert session.scalar(select(func.max(AuditEvent.chain_seq))) == 3


# -- attack 1: TRUNCATE and a reset head ----------------------------------------------------


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("appended_since", "broken_at", "problem"),
    [
        (0, 1, "vouches for entry 12, the trail ends at 0"),
        (3, 4, "vouches for entry 12, the trail ends at 3"),
        (15, 12, "differs from the anchor made at"),
    ],
    ids=["nothing since", "three appended since", "past the anchor since"],
)
def test_a_truncated_trail_and_reset_head_fail_verify_against_the_anchor(
    engine: Engine,
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
    appended_since: int,
    broken_at: int,
    problem: str,
) -> None:
    anchors = tmp_path / "audit-anchors.jsonl"
    _append(sessions, 12)
    anchored = hf_adapter("anchor", "--out", str(anchors))
    assert anchored.returncode == 0, anchored.stderr
    assert "anchored entry #12" in anchored.stdout

    def truncate(connection: Connection) -> None:
        connection.execute(text("TRUNCATE audit_events"))
        _set_head(connection, 0, AUDIT_GENESIS)

    _around_the_triggers(engine, truncate)
    _append(sessions, appended_since, start=100)  # the adapter carries on, in good faith

    broken = hf_adapter("verify", "--anchor", str(anchors))
    assert broken.returncode == 1, broken.stdout
    assert f"audit trail broken at entry #{broken_at}:" in broken.stderr
    assert problem in broken.stderr


# -- attack 2: edit, cut the tail, re-hash the rest -------------------------------------------


def _rehash(entry: AuditEvent, previous: str, how: str) -> str:
    """Give `entry` (place `entry.chain_seq`, after `previous`) a MAC and chain hash `how` an
    attacker could: plain SHA-256, an entry as written before 0009, a guessed key, the key."""
    if how == "legacy sha256":
        entry.entry_mac = entry.writer_id = entry.writer_n = entry.key_id = None
        entry.prev_hash = previous
        return entry_hash(entry, None)
    entry.prev_hash = previous
    if how == "sha256":
        entry.entry_mac = hashlib.sha256(str(entry.detail).encode()).hexdigest()
        return hashlib.sha256(f"{entry.chain_seq}{previous}{entry.entry_mac}".encode()).hexdigest()
    key = GUESSED_KEY if how == "guessed key" else AUDIT_KEYS.get("audit-1")
    entry.entry_mac = entry_mac(entry, key)
    return seal_hash(entry.chain_seq or 0, previous, entry.entry_mac, key)


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
@pytest.mark.parametrize(
    ("how", "broken_at", "problem"),
    [
        ("sha256", 5, "content does not match its HMAC"),
        ("legacy sha256", 5, "chained without a writer and MAC although entries before it"),
        ("guessed key", 5, "content does not match its HMAC"),
        # Whoever holds AUDIT_KEYS can re-sign the entries, not bring back the writer's count.
        ("audit key", None, "is missing (12 written, 11 found): it was deleted"),
    ],
)
def test_an_edited_entry_is_found_even_when_the_rest_is_rehashed(
    engine: Engine,
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
    how: str,
    broken_at: int | None,
    problem: str,
) -> None:
    _append(sessions, 12)
    assert hf_adapter("verify").returncode == 0

    def rewrite(connection: Connection) -> None:
        connection.execute(
            text("UPDATE audit_events SET actor_subject = :who WHERE chain_seq = 5"),
            {"who": MALLORY},
        )
        connection.execute(text("DELETE FROM audit_events WHERE chain_seq = 12"))
        with Session(connection) as session:
            previous = session.scalars(
                select(AuditEvent.hash).where(AuditEvent.chain_seq == 4)
            ).one()
            for entry in session.scalars(
                select(AuditEvent).where(AuditEvent.chain_seq >= 5).order_by(AuditEvent.chain_seq)
            ):
                entry.hash = previous = _rehash(entry, previous or "", how)
            session.flush()
        _set_head(connection, 11, previous or "")

    _around_the_triggers(engine, rewrite)

    broken = hf_adapter("verify")
    assert broken.returncode == 1, broken.stdout
    where = "" if broken_at is None else f" at entry #{broken_at}"
    assert f"audit trail broken{where}:" in broken.stderr
    assert problem in broken.stderr
    verified = 4 if broken_at is not None else 11
    assert f"entries #1-#{verified} verified" in broken.stderr


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_an_entry_sealed_beyond_the_head_around_the_triggers_is_found(
    engine: Engine,
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """A sealed entry with no writer, slipped in past the head: the walk stops at the head and
    the writers' counts cannot see it; it was missed on SQLite, and listed by the API."""
    _append(sessions, 3)

    def forge(connection: Connection) -> None:
        table = AuditEvent.__table__
        row = dict(connection.execute(select(table).where(table.c.chain_seq == 3)).mappings().one())
        row.pop("seq")
        if connection.dialect.name == "sqlite":  # PostgreSQL numbers it (GENERATED ALWAYS)
            row["seq"] = connection.scalar(select(func.max(table.c.seq))) + 1
        row.update(
            id=uuid.uuid4(), chain_seq=4, writer_id=None, writer_n=None, actor_subject=MALLORY
        )
        connection.execute(table.insert().values(**row))

    _around_the_triggers(engine, forge)

    broken = hf_adapter("verify")
    assert broken.returncode == 1, broken.stdout
    assert "entry 4 lies beyond the chain head (#3)" in broken.stderr


def _pending(sessions: sessionmaker[Session], count: int) -> None:
    """`count` entries appended and left pending (no sealer runs)."""
    for n in range(count):
        with sessions.begin() as session:
            record_audit(
                session, ALICE, "healthworker.read", "health-workers", resource_id=f"later-{n}"
            )


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
@pytest.mark.parametrize("how", ["edited and moved to place 0", "forged at place -1"])
def test_an_entry_put_before_the_chains_first_place_is_found(
    engine: Engine,
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
    how: str,
) -> None:
    """Places start at 1: an entry given 0 or less was read by neither the walk nor the pending
    check, and verify said intact (and the API listed it as sealed)."""
    _append(sessions, 3)
    _pending(sessions, 2)

    def hide(connection: Connection) -> None:
        table = AuditEvent.__table__
        if how.startswith("edited"):
            connection.execute(
                table.update()
                .where(table.c.resource_id == "later-0")
                .values(actor_subject=MALLORY, chain_seq=0)
            )
            return
        # A writer of its own (count 1) and a MAC under a guessed key: the counts add up.
        forged = AuditEvent(
            id=uuid.uuid4(),
            at=dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC),
            actor_kind="user",
            actor_subject=MALLORY,
            actor_client="healthforce-portal",
            action="healthworker.read",
            resource_type="health-workers",
            resource_id="worker-999",
            outcome="success",
            writer_id=uuid.uuid4(),
            writer_n=1,
            key_id="audit-1",
            chain_seq=-1,
            prev_hash=AUDIT_GENESIS,
            hash=AUDIT_GENESIS,
        )
        forged.entry_mac = entry_mac(forged, GUESSED_KEY)
        with Session(connection) as session:
            if connection.dialect.name == "sqlite":  # PostgreSQL numbers it
                forged.seq = int(session.scalar(select(func.max(AuditEvent.seq))) or 0) + 1
            session.add(AuditWriter(id=forged.writer_id, n=1))
            session.flush()
            session.add(forged)
            session.flush()

    _around_the_triggers(engine, hide)

    broken = hf_adapter("verify")
    assert broken.returncode == 1, broken.stdout
    place = "0" if how.startswith("edited") else "-1"
    assert f"has place {place} in the chain, before its first (#1)" in broken.stderr


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_copy_standing_in_for_a_deleted_pending_entry_is_found(
    engine: Engine,
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """The owner drops the unique constraints, deletes a pending entry that is not its writer's
    newest and inserts a copy of another: the writer's count of rows was right again, and the
    copy's MAC verifies; it was sealed, and verify said intact."""
    _pending(sessions, 5)
    columns = ", ".join(
        c.name for c in AuditEvent.__table__.columns if c.name not in {"seq", "chain_seq"}
    )

    def stand_in(connection: Connection) -> None:
        for constraint in ("uq_audit_events_writer_id_writer_n", "uq_audit_events_id"):
            connection.execute(text(f"ALTER TABLE audit_events DROP CONSTRAINT {constraint}"))
        connection.execute(text("DELETE FROM audit_events WHERE resource_id = 'later-1'"))
        connection.execute(
            text(
                f"INSERT INTO audit_events ({columns}) "  # noqa: S608 - the model's own names
                f"SELECT {columns} FROM audit_events WHERE resource_id = 'later-3'"
            )
        )

    _around_the_triggers(engine, stand_in)
    seal_all(sessions)  # the sealer takes the copy: its MAC is right

    broken = hf_adapter("verify")
    assert broken.returncode == 1, broken.stdout
    assert "is there 2 times: copies were inserted" in broken.stderr


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_truncated_trail_and_reset_head_are_found_by_the_writers_count_without_an_anchor(
    engine: Engine,
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    _append(sessions, 6)

    def truncate(connection: Connection) -> None:
        connection.execute(text("TRUNCATE audit_events"))
        _set_head(connection, 0, AUDIT_GENESIS)

    _around_the_triggers(engine, truncate)
    _append(sessions, 2, start=100)

    broken = hf_adapter("verify")
    assert broken.returncode == 1, broken.stdout
    assert "audit trail broken: entry 1 of writer" in broken.stderr
    assert "is missing (8 written, 2 found): it was deleted" in broken.stderr


# -- attack 3 (not one: a busy trail) -------------------------------------------------------


# The code before the one-snapshot verify reported a cut tail in every run while writers
# appended (20 of 20): a handful of runs shows a regression (each run is a walk of 3,000+
# entries, with the writers appending meanwhile).
BUSY_VERIFY_RUNS = 5
APPEND_PAUSE_S = 0.005


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_verify_never_reports_a_cut_tail_while_writers_append(
    engine: Engine,
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    with sessions.begin() as session:  # a long trail: the walk takes a while
        for n in range(3000):
            record_audit(session, ALICE, "healthworker.read", "health-workers", detail={"n": n})
    seal_all(sessions)
    stop = threading.Event()
    failures: list[DBAPIError] = []
    appended = [0]
    counting = threading.Lock()

    def keep_appending(start: int) -> None:
        n = start
        try:
            # A steady ~200 entries/s per writer: hundreds land during each verify's walk, and
            # the writers leave the verify runs (and the other tests) a core.
            while not stop.wait(APPEND_PAUSE_S):
                _append(sessions, 1, start=n)
                n += 1
                with counting:
                    appended[0] += 1
        except DBAPIError as exc:  # reported below, not swallowed
            failures.append(exc)

    # SQLite writes one transaction at a time: a second writer there would only test how long
    # the two wait for each other (its 5 s busy timeout), not verify.
    count = 2 if engine.dialect.name == "postgresql" else 1
    writers = [
        threading.Thread(target=keep_appending, args=(10_000 * (w + 1),)) for w in range(count)
    ]
    for writer in writers:
        writer.start()
    runs: list[subprocess.CompletedProcess[str]] = []
    during: list[int] = []  # entries appended while each verify ran
    try:
        # The first verify starts once the writers are appending (not before their first entry).
        deadline = time.monotonic() + 30
        while appended[0] == 0 and not failures:
            assert time.monotonic() < deadline, "the writers appended nothing in 30 s"
            time.sleep(0.01)
        for _ in range(BUSY_VERIFY_RUNS):
            before = appended[0]
            runs.append(hf_adapter("verify"))
            during.append(appended[0] - before)
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
    assert not failures, failures
    newest = [int(run.stdout.split("newest is #")[1].split()[0]) for run in runs if run.stdout]
    assert [run.returncode for run in runs] == [0] * BUSY_VERIFY_RUNS, [r.stderr for r in runs]
    assert newest[-1] > newest[0] > 3000, "the writers appended while verify ran"
    assert min(during) > 0, during
    final = hf_adapter("verify")
    assert final.returncode == 0, final.stderr


# -- the anchor file ----------------------------------------------------------------------


@pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)
def test_anchor_appends_signed_heads_and_refuses_a_broken_trail(
    engine: Engine,
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    anchors = tmp_path / "anchors.jsonl"
    _append(sessions, 4)
    assert hf_adapter("anchor", "--out", str(anchors)).returncode == 0
    _append(sessions, 3, start=4)
    assert hf_adapter("anchor", "--out", str(anchors)).returncode == 0
    lines = [json.loads(line) for line in anchors.read_text().splitlines()]
    assert [(line["seq"], line["key_id"]) for line in lines] == [(4, "audit-1"), (7, "audit-1")]
    to_stdout = hf_adapter("anchor", "--out", "-")
    assert json.loads(to_stdout.stdout)["seq"] == 7
    verified = hf_adapter("verify", "--anchor", str(anchors))
    assert verified.returncode == 0, verified.stderr
    assert "it passes through all 2 anchor(s)" in verified.stdout

    def edit(connection: Connection) -> None:
        connection.execute(text("UPDATE audit_events SET action = 'nothing' WHERE seq = 6"))

    _around_the_triggers(engine, edit)
    refused = hf_adapter("anchor", "--out", str(anchors))
    assert refused.returncode == 1
    assert "audit trail broken at entry #6:" in refused.stderr
    assert len(anchors.read_text().splitlines()) == 2, "nothing anchored on a broken trail"

    forged = dict(lines[0], seq=3)
    (tmp_path / "forged.jsonl").write_text(json.dumps(forged) + "\n")
    rejected = hf_adapter("verify", "--anchor", str(tmp_path / "forged.jsonl"))
    assert rejected.returncode == 1
    assert "anchor on line 1 (entry #3) does not match its signature" in rejected.stderr
    missing = hf_adapter("verify", "--anchor", str(tmp_path / "absent.jsonl"))
    assert missing.returncode == 2
    assert "cannot read the anchor file" in missing.stderr


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_anchor_seals_first_and_covers_the_entries_written_so_far(
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    anchors = tmp_path / "anchors.jsonl"
    _append(sessions, 3)
    for n in range(3, 5):  # committed but not sealed: no sealer runs here
        with sessions.begin() as session:
            record_audit(session, ALICE, "healthworker.read", "health-workers", resource_id=f"{n}")
    anchored = hf_adapter("anchor", "--out", str(anchors))
    assert anchored.returncode == 0, anchored.stderr
    assert json.loads(anchors.read_text())["seq"] == 5
    with sessions() as session:
        pending = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.chain_seq.is_(None))
        )
    assert pending == 0


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_verify_reports_the_pending_entries_as_metrics(
    sessions: sessionmaker[Session],
    hf_adapter: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    metrics_file = tmp_path / "audit.prom"

    def metrics() -> dict[str, float]:
        verified = hf_adapter("verify", "--metrics-file", str(metrics_file))
        assert verified.returncode == 0, verified.stderr
        return {
            name: float(value)
            for name, value in (
                line.split() for line in metrics_file.read_text().splitlines() if line[:1] != "#"
            )
        }

    _append(sessions, 2)
    for n in range(2):  # committed, not sealed: no sealer runs here
        with sessions.begin() as session:
            record_audit(session, ALICE, "healthworker.read", "health-workers", resource_id=f"{n}")
    pending = metrics()
    assert pending["hf_audit_pending_entries"] == 2
    assert pending["hf_audit_oldest_pending_age_seconds"] > 0
    assert pending["hf_audit_chain_entries"] == 2
    seal_all(sessions)
    sealed = metrics()
    assert sealed["hf_audit_pending_entries"] == 0
    assert sealed["hf_audit_oldest_pending_age_seconds"] == 0
