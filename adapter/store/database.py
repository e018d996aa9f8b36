"""Engines, sessions and migrations for the store, on PostgreSQL (psycopg 3) or a SQLite file.

`upgrade` runs the Alembic migrations in ``adapter/store/migrations``; `check` fails when the
database is behind them or the models have changed without a migration.
"""

from __future__ import annotations

import select
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from adapter.errors import AdapterError, ConfigurationError
from adapter.settings import Settings
from adapter.store.crypto import KeyRing
from adapter.store.models import Base

if TYPE_CHECKING:
    # Alembic is imported by the functions that migrate or check (a tenth of a second that the
    # commands which only read and write rows do not pay at start).
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"
# PostgreSQL: a small pool per process (serve and worker scale by processes; docs/architecture.md,
# "Processes and scaling"); a checked-out connection is pinged only when it may be dead (see
# `_ping_when_in_doubt`), so a restarted server or a dropped idle connection costs a new
# connection, not an error, and a busy pool does not pay a round trip per checkout.
PG_POOL_SIZE: Final = 5
PG_MAX_OVERFLOW: Final = 10
PG_POOL_TIMEOUT_S: Final = 30
PG_POOL_RECYCLE_S: Final = 1800
PG_CONNECT_TIMEOUT_S: Final = 10
# A server that vanishes without closing its connections (a host down, a network partition, a
# firewall forgetting the connection) while a statement waits for its answer is noticed within
# about a minute, not the operating system's two hours: TCP keepalives probe after 30 s of
# silence, three probes 10 s apart. Without them a request thread, or the webhook inbox's one
# committing thread, waits in `recv` all that time. (No `tcp_user_timeout`: Linux applies it
# to data a live server is slow to read too, so a `COPY` waiting on a lock for longer would be
# cut off.) libpq's parameters: DATABASE_URL's own values of them (``?keepalives_idle=…``) win.
PG_TCP_PARAMETERS: Final = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
# A connection idle longer than this is pinged at checkout: a firewall or proxy may have dropped
# it silently, which its socket does not show.
PG_PING_AFTER_IDLE_S: Final = 30.0
_CHECKED_IN_AT: Final = "hf_adapter.checked_in_at"
# Where a session keeps the audit chain's keys (`Session.info`).
AUDIT_KEYS_INFO: Final = "hf_adapter.audit_keys"
# SQLite: wait this long for another process's write lock instead of failing at once.
SQLITE_BUSY_TIMEOUT_MS: Final = 5000


# SQLSTATEs (and their classes) that say the database as a whole cannot be used: connection
# exceptions, invalid authorization, no such database, the server shutting down.
_UNAVAILABLE_CLASSES: Final = ("08", "28", "3D")
_UNAVAILABLE_STATES: Final = frozenset({"57P01", "57P02", "57P03"})
_CONNECTION_EXCEPTION: Final = "08000"
_UNDEFINED_TABLE: Final = "42P01"
_UNDEFINED_COLUMN: Final = "42703"
_DATA_EXCEPTION: Final = "22"
_INSUFFICIENT_PRIVILEGE: Final = "42501"
_SQLITE_UNUSABLE: Final = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOTADB})


class DatabaseUnavailableError(AdapterError):
    """The database cannot be used at all: unreachable, refused, not migrated, or the role
    lacks a right (`reason` says which); the commands report it with exit 2."""

    default_reason = "database_unavailable"


def unusable_database(
    error: DBAPIError, url: str | URL | None = None
) -> DatabaseUnavailableError | None:
    """The `DatabaseUnavailableError` for an `error` that says the database as a whole cannot
    be used — unreachable, authentication refused, no such database, shutting down (reason
    ``database_unavailable``), a table (or column) missing from a database never migrated or
    behind its migrations (``database_not_migrated``) or from one at the newest migration
    (``database_damaged``: told apart by reading Alembic's version through `url`; a missing
    column that cannot be told apart is left to the caller), a right missing
    (``database_right``) —
    or ``None`` for any other error, which the caller re-raises.

    The message names the database by `url` with the password hidden, and quotes only the
    first line of the driver's message, which for these errors holds names, never row values.
    """
    detail = first_line(error.orig)
    where = f"the database at {_shown(url)}" if url is not None else "the database"
    state = _sqlstate(error)
    if state in (_UNDEFINED_TABLE, _UNDEFINED_COLUMN):
        migrated = _at_newest_migration(url) if url is not None else None
        if migrated is True:
            return DatabaseUnavailableError(
                f"{where} is at the newest migration but lacks a table or column of the "
                f"adapter's ({detail}): its schema is damaged; `hf-adapter db check` lists what "
                "differs, restore the database from a backup (docs/operations.md, Backups)",
                reason="database_damaged",
            )
        if state == _UNDEFINED_COLUMN and migrated is None:
            return None  # neither behind nor damaged that can be told: the command's own error
        return DatabaseUnavailableError(
            f"{where} lacks the adapter's tables or is behind its migrations ({detail}); run "
            "`hf-adapter db upgrade`",
            reason="database_not_migrated",
        )
    if state == _INSUFFICIENT_PRIVILEGE:
        user = _user(url)
        role = f"role {user!r}" if user else "role of DATABASE_URL"
        return DatabaseUnavailableError(
            f"the database {role} lacks a right this command needs ({detail}): run `hf-adapter "
            "db upgrade` with the tables' owner's URL, and as the owner `hf-adapter db grant "
            f"--role {user or 'ROLE'} --apply` for the runtime role (docs/operations.md, "
            "Database roles)",
            reason="database_right",
        )
    return unreachable_database(error, url)


def unreachable_database(
    error: DBAPIError, url: str | URL | None = None
) -> DatabaseUnavailableError | None:
    """The `DatabaseUnavailableError` for an `error` that says the database cannot be reached
    or logged into, does not exist or is shutting down; ``None`` for any other error, which the
    caller re-raises. A part of `unusable_database`, alone for the migrations: there a missing
    table or right is the migration's own failure."""
    state = _sqlstate(error)
    if state is None or not (
        state.startswith(_UNAVAILABLE_CLASSES) or state in _UNAVAILABLE_STATES
    ):
        return None
    where = f"the database at {_shown(url)}" if url is not None else "the database"
    return DatabaseUnavailableError(
        f"cannot use {where}: {first_line(error.orig)}; check DATABASE_URL and that the server "
        "is running"
    )


class MigrationError(AdapterError):
    """A migration failed (`db upgrade` and `downgrade` report it with exit 1); the ones before
    it stay applied."""

    default_reason = "migration_failed"


class SchemaDriftError(AdapterError):
    """The database is not at the migrations' head, or the models differ from the migrations."""

    default_reason = "schema_drift"

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


def create_engine_from_settings(settings: Settings, *, pool_size: int = PG_POOL_SIZE) -> Engine:
    """The engine for ``DATABASE_URL``."""
    return create_engine_from_url(settings.database_url.get_secret_value(), pool_size=pool_size)


def create_engine_from_url(url: str | URL, *, pool_size: int = PG_POOL_SIZE) -> Engine:
    """An engine with the adapter's pool and connection settings for `url`'s backend.

    `pool_size`: PostgreSQL connections kept open; give at least the threads that use the
    database at once, or every checkout above it opens (and then closes) a connection.

    Statement parameters are left out of logs and error messages: they can be personal data.

    For a SQLite file the parent folder is created; connections use WAL (readers do not block
    the writer) and enforce foreign keys, which SQLite leaves off by default.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            "DATABASE_URL: not a database URL; use sqlite:///path/to/file.sqlite3 or "
            "postgresql+psycopg://user:password@host:5432/database"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=PG_MAX_OVERFLOW,
            pool_timeout=PG_POOL_TIMEOUT_S,
            pool_recycle=PG_POOL_RECYCLE_S,
            hide_parameters=True,
            # Rows carry client-made UUID keys, so nothing needs RETURNING: psycopg's pipelined
            # executemany beats one giant multi-VALUES statement that psycopg re-parses each time.
            use_insertmanyvalues=False,
            connect_args={
                **{k: v for k, v in PG_TCP_PARAMETERS.items() if k not in parsed.query},
                "connect_timeout": PG_CONNECT_TIMEOUT_S,
                "application_name": "hf-adapter",
            },
        )
        _ping_when_in_doubt(engine)
        return engine
    raise ConfigurationError(
        f"DATABASE_URL: unsupported backend {parsed.get_backend_name()!r}; use SQLite or PostgreSQL"
    )


def _ping_when_in_doubt(engine: Engine) -> None:
    """Ping a connection at checkout only when it may be dead: idle longer than
    `PG_PING_AFTER_IDLE_S`, or its socket has something to read although no query is running
    (a server that restarted or ended the session has sent its farewell and closed it). A
    failed ping raises `DisconnectionError`, on which the pool opens a new connection and
    tries again; ``pool_pre_ping`` would instead pay a ``SELECT 1`` round trip per checkout."""

    @event.listens_for(engine, "connect")
    def opened(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def returned(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_s = time.monotonic() - record.info.get(_CHECKED_IN_AT, 0.0)
        if idle_s <= PG_PING_AFTER_IDLE_S and not _readable(dbapi_connection):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            raise DisconnectionError("the pooled connection is gone; opening a new one")


def _readable(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket has data (or end of file) waiting, without blocking."""
    if dbapi_connection.closed:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def session_factory(engine: Engine, *, audit_keys: KeyRing | None = None) -> sessionmaker[Session]:
    """Sessions bound to `engine`; objects stay readable after commit (no lazy refresh).

    `audit_keys` (``AUDIT_KEYS``) travel in each session's ``info``: the audit trail signs the
    entries appended in it with them, and only sessions that carry them can append.
    """
    info = {} if audit_keys is None else {AUDIT_KEYS_INFO: audit_keys}
    return sessionmaker(engine, expire_on_commit=False, info=info)


def upgrade(engine_or_url: Engine | str | URL, revision: str = "head") -> None:
    """Run the migrations up to `revision` (the newest by default).

    `DatabaseUnavailableError` when the database cannot be reached, or (PostgreSQL) when
    migrations are pending and the role may not run them: it does not own the adapter's tables
    already there, or may not create tables in the schema;
    `MigrationError`, naming the revision, when a migration fails.
    """
    from alembic import command

    with _migration_config(engine_or_url) as config:
        connection: Connection = config.attributes["connection"]
        if _pending(connection, config, revision):
            _check_may_migrate(connection)
        with _naming_failed_migration(config, upgrading=True):
            command.upgrade(config, revision)


def downgrade(engine_or_url: Engine | str | URL, revision: str = "base") -> None:
    """Run the migrations down to `revision` (an empty database by default); a failed one is
    `MigrationError`, as for `upgrade`."""
    from alembic import command

    with (
        _migration_config(engine_or_url) as config,
        _naming_failed_migration(config, upgrading=False),
    ):
        command.downgrade(config, revision)


def _revisions(context: MigrationContext) -> tuple[set[str], set[str]]:
    """The database's current revisions and the migrations' heads."""
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(_base_config()).get_heads())
    return set(context.get_current_heads()), heads


def require_migrated(engine: Engine) -> None:
    """`DatabaseUnavailableError` (``database_not_migrated``: a command cannot run, exit 2)
    unless the database is at the migrations' head; `check` then compares the models."""
    from alembic.runtime.migration import MigrationContext

    with connected(engine) as connection:
        current, heads = _revisions(MigrationContext.configure(connection))
    if current != heads:
        shown = ", ".join(sorted(current)) or "none"
        raise DatabaseUnavailableError(
            f"the database at {_shown(engine.url)} lacks the adapter's tables or is behind its "
            f"migrations (revision {shown}, the migrations' head "
            f"{', '.join(sorted(heads))}); run `hf-adapter db upgrade`",
            reason="database_not_migrated",
        )


def check(engine_or_url: Engine | str | URL) -> None:
    """`SchemaDriftError` unless the database is at head and matches the models exactly."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with connected(engine_or_url) as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        current, heads = _revisions(context)
        if current != heads:
            shown = ", ".join(sorted(current)) or "none (empty database)"
            raise SchemaDriftError(
                f"the database is at revision {shown}, the migrations' head is "
                f"{', '.join(sorted(heads))}; run `hf-adapter db upgrade`",
                [],
            )
        differences = [repr(diff) for diff in compare_metadata(context, Base.metadata)]
    if differences:
        raise SchemaDriftError(
            f"the models differ from the migrations in {len(differences)} place(s); add a "
            "migration (`hf-adapter db revision -m '...'`) and review it",
            differences,
        )


def revision(engine_or_url: Engine | str | URL, message: str) -> None:
    """Write a new migration from the difference between the models and an up-to-date database."""
    from alembic import command

    with _migration_config(engine_or_url) as config:
        command.revision(config, message=message, autogenerate=True)


# -- internals ----------------------------------------------------------------------------


def _sqlite_engine(url: URL) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, hide_parameters=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    return engine


def _base_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Readable revision file names, ordered by creation date.
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    return config


@contextmanager
def connected(
    engine_or_url: Engine | str | URL,
    *,
    translate: Callable[[DBAPIError, URL], DatabaseUnavailableError | None] = unusable_database,
) -> Iterator[Connection]:
    """A connection to the database; a database that cannot be used (`translate`, by default
    `unusable_database`) is `DatabaseUnavailableError`, which the commands report with exit 2."""
    if isinstance(engine_or_url, Engine):
        engine, owned = engine_or_url, False
    else:
        engine, owned = create_engine_from_url(engine_or_url), True
    try:
        with engine.connect() as connection:
            yield connection
    except DBAPIError as exc:
        unusable = translate(exc, engine.url)
        if unusable is None:
            raise
        raise unusable from None
    finally:
        if owned:
            engine.dispose()


@contextmanager
def _migration_config(engine_or_url: Engine | str | URL) -> Iterator[Config]:
    # Only a database that cannot be reached is "cannot use" here: a missing table or right met
    # by a migration is that migration's failure (`_naming_failed_migration`), not advice to
    # run `db upgrade` or to use the owner's URL.
    with connected(engine_or_url, translate=unreachable_database) as connection:
        config = _base_config()
        # env.py runs on this connection instead of opening its own.
        config.attributes["connection"] = connection
        yield config
        connection.commit()


def _pending(connection: Connection, config: Config, revision: str) -> bool:
    """Whether migrating to `revision` has anything to run."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = set(MigrationContext.configure(connection).get_current_heads())
    connection.rollback()  # the migrations begin their own transactions
    target = {
        script.revision for script in ScriptDirectory.from_config(config).get_revisions(revision)
    }
    return current != target


def _check_may_migrate(connection: Connection) -> None:
    """PostgreSQL: `DatabaseUnavailableError` unless the role may run the migrations: create
    tables in the schema, and own every table and function of the adapter's already there (a
    migration alters the tables, adds triggers, replaces or drops the functions, which only the
    owner may). Told before the first migration fails on it: `db upgrade` run with the runtime
    role's URL, which on PostgreSQL 14 and older (or wherever PUBLIC keeps CREATE on the schema)
    has the right to create tables; or with a new owner's URL after only the tables were given to
    it (``ALTER TABLE … OWNER TO``), which leaves the functions with the old one."""
    if connection.dialect.name != "postgresql":
        return
    schema, may_create = connection.execute(
        text(
            "SELECT current_schema(), has_schema_privilege(current_user, "
            "coalesce(current_schema(), 'public'), 'CREATE')"
        )
    ).one()
    owned = ownership(connection, adapter_tables(), adapter_functions())
    connection.rollback()  # the migrations begin their own transactions
    user = _user(connection.engine.url)
    role = f"role {user!r}" if user else "role of DATABASE_URL"
    grant = (
        "the runtime role gets its rights from `hf-adapter db grant --role ROLE --apply`, run "
        "as the owner (docs/operations.md, Database roles)"
    )
    if owned.not_owned:
        not_owning = (
            f"the database {role} does not own {len(owned.not_owned)} of the adapter's "
            f"{len(owned.owners)} tables and functions, which the migrations alter or replace"
        )
        if (owner := owned.sole_other_owner()) is not None:
            raise DatabaseUnavailableError(
                f"{not_owning}: run `hf-adapter db upgrade` with the URL of their owner, role "
                f"{owner!r}; {grant}",
                reason="database_right",
            )
        raise DatabaseUnavailableError(
            f"{not_owning}: {owned.not_owned_listed()}. {owned.give_all()}, then run "
            f"`hf-adapter db upgrade` with its URL; {grant}",
            reason="database_right",
        )
    if not may_create:
        raise DatabaseUnavailableError(
            f"the database {role} lacks a right `db upgrade` needs (permission denied for "
            f"schema {schema or 'public'}: it may not create tables there): run `hf-adapter db "
            f"upgrade` with the tables' owner's URL; {grant}",
            reason="database_right",
        )


def adapter_tables() -> list[str]:
    """The adapter's tables, those the migrations create: the models' and Alembic's version."""
    return sorted({*Base.metadata.tables, "alembic_version"})


def adapter_functions() -> list[str]:
    """The functions the migrations create on PostgreSQL (the audit trail's triggers; some are
    dropped by a later one): a later migration replaces or drops them, which only their owner
    may."""
    return [
        "audit_chain_head_guard",
        "audit_events_append_only",
        "audit_events_chain",
        "audit_events_enter",
        "audit_events_seal",
        "audit_events_seal_only",
        "audit_no_truncate",
        "audit_writers_count",
    ]


@dataclass(frozen=True)
class Ownership:
    """Of some tables and functions, those in the current schema with their owners (`owners`:
    name → owner; a function's name ends in ``()``), and the ones whose owner's rights the
    connection's role (`role`) lacks (`not_owned`). `bootstrap_superuser`: the role that
    created the cluster (``postgres``, oid 10), whose objects ``REASSIGN OWNED`` cannot move."""

    role: str
    owners: dict[str, str]
    not_owned: dict[str, str]
    bootstrap_superuser: str | None = None

    def sole_other_owner(self) -> str | None:
        """The one role that owns them all when the connection's role owns none of them (run
        as that role); ``None`` when the role owns some or the owners are mixed."""
        owners = set(self.not_owned.values())
        if len(owners) == 1 and len(self.not_owned) == len(self.owners):
            return owners.pop()
        return None

    def not_owned_listed(self) -> str:
        """The ones not owned, by owner: ``facilities, audit_events_seal() ('old'); …``."""
        by_owner: dict[str, list[str]] = {}
        for name, owner in self.not_owned.items():
            by_owner.setdefault(owner, []).append(name)
        return "; ".join(
            f"{', '.join(names)} ({owner!r})" for owner, names in sorted(by_owner.items())
        )

    def give_all(self) -> str:
        """How to give them all to one role: `role` when it owns some of them, otherwise the
        owner of the most. ``REASSIGN OWNED`` moves a role's tables, their sequences and its
        functions together; ``ALTER TABLE … OWNER TO`` would leave the functions behind, so it
        is advised only for what the bootstrap superuser owns, which ``REASSIGN OWNED`` refuses
        to move ("required by the database system")."""
        if len(self.not_owned) < len(self.owners):
            new = self.role
        else:
            counts = Counter(self.owners.values())
            new = min(counts, key=lambda owner: (-counts[owner], owner))
        old = sorted(set(self.not_owned.values()) - {new})
        reassigned = [owner for owner in old if owner != self.bootstrap_superuser]
        statements = []
        if reassigned:
            statements.append(
                f"REASSIGN OWNED BY {', '.join(map(quoted_identifier, reassigned))} TO "
                f"{quoted_identifier(new)};"
            )
        pinned = sorted(
            name
            for name, owner in self.not_owned.items()
            if owner == self.bootstrap_superuser and owner != new
        )
        statements += [_owner_to(name, new) for name in pinned]
        why = (
            f" (REASSIGN OWNED cannot move what the bootstrap superuser "
            f"{self.bootstrap_superuser!r} owns)"
            if pinned
            else ""
        )
        return (
            f"Give them all to role {new!r}, as a superuser (or a member of both roles){why}: "
            f"{' '.join(statements)} (docs/operations.md, Changing the tables' owner)"
        )


def _owner_to(name: str, new: str) -> str:
    """The statement that gives table or function `name` (``f()``) to role `new`."""
    if name.endswith("()"):
        return f"ALTER FUNCTION {quoted_identifier(name[:-2])}() OWNER TO {quoted_identifier(new)};"
    return f"ALTER TABLE {quoted_identifier(name)} OWNER TO {quoted_identifier(new)};"


def quoted_identifier(name: str) -> str:
    """`name` as a PostgreSQL identifier in a statement shown to (or run for) the user."""
    return '"' + name.replace('"', '""') + '"'


def ownership(
    connection: Connection, tables: list[str], functions: list[str] | None = None
) -> Ownership:
    """PostgreSQL: which of `tables` and `functions` are in the current schema and who owns
    them, and which of those the connection's role does not own — neither itself nor through a
    role it inherits the rights of, nor as a superuser: it may not alter, replace or drop them,
    nor grant rights on them."""
    rows = connection.execute(
        text(
            "SELECT CAST(tablename AS text), CAST(tableowner AS text), "
            "pg_has_role(current_user, tableowner, 'USAGE') "
            "FROM pg_tables WHERE schemaname = current_schema() AND tablename = ANY(:tables) "
            "UNION ALL "
            "SELECT proname || '()', CAST(pg_get_userbyid(proowner) AS text), "
            "pg_has_role(current_user, proowner, 'USAGE') "
            # By name, not CAST(current_schema() AS regnamespace): the cast folds an unquoted
            # name to lower case, so a schema named "HF" would not be found.
            "FROM pg_proc WHERE pronamespace = "
            "(SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
            "AND proname = ANY(:functions) "
            "ORDER BY 1"
        ),
        {"tables": list(tables), "functions": list(functions or [])},
    ).all()
    role = connection.execute(text("SELECT CAST(current_user AS text)")).scalar_one()
    bootstrap = connection.execute(
        text("SELECT CAST(rolname AS text) FROM pg_roles WHERE oid = 10")
    ).scalar_one_or_none()
    return Ownership(
        role=role,
        owners={name: owner for name, owner, _ in rows},
        not_owned={name: owner for name, owner, owned in rows if not owned},
        bootstrap_superuser=bootstrap,
    )


@contextmanager
def _naming_failed_migration(config: Config, *, upgrading: bool) -> Iterator[None]:
    """A database error in a migration becomes `MigrationError` naming the migration: each one
    commits on its own (env.py), so the database is left at the one before it."""
    connection: Connection = config.attributes["connection"]
    try:
        yield
    except DBAPIError as exc:
        unreachable = unreachable_database(exc, connection.engine.url)
        if unreachable is not None:
            raise unreachable from None
        # A data exception (SQLSTATE class 22) quotes the offending value on its first line
        # ("invalid input syntax for type uuid: …"): a stored value, maybe personal. Only its
        # kind is shown then.
        state = _sqlstate(exc) or ""
        detail = "" if state.startswith(_DATA_EXCEPTION) else f": {first_line(exc.orig)}"
        rolled_back = (
            "it is rolled back"
            if connection.dialect.name == "postgresql"
            else "SQLite may keep part of it (restore the file from its backup)"
        )
        raise MigrationError(
            f"{_failed_migration(config, upgrading=upgrading)} failed: "
            f"{type(exc.orig).__name__}{detail}; the migrations before it are applied and "
            f"{rolled_back}; fix the cause, then run the command again"
        ) from None


def _failed_migration(config: Config, *, upgrading: bool) -> str:
    """The migration that was running: when upgrading, the one after the database's revision;
    when downgrading, the database's revision."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    connection: Connection = config.attributes["connection"]
    try:
        connection.rollback()
        heads = MigrationContext.configure(connection).get_current_heads()
        connection.rollback()
    except DBAPIError:
        return "a migration"
    scripts = ScriptDirectory.from_config(config)
    if not upgrading:
        running = set(heads)
    elif heads:
        running = {
            following
            for head in heads
            if (script := scripts.get_revision(head)) is not None
            for following in script.nextrev
        }
    else:
        running = set(scripts.get_bases())
    if not running:
        return "a migration"
    files = []
    for revision_id in sorted(running):
        script = scripts.get_revision(revision_id)
        files.append(Path(script.path).stem if script is not None else revision_id)
    return f"migration {', '.join(files)}"


def _sqlstate(error: DBAPIError) -> str | None:
    """`error`'s SQLSTATE; for the errors that have none (psycopg's connection errors, SQLite's)
    the SQLSTATE of the same failure."""
    orig = error.orig
    if isinstance(orig, sqlite3.Error):
        if "no such table" in str(orig):
            return _UNDEFINED_TABLE
        if getattr(orig, "sqlite_errorcode", None) in _SQLITE_UNUSABLE:
            return _CONNECTION_EXCEPTION
        return None
    state = getattr(orig, "sqlstate", None)
    if state is None and isinstance(error, (OperationalError, InterfaceError)):
        return _CONNECTION_EXCEPTION
    return str(state) if state is not None else None


def _shown(url: str | URL) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "DATABASE_URL"  # unparsable: not shown, it may hold the password


def _user(url: str | URL | None) -> str | None:
    try:
        return None if url is None else make_url(url).username
    except (ArgumentError, ValueError):
        return None


def first_line(error: BaseException | None) -> str:
    """The first line of a driver's error message: names (tables, roles, constraints), never
    the row values its later lines may quote."""
    message = str(error).strip() if error is not None else ""
    return message.splitlines()[0] if message else "no details"


def _at_newest_migration(url: str | URL) -> bool | None:
    """Whether the database is at the migrations' newest revision: ``False`` when it has no
    version table or is behind (run `db upgrade`), ``None`` when that cannot be told. On a
    connection of its own, as the one that failed may be unusable."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    try:
        engine = create_engine_from_url(url, pool_size=1)
    except (ConfigurationError, ArgumentError, ValueError):
        return None
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return False
            current = set(MigrationContext.configure(connection).get_current_heads())
        return current == set(ScriptDirectory.from_config(_base_config()).get_heads())
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()
