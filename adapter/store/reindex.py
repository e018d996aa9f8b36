"""The blind index after a key change: which key ids the store uses, and the re-index.

Two columns hold key ids of blind-index digests made from personal data:
``health_workers.nik_bidx_kid`` (the NIK's digest, ``nik_bidx``) and
``identity_findings.digest_kid`` (an identity mismatch's digests of both sides' values).
`check_stored_keys` refuses to start a service when a stored id is not a configured key's, since
every look-up of those rows would miss and the next upsert would store the person twice; and
when a configured key is not the key its id was first used with (``blind_index_keys`` keeps a
check value per id), which would do the same under an id that looks right.

`reindex_blind_index` recomputes the digests of every row under another key than
``BLIND_INDEX_KEY``'s, from the decrypted value: the NIK of a worker; for an open mismatch, the
two values as the registration and the worker hold them now (what the next upsert compares).
A resolved mismatch's values are gone, so its digests are withdrawn (kid and digests NULL): a
digest under a leaked key is what a guess of the value would be checked against. Rows are walked
per stale key id by keyset on their id; each batch is one transaction with its audit entry. A
finished row is under the current key and never selected again, so a run that is stopped or
killed resumes where it stopped. On PostgreSQL the batch's rows are taken ``FOR UPDATE SKIP
LOCKED`` (a live writer is not waited for; its row is left for the next run), on SQLite a batch
holds the write lock for its few milliseconds.

``payload_hash`` columns are keyed digests too, of a whole source document's SHA-256: not
personal data, and not recomputable (the documents are not kept). A row whose hash is under the
old key is rewritten once, with the same values, the next time its source sends it.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from sqlalchemy import Connection, Engine, bindparam, func, inspect, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from adapter.audit import Actor, record_audit
from adapter.errors import ConfigurationError, DecryptionError
from adapter.merge.documents import IDENTITY_FIELDS
from adapter.merge.findings import identity_digest
from adapter.store.crypto import BlindIndex, FieldCipher, FieldContext
from adapter.store.database import unusable_database
from adapter.store.keyset import beyond
from adapter.store.models import (
    Base,
    BlindIndexKey,
    HealthWorker,
    IdentityFinding,
    Registration,
)
from adapter.store.personal_fields import PERSONAL_FIELDS
from adapter.store.repositories import identity_fingerprint

DEFAULT_BATCH_SIZE: Final = 500
AUDIT_ACTION: Final = "blind_index.reindex"
WORKERS: Final = HealthWorker.__tablename__
FINDINGS: Final = IdentityFinding.__tablename__
# Where key ids of blind-index digests are stored, by table.
KEY_ID_COLUMNS: Final[dict[str, InstrumentedAttribute[str | None]]] = {
    WORKERS: HealthWorker.nik_bidx_kid,
    FINDINGS: IdentityFinding.digest_kid,
}
_NIK: Final = "nik"
_EARLIER: Final = dt.timedelta(microseconds=1)  # the smallest step PostgreSQL keeps
# Core statements run once per batch with a parameter set per row (executemany): the ORM's bulk
# update by primary key costs more than the rest of a batch.
_WORKERS_TABLE: Final = Base.metadata.tables[WORKERS]
_FINDINGS_TABLE: Final = Base.metadata.tables[FINDINGS]
_UPDATE_WORKER: Final = (
    update(_WORKERS_TABLE)
    .where(_WORKERS_TABLE.c.id == bindparam("row_id"))
    .values(nik_bidx=bindparam("new_nik_bidx"), nik_bidx_kid=bindparam("new_kid"))
)
_UPDATE_FINDING: Final = (
    update(_FINDINGS_TABLE)
    .where(_FINDINGS_TABLE.c.id == bindparam("row_id"))
    .values(
        kki_digest=bindparam("new_kki"),
        sisdmk_digest=bindparam("new_sisdmk"),
        digest_kid=bindparam("new_kid"),
    )
)

ProgressCallback = Callable[["BatchDone"], None]
StopCallback = Callable[[], bool]


# Ids of rows whose value does not decrypt kept in a report (all are counted).
UNDECRYPTABLE_KEPT: Final = 100


class BlindIndexKeyError(ConfigurationError):
    """Stored digests are under a blind-index key that is not configured."""

    default_reason = "blind_index_key"


@dataclass(frozen=True)
class BatchDone:
    """Reported after each committed batch."""

    table: str
    rows: int  # rows re-indexed (or withdrawn) in this batch
    done: int  # rows of this table re-indexed so far
    total: int  # rows of this table under another key when the run began


@dataclass
class TableReindex:
    rows: int = 0  # rows whose digests were recomputed under the current key
    withdrawn: int = 0  # resolved findings whose digests were erased
    # Workers whose new NIK digest another worker already holds: two rows for one person
    # (stored while the old key was missing); left under the old key for an operator.
    conflicts: list[uuid.UUID] = field(default_factory=list)
    # Rows left under the old key because their value does not decrypt: the first
    # `UNDECRYPTABLE_KEPT` ids, and how many in all (a wrong key secret fails every row).
    undecryptable: list[uuid.UUID] = field(default_factory=list)
    undecryptable_count: int = 0
    remaining: int = 0  # rows still under another key at the end


@dataclass
class ReindexReport:
    kid: str
    tables: dict[str, TableReindex] = field(default_factory=dict)
    batches: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def rows(self) -> int:
        return sum(table.rows + table.withdrawn for table in self.tables.values())

    @property
    def remaining(self) -> int:
        return sum(table.remaining for table in self.tables.values())

    @property
    def conflicts(self) -> list[uuid.UUID]:
        return [row for table in self.tables.values() for row in table.conflicts]

    @property
    def undecryptable(self) -> list[uuid.UUID]:
        return [row for table in self.tables.values() for row in table.undecryptable]

    @property
    def undecryptable_count(self) -> int:
        return sum(table.undecryptable_count for table in self.tables.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0


def stored_key_ids(engine: Engine) -> dict[str, tuple[str, ...]]:
    """The blind-index key ids the stored digests are under, by table (a few index seeks)."""
    with _connected(engine, begin=False) as connection:
        return _stored_key_ids(connection)


def check_stored_keys(
    engine: Engine, blind_index: BlindIndex, *, unknown_ids_allowed: bool = False
) -> None:
    """`BlindIndexKeyError` when a stored digest is under a key id `blind_index` lacks (unless
    `unknown_ids_allowed`: the re-index), or a key of `blind_index` is not the one its id was
    first used with. Records the check value of a key id used for the first time."""
    with _connected(engine, begin=True) as connection:
        tables = set(inspect(connection).get_table_names())
        recorded = BlindIndexKey.__tablename__ in tables
        if recorded:
            _check_values(connection, blind_index)
        stored = {kid for kids in _stored_key_ids(connection).values() for kid in kids}
        # Checked for the re-index too: every stored key id other than BLIND_INDEX_KEY is one
        # it would move to BLIND_INDEX_KEY, so none may be newer than it.
        other = sorted(stored - {blind_index.kid}) if unknown_ids_allowed else []
        unknown = other or sorted(stored - set(blind_index.kids))
        if not unknown:
            return
        shown = ", ".join(repr(kid) for kid in unknown)
        newer = _first_used_after(connection, blind_index.kid, unknown) if recorded else []
        if unknown_ids_allowed and not newer:
            return
        if newer:
            # The store moved on to a key this process was never given: re-indexing to its key
            # would undo the change for every other process.
            raise BlindIndexKeyError(
                f"stored NIK digests are under blind-index key {shown}, first used after "
                f"BLIND_INDEX_KEY ({blind_index.kid!r}): this process's BLIND_INDEX_KEY is out "
                f"of date; set it to key {newer[-1]!r} as the other processes have it, then "
                "restart (do not re-index: that would move every digest back to the old key)"
            )
        raise BlindIndexKeyError(
            f"stored NIK digests are under blind-index key {shown}, which BLIND_INDEX_KEY "
            f"({blind_index.kid!r}) is not: set BLIND_INDEX_PREVIOUS_KEY to that key and run "
            "`hf-adapter keys reindex`"
        )


def count_stale(engine: Engine, blind_index: BlindIndex) -> dict[str, int]:
    """Rows per table whose digests are under a key other than the current one."""
    with engine.connect() as connection:
        return {
            table: int(
                connection.execute(
                    select(func.count())
                    .select_from(column.class_)
                    .where(column.is_not(None), column != blind_index.kid)
                ).scalar_one()
            )
            for table, column in KEY_ID_COLUMNS.items()
        }


def reindex_blind_index(
    engine: Engine,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    *,
    actor: Actor,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    stop: StopCallback | None = None,
) -> ReindexReport:
    """Recompute under `blind_index`'s current key every digest stored under another key.

    `sessions` (on `engine`) must carry the audit keys: each batch appends one entry (`actor`,
    the rows' ids, no value). `stop` is asked before each batch; when it answers true the run
    ends after the batches already committed (``report.interrupted``). Run again to resume.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    # Digests under a key that is not the one its id stands for would never match again.
    check_stored_keys(engine, blind_index, unknown_ids_allowed=True)
    report = ReindexReport(kid=blind_index.kid)
    started = time.perf_counter()
    totals = count_stale(engine, blind_index)
    batches: dict[str, Callable[[Session, str, uuid.UUID | None], _Batch]] = {
        WORKERS: partial(_workers_batch, cipher=cipher, blind_index=blind_index, size=batch_size),
        FINDINGS: partial(_findings_batch, cipher=cipher, blind_index=blind_index, size=batch_size),
    }
    try:
        for table, run_batch in batches.items():
            stats = report.tables.setdefault(table, TableReindex())
            stale = [kid for kid in stored_key_ids(engine).get(table, ()) if kid != report.kid]
            for kid in stale:
                cursor: uuid.UUID | None = None
                while not report.interrupted:
                    if stop is not None and stop():
                        report.interrupted = True
                        break
                    with sessions.begin() as session:
                        _write_lock(session)
                        batch = run_batch(session, kid, cursor)
                        if batch.last is None:
                            break
                        _audit(session, actor, table, kid, report.kid, batch)
                    cursor = batch.last
                    stats.rows += len(batch.reindexed)
                    stats.withdrawn += len(batch.withdrawn)
                    stats.conflicts.extend(batch.conflicts)
                    stats.undecryptable_count += len(batch.undecryptable)
                    room = max(UNDECRYPTABLE_KEPT - len(stats.undecryptable), 0)
                    stats.undecryptable.extend(batch.undecryptable[:room])
                    report.batches += 1
                    if progress is not None:
                        done = stats.rows + stats.withdrawn
                        progress(BatchDone(table, batch.size, done, max(totals[table], done)))
        # Rows a live writer held (PostgreSQL), conflicts, or not reached before a stop.
        for table, remaining in count_stale(engine, blind_index).items():
            report.tables.setdefault(table, TableReindex()).remaining = remaining
    finally:
        report.elapsed_s = time.perf_counter() - started
    return report


# -- internals ----------------------------------------------------------------------------


@dataclass
class _Batch:
    last: uuid.UUID | None = None  # the last row id looked at; None: nothing was left
    reindexed: list[uuid.UUID] = field(default_factory=list)
    withdrawn: list[uuid.UUID] = field(default_factory=list)
    conflicts: list[uuid.UUID] = field(default_factory=list)
    # Rows whose stored value does not decrypt (damaged, or moved between rows): left as they
    # are, under the old key, for an operator; the run goes on past them.
    undecryptable: list[uuid.UUID] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)  # personal fields decrypted

    @property
    def size(self) -> int:
        return len(self.reindexed) + len(self.withdrawn)


def _stale_rows(
    session: Session,
    columns: Sequence[InstrumentedAttribute[Any]],
    kid_column: InstrumentedAttribute[Any],
    key: InstrumentedAttribute[uuid.UUID],
    kid: str,
    cursor: uuid.UUID | None,
    size: int,
) -> list[Any]:
    query = select(key, *columns).where(kid_column == kid)
    if cursor is not None:
        query = query.where(beyond((key,), (cursor,)))
    query = query.order_by(key).limit(size)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.execute(query).all())


def _workers_batch(
    session: Session,
    kid: str,
    cursor: uuid.UUID | None,
    *,
    cipher: FieldCipher,
    blind_index: BlindIndex,
    size: int,
) -> _Batch:
    rows = _stale_rows(
        session, (HealthWorker.nik,), HealthWorker.nik_bidx_kid, HealthWorker.id, kid, cursor, size
    )
    batch = _Batch()
    if not rows:
        return batch
    batch.last = rows[-1].id
    batch.fields.add(_NIK)
    digests: dict[uuid.UUID, str] = {}
    for row in rows:
        try:
            nik = cipher.decrypt(row.nik, context=FieldContext(WORKERS, "nik", str(row.id)))
        except DecryptionError:
            batch.undecryptable.append(row.id)
            continue
        digests[row.id] = blind_index.digest(nik, purpose=_NIK)
    holders = dict(
        session.execute(
            select(HealthWorker.nik_bidx, HealthWorker.id).where(
                HealthWorker.nik_bidx.in_(list(digests.values()))
            )
        ).all()
    )
    changes: list[dict[str, Any]] = []
    for row_id, digest in digests.items():
        if holders.get(digest, row_id) != row_id:
            batch.conflicts.append(row_id)
            continue
        changes.append({"row_id": row_id, "new_nik_bidx": digest, "new_kid": blind_index.kid})
        batch.reindexed.append(row_id)
    if changes:
        # By primary key, without touching updated_at: the person's data did not change.
        session.execute(_UPDATE_WORKER, changes)
    return batch


def _findings_batch(
    session: Session,
    kid: str,
    cursor: uuid.UUID | None,
    *,
    cipher: FieldCipher,
    blind_index: BlindIndex,
    size: int,
) -> _Batch:
    rows = _stale_rows(
        session,
        (
            IdentityFinding.field,
            IdentityFinding.worker_id,
            IdentityFinding.registration_id,
            IdentityFinding.resolved_at,
        ),
        IdentityFinding.digest_kid,
        IdentityFinding.id,
        kid,
        cursor,
        size,
    )
    batch = _Batch()
    if not rows:
        return batch
    batch.last = rows[-1].id
    open_rows = [row for row in rows if row.resolved_at is None]
    workers = {
        worker.id: worker
        for worker in session.scalars(
            select(HealthWorker).where(HealthWorker.id.in_({row.worker_id for row in open_rows}))
        )
    }
    registrations = {
        registration.id: registration
        for registration in session.scalars(
            select(Registration).where(
                Registration.id.in_({row.registration_id for row in open_rows})
            )
        )
    }
    fingerprint = partial(identity_fingerprint, blind_index)
    changes: list[dict[str, Any]] = []
    for row in rows:
        if row.resolved_at is not None:
            changes.append({"row_id": row.id, "new_kki": None, "new_sisdmk": None, "new_kid": None})
            batch.withdrawn.append(row.id)
            continue
        name = str(row.field)
        if name not in IDENTITY_FIELDS:
            raise ValueError(f"identity finding {row.id} names no identity field")
        try:
            kki = _identity_value(cipher, registrations[row.registration_id], f"kki_{name}", name)
            sisdmk = _identity_value(cipher, workers[row.worker_id], name, name)
        except DecryptionError:
            batch.undecryptable.append(row.id)
            continue
        if name in PERSONAL_FIELDS:
            batch.fields.add(name)
        changes.append(
            {
                "row_id": row.id,
                "new_kki": identity_digest(fingerprint, name, kki),
                "new_sisdmk": identity_digest(fingerprint, name, sisdmk),
                "new_kid": blind_index.kid,
            }
        )
        batch.reindexed.append(row.id)
    if changes:
        session.execute(_UPDATE_FINDING, changes)
    return batch


def _identity_value(cipher: FieldCipher, row: Any, column: str, name: str) -> str | None:
    """One side's value of identity field `name`: decrypted, but gender is kept in clear."""
    value: str | None = getattr(row, column)
    if value is None or name not in PERSONAL_FIELDS:
        return value
    return cipher.decrypt(value, context=FieldContext(row.__tablename__, column, str(row.id)))


def _audit(
    session: Session, actor: Actor, table: str, old_kid: str, new_kid: str, batch: _Batch
) -> None:
    record_audit(
        session,
        actor,
        AUDIT_ACTION,
        table,
        fields=batch.fields,
        detail={
            "from_kid": old_kid,
            "to_kid": new_kid,
            "reindexed": len(batch.reindexed),
            "withdrawn": len(batch.withdrawn),
            "conflicts": len(batch.conflicts),
            "row_ids": [str(row) for row in (*batch.reindexed, *batch.withdrawn)],
            "conflict_ids": [str(row) for row in batch.conflicts],
        },
    )


def _stored_key_ids(connection: Connection) -> dict[str, tuple[str, ...]]:
    tables = set(inspect(connection).get_table_names())
    found: dict[str, tuple[str, ...]] = {}
    for table, column in KEY_ID_COLUMNS.items():
        if table not in tables:  # a database `db upgrade` has not reached: nothing stored
            continue
        kids: list[str] = []
        # A loose index scan: the smallest id, then the smallest above it, and so on.
        while True:
            query = select(func.min(column)).where(column.is_not(None))
            if kids:
                query = query.where(column > kids[-1])
            kid = connection.execute(query).scalar()
            if kid is None:
                break
            kids.append(kid)
        found[table] = tuple(kids)
    return found


def _first_used_after(connection: Connection, kid: str, others: Sequence[str]) -> list[str]:
    """Those of `others` first used after `kid` (`blind_index_keys`), oldest first; an id with
    no row (digests stored before the table existed) counts as older."""
    mine = select(BlindIndexKey.first_used_at).where(BlindIndexKey.kid == kid).scalar_subquery()
    return list(
        connection.scalars(
            select(BlindIndexKey.kid)
            .where(BlindIndexKey.kid.in_(list(others)), BlindIndexKey.first_used_at > mine)
            .order_by(BlindIndexKey.first_used_at)
        )
    )


def _check_values(connection: Connection, blind_index: BlindIndex) -> None:
    """Compare each configured key with the check value its id was first used with; record
    the ids used for the first time (in the caller's transaction, undone by a refusal)."""
    ours = blind_index.check_values()
    postgresql = connection.dialect.name == "postgresql"
    insert = postgresql_insert(BlindIndexKey) if postgresql else sqlite_insert(BlindIndexKey)
    now = dt.datetime.now(dt.UTC)
    # The previous key was in use before the current one: seen for the first time, it is
    # recorded as the earlier, so the order of first use is the order of the keys — earlier
    # than the current key's own row too, when that one was recorded before (a re-index run
    # without BLIND_INDEX_PREVIOUS_KEY, the previous key's digests older than this table).
    current_since = connection.execute(
        select(BlindIndexKey.first_used_at).where(BlindIndexKey.kid == blind_index.kid)
    ).scalar_one_or_none()
    earliest = now if current_since is None else min(now, current_since)
    first_used = {kid: now if kid == blind_index.kid else earliest - _EARLIER for kid in ours}
    # Another process starting with the same id at once: the first row wins, the other compares.
    connection.execute(
        insert.on_conflict_do_nothing(index_elements=["kid"]),
        [
            {"kid": kid, "check_value": value, "first_used_at": first_used[kid]}
            for kid, value in ours.items()
        ],
    )
    stored = dict(
        connection.execute(
            select(BlindIndexKey.kid, BlindIndexKey.check_value).where(
                BlindIndexKey.kid.in_(list(ours))
            )
        ).all()
    )
    for kid, value in ours.items():
        if hmac.compare_digest(stored[kid], value):
            continue
        if kid == blind_index.kid:
            raise BlindIndexKeyError(
                f"BLIND_INDEX_KEY {kid!r} is not the key that id was first used with; a new key "
                "needs a new id (`hf-adapter keys generate`): put the old key in "
                "BLIND_INDEX_PREVIOUS_KEY, the new one under a new id in BLIND_INDEX_KEY, and run "
                "`hf-adapter keys reindex`"
            )
        raise BlindIndexKeyError(
            f"BLIND_INDEX_PREVIOUS_KEY {kid!r} is not the key that id was first used with: set it "
            "to the key BLIND_INDEX_KEY replaces"
        )


@contextmanager
def _connected(engine: Engine, *, begin: bool) -> Iterator[Connection]:
    """A connection (in a transaction with `begin`); a database that cannot be used
    (unreachable, not migrated, a right missing) is `DatabaseUnavailableError`, as for the
    other commands."""
    try:
        with engine.connect() as connection:
            if begin:
                with connection.begin():
                    yield connection
            else:
                yield connection
    except DBAPIError as exc:
        unusable = unusable_database(exc, engine.url)
        if unusable is None:
            raise
        raise unusable from None


def _write_lock(session: Session) -> None:
    # pysqlite opens its transaction lazily at the first write, so the batch's SELECT would run
    # outside it and a writer could change a row between our read and our update. BEGIN
    # IMMEDIATE makes the read and the update one locked transaction (as the repositories do).
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi = connection.connection.dbapi_connection
    if dbapi is not None and not dbapi.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
