"""Many rows into or over one table in one go: PostgreSQL ``COPY`` (straight into the table,
or into a temporary one merged with one ``UPDATE … FROM``), an executemany elsewhere and for
an update of fewer than `MERGE_FROM_ROWS` rows.

The values are bound exactly as an ``INSERT`` of `table` would bind them (the columns' own
bind processing: an encrypted column still refuses a clear value), in the caller's transaction;
the temporary table is dropped before returning (and by PostgreSQL at the end of the
transaction or session whatever happens), so nothing outlives a rollback or a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Table, bindparam, insert, update
from sqlalchemy.exc import DBAPIError, StatementError

# An update of fewer rows (of one table, naming the same columns) goes as an executemany of
# ``UPDATE … WHERE id``: up to 32 rows that costs 0.75 to 0.98 times the merge's CPU, whose
# temporary table is created and dropped (catalog rows written and removed) in every
# transaction; from 64 the two tie, and at 1,000 (a sync page) the merge costs 0.91 times as
# much (bench/bench_bulk.py; three runs in docs/benchmarks.md). A worker's batch reaches it
# only with EVENT_APPLY_BATCH raised to 64 or more (32 by default).
MERGE_FROM_ROWS = 64


def merged_from_temporary_table(rows: int) -> bool:
    """Whether an update of `rows` rows of one table goes through a temporary table (on
    PostgreSQL), which needs the database's TEMPORARY right."""
    return rows >= MERGE_FROM_ROWS


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (each with the same keys) into `table`; a no-op when there are none."""
    if not rows:
        return
    dbapi = connection.connection.dbapi_connection
    if connection.dialect.name != "postgresql" or dbapi is None:
        connection.execute(insert(table), list(rows))
        return
    _copy(cast(psycopg.Connection[Any], dbapi), connection, table, table.name, rows)


def update_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Set the columns each of `rows` names on the row of `table` whose ``id`` is the row's
    ``row_id`` (every row names the same columns); a no-op when there are none."""
    if not rows:
        return
    dbapi = connection.connection.dbapi_connection
    columns = [name for name in rows[0] if name != "row_id"]
    postgresql = connection.dialect.name == "postgresql" and dbapi is not None
    if not postgresql or not merged_from_temporary_table(len(rows)):
        connection.execute(update(table).where(table.c.id == bindparam("row_id")), list(rows))
        return
    raw = cast(psycopg.Connection[Any], dbapi)
    staging = f"_staged_{table.name}"
    target, source = sql.Identifier(table.name), sql.Identifier(staging)
    # The staging table takes the target's column types (no constraints: a refused value fails
    # in the UPDATE, on the table's own checks). It needs the TEMPORARY right on the database
    # (every role's by default; docs/operations.md, "Database roles").
    stage = sql.SQL(
        "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT id AS row_id, {} FROM {} WITH NO DATA"
    ).format(source, sql.SQL(", ").join(map(sql.Identifier, columns)), target)
    _execute(raw, stage)
    _copy(raw, connection, table, staging, rows)
    merge = sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE t.id = s.row_id").format(
        target,
        sql.SQL(", ").join(
            sql.SQL("{} = s.{}").format(sql.Identifier(name), sql.Identifier(name))
            for name in columns
        ),
        source,
    )
    _execute(raw, merge)
    _execute(raw, sql.SQL("DROP TABLE {}").format(source))


def _execute(raw: psycopg.Connection[Any], statement: sql.Composed) -> None:
    """Run `statement`; a failure is raised as SQLAlchemy wraps one (IntegrityError,
    ProgrammingError, OperationalError …), so callers classify it as for any statement."""
    with raw.cursor() as cursor:
        try:
            cursor.execute(statement)
        except psycopg.Error as exc:
            raise _wrapped(raw, statement, exc) from exc


def _wrapped(
    raw: psycopg.Connection[Any], statement: sql.Composable, exc: psycopg.Error
) -> StatementError:
    return DBAPIError.instance(statement.as_string(raw), None, exc, psycopg.Error)


def _copy(
    raw: psycopg.Connection[Any],
    connection: Connection,
    table: Table,
    into: str,
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """``COPY`` `rows` into the table named `into`, bound as for `table`'s columns (``row_id``
    as ``id``)."""
    columns = list(rows[0])
    processors = [
        table.c["id" if name == "row_id" else name].type.bind_processor(connection.dialect)
        for name in columns
    ]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(into), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    try:
        bound = [
            [
                row[name] if process is None else process(row[name])
                for name, process in zip(columns, processors, strict=True)
            ]
            for row in rows
        ]
    except (ValueError, TypeError) as exc:
        # As SQLAlchemy reports a value its column refuses (an encrypted column given clear text).
        raise StatementError(str(exc), statement.as_string(raw), None, exc) from exc
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for values in bound:
                copy.write_row(values)
    except psycopg.Error as exc:
        # As SQLAlchemy wraps a failed statement (IntegrityError, DataError, …), so a row the
        # database refuses condemns its record as it would through an INSERT.
        raise _wrapped(raw, statement, exc) from exc
