"""The integration suite's shared fixtures, in one module (registered by tests/conftest.py).

Real services only: a PostgreSQL server (``TEST_DATABASE_URL`` or `make services`) on which each
session (each xdist worker) creates its own databases, named ``hf_test_<worker>_<random>``, and
drops them at the end; a SQLite file per test or session; RabbitMQ (``TEST_BROKER_URL`` or
`make services`); the mock servers as processes; the test OpenID Connect provider. Anything
missing fails the tests with what to start; nothing is skipped. A folder's conftest.py adds
only what is its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from adapter.store.crypto import BlindIndex, FieldCipher, KeyRing
from adapter.store.database import create_engine_from_url, session_factory, upgrade
from harness import services
from harness.idp import IdpProcess
from harness.processes import ManagedProcess, start_mock
from tests.integration.adapter.api.stack import started_idp
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import FAST_WEBHOOKS, broker_url
from tests.support import databases
from tests.support.databases import (
    AUDIT_KEYS,
    BACKENDS,
    BLIND_INDEX_KEY,
    ENCRYPTION_KEY,
    START_HINT,
    PostgresServer,
)

# Few people, so a storm touches the same records again and again (effects count by event id).
MOCK_SIZE = 40

# -- stores -------------------------------------------------------------------------------


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
    databases.active_server = server
    try:
        yield server
    finally:
        databases.active_server = None
        server.drop_all()
        admin.dispose()


@pytest.fixture
def empty_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[URL]:
    """A new, empty database of the backend named by the test's ``backend`` parameter (a
    PostgreSQL one is dropped once the test is over)."""
    backend = request.param if hasattr(request, "param") else "sqlite"
    if backend != "postgresql":
        yield make_url(f"sqlite:///{tmp_path / 'store' / 'adapter.sqlite3'}")
        return
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_soon(url)


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


# -- queue --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def broker() -> str:
    """RabbitMQ's URL, after checking that it answers (each test uses its own prefix)."""
    return broker_url()


@pytest.fixture
def queue_broker(request: pytest.FixtureRequest, empty_database_url: URL) -> str | None:
    """RabbitMQ beside PostgreSQL, the embedded queue (no broker) beside SQLite, as deployed."""
    if empty_database_url.get_backend_name() == "postgresql":
        url: str = request.getfixturevalue("broker")
        return url
    return None


# -- mock servers -------------------------------------------------------------------------


@dataclass
class _MockProcess:
    system: str
    process: ManagedProcess
    mock: Mock


def _mock(system: str) -> Iterator[_MockProcess]:
    process, url = start_mock(system, size=MOCK_SIZE, seed=11, extra=FAST_WEBHOOKS)
    mock = Mock(url)
    try:
        yield _MockProcess(system, process, mock)
    finally:
        mock.close()
        process.close()


def _reset(server: _MockProcess) -> Mock:
    """The session's mock, reset for a module. One that exited, or is still in a `down` outage
    after 20 s, fails the module that takes it (with its log)."""
    if not server.process.is_running():
        pytest.fail(
            f"the session's {server.system} mock exited; its log:\n{server.process.output()}",
            pytrace=False,
        )
    server.mock.wait_until_up()
    server.mock.reset_all()
    return server.mock


# One process per system for the whole session (each xdist worker): a start costs about a CPU
# second (imports, the seeded population, the contract check), and a dozen modules use them.
# Each module gets them reset, as a module-scoped process would have started.


@pytest.fixture(scope="session")
def kki_mock_process() -> Iterator[_MockProcess]:
    yield from _mock("kki")


@pytest.fixture(scope="session")
def sisdmk_mock_process() -> Iterator[_MockProcess]:
    yield from _mock("sisdmk")


@pytest.fixture(scope="module")
def kki_mock(kki_mock_process: _MockProcess) -> Mock:
    return _reset(kki_mock_process)


@pytest.fixture(scope="module")
def sisdmk_mock(sisdmk_mock_process: _MockProcess) -> Mock:
    return _reset(sisdmk_mock_process)


@pytest.fixture
def mocks(kki_mock: Mock, sisdmk_mock: Mock) -> Iterator[tuple[Mock, Mock]]:
    """Both mocks, back to the seeded data set with no subscriptions or faults after the test."""
    try:
        yield kki_mock, sisdmk_mock
    finally:
        for mock in (kki_mock, sisdmk_mock):
            mock.reset_all()


# -- single sign-on -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def idp() -> Iterator[IdpProcess]:
    """The test OpenID Connect provider with the realm export's clients, per test module."""
    provider = started_idp()
    try:
        yield provider
    finally:
        provider.close()
