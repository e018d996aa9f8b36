"""The store tests' databases and keys: throw-away PostgreSQL databases, the backends every
store test runs on, and the keys the tests' settings and sessions carry."""

from __future__ import annotations

import secrets

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from adapter.store.crypto import Key, KeyRing

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


class PostgresServer:
    """Creates throw-away databases on one server and drops them all at the end."""

    def __init__(self, admin: Engine, worker: str) -> None:
        self._admin = admin
        self._worker = worker
        self._created: list[str] = []

    def create_database(self) -> URL:
        name = f"hf_test_{self._worker}_{secrets.token_hex(4)}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        return self._admin.url.set(database=name)

    def drop_all(self) -> None:
        with self._admin.connect() as connection:
            for name in self._created:
                try:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                except ProgrammingError:
                    # FORCE refuses to end a backend of another role — an autovacuum worker
                    # busy on the database after a heavy test is one. End ours, then a plain
                    # DROP, which stops autovacuum on the database itself.
                    connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :name AND usename = current_user "
                            "AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    )
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        self._created.clear()
