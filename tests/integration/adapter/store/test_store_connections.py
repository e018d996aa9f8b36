"""The PostgreSQL pool's checkout check: a connection the server ended is replaced, not handed out,
and a connection in use moments ago is handed out without a ping round trip."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, text

from adapter.store.database import create_engine_from_url
from tests.support.databases import PostgresServer


@pytest.fixture
def engine(postgres_server: PostgresServer) -> Iterator[Engine]:
    engine = create_engine_from_url(postgres_server.create_database(), pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_the_server_ended_is_replaced_at_checkout(
    engine: Engine, postgres_server: PostgresServer
) -> None:
    with engine.connect() as pooled, engine.connect() as other:
        ended = int(pooled.execute(text("SELECT pg_backend_pid()")).scalar_one())
        pooled.close()  # back in the pool (its one place); `other` overflows and is closed after
        # Another session ends the pooled one, as a server restart would, and waits (up to 10 s)
        # until that backend has exited: before then its goodbye may not be on the socket yet.
        terminated = other.execute(
            text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": ended}
        ).scalar_one()
        assert terminated, "PostgreSQL did not end the pooled connection's backend within 10 s"

    # Once the server has said goodbye the socket shows it; the next checkout sees it there.
    assert backend_pid(engine) not in (ended, 0)


def test_a_connection_in_use_moments_ago_is_not_pinged(engine: Engine) -> None:
    backend_pid(engine)  # opened and back in the pool
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    backend_pid(engine)
    assert statements == ["SELECT pg_backend_pid()"]


def tcp_options(engine: Engine) -> tuple[int, int, int, int]:
    """The keepalive settings of a pooled connection's socket."""
    with engine.connect() as connection:
        descriptor = connection.connection.dbapi_connection.fileno()  # type: ignore[union-attr]
        sock = socket.socket(fileno=os.dup(descriptor))
        try:
            return (
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            )
        finally:
            sock.close()


def test_a_connection_notices_a_vanished_server_within_a_minute(engine: Engine) -> None:
    """Keepalive probes after 30 s of silence, 3 of them 10 s apart: not the operating
    system's two hours."""
    assert tcp_options(engine) == (1, 30, 10, 3)


def test_the_database_urls_own_tcp_settings_win(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database().update_query_dict({"keepalives_idle": "7"})
    engine = create_engine_from_url(url, pool_size=1)
    try:
        assert tcp_options(engine)[1] == 7
    finally:
        engine.dispose()
