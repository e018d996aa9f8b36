"""The audit trail on PostgreSQL and SQLite: chained, append-only, tampering found."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import threading
import uuid

import pytest
from sqlalchemy import DateTime, Engine, Uuid, bindparam, delete, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from adapter.audit import Actor, entry_hash, record_audit, seal_all, verify_chain
from adapter.store.database import create_engine_from_url, session_factory, upgrade
from adapter.store.models import AUDIT_GENESIS, AuditEvent
from tests.integration.adapter.sync.support import adapter_environment
from tests.integration.adapter.sync.test_sync_cli_crash import HF_ADAPTER
from tests.support.databases import AUDIT_KEYS, BACKENDS

pytestmark = pytest.mark.integration

ALICE = Actor("user", "7d1f0c1e-5a7c-4c1e-9a53-2f4d1c0b9e11", "healthforce-portal")


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


def _without_guard(engine: Engine, statement: object) -> None:
    """Change the trail behind the triggers' back, as someone with DDL rights could."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            connection.execute(statement)  # type: ignore[call-overload]
            connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
        else:
            for trigger in connection.scalars(
                text(
                    "SELECT name FROM sqlite_master "
                    "WHERE type = 'trigger' AND tbl_name = 'audit_events'"
                )
            ).all():
                connection.execute(text(f'DROP TRIGGER "{trigger}"'))
            connection.execute(statement)  # type: ignore[call-overload]


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_entries_are_numbered_and_chained_and_verify(sessions: sessionmaker[Session]) -> None:
    _append(sessions, 30)
    with sessions() as session:
        report = verify_chain(session)
        entries = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert report.intact
    assert (report.entries, report.last_seq) == (30, 30)
    assert [entry.chain_seq for entry in entries] == list(range(1, 31))
    assert entries[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[3].actor_subject == ALICE.subject
    assert entries[3].fields == '["full_name", "nik"]'


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_the_database_refuses_to_update_or_delete_an_entry(
    sessions: sessionmaker[Session],
) -> None:
    _append(sessions, 3)
    for statement in (
        update(AuditEvent).where(AuditEvent.seq == 2).values(action="nothing.happened"),
        delete(AuditEvent).where(AuditEvent.seq == 3),
    ):
        with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as session:
            session.execute(statement)
    with sessions() as session:
        assert verify_chain(session).intact


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
@pytest.mark.parametrize(
    ("tamper", "broken_at", "problem"),
    [
        (
            update(AuditEvent).where(AuditEvent.seq == 7).values(actor_subject="someone-else"),
            7,
            "edited",
        ),
        (delete(AuditEvent).where(AuditEvent.seq == 7), 7, "entry 7 is missing"),
        (delete(AuditEvent).where(AuditEvent.seq == 12), 12, "removed from the end"),
    ],
    ids=["edited", "removed", "tail cut"],
)
def test_tampering_is_found_at_the_first_broken_link(
    engine: Engine,
    sessions: sessionmaker[Session],
    tamper: object,
    broken_at: int,
    problem: str,
) -> None:
    _append(sessions, 12)
    _without_guard(engine, tamper)
    with sessions() as session:
        report = verify_chain(session)
    assert not report.intact
    assert report.broken_at == broken_at
    assert report.problem is not None
    assert problem in report.problem


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_concurrent_writers_chain_one_at_a_time(sessions: sessionmaker[Session]) -> None:
    threads = [
        threading.Thread(target=_append, args=(sessions, 25), kwargs={"start": 100 * n})
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with sessions() as session:
        report = verify_chain(session)
    assert report.intact
    assert report.entries == 100


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_audit_verify_command_exits_1_and_names_the_entry(
    engine: Engine, sessions: sessionmaker[Session], empty_database_url: URL
) -> None:
    _append(sessions, 5)
    environment = adapter_environment(
        empty_database_url.render_as_string(hide_password=False),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
    )

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HF_ADAPTER), "audit", "verify"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    intact = verify()
    assert intact.returncode == 0, intact.stderr
    assert "audit trail intact: 5 entries, newest is #5" in intact.stdout
    _without_guard(
        engine, update(AuditEvent).where(AuditEvent.seq == 4).values(resource_id="worker-x")
    )
    broken = verify()
    assert broken.returncode == 1
    assert "broken at entry #4" in broken.stderr
    assert "entries #1-#3 verified" in broken.stderr


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_entries_from_before_the_keyed_chain_still_verify(empty_database_url: URL) -> None:
    engine = create_engine_from_url(empty_database_url)
    try:
        upgrade(engine, "0004")
        _append_as_revision_0004_did(engine, 5)
        upgrade(engine)
        sessions = session_factory(engine, audit_keys=AUDIT_KEYS)
        _append(sessions, 3)
        with sessions() as session:
            report = verify_chain(session)
            key_ids = session.scalars(select(AuditEvent.key_id).order_by(AuditEvent.seq)).all()
    finally:
        engine.dispose()
    assert report.intact, report.problem
    assert (report.entries, report.unkeyed) == (8, 5)
    assert key_ids == [None] * 5 + ["audit-1"] * 3
    environment = adapter_environment(
        empty_database_url.render_as_string(hide_password=False),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
    )
    verified = subprocess.run(
        [str(HF_ADAPTER), "audit", "verify"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert "entries #1-#5 were written before the chain was keyed" in verified.stdout


def _append_as_revision_0004_did(engine: Engine, count: int) -> None:
    """Plain SHA-256 entries, and the head moved by the writer: the trail before 0007."""
    previous = AUDIT_GENESIS
    with engine.begin() as connection:
        for seq in range(1, count + 1):
            entry = AuditEvent(
                seq=seq,
                id=uuid.uuid4(),
                at=dt.datetime.now(dt.UTC),
                actor_kind="system",
                actor_subject="hf-adapter sync",
                action="sync.write",
                resource_type="sisdmk:health-workers",
                fields='["nik"]',
                outcome="success",
                detail=json.dumps({"page": seq}),
                prev_hash=previous,
            )
            previous = entry_hash(entry, None)
            connection.execute(
                text(
                    "INSERT INTO audit_events (seq, id, at, actor_kind, actor_subject, action, "
                    "resource_type, fields, outcome, detail, prev_hash, hash) VALUES (:seq, :id, "
                    ":at, :actor_kind, :actor_subject, :action, :resource_type, :fields, "
                    ":outcome, :detail, :prev_hash, :hash)"
                ).bindparams(bindparam("id", type_=Uuid()), bindparam("at", type_=DateTime(True))),
                {
                    "seq": seq,
                    "id": entry.id,
                    "at": entry.at,
                    "actor_kind": entry.actor_kind,
                    "actor_subject": entry.actor_subject,
                    "action": entry.action,
                    "resource_type": entry.resource_type,
                    "fields": entry.fields,
                    "outcome": entry.outcome,
                    "detail": entry.detail,
                    "prev_hash": entry.prev_hash,
                    "hash": previous,
                },
            )
        connection.execute(
            text("UPDATE audit_chain_head SET seq = :seq, hash = :hash WHERE id = 1"),
            {"seq": count, "hash": previous},
        )
