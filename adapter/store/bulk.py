"""Many rows into one table in one go: PostgreSQL ``COPY``, an executemany ``INSERT`` elsewhere.

The values are bound exactly as an ``INSERT`` of `table` would bind them (the columns' own
bind processing: an encrypted column still refuses a clear value), in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Table, insert


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (each with the same keys) into `table`; a no-op when there are none."""
    if not rows:
        return
    dbapi = connection.connection.dbapi_connection
    if connection.dialect.name != "postgresql" or dbapi is None:
        connection.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    processors = [table.c[name].type.bind_processor(connection.dialect) for name in columns]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    raw = cast(psycopg.Connection[Any], dbapi)
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(
                [
                    row[name] if process is None else process(row[name])
                    for name, process in zip(columns, processors, strict=True)
                ]
            )
