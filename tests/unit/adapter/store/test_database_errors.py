"""Which database errors `unusable_database` and `unreachable_database` translate into
`DatabaseUnavailableError` (and with which reason), and which they leave to propagate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from adapter.store import database
from adapter.store.database import unreachable_database, unusable_database

PASSWORD = "pw-5e1f0c"


def _sqlite_error(
    kind: type[sqlite3.Error], message: str, code: int | None = None
) -> sqlite3.Error:
    error = kind(message)
    if code is not None:
        error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


def _wrapped(orig: Exception) -> DBAPIError:
    """The error as SQLAlchemy raises it (the class chosen by the driver's class name)."""
    return DBAPIError.instance("SELECT 1", None, orig, psycopg.Error)


UNAVAILABLE = "database_unavailable"
NOT_MIGRATED = "database_not_migrated"
RIGHT = "database_right"

CASES = [
    # (driver error, unusable_database's reason, whether unreachable_database translates it)
    (errors.UndefinedTable('relation "audit_events" does not exist'), NOT_MIGRATED, False),
    (errors.InsufficientPrivilege("permission denied for table registrations"), RIGHT, False),
    (errors.DeadlockDetected("deadlock detected"), None, False),  # 40P01: run again
    (errors.UniqueViolation('duplicate key value violates unique constraint "x"'), None, False),
    (errors.QueryCanceled("canceling statement due to statement timeout"), None, False),
    (errors.ConnectionFailure("server closed the connection"), UNAVAILABLE, True),  # 08006
    (errors.InvalidPassword('password authentication failed for user "hf"'), UNAVAILABLE, True),
    (errors.InvalidCatalogName('database "hf" does not exist'), UNAVAILABLE, True),  # 3D000
    (
        errors.AdminShutdown("terminating connection due to administrator command"),
        UNAVAILABLE,
        True,
    ),
    (errors.CannotConnectNow("the database system is starting up"), UNAVAILABLE, True),  # 57P03
    # psycopg's own connection errors carry no SQLSTATE.
    (psycopg.OperationalError("connection refused"), UNAVAILABLE, True),
    (psycopg.InterfaceError("the connection is closed"), UNAVAILABLE, True),
    (_sqlite_error(sqlite3.OperationalError, "no such table: audit_events"), NOT_MIGRATED, False),
    (
        _sqlite_error(
            sqlite3.OperationalError, "unable to open database file", sqlite3.SQLITE_CANTOPEN
        ),
        UNAVAILABLE,
        True,
    ),
    (
        _sqlite_error(sqlite3.DatabaseError, "file is not a database", sqlite3.SQLITE_NOTADB),
        UNAVAILABLE,
        True,
    ),
    (
        _sqlite_error(sqlite3.OperationalError, "database is locked", sqlite3.SQLITE_BUSY),
        None,
        False,
    ),
    (
        _sqlite_error(
            sqlite3.IntegrityError, "UNIQUE constraint failed: x.y", sqlite3.SQLITE_CONSTRAINT
        ),
        None,
        False,
    ),
]


def _case_id(value: object) -> str:
    return (
        f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
        if isinstance(value, Exception)
        else str(value)
    )


@pytest.mark.parametrize(("orig", "reason", "unreachable"), CASES, ids=_case_id)
def test_unusable_database_translates_only_what_makes_the_database_unusable(
    orig: Exception, reason: str | None, unreachable: bool
) -> None:
    translated = unusable_database(_wrapped(orig))

    assert (translated.reason if translated is not None else None) == reason


@pytest.mark.parametrize(("orig", "reason", "unreachable"), CASES, ids=_case_id)
def test_unreachable_database_translates_only_a_database_it_cannot_reach(
    orig: Exception, reason: str | None, unreachable: bool
) -> None:
    translated = unreachable_database(_wrapped(orig))

    assert (translated is not None) == unreachable
    if translated is not None:
        assert translated.reason == UNAVAILABLE


def test_the_wrapped_errors_keep_sqlalchemys_classes() -> None:
    # What the cases stand for: the errors SQLAlchemy raises for these drivers' errors.
    assert isinstance(_wrapped(errors.UndefinedTable("x")), ProgrammingError)
    assert isinstance(_wrapped(errors.UniqueViolation("x")), IntegrityError)
    assert isinstance(_wrapped(psycopg.OperationalError("x")), OperationalError)


def test_the_message_hides_the_password_and_quotes_the_first_line_only() -> None:
    orig = errors.InvalidPassword('password authentication failed for user "hf"\nDETAIL: 42')
    url = f"postgresql+psycopg://hf:{PASSWORD}@db.example:5432/hf"

    translated = unusable_database(_wrapped(orig), url)

    assert translated is not None
    assert "postgresql+psycopg://hf:***@db.example:5432/hf" in str(translated)
    assert "password authentication failed" in str(translated)
    assert PASSWORD not in str(translated)
    assert "DETAIL" not in str(translated)


def _at_revision(tmp_path: Path, revision: str) -> str:
    """A SQLite file whose Alembic version table says `revision` (and holds nothing else)."""
    url = f"sqlite:///{tmp_path / f'at-{revision}.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        connection.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": revision})
    engine.dispose()
    return url


def _newest_revision() -> str:
    from alembic.script import ScriptDirectory

    (head,) = ScriptDirectory.from_config(database._base_config()).get_heads()
    return str(head)


def test_a_missing_table_in_a_database_at_the_newest_migration_is_a_damaged_schema(
    tmp_path: Path,
) -> None:
    url = _at_revision(tmp_path, _newest_revision())
    orig = _sqlite_error(sqlite3.OperationalError, "no such table: audit_events")

    translated = unusable_database(_wrapped(orig), url)

    assert translated is not None
    assert translated.reason == "database_damaged"
    assert "hf-adapter db check" in str(translated)
    assert "backup" in str(translated)


def test_a_missing_table_in_a_database_behind_its_migrations_says_to_upgrade(
    tmp_path: Path,
) -> None:
    # A release started before `db upgrade`: not damaged, and no backup to restore.
    url = _at_revision(tmp_path, "0008")
    orig = _sqlite_error(sqlite3.OperationalError, "no such table: audit_writers")

    translated = unusable_database(_wrapped(orig), url)

    assert translated is not None
    assert translated.reason == NOT_MIGRATED
    assert "run `hf-adapter db upgrade`" in str(translated)
    assert "backup" not in str(translated)


def test_a_missing_table_in_a_database_never_migrated_says_to_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    orig = _sqlite_error(sqlite3.OperationalError, "no such table: audit_events")

    translated = unusable_database(_wrapped(orig), url)

    assert translated is not None
    assert translated.reason == NOT_MIGRATED
    assert "run `hf-adapter db upgrade`" in str(translated)


def test_a_missing_table_where_migration_cannot_be_told_says_to_upgrade() -> None:
    # The look-up of alembic_version fails too (nothing listens on port 1): no traceback.
    url = f"postgresql+psycopg://hf:{PASSWORD}@127.0.0.1:1/hf"

    translated = unusable_database(_wrapped(errors.UndefinedTable("relation x")), url)

    assert translated is not None
    assert translated.reason == NOT_MIGRATED
    assert PASSWORD not in str(translated)
