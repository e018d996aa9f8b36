"""`apply_documents`, the one write path, on a SQLite store: the connection check, the audit
entry and its actor, what is not audited, and a refused record named by its position."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from adapter.apply import Applied, Origin, RecordRefused, apply_documents
from adapter.audit import Actor, verify_chain
from adapter.sdmk_integration_manager import ConnectionDisabled, set_enabled
from adapter.store.crypto import BlindIndex, FieldCipher, Key, KeyRing
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.models import AuditEvent, HealthWorker, Registration
from adapter.store.repositories import HealthWorkerRepository, UpsertResult
from tests.support.databases import migrate
from tests.support.documents import bumped, kki_registration, sisdmk_worker

Repositories = Callable[[Session], HealthWorkerRepository]
CALLER = Actor("user", "apply-tester", "hf-tests")
AT = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate(engine)
    yield session_factory(engine, audit_keys=KeyRing([Key("audit-test", bytes(range(32)))]))
    engine.dispose()


@pytest.fixture
def repository_of() -> Repositories:
    cipher = FieldCipher(KeyRing([Key("enc-1", b"e" * 32)]))
    blind_index = BlindIndex(Key("bidx-1", b"b" * 32))
    return lambda session: HealthWorkerRepository(session, cipher, blind_index)


def apply(
    sessions: sessionmaker[Session],
    repository_of: Repositories,
    docs: list[dict[str, Any]],
    system: str = "sisdmk",
    *,
    flush_each: bool = False,
) -> Applied:
    with sessions.begin() as session:
        return apply_documents(
            session,
            repository_of(session),
            system,
            docs,
            fetched_at=AT,
            origin=Origin(CALLER, "lookup.refresh", {"by": "test"}),
            flush_each=flush_each,
        )


def audit_entries(sessions: sessionmaker[Session]) -> list[AuditEvent]:
    with sessions() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_one_audit_entry_names_the_actor_and_the_records_written(
    sessions: sessionmaker[Session], repository_of: Repositories
) -> None:
    first, second = sisdmk_worker(), sisdmk_worker()
    applied = apply(sessions, repository_of, [first, second])
    assert applied.results == (UpsertResult.CREATED, UpsertResult.CREATED)
    [entry] = audit_entries(sessions)
    assert (entry.actor_kind, entry.actor_subject, entry.actor_client, entry.action) == (
        "user",
        "apply-tester",
        "hf-tests",
        "lookup.refresh",
    )
    assert entry.resource_type == "sisdmk:health-workers"
    detail = json.loads(entry.detail or "{}")
    assert detail["written_ids"] == [first["worker_id"], second["worker_id"]]
    assert (detail["by"], detail["created"], detail["updated"]) == ("test", 2, 0)
    assert "nik" in json.loads(entry.fields or "[]")
    with sessions() as session:
        assert verify_chain(session).intact


def test_nothing_written_leaves_no_audit_entry(
    sessions: sessionmaker[Session], repository_of: Repositories
) -> None:
    doc = sisdmk_worker()
    apply(sessions, repository_of, [doc])
    again = apply(sessions, repository_of, [doc])
    older = apply(sessions, repository_of, [{**doc, "version": 0, "full_name": "Lama"}])
    assert again.results == (UpsertResult.UNCHANGED,)
    assert older.results == (UpsertResult.SUPERSEDED,)
    assert len(audit_entries(sessions)) == 1


def test_a_disabled_connection_writes_nothing(
    sessions: sessionmaker[Session], repository_of: Repositories
) -> None:
    with sessions.begin() as session:
        set_enabled(session, "sisdmk", False)
    with pytest.raises(ConnectionDisabled):
        apply(sessions, repository_of, [sisdmk_worker()])
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(HealthWorker)) == 0
    assert audit_entries(sessions) == []


def test_a_refused_record_is_named_by_its_position(
    sessions: sessionmaker[Session], repository_of: Repositories
) -> None:
    bad = sisdmk_worker()
    del bad["full_name"]
    with pytest.raises(RecordRefused) as refused:
        apply(sessions, repository_of, [sisdmk_worker(), bad])
    assert refused.value.index == 1
    assert isinstance(refused.value.cause, KeyError)
    with sessions() as session:  # the transaction rolled back: not even the good record
        assert session.scalar(select(func.count()).select_from(HealthWorker)) == 0
    assert audit_entries(sessions) == []


@pytest.mark.parametrize("flush_each", [False, True], ids=["batch", "one by one"])
def test_a_person_deleted_when_their_last_registration_moved_is_named_in_the_audit_entry(
    sessions: sessionmaker[Session], repository_of: Repositories, flush_each: bool
) -> None:
    """Only KKI knew them (a mistyped NIK, since corrected): the entry of the write that moved
    the registration away names the worker it deleted, by id (also when a refused record has
    the batch written again document by document)."""
    registration = kki_registration()
    apply(sessions, repository_of, [registration], "kki")
    with sessions() as session:
        [stand_in] = session.scalars(select(HealthWorker.id))

    moved, other = bumped(registration, nik=sisdmk_worker()["nik"]), kki_registration()
    apply(sessions, repository_of, [moved, other], "kki", flush_each=flush_each)

    first, second = audit_entries(sessions)
    assert "removed_worker_ids" not in json.loads(first.detail or "{}")
    detail = json.loads(second.detail or "{}")
    assert detail["removed_worker_ids"] == [str(stand_in)]
    assert detail["written_ids"] == [registration["str_number"], other["str_number"]]
    with sessions() as session:
        assert stand_in not in set(session.scalars(select(HealthWorker.id)))
        assert session.scalar(select(func.count()).select_from(HealthWorker)) == 2


@pytest.mark.parametrize("flush_each", [False, True], ids=["batch", "one by one"])
def test_a_person_a_batch_empties_and_names_again_stays_the_same_person(
    sessions: sessionmaker[Session], repository_of: Repositories, flush_each: bool
) -> None:
    """Written again document by document (a refused record in the batch), the first document
    deleted the person at once and the second made another with the same NIK: the outcome
    depended on how the batch was written."""
    typo = sisdmk_worker()["nik"]
    leaving = kki_registration(nik=typo)
    apply(sessions, repository_of, [leaving], "kki")
    with sessions() as session:
        [stand_in] = session.scalars(select(HealthWorker.id))
    arriving = kki_registration(nik=typo)

    moved = bumped(leaving, nik=sisdmk_worker()["nik"])
    apply(sessions, repository_of, [moved, arriving], "kki", flush_each=flush_each)

    with sessions() as session:
        holders = dict(
            session.execute(select(Registration.str_number, Registration.worker_id)).all()
        )
    assert holders[arriving["str_number"]] == stand_in
    assert holders[leaving["str_number"]] != stand_in
    assert "removed_worker_ids" not in json.loads(audit_entries(sessions)[-1].detail or "{}")
