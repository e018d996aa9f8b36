"""Re-encrypt stored field tokens under the active key, in small batches, while the service runs.

`rotate_keys` walks every table with `EncryptedToken` columns (found in the models, never listed
by hand) and rewrites the tokens whose key id is not the active one. Stale rows are chosen in SQL
by the token prefix (``v1.<kid>.``), so a finished row is never read again: an interrupted or
crashed rotation resumes where it stopped, and a second run changes nothing.

Each batch is its own short transaction. On PostgreSQL the batch's rows are taken with
``FOR UPDATE SKIP LOCKED``, so the rotation never waits for, nor blocks for long, a writer of the
live service; on SQLite a batch holds the write lock (``BEGIN IMMEDIATE``) for its few
milliseconds, and writers wait through their busy timeout. A row is re-encrypted with the same
`FieldContext` (table, column, row id) the repositories bind into it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import bindparam

from adapter.audit.actors import Actor
from adapter.audit.trail import record_audit
from adapter.errors import AdapterError, DecryptionError, KeyNotFoundError
from adapter.store.crypto import TOKEN_VERSION, FieldCipher, FieldContext
from adapter.store.models import Base, EncryptedToken
from adapter.store.personal_fields import PERSONAL_FIELDS, SISDMK_RECORD_PERSONAL_FIELDS

DEFAULT_BATCH_SIZE: Final = 500
AUDIT_ACTION: Final = "keys.rotate"
# Keys of failed rows a report lists per table; the rest are counted.
FAILED_KEYS_KEPT: Final = 1_000
_ROW_KEY: Final = "rotation_row_key"

ProgressCallback = Callable[["BatchDone"], None]
StopCallback = Callable[[], bool]


@dataclass(frozen=True)
class EncryptedTable:
    """A table holding field tokens: its single-column primary key and its token columns."""

    table: Table
    key: Column[Any]
    columns: tuple[Column[Any], ...]

    @property
    def name(self) -> str:
        return self.table.name


@dataclass(frozen=True)
class BatchDone:
    """Reported after each committed batch."""

    table: str
    rows: int  # rows re-encrypted in this batch
    done: int  # rows re-encrypted in this table so far
    total: int  # rows of this table under another key when the rotation reached it


@dataclass
class TableRotation:
    rows: int = 0  # rows re-encrypted
    tokens: int = 0  # tokens re-encrypted (a row holds several)
    remaining: int = 0  # rows still under another key at the end (locked, interrupted, failed)
    # Rows left as they were because a value of theirs does not decrypt (a wrong secret for
    # the key, damage, or a value moved from another row): how many, and the keys of the first
    # `FAILED_KEYS_KEPT`, for the operator to restore or remove.
    failed_count: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class RotationReport:
    active_kid: str
    tables: dict[str, TableRotation] = field(default_factory=dict)
    batches: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables.values())

    @property
    def remaining(self) -> int:
        return sum(table.remaining for table in self.tables.values())

    @property
    def failed(self) -> dict[str, list[str]]:
        return {name: table.failed for name, table in self.tables.items() if table.failed}

    @property
    def failed_count(self) -> int:
        return sum(table.failed_count for table in self.tables.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0


class RotationError(AdapterError):
    """A stored token cannot be re-encrypted (its key is missing, or it does not decrypt)."""

    default_reason = "key_rotation"


def encrypted_tables(metadata: Any = None) -> tuple[EncryptedTable, ...]:
    """Every table with `EncryptedToken` columns, in dependency order, from the models."""
    found: list[EncryptedTable] = []
    for table in (metadata or Base.metadata).sorted_tables:
        columns = tuple(
            column for column in table.columns if isinstance(column.type, EncryptedToken)
        )
        if not columns:
            continue
        keys = list(table.primary_key.columns)
        if len(keys) != 1:
            raise ValueError(f"{table.name}: encrypted tables need a single-column primary key")
        found.append(EncryptedTable(table, keys[0], columns))
    return tuple(found)


def rotate_keys(
    engine_or_session_factory: Engine | sessionmaker[Session],
    cipher: FieldCipher,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    stop: StopCallback | None = None,
    actor: Actor | None = None,
) -> RotationReport:
    """Re-encrypt under ``cipher``'s active key every token written under another key.

    `stop` is asked before each batch; when it answers true the rotation ends after the batches
    already committed (``report.interrupted``). Run again to resume. With `actor` each batch
    appends one audit entry (``keys.rotate``) in its own transaction; `hf-adapter keys rotate`
    always passes the operator.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    for spec in encrypted_tables():  # every column named on the trail, before any change
        for column in spec.columns:
            _personal_fields(column.name)
    active = cipher.keyring.active.kid
    prefix = f"{TOKEN_VERSION}.{active}."
    report = RotationReport(active_kid=active)
    started = time.perf_counter()
    try:
        for spec in encrypted_tables():
            stats = report.tables.setdefault(spec.name, TableRotation())
            stale = _stale(spec, prefix)
            if report.interrupted:
                stats.remaining = _count(engine_or_session_factory, spec, stale)
                continue
            total = _count(engine_or_session_factory, spec, stale)
            failed: list[Any] = []  # keys of this batch's rows whose values do not decrypt
            last: Any = None  # the last key a batch selected
            while True:
                if stop is not None and stop():
                    report.interrupted = True
                    break
                # Past the last row selected (batches go in key order), by an index seek: the
                # rows before are rotated, failed (not selected again, whatever their number)
                # or passed over while a writer held them (PostgreSQL; counted as remaining,
                # for the next run). From the table's start each time, every batch scanned
                # the rows rotated so far: quadratic in a national table.
                pending = stale if last is None else and_(stale, spec.key > last)
                selected, rows, tokens, last_key = _rotate_batch(
                    engine_or_session_factory, cipher, spec, pending, batch_size, actor, failed
                )
                if last_key is not None:
                    last = last_key
                if failed:  # counted; only the first keys kept (a wrong key fails them all)
                    stats.failed_count += len(failed)
                    room = FAILED_KEYS_KEPT - len(stats.failed)
                    stats.failed.extend(str(key) for key in failed[: max(room, 0)])
                    failed.clear()
                if selected == 0:
                    break
                stats.rows += rows
                stats.tokens += tokens
                report.batches += 1
                if progress is not None:
                    progress(BatchDone(spec.name, rows, stats.rows, max(total, stats.rows)))
            # Rows a writer still holds locked (PostgreSQL), not reached before a stop, failed.
            stats.remaining = _count(engine_or_session_factory, spec, stale)
    finally:
        report.elapsed_s = time.perf_counter() - started
    return report


def count_stale(
    engine_or_session_factory: Engine | sessionmaker[Session], cipher: FieldCipher
) -> dict[str, int]:
    """Rows per table holding at least one token under a key other than the active one."""
    prefix = f"{TOKEN_VERSION}.{cipher.keyring.active.kid}."
    return {
        spec.name: _count(engine_or_session_factory, spec, _stale(spec, prefix))
        for spec in encrypted_tables()
    }


# -- internals ----------------------------------------------------------------------------


def _stale(spec: EncryptedTable, prefix: str) -> ColumnElement[bool]:
    return or_(
        *(
            # Compared as TEXT: the column type would refuse the bare prefix as a bind value.
            # Key ids hold only a-z, 0-9 and '-', so the prefix needs no LIKE escaping.
            and_(column.is_not(None), type_coerce(column, Text).not_like(f"{prefix}%"))
            for column in spec.columns
        )
    )


def _count(
    source: Engine | sessionmaker[Session], spec: EncryptedTable, stale: ColumnElement[bool]
) -> int:
    with _transaction(source, write=False) as connection:
        counted = connection.execute(
            select(func.count()).select_from(spec.table).where(stale)
        ).scalar_one()
    return int(counted)


def _rotate_batch(
    source: Engine | sessionmaker[Session],
    cipher: FieldCipher,
    spec: EncryptedTable,
    stale: ColumnElement[bool],
    batch_size: int,
    actor: Actor | None = None,
    failed: list[Any] | None = None,
) -> tuple[int, int, int, Any]:
    """Re-encrypt one batch in its own transaction; (rows selected, rows rewritten, tokens
    rewritten, the last key selected). A row with a value that does not decrypt is left as it
    is and its key added to `failed` (without it: `RotationError`). With `actor` (`source` then
    a session factory with the audit keys), the batch's audit entry is in the same
    transaction: every value decrypted and written again is on the trail."""
    with ExitStack() as scope:
        session: Session | None = None
        if actor is not None:
            if not isinstance(source, sessionmaker):
                raise TypeError("an audited rotation needs the services' session factory")
            session = scope.enter_context(_session_transaction(source, write=True))
            connection = session.connection()
        else:
            connection = scope.enter_context(_transaction(source, write=True))
        query = select(spec.key, *spec.columns).where(stale).order_by(spec.key).limit(batch_size)
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        selected = connection.execute(query).all()
        if not selected:
            return 0, 0, 0, None
        parameters: list[dict[str, Any]] = []
        rows = []
        tokens = 0
        for row in selected:
            row_key = row[0]
            values: dict[str, Any] = {_ROW_KEY: row_key}
            rewritten = 0
            try:
                for column, token in zip(spec.columns, row[1:], strict=True):
                    if token is not None and cipher.needs_rotation(token):
                        token = _reencrypt(
                            cipher, token, FieldContext(spec.name, column.name, str(row_key))
                        )
                        rewritten += 1
                    values[column.name] = token
            except DecryptionError:
                if failed is None:
                    raise RotationError(
                        f"a value of {spec.name} row {row_key} does not decrypt (damaged, or "
                        "moved from another row)"
                    ) from None
                failed.append(row_key)
                continue
            tokens += rewritten
            rows.append(row)
            parameters.append(values)
        if not parameters:
            return len(selected), 0, 0, selected[-1][0]
        statement = (
            sql_update(spec.table)
            .where(spec.key == bindparam(_ROW_KEY))
            .values({column.name: bindparam(column.name) for column in spec.columns})
        )
        connection.execute(statement, parameters)
        if session is not None and actor is not None:
            columns = [column.name for column in spec.columns]
            record_audit(
                session,
                actor,
                AUDIT_ACTION,
                spec.name,
                fields=sorted({field for name in columns for field in _personal_fields(name)}),
                detail={
                    "to_kid": cipher.keyring.active.kid,
                    "columns": columns,
                    "rows": len(rows),
                    "tokens": tokens,
                    "row_ids": [str(row[0]) for row in rows],
                },
            )
    return len(selected), len(rows), tokens, selected[-1][0]


def _personal_fields(column: str) -> tuple[str, ...]:
    """The personal fields an encrypted column holds, by the names the audit trail uses: its
    own name, KKI's copy of an identity field (``kki_full_name``), or a quarantined record's
    whole payload."""
    if column in PERSONAL_FIELDS:
        return (column,)
    if column.startswith("kki_") and column[4:] in PERSONAL_FIELDS:
        return (column[4:],)
    if column == "payload":  # a quarantined record of either source, as it was sent
        return (*SISDMK_RECORD_PERSONAL_FIELDS, "display_name")
    raise ValueError(f"encrypted column {column!r} names no personal field: add it here")


def _reencrypt(cipher: FieldCipher, token: str, context: FieldContext) -> str:
    try:
        return cipher.reencrypt(token, context)
    except KeyNotFoundError as exc:
        raise RotationError(
            f"{context} is encrypted under key {exc.kid!r}, which ENCRYPTION_KEYS does not hold; "
            "add it back as a decrypt-only entry (after the active one) and run the rotation again"
        ) from None


@contextmanager
def _transaction(source: Engine | sessionmaker[Session], *, write: bool) -> Iterator[Connection]:
    """A short transaction; on SQLite a writing one takes the write lock up front."""
    if isinstance(source, Engine):
        with source.connect() as connection, connection.begin():
            _lock_sqlite(connection, write=write)
            yield connection
    else:
        with _session_transaction(source, write=write) as session:
            yield session.connection()


@contextmanager
def _session_transaction(sessions: sessionmaker[Session], *, write: bool) -> Iterator[Session]:
    with sessions() as session, session.begin():
        _lock_sqlite(session.connection(), write=write)
        yield session


def _lock_sqlite(connection: Connection, *, write: bool) -> None:
    # pysqlite opens its transaction lazily at the first write, so the batch's SELECT would run
    # outside it and a writer could change a row between our read and our update. BEGIN
    # IMMEDIATE makes the read and the update one locked transaction.
    if not write or connection.dialect.name != "sqlite":
        return
    dbapi_connection: Any = connection.connection.dbapi_connection
    if not dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
