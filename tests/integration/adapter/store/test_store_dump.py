"""A raw dump of the PostgreSQL store holds no personal data in clear."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.repositories import HealthWorkerRepository
from tests.support.databases import AUDIT_KEYS, PostgresServer, migrate
from tests.support.documents import kki_registration, sisdmk_worker

pytestmark = pytest.mark.integration

FETCHED_AT = dt.datetime(2026, 1, 30, tzinfo=dt.UTC)


def test_pg_dump_contains_no_personal_data_when_workers_are_stored(
    postgres_server: PostgresServer, cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    pg_dump = shutil.which("pg_dump")
    assert pg_dump is not None, "pg_dump is not installed (apt-get install postgresql-client)"
    url = postgres_server.create_database()
    engine = create_engine_from_url(url)
    try:
        migrate(engine)
        sessions: sessionmaker[Session] = session_factory(engine, audit_keys=AUDIT_KEYS)
        workers = [sisdmk_worker(nip=f"19850312201001100{index}") for index in range(3)]
        registrations = [kki_registration(worker) for worker in workers]
        # A KKI-only person, and a KKI spelling that differs (kept on the registration).
        registrations.append(kki_registration())
        registrations[0]["full_name"] = workers[0]["full_name"] + " Alias"
        with sessions.begin() as session:
            repository = HealthWorkerRepository(session, cipher, blind_index)
            for worker in workers:
                repository.upsert_from_sisdmk(worker, fetched_at=FETCHED_AT)
            for registration in registrations:
                repository.upsert_registration_from_kki(registration, fetched_at=FETCHED_AT)
    finally:
        engine.dispose()

    dump = subprocess.run(
        [
            pg_dump,
            "--data-only",
            "--no-owner",
            "--dbname",
            url.set(drivername="postgresql").render_as_string(hide_password=False),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout

    assert "v1.test-1." in dump  # the data is in the dump, encrypted
    assert all(registration["str_number"] in dump for registration in registrations)
    secrets_in_clear = [
        *(
            worker[key]
            for worker in workers
            for key in ("nik", "full_name", "phone", "email", "birth_place", "ihs_number", "nip")
        ),
        *(worker["address"]["line"] for worker in workers),
        *(worker["educations"][0]["ijazah_no"] for worker in workers),
        *(registration[key] for registration in registrations for key in ("nik", "full_name")),
    ]
    leaked = [value for value in secrets_in_clear if value in dump]
    assert leaked == []
