"""The store tests' databases and keys: throw-away PostgreSQL databases, the backends every
store test runs on, the keys the tests' settings and sessions carry, and `migrate`, which
brings a new database to the migrations' head."""

from __future__ import annotations

import atexit
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from adapter.store.crypto import Key, KeyRing
from adapter.store.database import create_engine_from_url, upgrade
from harness.services import drop_database as drop_database  # re-exported for the tests

START_HINT = (
    "run `make services` (it installs and starts a local PostgreSQL), or set "
    "TEST_DATABASE_URL to a server whose user may CREATE DATABASE"
)
BACKENDS = ("postgresql", "sqlite")
REPO = Path(__file__).resolve().parents[2]
ENCRYPTION_KEY = Key("test-1", bytes(range(32)))
BLIND_INDEX_KEY = Key("bidx-1", bytes(range(100, 132)))
AUDIT_KEY = Key("audit-1", bytes(range(150, 182)))
# What AUDIT_KEYS holds in the tests' settings: the sessions the tests build carry it.
AUDIT_KEYS = KeyRing([AUDIT_KEY])


class PostgresServer:
    """Creates throw-away databases on one server and drops them: an `empty_database_url`
    when its test ends, on a thread beside the next tests (`drop_soon`), and the others (a
    module's or the session's) at the session's end."""

    def __init__(self, admin: Engine, worker: str) -> None:
        self._admin = admin
        self._worker = worker
        self._created: list[str] = []
        self._lock = threading.Lock()
        self._template: str | None = None
        self._template_lock = threading.Lock()
        self._to_drop: queue.Queue[str | None] = queue.Queue()
        self._dropper: threading.Thread | None = None

    def create_database(self, template: str | None = None) -> URL:
        """A new database, dropped at the session's end; with `template`, a copy of that one
        (which nothing may be connected to)."""
        name = f"hf_test_{self._worker}_{secrets.token_hex(4)}"
        copy = "" if template is None else f' TEMPLATE "{template}"'
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
            _commit_without_waiting_for_the_disk(connection, name)  # not copied from a template
        with self._lock:
            self._created.append(name)
        return self._admin.url.set(database=name)

    def replace_with_migrated(self, engine: Engine) -> bool:
        """Replace `engine`'s database, if this server created it and it holds nothing yet,
        with a copy of one the migrations brought to head once for the session (`engine`'s
        connections are closed first: the DROP waits a few seconds for them to go, and fails
        if anything else is still connected); False, and nothing done, otherwise."""
        name = engine.url.database
        with self._lock:
            ours = name is not None and name in self._created and name != self._template
        if name is None or not ours or not _holds_nothing(engine):
            return False
        engine.dispose()
        with self._template_lock:
            if self._template is None:
                template = self.create_database()
                upgrade(template)
                self._template = template.database
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"'))
            _commit_without_waiting_for_the_disk(connection, name)  # not copied from a template
        return True

    def drop_soon(self, url: URL) -> None:
        """Drop `url`'s database on the dropping thread (its test is over): a drop takes
        15-80 ms, and hundreds of them at the session's end kept a test worker 4-17 s."""
        if url.database is None:
            return
        if self._dropper is None:
            self._dropper = threading.Thread(
                target=self._drop_queued, name="hf-test-dropper", daemon=True
            )
            self._dropper.start()
        self._to_drop.put(url.database)

    def drop_all(self) -> None:
        """Hand every database not dropped yet to a process of its own that drops them after
        the session (`tests/support/drop_databases.py`): waiting for the last few hundred
        drops kept a test worker, and so the suite, up to 20 s longer."""
        if self._dropper is not None:
            while True:  # the queued ones go with the rest: they are still in `_created`
                try:
                    self._to_drop.get_nowait()
                except queue.Empty:
                    break
            self._to_drop.put(None)
            self._dropper.join(timeout=10)  # the drop under way
            self._dropper = None
        with self._lock:
            left, self._created = self._created, []
        if not left:
            return
        log = Path(tempfile.gettempdir()) / f"hf-test-drops-{self._worker}.log"
        with log.open("ab") as output:
            subprocess.Popen(
                [sys.executable, "-m", "tests.support.drop_databases", *left],
                cwd=REPO,
                env={
                    **os.environ,
                    "HF_TEST_ADMIN_URL": self._admin.url.render_as_string(hide_password=False),
                },
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )

    def _drop_queued(self) -> None:
        while (name := self._to_drop.get()) is not None:
            try:
                with self._admin.connect() as connection:
                    drop_database(connection, name)
            except SQLAlchemyError:
                continue  # still listed: drop_all hands it to the dropping process
            with self._lock:
                self._created.remove(name)


def _commit_without_waiting_for_the_disk(connection: Connection, name: str) -> None:
    """The test database's sessions commit without waiting for the WAL's flush to disk: what
    the tests kill is the adapter's processes, never this server, so nothing a test can see
    changes (a commit is as visible to every other session at once), and thousands of commits
    stop waiting on `fsync`. The benchmarks' databases keep the server's default."""
    connection.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))


# -- migrated databases -------------------------------------------------------------------------

# The session's server (the `postgres_server` fixture sets it), whose databases `migrate` copies
# from a migrated template.
active_server: PostgresServer | None = None
_sqlite_template: Path | None = None
_sqlite_lock = threading.Lock()


def drop_runtime_role(admin: Engine, database: str, name: str) -> None:
    """Take back what `db grant --apply` gave role `name` on `database`, then drop it (a role
    that still holds rights cannot be dropped)."""
    from adapter.store.privileges import runtime_grants

    with admin.begin() as connection:
        for statement in runtime_grants(name):
            if statement.startswith("REVOKE"):
                connection.execute(text(statement))
        connection.execute(text(f'REVOKE ALL ON DATABASE "{database}" FROM {name}'))
        connection.execute(text(f"DROP ROLE {name}"))


def migrate(engine: Engine) -> None:
    """What `upgrade(engine)` does to a new database, in a fraction of the time: an empty
    PostgreSQL database of the session's server becomes a copy of a template the migrations
    built once (`CREATE DATABASE … TEMPLATE`); a SQLite file not yet created becomes a copy of
    a migrated file. Anything else (a database with tables, another server) is upgraded.
    The migrations themselves are tested on empty databases (test_store_migrations.py)."""
    url = engine.url
    backend = url.get_backend_name()
    if backend == "postgresql":
        if active_server is not None and active_server.replace_with_migrated(engine):
            return
    elif (
        backend == "sqlite"
        and url.database
        and url.database != ":memory:"
        and not url.database.startswith("file:")
        and not Path(url.database).exists()
    ):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_sqlite_file(), url.database)
        return
    upgrade(engine)


def _holds_nothing(engine: Engine) -> bool:
    with engine.connect() as connection:
        return not connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', "
                "'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
                "AND n.nspname NOT LIKE 'pg\\_temp%')"
            )
        ).scalar_one()


def _migrated_sqlite_file() -> Path:
    global _sqlite_template
    with _sqlite_lock:
        if _sqlite_template is None:
            folder = Path(tempfile.mkdtemp(prefix="hf-test-template-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            template = folder / "migrated.sqlite3"
            engine = create_engine_from_url(f"sqlite:///{template}")
            try:
                upgrade(engine)
                with engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                engine.dispose()
            wal = template.with_name(template.name + "-wal")
            assert not wal.exists() or wal.stat().st_size == 0, "the template's WAL is not empty"
            _sqlite_template = template
        return _sqlite_template
