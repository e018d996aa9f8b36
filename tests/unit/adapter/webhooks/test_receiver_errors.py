"""Which inbox insert failures refuse the event (422, the sender gives it up) and which are
answered 503 (the sender retries): only a row's own database error is a 422."""

from __future__ import annotations

import sqlite3

import pytest
from psycopg.errors import (
    InsufficientPrivilege,
    NotNullViolation,
    NumericValueOutOfRange,
    ReadOnlySqlTransaction,
    UndefinedTable,
    UniqueViolation,
)
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InternalError,
    OperationalError,
    ProgrammingError,
    StatementError,
)

from adapter.webhooks.receiver import _database_wide

ROW_OWN = {
    "postgresql-data": DataError("INSERT …", None, NumericValueOutOfRange("out of range")),
    "postgresql-integrity": IntegrityError("INSERT …", None, NotNullViolation("null")),
    "postgresql-unique": IntegrityError("INSERT …", None, UniqueViolation("duplicate")),
    "sqlite-integrity": IntegrityError("INSERT …", None, sqlite3.IntegrityError("NOT NULL")),
    "sqlite-integer-past-64-bits": OverflowError("Python int too large to convert"),
}
DATABASE_WIDE = {
    "read-only": InternalError("INSERT …", None, ReadOnlySqlTransaction("read-only")),
    "table-missing": ProgrammingError("INSERT …", None, UndefinedTable("no such table")),
    "right-missing": ProgrammingError("INSERT …", None, InsufficientPrivilege("denied")),
    "sqlite-unopenable": OperationalError("INSERT …", None, sqlite3.OperationalError("locked")),
    "bind-processing": StatementError("not a field token", "INSERT …", None, ValueError("x")),
    "adapter-bug": AttributeError("'NoneType' object has no attribute 'id'"),
}


@pytest.mark.parametrize("error", ROW_OWN.values(), ids=ROW_OWN.keys())
def test_a_rows_own_error_refuses_that_row(error: Exception) -> None:
    assert not _database_wide(error)


@pytest.mark.parametrize("error", DATABASE_WIDE.values(), ids=DATABASE_WIDE.keys())
def test_anything_else_is_retried_by_the_sender(error: Exception) -> None:
    assert _database_wide(error)
