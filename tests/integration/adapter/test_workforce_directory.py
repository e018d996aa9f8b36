"""The API's view of the store: search, masking, one worker in full, cursors — both backends."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.repositories import HealthWorkerRepository
from adapter.workforce.directory import (
    InvalidQuery,
    WorkerFilter,
    WorkerNotFound,
    WorkforceDirectory,
)
from tests.support.databases import AUDIT_KEYS, BACKENDS, migrate
from tests.support.documents import kki_registration, sisdmk_worker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True),
]

FETCHED_AT = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
READ_AT = FETCHED_AT + dt.timedelta(hours=2, milliseconds=500)


@pytest.fixture
def stored(
    empty_database_url: URL, cipher: FieldCipher, blind_index: BlindIndex
) -> Iterator[tuple[sessionmaker[Session], list[dict[str, Any]], list[dict[str, Any]]]]:
    engine = create_engine_from_url(empty_database_url)
    migrate(engine)
    sessions = session_factory(engine, audit_keys=AUDIT_KEYS)
    workers = [sisdmk_worker() for _ in range(7)]
    workers[0]["facility_code"] = "3171010"
    registrations = [kki_registration(worker) for worker in workers[:3]]
    with sessions.begin() as session:
        repository = HealthWorkerRepository(session, cipher, blind_index)
        for worker in workers:
            repository.upsert_from_sisdmk(worker, fetched_at=FETCHED_AT)
        for registration in registrations:
            repository.upsert_registration_from_kki(registration, fetched_at=FETCHED_AT)
    yield sessions, workers, registrations
    engine.dispose()


def _directory(
    session: Session, cipher: FieldCipher, blind_index: BlindIndex
) -> WorkforceDirectory:
    return WorkforceDirectory(session, cipher, blind_index, lambda: READ_AT)


def test_search_by_facility_str_and_nik_withholds_unless_clear(
    stored: Any, cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    sessions, workers, registrations = stored
    with sessions() as session:
        directory = _directory(session, cipher, blind_index)
        (by_facility,) = directory.search(
            WorkerFilter(facility_code="3171010"), cursor=None, limit=10, clear=False
        ).items
        assert by_facility["masked"] is True
        # Not a digit of the NIK, not an initial or a title: the same for every worker.
        assert by_facility["nik"] == "•••"
        assert by_facility["full_name"] == "•••"
        for title in ("gelar_depan", "gelar_belakang"):
            assert by_facility[title] == (None if workers[0].get(title) is None else "•••")
        assert by_facility["birth_date"] is None
        assert by_facility["gender"] == workers[0]["gender"]
        (by_str,) = directory.search(
            WorkerFilter(str_number=registrations[1]["str_number"]),
            cursor=None,
            limit=10,
            clear=True,
        ).items
        assert by_str["nik"] == workers[1]["nik"]
        assert by_str["full_name"] == workers[1]["full_name"]
        by_nik = directory.find_by_nik(workers[2]["nik"], clear=True)
        assert by_nik is not None
        assert by_nik["birth_date"] == workers[2]["birth_date"]
        assert by_nik["provenance"]["source_system"] == "sisdmk"
        assert by_nik["provenance"]["age_s"] == 7200.5
        assert directory.find_by_nik("3299999999999999", clear=True) is None


def test_cursor_pages_through_everything_once(
    stored: Any, cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    sessions, workers, _ = stored
    seen: list[str] = []
    cursor = None
    with sessions() as session:
        directory = _directory(session, cipher, blind_index)
        while True:
            page = directory.search(WorkerFilter(), cursor=cursor, limit=3, clear=False)
            seen += [item["id"] for item in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == len(workers)
        with pytest.raises(InvalidQuery, match="cursor is not one this API issued"):
            directory.search(WorkerFilter(), cursor="not-a-cursor", limit=3, clear=False)
        with pytest.raises(InvalidQuery, match="limit must be between 1 and 200"):
            directory.search(WorkerFilter(), cursor=None, limit=201, clear=False)


def test_one_worker_in_full_with_registrations_and_provenance(
    stored: Any, cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    sessions, workers, registrations = stored
    with sessions() as session:
        directory = _directory(session, cipher, blind_index)
        found = directory.find_by_nik(workers[0]["nik"], clear=False)
        assert found is not None
        full = directory.worker(uuid.UUID(found["id"]), clear=False)
        assert [r["str_number"] for r in full["registrations"]] == [registrations[0]["str_number"]]
        registration = full["registrations"][0]
        assert len(registration["sips"]) == len(registrations[0]["sips"])
        assert len(registration["trainings"]) == len(registrations[0]["trainings"])
        assert registration["provenance"]["source_system"] == "kki"
        assert len(full["employments"]) == len(workers[0]["employments"])
        assert workers[0]["nik"] not in str(full)
        with pytest.raises(WorkerNotFound):
            directory.worker(uuid.uuid4(), clear=False)


def test_one_worker_in_full_takes_one_statement_on_postgresql_whatever_they_hold(
    stored: Any, cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    sessions, workers, registrations = stored
    more = [kki_registration(workers[0]) for _ in range(3)]
    with sessions.begin() as session:
        repository = HealthWorkerRepository(session, cipher, blind_index)
        for registration in more:
            repository.upsert_registration_from_kki(registration, fetched_at=FETCHED_AT)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    with sessions() as session:
        directory = _directory(session, cipher, blind_index)
        found = directory.find_by_nik(workers[0]["nik"], clear=True)
        assert found is not None
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", count)
        try:
            full = directory.worker(uuid.UUID(found["id"]), clear=True)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    held = [registrations[0], *more]
    # SQLite (in process, no round trips) reads one table at a time.
    dialect = engine.dialect.name
    assert len(statements) == (1 if dialect == "postgresql" else 7), statements
    assert [r["str_number"] for r in full["registrations"]] == sorted(r["str_number"] for r in held)
    by_number = {r["str_number"]: r for r in held}
    for registration in full["registrations"]:
        document = by_number[registration["str_number"]]
        assert [s["sip_seq"] for s in registration["sips"]] == sorted(
            s["sip_seq"] for s in document["sips"]
        )
        assert len(registration["trainings"]) == len(document["trainings"])
        assert registration["skp"] is not None
    assert full["nik"] == workers[0]["nik"]
    assert [e["tmt_start"] for e in full["employments"]] == sorted(
        e["tmt_start"] for e in full["employments"]
    )


def test_findings_list_mismatches_and_broken_rules_with_their_record_never_a_value(
    stored: tuple[sessionmaker[Session], list[dict[str, Any]], list[dict[str, Any]]],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    sessions, workers, _ = stored
    mismatch = kki_registration(workers[3], full_name="Nama Lain Sintetis")
    broken = kki_registration(workers[4])
    broken["certification"]["valid_until"] = "2029-03-10"  # a citizen's STR since UU 17/2023
    with sessions.begin() as session:
        repository = HealthWorkerRepository(session, cipher, blind_index)
        for doc in (mismatch, broken):
            repository.upsert_registration_from_kki(doc, fetched_at=FETCHED_AT)
        repository.upsert_from_sisdmk(
            {**workers[5], "version": 2, "gender": "female"}, fetched_at=FETCHED_AT
        )

    with sessions() as session:
        directory = _directory(session, cipher, blind_index)
        listed = directory.findings(cursor=None, limit=50, open_only=True).items
        only = directory.findings(cursor=None, limit=50, open_only=True, rule="nik_sex").items

    by_rule = {item["rule"]: item for item in listed}
    assert set(by_rule) == {"identity_mismatch", "str_citizen_lifetime", "nik_sex"}
    assert by_rule["identity_mismatch"]["field"] == "full_name"
    assert (
        by_rule["identity_mismatch"]["kki_has_value"],
        by_rule["identity_mismatch"]["source_id"],
    ) == (True, None)
    lifetime = by_rule["str_citizen_lifetime"]
    assert (lifetime["source_system"], lifetime["source_id"], lifetime["field"]) == (
        "kki",
        broken["str_number"],
        "valid_until",
    )
    assert (lifetime["kki_has_value"], lifetime["sisdmk_has_value"]) == (None, None)
    assert lifetime["registration_id"] is not None
    sex = by_rule["nik_sex"]
    assert (sex["source_system"], sex["source_id"], sex["registration_id"]) == (
        "sisdmk",
        workers[5]["worker_id"],
        None,
    )
    assert only == [sex]
    shown = repr(listed)
    for worker in workers[3:6]:
        for key in ("nik", "full_name", "birth_date"):
            assert worker[key] not in shown
    assert "Nama Lain Sintetis" not in shown
