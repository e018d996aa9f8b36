"""`held` on PostgreSQL reads the server's lock table: it sees a lock any session holds, under
keys of either sign, only in its own database, and never takes the lock itself."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event

from adapter.store.locks import advisory_key, exclusive, held
from tests.support.databases import PostgresServer

pytestmark = pytest.mark.integration

# One key of each sign: a bigint key is listed as two unsigned 32-bit halves.
NAMES = [
    next(f"sync-test-{n}" for n in range(100) if advisory_key(f"sync-test-{n}") < 0),
    next(f"sync-test-{n}" for n in range(100) if advisory_key(f"sync-test-{n}") > 0),
]


@pytest.fixture
def engine(postgres_server: PostgresServer) -> Any:
    url = postgres_server.create_database()
    engine = create_engine(url)
    yield engine
    engine.dispose()
    postgres_server.drop_soon(url)


def _held_elsewhere(
    engine: Engine, name: str, ready: threading.Event, done: threading.Event
) -> None:
    with exclusive(engine, name):
        ready.set()
        done.wait(30)


@pytest.mark.parametrize("name", NAMES)
def test_a_lock_another_session_holds_is_seen_and_its_release_too(
    engine: Engine, name: str
) -> None:
    assert not held(engine, name)
    ready, done = threading.Event(), threading.Event()
    holder = threading.Thread(target=_held_elsewhere, args=(engine, name, ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        assert held(engine, name)
        assert not held(engine, f"{name}-other")
    finally:
        done.set()
        holder.join(30)
    assert not held(engine, name)


def test_the_same_key_held_in_another_database_is_not_this_databases_lock(
    engine: Engine, postgres_server: PostgresServer
) -> None:
    other_url = postgres_server.create_database()
    other = create_engine(other_url)
    try:
        with exclusive(other, NAMES[0]):
            assert held(other, NAMES[0])
            assert not held(engine, NAMES[0])
    finally:
        other.dispose()
        postgres_server.drop_soon(other_url)


def test_looking_never_takes_the_lock(engine: Engine) -> None:
    """Taking the lock to look (as before) refused a sync starting at that instant."""
    sent: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    assert not held(engine, NAMES[0])
    with exclusive(engine, NAMES[0]):
        sent.clear()
        assert held(engine, NAMES[0])
        looked = list(sent)
    assert looked
    assert not [s for s in looked if "advisory" in s and "pg_locks" not in s], looked
