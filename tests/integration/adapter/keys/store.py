"""A store filled under key A, and raw views of its tokens, for the key-rotation tests."""

from __future__ import annotations

import atexit
import base64
import copy
import datetime as dt
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.crypto import BlindIndex, FieldCipher, FieldContext, Key, KeyRing
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.models import Base, QuarantinedRecord
from adapter.store.repositories import HealthWorkerRepository
from adapter.store.rotation import encrypted_tables
from tests.support.databases import AUDIT_KEY, AUDIT_KEYS, PostgresServer, migrate
from tests.support.documents import kki_registration, sisdmk_worker

KEY_A = Key("key-a", bytes(range(32)))
KEY_B = Key("key-b", bytes(range(50, 82)))
# What BLIND_INDEX_KEY becomes in the blind-index key change tests (it was "bidx-1").
NEW_BLIND_INDEX_KEY = Key("bidx-2", bytes(range(200, 232)))
FETCHED_AT = dt.datetime(2026, 1, 30, 1, 2, 3, tzinfo=dt.UTC)
WORKERS = 200
REGISTRATIONS = 40

TokenPlace = tuple[str, str, str]  # table, column, row id


def cipher_of(*keys: Key) -> FieldCipher:
    return FieldCipher(KeyRing(list(keys)))


@dataclass
class Store:
    engine: Engine
    sessions: sessionmaker[Session]
    workers: list[dict[str, Any]]

    def repository(self, session: Session, cipher: FieldCipher, bidx: BlindIndex) -> Any:
        return HealthWorkerRepository(session, cipher, bidx)


def entry(key: Key) -> str:
    """`key` as an environment variable holds it (``kid:base64url``)."""
    return f"{key.kid}:{base64.urlsafe_b64encode(key.material).decode().rstrip('=')}"


def settings_env(database_url: str, blind_index_key: Key, previous: Key | None) -> dict[str, str]:
    """The adapter's environment for a store filled by `filled_store` (encrypted under key A)."""
    env = {
        "DATABASE_URL": database_url,
        "ALLOW_INSECURE_HTTP": "true",
        "OIDC_ISSUER": "http://127.0.0.1:8080/realms/healthforce",
        "OIDC_AUDIENCE": "hf-adapter",
        "KKI_BASE_URL": "http://127.0.0.1:8081",
        "KKI_API_TOKEN": "kki-dev-token",
        "SISDMK_BASE_URL": "http://127.0.0.1:8082",
        "SISDMK_CLIENT_ID": "sisdmk-dev-client",
        "SISDMK_CLIENT_SECRET": "sisdmk-dev-secret",
        "KKI_WEBHOOK_SECRET": "whsec_" + base64.b64encode(bytes(range(1, 25))).decode(),
        "SISDMK_WEBHOOK_SECRET": "whsec_" + base64.b64encode(bytes(range(30, 62))).decode(),
        "ENCRYPTION_KEYS": entry(KEY_A),
        "BLIND_INDEX_KEY": entry(blind_index_key),
        "AUDIT_KEYS": entry(AUDIT_KEY),
    }
    if previous is not None:
        env["BLIND_INDEX_PREVIOUS_KEY"] = entry(previous)
    return env


# The store each test gets is a copy of one filled once per test process, backend and blind-index
# key: filling it record by record (200 workers, 40 registrations) took 0.9 s of a PostgreSQL
# test's setup and 0.25 s of a SQLite one's, 26 tests on each.
_filled: dict[tuple[str, int, str, str], tuple[str, list[dict[str, Any]]]] = {}
_filled_lock = threading.Lock()


def filled_copy(backend: str, tmp_path: Path, server: PostgresServer, bidx: BlindIndex) -> Store:
    """A store as `filled_store` leaves it, of the test's own: on PostgreSQL a database copied
    from a filled template (`CREATE DATABASE … TEMPLATE`), on SQLite a copy of a filled file
    at ``tmp_path/keys/adapter.sqlite3``. Every copy holds the same people (`Store.workers`)."""
    # Keyed by what the key does, not only its id: another key under the same id fills anew.
    key = (backend, id(server), bidx.kid, bidx.digest("hf-test-keys-store", purpose="name"))
    with _filled_lock:
        filled = _filled.get(key)
        if filled is None:
            filled = _fill_template(backend, server, bidx)
            _filled[key] = filled
    source, workers = filled
    if backend == "postgresql":
        url = server.create_database(template=source)
    else:
        target = tmp_path / "keys" / "adapter.sqlite3"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        url = make_url(f"sqlite:///{target}")
    engine = create_engine_from_url(url)
    return Store(engine, session_factory(engine, audit_keys=AUDIT_KEYS), copy.deepcopy(workers))


def _fill_template(
    backend: str, server: PostgresServer, bidx: BlindIndex
) -> tuple[str, list[dict[str, Any]]]:
    """The filled store copies are taken from (a database name, or a SQLite file's path) and
    its workers; nothing stays connected to it."""
    if backend == "postgresql":
        url = server.create_database()
    else:
        folder = Path(tempfile.mkdtemp(prefix="hf-test-keys-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        url = make_url(f"sqlite:///{folder / 'filled.sqlite3'}")
    filled = filled_store(url, bidx)
    try:
        if backend == "sqlite":
            with filled.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        filled.engine.dispose()
    source = url.database
    assert source is not None
    if backend == "sqlite":
        wal = Path(source + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0, "the filled file's WAL is not empty"
    return source, filled.workers


def filled_store(url: URL, bidx: BlindIndex) -> Store:
    """A migrated database with workers, registrations and a quarantined record under key A."""
    engine = create_engine_from_url(url)
    migrate(engine)
    sessions = session_factory(engine, audit_keys=AUDIT_KEYS)
    cipher = cipher_of(KEY_A)
    workers: list[dict[str, Any]] = []
    niks: set[str] = set()
    while len(workers) < WORKERS:
        index = len(workers)
        doc = sisdmk_worker()
        if doc["nik"] in niks:  # random synthetic NIKs may repeat; one NIK is one person
            continue
        niks.add(doc["nik"])
        if index % 3 == 0:
            doc["employments"][0]["nip"] = f"19850312201001{index:04d}"
        workers.append(doc)
    with sessions.begin() as session:
        repository = HealthWorkerRepository(session, cipher, bidx)
        for doc in workers:
            repository.upsert_from_sisdmk(doc, fetched_at=FETCHED_AT)
        for doc in workers[:REGISTRATIONS]:
            repository.upsert_registration_from_kki(kki_registration(doc), fetched_at=FETCHED_AT)
        record_id = uuid.uuid4()
        session.add(
            QuarantinedRecord(
                id=record_id,
                system="kki",
                resource="registration",
                source_id="QN-quarantined",
                reason="invalid",
                payload_hash="0" * 64,
                payload=cipher.encrypt(
                    '{"full_name": "Quarantined Sintetis"}',
                    context=FieldContext("quarantine", "payload", str(record_id)),
                ),
                received_at=FETCHED_AT,
            )
        )
    return Store(engine, sessions, workers)


def tokens(engine: Engine) -> dict[TokenPlace, str]:
    """Every stored field token, by where it lives."""
    found: dict[TokenPlace, str] = {}
    with engine.connect() as connection:
        for spec in encrypted_tables():
            for row in connection.execute(select(spec.key, *spec.columns)):
                for column, token in zip(spec.columns, row[1:], strict=True):
                    if token is not None:
                        found[(spec.name, column.name, str(row[0]))] = token
    return found


def plaintexts(engine: Engine, cipher: FieldCipher) -> dict[TokenPlace, str]:
    """Every stored value decrypted with `cipher`, by where it lives."""
    return {
        place: cipher.decrypt(token, context=FieldContext(*place))
        for place, token in tokens(engine).items()
    }


def kids(engine: Engine) -> set[str]:
    return {token.split(".")[1] for token in tokens(engine).values()}


def raw_dump(engine: Engine) -> str:
    """Every row of every table as text, as a database dump would show it."""
    lines: list[str] = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            lines.extend(repr(tuple(row)) for row in connection.execute(select(table)))
    return "\n".join(lines)
