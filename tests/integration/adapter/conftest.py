"""Real databases for the adapter's store tests: PostgreSQL and a SQLite file.

Each session (each xdist worker) creates its own PostgreSQL databases, named
``hf_test_<worker>_<random>``, and drops them at the end. ``TEST_DATABASE_URL`` points the
tests at another server (an administrative URL whose user may CREATE DATABASE).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from adapter.store.crypto import BlindIndex, FieldCipher, Key, KeyRing
from adapter.store.database import create_engine_from_url, session_factory, upgrade
from harness import services
from tests.integration.adapter.databases import PostgresServer

START_HINT = (
    "run `make services` (it installs and starts a local PostgreSQL), or set "
    "TEST_DATABASE_URL to a server whose user may CREATE DATABASE"
)
BACKENDS = ("postgresql", "sqlite")
ENCRYPTION_KEY = Key("test-1", bytes(range(32)))
BLIND_INDEX_KEY = Key("bidx-1", bytes(range(100, 132)))
AUDIT_KEY = Key("audit-1", bytes(range(150, 182)))
# What AUDIT_KEYS holds in the tests' settings: the sessions the tests build carry it.
AUDIT_KEYS = KeyRing([AUDIT_KEY])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = make_url(services.database_url())
    admin = create_engine(
        url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect():
            pass
    except OperationalError as exc:
        admin.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        pytest.fail(
            f"PostgreSQL is not reachable at {url.render_as_string(hide_password=True)} "
            f"({reason}); {START_HINT}",
            pytrace=False,
        )
    server = PostgresServer(admin, os.environ.get("PYTEST_XDIST_WORKER", "main"))
    try:
        yield server
    finally:
        server.drop_all()
        admin.dispose()


@pytest.fixture
def empty_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> URL:
    """A new, empty database of the backend named by the test's ``backend`` parameter."""
    backend = request.param if hasattr(request, "param") else "sqlite"
    if backend == "postgresql":
        return postgres_server.create_database()
    return make_url(f"sqlite:///{tmp_path / 'store' / 'adapter.sqlite3'}")


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_engine(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
) -> Iterator[Engine]:
    """One migrated database per backend for the session; tests use their own unique data."""
    if request.param == "postgresql":
        url = postgres_server.create_database()
    else:
        url = make_url(f"sqlite:///{tmp_path_factory.mktemp('store') / 'adapter.sqlite3'}")
    engine = create_engine_from_url(url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sessions(migrated_engine: Engine) -> sessionmaker[Session]:
    return session_factory(migrated_engine, audit_keys=AUDIT_KEYS)


@pytest.fixture(scope="session")
def cipher() -> FieldCipher:
    return FieldCipher(KeyRing([ENCRYPTION_KEY]))


@pytest.fixture(scope="session")
def blind_index() -> BlindIndex:
    return BlindIndex(BLIND_INDEX_KEY)
