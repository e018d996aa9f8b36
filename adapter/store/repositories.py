"""Idempotent upserts of source documents into the store, and decrypted reads of a worker.

Repositories work inside the caller's session and never commit: a batch sync commits once per
page, together with its checkpoint. What a document changes is decided by `adapter.merge`
(pure); here the rows are loaded and locked, decrypted for the merge, then written encrypted,
personal fields bound to the row's id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    delete,
    exists,
    inspect,
    select,
    update,
)
from sqlalchemy.orm import InstanceState, Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from adapter.merge.documents import (
    EducationValues,
    EmploymentValues,
    Identity,
    KkiRegistration,
    SisdmkWorker,
    canonical_json,
    source_version,
)
from adapter.merge.findings import FindingChanges, StoredFinding
from adapter.merge.plans import (
    IdentityConflictError as IdentityConflictError,  # re-exported: callers catch it from here
)
from adapter.merge.plans import (
    KkiChanges,
    LinkedRegistration,
    Provenance,
    StoredRegistration,
    StoredWorker,
    WorkerWrite,
    held,
    merge_kki,
    merge_sisdmk,
    sisdmk_target,
)
from adapter.merge.plans import UpsertResult as UpsertResult  # re-exported, as above
from adapter.merge.rules import Rule
from adapter.store.bulk import insert_rows, update_rows
from adapter.store.crypto import BlindIndex, FieldCipher, decrypt_fields, encrypt_fields
from adapter.store.models import (
    CpdSummary,
    Education,
    Employment,
    Facility,
    HealthWorker,
    IdentityFinding,
    PracticeLicense,
    Registration,
    Training,
)
from adapter.store.personal_fields import WORKER_PERSONAL_FIELDS

WORKER_PERSONAL_COLUMNS: Final = WORKER_PERSONAL_FIELDS
_NIK: Final = "nik"
_PAYLOAD: Final = "payload"
_Query = TypeVar("_Query", bound=Select[Any])


@dataclass(frozen=True)
class Address:
    line: str
    province_code: str
    province_name: str
    regency_code: str
    regency_name: str
    district_code: str
    village_code: str


@dataclass(frozen=True)
class HealthWorkerRecord:
    """A stored worker; personal fields are ``None`` when read with ``decrypt=False``."""

    id: uuid.UUID
    sisdmk_worker_id: uuid.UUID | None
    identity_source: str
    gender: str
    citizenship: str
    profession: str
    tenaga_group: str
    province_code: str | None
    regency_code: str | None
    facility_code: str | None
    is_active: bool
    source_system: str
    source_version: int
    updated_at: dt.datetime
    nik: str | None = None
    full_name: str | None = None
    gelar_depan: str | None = None
    gelar_belakang: str | None = None
    birth_date: dt.date | None = None
    birth_place: str | None = None
    address: Address | None = None
    phone: str | None = None
    email: str | None = None
    ihs_number: str | None = None
    nip: str | None = None


@dataclass
class _PageRows:
    """The stored rows a page of documents will touch, loaded in a few queries up front.

    A key in a `*_known` set was looked up (found or not): the upserts trust the dicts for it
    and query the database only for keys outside the page. Rows created while the page is
    stored are added, so a later document of the same page finds them.
    """

    by_id: dict[uuid.UUID, HealthWorker] = dataclasses.field(default_factory=dict)
    by_sisdmk: dict[uuid.UUID, HealthWorker] = dataclasses.field(default_factory=dict)
    sisdmk_known: set[uuid.UUID] = dataclasses.field(default_factory=set)
    by_nik: dict[str, HealthWorker] = dataclasses.field(default_factory=dict)
    nik_of: dict[uuid.UUID, str] = dataclasses.field(default_factory=dict)
    nik_known: set[str] = dataclasses.field(default_factory=set)
    by_str: dict[str, Registration] = dataclasses.field(default_factory=dict)
    str_known: set[str] = dataclasses.field(default_factory=set)
    registrations_of: dict[uuid.UUID, list[Registration]] = dataclasses.field(default_factory=dict)
    findings_of: dict[uuid.UUID, list[IdentityFinding]] = dataclasses.field(default_factory=dict)
    # Findings on a worker's SISDMK record (no registration), loaded by `prefetch_sisdmk`.
    record_findings_of: dict[uuid.UUID, list[IdentityFinding]] = dataclasses.field(
        default_factory=dict
    )
    # Rows created in this page: they have no children to delete yet.
    new_rows: set[uuid.UUID] = dataclasses.field(default_factory=set)

    def index_worker(self, worker: HealthWorker) -> None:
        """(Re-)index a worker under its current keys; a NIK it no longer has points nowhere."""
        self.by_id[worker.id] = worker
        if worker.sisdmk_worker_id is not None:
            self.by_sisdmk[worker.sisdmk_worker_id] = worker
            self.sisdmk_known.add(worker.sisdmk_worker_id)
        previous = self.nik_of.get(worker.id)
        if previous is not None and previous != worker.nik_bidx:
            self.by_nik.pop(previous, None)
        self.by_nik[worker.nik_bidx] = worker
        self.nik_known.add(worker.nik_bidx)
        self.nik_of[worker.id] = worker.nik_bidx

    def forget_worker(self, worker: HealthWorker) -> None:
        """A worker deleted from the store: its keys (still known) name nobody now."""
        self.by_id.pop(worker.id, None)
        if worker.sisdmk_worker_id is not None:
            self.by_sisdmk.pop(worker.sisdmk_worker_id, None)
        nik = self.nik_of.pop(worker.id, None)
        if nik is not None and self.by_nik.get(nik) is worker:
            del self.by_nik[nik]
        self.registrations_of.pop(worker.id, None)
        self.record_findings_of.pop(worker.id, None)

    def add_worker(self, worker: HealthWorker) -> None:
        self.new_rows.add(worker.id)
        self.registrations_of[worker.id] = []
        self.record_findings_of[worker.id] = []

    def add_registration(self, registration: Registration) -> None:
        self.new_rows.add(registration.id)
        self.findings_of[registration.id] = []


# The child tables an upsert replaces wholesale, each with the column naming its parent,
# parents' tables first (the foreign keys point at rows already written).
_CHILD_TABLES: Final[tuple[tuple[Table, str], ...]] = (
    (cast(Table, Employment.__table__), "worker_id"),
    (cast(Table, Education.__table__), "worker_id"),
    (cast(Table, CpdSummary.__table__), "registration_id"),
    (cast(Table, PracticeLicense.__table__), "registration_id"),
    (cast(Table, Training.__table__), "registration_id"),
)
_EMPLOYMENTS, _EDUCATIONS, _CPD_SUMMARIES, _PRACTICE_LICENSES, _TRAININGS = (
    table for table, _ in _CHILD_TABLES
)
# Stored parent rows updated in place, workers first (a registration may move to one).
_PARENT_TABLES: Final = (cast(Table, HealthWorker.__table__), cast(Table, Registration.__table__))
# Tables of the rows an upsert creates, in the order their foreign keys need.
_NEW_TABLES: Final = (*_PARENT_TABLES, cast(Table, IdentityFinding.__table__))
_NewRow = HealthWorker | Registration | IdentityFinding
# Parents per DELETE … IN (…): well under SQLite's bound-parameter limit.
_DELETE_CHUNK: Final = 500


@dataclass
class _StagedWrites:
    """What the upserts of a page wrote, waiting for `HealthWorkerRepository.write_staged`:
    the child rows they replaced (per table one DELETE of the stored children of every parent
    touched and one executemany INSERT, without the ORM's identity map: nothing reads these
    rows back in the page) and the new values of stored workers and registrations.

    Keyed by parent id, so a parent stored twice in one page keeps its last document's rows.
    """

    rows: dict[Table, dict[uuid.UUID, list[dict[str, Any]]]] = dataclasses.field(
        default_factory=lambda: {table: {} for table, _ in _CHILD_TABLES}
    )
    # Rows new to the store, per table (parents first), outside the session until written.
    new: dict[Table, list[_NewRow]] = dataclasses.field(
        default_factory=lambda: {table: [] for table in _NEW_TABLES}
    )
    # Stored workers and registrations: row id → the columns to set (later writes win).
    updates: dict[Table, dict[uuid.UUID, dict[str, Any]]] = dataclasses.field(
        default_factory=lambda: {table: {} for table in _PARENT_TABLES}
    )

    def replace(self, table: Table, parent_id: uuid.UUID, rows: list[dict[str, Any]]) -> None:
        self.rows[table][parent_id] = rows

    def update(self, table: Table, row_id: uuid.UUID, values: Mapping[str, Any]) -> None:
        self.updates[table].setdefault(row_id, {}).update(values)

    def __bool__(self) -> bool:
        return any(self.rows.values()) or any(self.updates.values()) or any(self.new.values())


@dataclass(frozen=True)
class RegistrationRecord:
    """A stored STR registration; KKI's spelling of the holder's name only when decrypted."""

    id: uuid.UUID
    worker_id: uuid.UUID
    str_number: str
    status: str
    status_reason: str | None
    status_changed_at: dt.datetime
    valid_until: dt.date | None
    validated: bool
    registration_type: str
    profession: str
    tenaga_group: str
    kompetensi: str
    issued_at: dt.date
    source_version: int
    fetched_at: dt.datetime
    kki_full_name: str | None = None


class HealthWorkerRepository:
    """Health workers and everything hanging off them: registrations, SIPs, SKP, findings.

    A page is written set-based: `apply_documents` first calls `prefetch_sisdmk` /
    `prefetch_kki` with the page, so the upserts find the stored rows (loaded and locked)
    without a query per document; the upserts stage their writes (new rows in the session,
    the changed values of stored rows and the replaced children apart), and `write_staged`
    sends them in a few statements per table. Without a prefetch each upsert writes its own
    at its end. Nothing commits here.

    Versions never go backwards: every stored row an upsert may write is read under a lock
    held until the caller's commit (PostgreSQL: ``SELECT … FOR NO KEY UPDATE``, registrations before
    workers; SQLite: the database's write lock, taken before the first read), so the version
    compared with the document's is the one the write replaces. A document older than the
    stored row is `UpsertResult.SUPERSEDED` and writes nothing, children included.
    """

    def __init__(self, session: Session, cipher: FieldCipher, blind_index: BlindIndex) -> None:
        self._session = session
        self._cipher = cipher
        self._blind_index = blind_index
        self._rows = _PageRows()
        self._staged = _StagedWrites()
        # Identity findings this repository's upserts opened (a sync page counts its run's).
        self.findings_opened = 0
        # Workers only KKI knew whose last registration moved to another person (a NIK
        # corrected): deleted by the page's last `write_staged`, unless a registration hangs on
        # them again by then; the ids of those deleted, for the audit entry.
        self._emptied: dict[uuid.UUID, HealthWorker] = {}
        self.workers_removed: list[uuid.UUID] = []
        # Set by a prefetch: the page's staged writes wait for `write_staged`; otherwise
        # each upsert writes its own at its end.
        self._paged = False

    @property
    def cipher(self) -> FieldCipher:
        """The cipher personal fields are sealed with (the quarantine seals its payloads too)."""
        return self._cipher

    # -- batching ---------------------------------------------------------------------------

    def prefetch_sisdmk(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Load the workers (and their registrations and open findings) SISDMK `docs` touch."""
        ids = {uuid.UUID(str(doc["worker_id"])) for doc in docs if _has(doc, "worker_id")}
        niks = {d for doc in docs if _has(doc, "nik") for d in self._nik_digests(doc["nik"])}
        self._begin_write()
        self._paged = True
        self._load_workers(ids, niks, record_findings=True)

    def prefetch_kki(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Load the registrations and workers (with their open findings) KKI `docs` touch."""
        numbers = {str(doc["str_number"]) for doc in docs if _has(doc, "str_number")}
        niks = {d for doc in docs if _has(doc, "nik") for d in self._nik_digests(doc["nik"])}
        rows = self._rows
        self._begin_write()
        self._paged = True
        for registration in self._session.scalars(
            _locked(
                select(Registration)
                .where(Registration.str_number.in_(numbers))
                .order_by(Registration.str_number)
            )
        ):
            rows.by_str[registration.str_number] = registration
        rows.str_known |= numbers
        # With the workers the NIKs name, those the registrations hang on now, which they may
        # move away from (a NIK corrected): one left with none is deleted if only KKI knew them,
        # and a SISDMK writer of them must not meet a registration half moved. One statement,
        # in id order, as every writer locks workers: no two writers wait for each other.
        self._load_workers(set(), niks, ids=frozenset(r.worker_id for r in rows.by_str.values()))

    def _load_workers(
        self,
        sisdmk_ids: set[uuid.UUID],
        niks: set[str],
        *,
        ids: frozenset[uuid.UUID] = frozenset(),
        record_findings: bool = False,
    ) -> None:
        rows = self._rows
        wanted_workers = HealthWorker.sisdmk_worker_id.in_(sisdmk_ids) | HealthWorker.nik_bidx.in_(
            niks
        )
        if ids:
            wanted_workers |= HealthWorker.id.in_(ids)
        workers = list(
            self._session.scalars(
                _locked(select(HealthWorker).where(wanted_workers).order_by(HealthWorker.id))
            )
        )
        for worker in workers:
            rows.index_worker(worker)
            rows.registrations_of[worker.id] = []
        rows.sisdmk_known |= sisdmk_ids
        rows.nik_known |= niks
        worker_ids = [worker.id for worker in workers]
        registrations = (
            list(
                self._session.scalars(
                    select(Registration).where(Registration.worker_id.in_(worker_ids))
                )
            )
            if worker_ids  # none stored yet (a new person): nothing to ask
            else []
        )
        for registration in registrations:
            rows.registrations_of[registration.worker_id].append(registration)
            rows.by_str.setdefault(registration.str_number, registration)
        touched = {registration.id for registration in registrations}
        touched |= {registration.id for registration in rows.by_str.values()}
        touched -= rows.findings_of.keys()  # loaded by an earlier call of the page
        for registration_id in touched:
            rows.findings_of.setdefault(registration_id, [])
        # The open findings of the registrations touched and, for a SISDMK page, of the
        # workers' records themselves (no registration): one statement for both.
        wanted: ColumnElement[bool] = IdentityFinding.registration_id.in_(touched)
        if record_findings:
            for worker_id in worker_ids:
                rows.record_findings_of.setdefault(worker_id, [])
            wanted = wanted | (
                IdentityFinding.worker_id.in_(worker_ids)
                & IdentityFinding.registration_id.is_(None)
            )
        if not touched and not (record_findings and worker_ids):
            return
        for finding in self._session.scalars(
            select(IdentityFinding).where(wanted, IdentityFinding.resolved_at.is_(None))
        ):
            if finding.registration_id is not None:
                rows.findings_of[finding.registration_id].append(finding)
            else:  # selected as a worker record's own
                rows.record_findings_of[finding.worker_id].append(finding)

    def write_staged(self, *, last: bool = True) -> None:
        """Write the rows staged since the last call (a no-op when there are none).

        The page's `last` call also deletes the workers only KKI knew that its registrations
        left with none: a call within the page (``last=False``: a locked read outside the
        prefetch, a batch written again document by document) keeps them, so a later document
        naming their NIK finds the same person, as it does when the page is written at once.

        First the rows new to the store (workers, registrations, findings: one set-based
        insert per table, so the rows the others point at exist), which then join the session
        as stored rows; then the session is flushed (findings resolved); then the stored
        workers and registrations the page changed, one UPDATE per table and set of columns;
        then the children. Stored children of the parents touched go in one DELETE per table
        before the inserts, so a re-inserted natural key (a SIP's sequence number) never meets
        its old row. On PostgreSQL an insert is one ``COPY``, and an update of a table's rows
        naming the same columns one ``COPY`` into a temporary table and one ``UPDATE … FROM``
        from `MERGE_FROM_ROWS` rows on, an executemany below (`adapter.store.bulk`); on SQLite
        both are an executemany.
        """
        staged = self._staged
        if staged:
            self._staged = _StagedWrites()
            self._write(staged)
        if last and self._emptied:
            emptied, self._emptied = self._emptied, {}
            self._delete_emptied(self._session.connection(), emptied)

    def _write(self, staged: _StagedWrites) -> None:
        connection = self._session.connection()
        for table, created in staged.new.items():
            by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in created:
                values = {c.key: row.__dict__[c.key] for c in table.c if c.key in row.__dict__}
                by_columns.setdefault(tuple(values), []).append(values)
            for values_list in by_columns.values():
                insert_rows(connection, table, values_list)
            for row in created:
                # Written: from here on the row is a stored one, in the session as if loaded.
                make_transient_to_detached(row)
                self._session.add(row)
        self._session.flush()
        for table in _PARENT_TABLES:
            updates: dict[frozenset[str], list[dict[str, Any]]] = {}
            for row_id, values in staged.updates[table].items():
                updates.setdefault(frozenset(values), []).append({**values, "row_id": row_id})
            for rows in updates.values():
                update_rows(connection, table, rows)
        new_rows = self._rows.new_rows
        for table, parent_column in _CHILD_TABLES:
            by_parent = staged.rows[table]
            stored = sorted(parent for parent in by_parent if parent not in new_rows)
            for start in range(0, len(stored), _DELETE_CHUNK):
                chunk = stored[start : start + _DELETE_CHUNK]
                connection.execute(delete(table).where(table.c[parent_column].in_(chunk)))
            insert_rows(
                connection, table, [row for children in by_parent.values() for row in children]
            )
        # Their children are in the database now: a later replacement deletes them first.
        new_rows.difference_update(
            parent for by_parent in staged.rows.values() for parent in by_parent
        )

    def _delete_emptied(
        self, connection: Connection, emptied: Mapping[uuid.UUID, HealthWorker]
    ) -> None:
        """Delete the workers only KKI knew that no registration hangs on now (one may have
        come back later in the page: it stays). The findings of registrations that left them
        go with the registrations first, resolved ones too, so the delete's cascade takes none
        of a registration's history. The workers are locked by this transaction: nobody gives
        them a registration between the three statements."""
        findings = cast(Table, IdentityFinding.__table__)
        registrations = cast(Table, Registration.__table__)
        workers = cast(Table, HealthWorker.__table__)
        removed = list(
            connection.execute(
                select(workers.c.id)
                .where(
                    workers.c.id.in_(sorted(emptied)),
                    workers.c.identity_source == "kki",
                    ~exists().where(registrations.c.worker_id == workers.c.id),
                )
                .order_by(workers.c.id)
            ).scalars()
        )
        if not removed:
            return
        connection.execute(
            update(findings)
            .where(findings.c.worker_id.in_(removed), findings.c.registration_id.is_not(None))
            .values(
                worker_id=select(registrations.c.worker_id)
                .where(registrations.c.id == findings.c.registration_id)
                .scalar_subquery()
            )
        )
        connection.execute(delete(workers).where(workers.c.id.in_(removed)))
        for worker_id in removed:
            worker = emptied[worker_id]
            self._rows.forget_worker(worker)
            self._session.expunge(worker)
            self.workers_removed.append(worker_id)

    def _add_new(self, row: _NewRow) -> None:
        """Stage a row new to the store: it is written by `write_staged` in one statement per
        table (``COPY`` on PostgreSQL) instead of the unit of work's per-object INSERTs."""
        self._staged.new[cast(Table, type(row).__table__)].append(row)

    def _before_locked_read(self) -> None:
        """A locked read reloads the rows it returns (``populate_existing``): the page's staged
        values must be in the database first, or a row would fall back to its stored version
        and an older document of the page could win the version check. The prefetch makes
        such reads rare within a page; this keeps them right when one happens."""
        if self._paged:
            self.write_staged(last=False)

    def _worker_by_sisdmk_id(self, sisdmk_id: uuid.UUID) -> HealthWorker | None:
        if sisdmk_id in self._rows.sisdmk_known:
            return self._rows.by_sisdmk.get(sisdmk_id)
        self._before_locked_read()
        return self._session.scalars(
            _locked(select(HealthWorker).where(HealthWorker.sisdmk_worker_id == sisdmk_id))
        ).one_or_none()

    def _worker_by_nik_digests(self, digests: Sequence[str]) -> HealthWorker | None:
        if all(digest in self._rows.nik_known for digest in digests):
            found = [self._rows.by_nik[d] for d in digests if d in self._rows.by_nik]
            return found[0] if found else None
        self._before_locked_read()
        return _first_by_digest(
            self._session.scalars(
                _locked(select(HealthWorker).where(HealthWorker.nik_bidx.in_(digests)))
            ),
            digests,
        )

    def _registration_by_str(self, str_number: str) -> Registration | None:
        if str_number in self._rows.str_known:
            return self._rows.by_str.get(str_number)
        self._before_locked_read()
        return self._session.scalars(
            _locked(select(Registration).where(Registration.str_number == str_number))
        ).one_or_none()

    def _registrations_of(self, worker: HealthWorker) -> list[Registration]:
        cached = self._rows.registrations_of.get(worker.id)
        if cached is not None:
            return [r for r in cached if r.worker_id == worker.id]
        return list(
            self._session.scalars(select(Registration).where(Registration.worker_id == worker.id))
        )

    def _open_record_findings_of(self, worker: HealthWorker) -> list[IdentityFinding]:
        """The open findings on the worker's SISDMK record (none has a registration)."""
        cached = self._rows.record_findings_of.get(worker.id)
        if cached is not None:
            return [f for f in cached if f.resolved_at is None]
        return list(
            self._session.scalars(
                select(IdentityFinding).where(
                    IdentityFinding.worker_id == worker.id,
                    IdentityFinding.registration_id.is_(None),
                    IdentityFinding.resolved_at.is_(None),
                )
            )
        )

    def _open_findings_of(self, registration: Registration) -> list[IdentityFinding]:
        cached = self._rows.findings_of.get(registration.id)
        if cached is not None:
            return [f for f in cached if f.resolved_at is None]
        return list(
            self._session.scalars(
                select(IdentityFinding).where(
                    IdentityFinding.registration_id == registration.id,
                    IdentityFinding.resolved_at.is_(None),
                )
            )
        )

    def _remember_worker(self, worker: HealthWorker) -> None:
        """Index a worker whose keys were (re)set, so later documents of the page find it."""
        self._rows.index_worker(worker)

    def _nik_digest(self, nik: Any) -> str:
        return self._blind_index.digest(str(nik), purpose=_NIK)

    def _nik_digests(self, nik: Any) -> tuple[str, ...]:
        """For look-ups: during a blind-index key change a row may be under either key."""
        return self._blind_index.digests(str(nik), purpose=_NIK)

    def _begin_write(self) -> None:
        _begin_write(self._session)

    # -- reads ------------------------------------------------------------------------------

    def get(self, worker_id: uuid.UUID, *, decrypt: bool = True) -> HealthWorkerRecord | None:
        worker = self._session.get(HealthWorker, worker_id)
        return None if worker is None else self._record(worker, decrypt=decrypt)

    def find_by_nik(self, nik: str, *, decrypt: bool = True) -> HealthWorkerRecord | None:
        """The worker with this NIK, found through the blind index (the NIK is never queried)."""
        worker = self._worker_by_nik(nik)
        return None if worker is None else self._record(worker, decrypt=decrypt)

    def registration(self, str_number: str, *, decrypt: bool = False) -> RegistrationRecord | None:
        row = self._session.scalars(
            select(Registration).where(Registration.str_number == str_number)
        ).one_or_none()
        return None if row is None else self._registration_record(row, decrypt=decrypt)

    def registrations_of_nik(self, nik: str, *, decrypt: bool = False) -> list[RegistrationRecord]:
        """The registrations of the worker with this NIK (blind index), by STR number."""
        worker = self._worker_by_nik(nik)
        if worker is None:
            return []
        rows = self._session.scalars(
            select(Registration)
            .where(Registration.worker_id == worker.id)
            .order_by(Registration.str_number)
        )
        return [self._registration_record(row, decrypt=decrypt) for row in rows]

    def _registration_record(self, row: Registration, *, decrypt: bool) -> RegistrationRecord:
        name = None
        if decrypt:
            name = decrypt_fields(
                self._cipher,
                Registration.__tablename__,
                row.id,
                {"kki_full_name": row.kki_full_name},
            )["kki_full_name"]
        return RegistrationRecord(
            id=row.id,
            worker_id=row.worker_id,
            str_number=row.str_number,
            status=row.status,
            status_reason=row.status_reason,
            status_changed_at=row.status_changed_at,
            valid_until=row.valid_until,
            validated=row.validated,
            registration_type=row.registration_type,
            profession=row.profession,
            tenaga_group=row.tenaga_group,
            kompetensi=row.kompetensi,
            issued_at=row.issued_at,
            source_version=row.source_version,
            fetched_at=row.fetched_at,
            kki_full_name=name,
        )

    # -- SISDMK -----------------------------------------------------------------------------

    def upsert_from_sisdmk(
        self, doc: Mapping[str, Any], *, fetched_at: dt.datetime
    ) -> UpsertResult:
        """Store a SISDMK ``HealthWorker`` document (authoritative for identity and employment)."""
        sisdmk_id = uuid.UUID(str(doc["worker_id"]))
        version = int(doc["version"])
        payload_hash = self.payload_hash(doc)
        self._begin_write()
        worker = self._worker_by_sisdmk_id(sisdmk_id)
        if (
            worker is not None
            and (outcome := held(worker.source_version, worker.payload_hash, version, payload_hash))
            is not None
        ):
            return outcome
        by_nik = self._worker_by_nik_digests(self._nik_digests(doc["nik"]))
        target = sisdmk_target(sisdmk_id, _stored_worker(worker), _stored_worker(by_nik))
        if worker is None:
            worker = by_nik  # the person KKI told us about first, or nobody

        document = SisdmkWorker.from_document(doc)
        registrations = [] if worker is None else self._registrations_of(worker)
        record_findings = [] if worker is None else self._open_record_findings_of(worker)
        findings_of = {r.id: self._open_findings_of(r) for r in registrations}
        changes = merge_sisdmk(
            document,
            target=target,
            registrations=[
                LinkedRegistration(r.id, self._kki(r), _stored_findings(findings_of[r.id]))
                for r in registrations
            ],
            open_findings=_stored_findings(record_findings),
            fetched_at=fetched_at,
            payload_hash=payload_hash,
            fingerprint=self._fingerprint,
        )
        if worker is None:
            worker = HealthWorker(id=changes.worker.id)
            self._add_new(worker)
            self._rows.add_worker(worker)
        self._write_worker(worker, changes.worker)
        self._replace_employments(worker, changes.employments)
        self._replace_educations(worker, changes.educations)
        self._apply_findings(
            changes.findings, [*record_findings, *(f for fs in findings_of.values() for f in fs)]
        )
        if not self._paged:
            self.write_staged()
        return changes.result

    # -- KKI --------------------------------------------------------------------------------

    def upsert_registration_from_kki(
        self, doc: Mapping[str, Any], *, fetched_at: dt.datetime
    ) -> UpsertResult:
        """Store a KKI ``Registration`` with its SKP, trainings and SIPs (authoritative for them).

        KKI's spelling of the holder's identity is kept on the registration; where it differs
        from SISDMK's, an identity finding is recorded and the worker's identity stays as it is.
        """
        str_number = str(doc["str_number"])
        version = int(doc["version"])
        payload_hash = self.payload_hash(doc)
        self._begin_write()
        registration = self._registration_by_str(str_number)
        if (
            registration is not None
            and (
                outcome := held(
                    registration.source_version, registration.payload_hash, version, payload_hash
                )
            )
            is not None
        ):
            return outcome

        document = KkiRegistration.from_document(doc)
        digests = self._nik_digests(document.nik)
        if registration is not None and registration.worker_id not in self._rows.by_id:
            # Not prefetched: the worker the registration may leave is locked with the one its
            # NIK names, in one statement (see `prefetch_kki`).
            self._before_locked_read()
            self._load_workers(set(), set(digests), ids=frozenset({registration.worker_id}))
        worker = self._worker_by_nik_digests(digests)
        sisdmk = None
        if worker is not None and worker.identity_source == "sisdmk":
            sisdmk = self._sisdmk_identity(worker)
        open_findings = [] if registration is None else self._open_findings_of(registration)
        changes = merge_kki(
            document,
            registration=None if registration is None else _stored_registration(registration),
            worker=_stored_worker(worker),
            sisdmk=sisdmk,
            open_findings=_stored_findings(open_findings),
            fetched_at=fetched_at,
            payload_hash=payload_hash,
            fingerprint=self._fingerprint,
        )
        if worker is None:
            worker = HealthWorker(id=changes.registration.worker_id)
            self._add_new(worker)
            self._rows.add_worker(worker)
        if changes.worker is not None:
            self._write_worker(worker, changes.worker)
        left = None
        if registration is None:
            registration = Registration(id=changes.registration.id)
            self._add_new(registration)
            self._rows.add_registration(registration)
        elif registration.worker_id != worker.id:
            left = registration.worker_id
        self._write_registration(registration, worker, changes)
        if left is not None:
            self._remove_if_emptied(left)
        self._replace_registration_details(registration, changes)
        self._apply_findings(changes.findings, open_findings)
        if not self._paged:
            self.write_staged()
        return changes.result

    def open_findings(self, worker_id: uuid.UUID) -> list[IdentityFinding]:
        """The unresolved identity findings of a worker, oldest first."""
        return list(
            self._session.scalars(
                select(IdentityFinding)
                .where(
                    IdentityFinding.worker_id == worker_id, IdentityFinding.resolved_at.is_(None)
                )
                .order_by(IdentityFinding.detected_at, IdentityFinding.field)
            )
        )

    def payload_hash(self, doc: Mapping[str, Any]) -> str:
        """A keyed digest of the document: equal documents, equal digests; no guessing back."""
        plain = hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()
        return self._blind_index.digest(plain, purpose=_PAYLOAD)

    # -- internals --------------------------------------------------------------------------

    def _worker_by_nik(self, nik: str) -> HealthWorker | None:
        """For reads: no lock, whatever the page has loaded."""
        digests = self._nik_digests(nik)
        return _first_by_digest(
            self._session.scalars(select(HealthWorker).where(HealthWorker.nik_bidx.in_(digests))),
            digests,
        )

    def _move_registration(self, registration: Registration, worker: HealthWorker) -> None:
        """Index `registration` under `worker` in the page's lists (the row is written after)."""
        if registration.worker_id == worker.id:
            return
        previous = self._rows.registrations_of.get(registration.worker_id)
        if previous is not None and registration in previous:
            previous.remove(registration)
        mine = self._rows.registrations_of.get(worker.id)
        if mine is not None:
            mine.append(registration)

    def _remove_if_emptied(self, worker_id: uuid.UUID) -> None:
        """Stage the deletion of the worker a registration moved away from, when only KKI knew
        them (a stand-in made for the registration's NIK, since corrected) and they hold no
        registration now: kept, they would be a second person with the mistyped NIK, found by
        it and counted. SISDMK's workers stay: SISDMK says who exists."""
        worker = self._rows.by_id.get(worker_id)  # locked with the registration's new worker
        if worker is None or worker.identity_source != "kki":
            return
        if any(r.worker_id == worker.id for r in self._registrations_of(worker)):
            return
        self._emptied[worker.id] = worker

    def _write_row(self, row: HealthWorker | Registration, values: Mapping[str, Any]) -> None:
        """Give `row` its new `values`, without the unit of work's change tracking: a row new
        to the store is staged whole (`_add_new`) and `write_staged` inserts what it holds; a
        stored row (loaded and locked) has its values staged for one UPDATE per table."""
        for column, value in values.items():
            set_committed_value(row, column, value)
        if cast(InstanceState[Any], inspect(row)).persistent:
            self._staged.update(cast(Table, type(row).__table__), row.id, values)

    def _write_worker(self, worker: HealthWorker, write: WorkerWrite) -> None:
        values: dict[str, Any] = encrypt_fields(
            self._cipher, HealthWorker.__tablename__, worker.id, write.personal
        )
        values["nik_bidx"] = self._nik_digest(write.personal["nik"])
        values["nik_bidx_kid"] = self._blind_index.kid
        values.update(write.columns)
        values.update(_provenance_values(write.provenance))
        values["updated_at"] = _now()
        self._write_row(worker, values)
        self._remember_worker(worker)

    def _write_registration(
        self, registration: Registration, worker: HealthWorker, changes: KkiChanges
    ) -> None:
        write = changes.registration
        self._move_registration(registration, worker)
        values: dict[str, Any] = {"worker_id": worker.id, **write.columns}
        values.update(
            encrypt_fields(
                self._cipher, Registration.__tablename__, registration.id, write.personal
            )
        )
        values.update(_provenance_values(write.provenance))
        values["updated_at"] = _now()
        self._write_row(registration, values)
        self._rows.by_str[registration.str_number] = registration
        self._rows.str_known.add(registration.str_number)

    def _replace_employments(self, worker: HealthWorker, items: Sequence[EmploymentValues]) -> None:
        provenance = _provenance_of(worker)
        rows = []
        for item in items:
            row = _values(item)
            row_id = uuid.uuid4()
            row["nip"] = encrypt_fields(
                self._cipher, Employment.__tablename__, row_id, {"nip": row["nip"]}
            )["nip"]
            rows.append({**row, **provenance, "id": row_id, "worker_id": worker.id})
        self._staged.replace(_EMPLOYMENTS, worker.id, rows)

    def _replace_educations(self, worker: HealthWorker, items: Sequence[EducationValues]) -> None:
        provenance = _provenance_of(worker)
        rows = []
        for item in items:
            row = _values(item)
            row_id = uuid.uuid4()
            row["ijazah_no"] = encrypt_fields(
                self._cipher, Education.__tablename__, row_id, {"ijazah_no": row["ijazah_no"]}
            )["ijazah_no"]
            rows.append({**row, **provenance, "id": row_id, "worker_id": worker.id})
        self._staged.replace(_EDUCATIONS, worker.id, rows)

    def _replace_registration_details(
        self, registration: Registration, changes: KkiChanges
    ) -> None:
        common = {**_provenance_of(registration), "registration_id": registration.id}
        skp = [] if changes.skp is None else [changes.skp]
        for table, items in (
            (_CPD_SUMMARIES, skp),
            (_PRACTICE_LICENSES, changes.sips),
            (_TRAININGS, changes.trainings),
        ):
            rows = [{**_values(item), **common, "id": uuid.uuid4()} for item in items]
            self._staged.replace(table, registration.id, rows)

    def _sisdmk_identity(self, worker: HealthWorker) -> Identity:
        columns = ("full_name", "gelar_depan", "gelar_belakang", "birth_date")
        clear = decrypt_fields(
            self._cipher,
            HealthWorker.__tablename__,
            worker.id,
            {column: getattr(worker, column) for column in columns},
        )
        return Identity(**clear, gender=worker.gender)

    def _kki(self, registration: Registration) -> Identity:
        columns = ("full_name", "gelar_depan", "gelar_belakang", "birth_date")
        clear = decrypt_fields(
            self._cipher,
            Registration.__tablename__,
            registration.id,
            {f"kki_{column}": getattr(registration, f"kki_{column}") for column in columns},
        )
        return Identity(
            **{column: clear[f"kki_{column}"] for column in columns},
            gender=registration.kki_gender,
        )

    def _apply_findings(self, changes: FindingChanges, loaded: Iterable[IdentityFinding]) -> None:
        """Resolve and open what the merge decided; `loaded` holds the findings it was given."""
        now = _now()
        by_id = {finding.id: finding for finding in loaded}
        for finding_id in changes.resolved:
            by_id[finding_id].resolved_at = now
        self.findings_opened += len(changes.opened)
        for new in changes.opened:
            identity = new.rule == Rule.IDENTITY_MISMATCH
            finding = IdentityFinding(
                id=uuid.uuid4(),
                rule=new.rule.value,
                worker_id=new.worker_id,
                registration_id=new.registration_id,
                source_system=new.source_system,
                source_id=new.source_id,
                field=new.field,
                kki_digest=new.kki_digest,
                sisdmk_digest=new.sisdmk_digest,
                digest_kid=self._blind_index.kid if identity else None,
                detected_at=now,
            )
            self._add_new(finding)
            if new.registration_id is None:
                self._rows.record_findings_of.setdefault(new.worker_id, []).append(finding)
            else:
                self._rows.findings_of.setdefault(new.registration_id, []).append(finding)

    def _fingerprint(self, field: str, value: str) -> str:
        return identity_fingerprint(self._blind_index, field, value)

    def _record(self, worker: HealthWorker, *, decrypt: bool) -> HealthWorkerRecord:
        base = HealthWorkerRecord(
            id=worker.id,
            sisdmk_worker_id=worker.sisdmk_worker_id,
            identity_source=worker.identity_source,
            gender=worker.gender,
            citizenship=worker.citizenship,
            profession=worker.profession,
            tenaga_group=worker.tenaga_group,
            province_code=worker.province_code,
            regency_code=worker.regency_code,
            facility_code=worker.facility_code,
            is_active=worker.is_active,
            source_system=worker.source_system,
            source_version=worker.source_version,
            updated_at=worker.updated_at,
        )
        if not decrypt:
            return base
        clear = decrypt_fields(
            self._cipher,
            HealthWorker.__tablename__,
            worker.id,
            {column: getattr(worker, column) for column in WORKER_PERSONAL_COLUMNS},
        )
        birth_date, address = clear["birth_date"], clear["address"]
        return replace(
            base,
            nik=clear["nik"],
            full_name=clear["full_name"],
            gelar_depan=clear["gelar_depan"],
            gelar_belakang=clear["gelar_belakang"],
            birth_date=None if birth_date is None else dt.date.fromisoformat(birth_date),
            birth_place=clear["birth_place"],
            address=None if address is None else Address(**json.loads(address)),
            phone=clear["phone"],
            email=clear["email"],
            ihs_number=clear["ihs_number"],
            nip=clear["nip"],
        )


class FacilityRepository:
    """Facilities from SISDMK's register (no personal data, nothing encrypted)."""

    def __init__(self, session: Session, blind_index: BlindIndex) -> None:
        self._session = session
        self._blind_index = blind_index

    def upsert_from_sisdmk(
        self, doc: Mapping[str, Any], *, fetched_at: dt.datetime
    ) -> UpsertResult:
        code = str(doc["code"])
        version = source_version(doc)
        plain = hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()
        payload_hash = self._blind_index.digest(plain, purpose=_PAYLOAD)
        _begin_write(self._session)
        facility = self._session.scalars(
            _locked(select(Facility).where(Facility.code == code))
        ).one_or_none()
        if (
            facility is not None
            and (
                outcome := held(
                    facility.source_version, facility.payload_hash, version, payload_hash
                )
            )
            is not None
        ):
            return outcome
        result = UpsertResult.UPDATED
        if facility is None:
            facility = Facility(id=uuid.uuid4(), code=code)
            self._session.add(facility)
            result = UpsertResult.CREATED
        region = doc["region"]
        facility.name = str(doc["name"])
        facility.org_type = str(doc["org_type"])
        facility.rs_class = doc.get("rs_class")
        facility.bpjs_code = doc.get("bpjs_code")
        facility.satusehat_org_id = str(doc["satusehat_org_id"])
        facility.ownership = str(doc["ownership"])
        for name in (
            "province_code",
            "province_name",
            "regency_code",
            "regency_name",
            "district_code",
            "village_code",
        ):
            setattr(facility, name, str(region[name]))
        _set_provenance(facility, Provenance("sisdmk", code, version, fetched_at, payload_hash))
        facility.updated_at = _now()
        self._session.flush()
        return result


# -- helpers ------------------------------------------------------------------------------


def identity_fingerprint(blind_index: BlindIndex, field: str, value: str) -> str:
    """The keyed digest an identity finding keeps of one side's `value` of `field`."""
    # The blind index folds case and spacing before hashing, as the merge compares them.
    return blind_index.digest(value, purpose=f"identity.{field}")


def _first_by_digest(rows: Iterable[HealthWorker], digests: Sequence[str]) -> HealthWorker | None:
    """The row under the first of `digests` found (the current key's before the previous')."""
    found = sorted(rows, key=lambda row: digests.index(row.nik_bidx))
    return found[0] if found else None


def _has(doc: Mapping[str, Any], key: str) -> bool:
    """Whether `doc` has a usable `key` (bad documents are left for their upsert to refuse)."""
    value = doc.get(key)
    if key == "worker_id":
        try:
            uuid.UUID(str(value))
        except ValueError:
            return False
    return value is not None


def _locked(query: _Query) -> _Query:
    """`query` locking its rows until commit; rows already in the session are refreshed, so
    the version compared is the one the lock protects, not a copy loaded earlier.

    ``FOR NO KEY UPDATE`` (the lock an UPDATE takes anyway): writers of a row wait for each
    other, but a foreign-key check (an identity finding inserted for a locked registration)
    does not, so a KKI page and a SISDMK writer of the same person cannot deadlock. A page
    locks its workers in one statement ordered by id (a KKI page: after its registrations, the
    workers its NIKs name and those its registrations hang on now), so two pages never wait
    for each other's workers.
    """
    return query.with_for_update(key_share=True).execution_options(populate_existing=True)


def _begin_write(session: Session) -> None:
    """On SQLite, take the database's write lock before the first read of the transaction.

    SQLite has no row locks; pysqlite begins a transaction only at the first INSERT, UPDATE
    or DELETE, so rows read before it could change under us. ``BEGIN IMMEDIATE`` makes the
    reads and the writes one serialised transaction (other writers wait up to busy_timeout).
    PostgreSQL needs nothing here: `_locked` reads lock each row.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi = connection.connection.dbapi_connection
    if dbapi is not None and not dbapi.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _provenance_values(provenance: Provenance) -> dict[str, Any]:
    return {
        "source_system": provenance.system,
        "source_id": provenance.source_id,
        "source_version": provenance.version,
        "fetched_at": provenance.fetched_at,
        "payload_hash": provenance.payload_hash,
    }


def _set_provenance(row: Any, provenance: Provenance) -> None:
    row.source_system = provenance.system
    row.source_id = provenance.source_id
    row.source_version = provenance.version
    row.fetched_at = provenance.fetched_at
    row.payload_hash = provenance.payload_hash


def _provenance_of(parent: Any) -> dict[str, Any]:
    """A child row's provenance columns: its parent's."""
    return {
        "source_system": parent.source_system,
        "source_id": parent.source_id,
        "source_version": parent.source_version,
        "fetched_at": parent.fetched_at,
        "payload_hash": parent.payload_hash,
    }


def _values(item: Any) -> dict[str, Any]:
    """A merge value object's fields as a row (shallow: they hold scalars only)."""
    return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}


def _stored_worker(row: HealthWorker | None) -> StoredWorker | None:
    if row is None:
        return None
    return StoredWorker(row.id, row.identity_source, row.source_version, row.payload_hash)


def _stored_registration(row: Registration) -> StoredRegistration:
    return StoredRegistration(row.id, row.worker_id, row.source_version, row.payload_hash)


def _stored_findings(rows: Iterable[IdentityFinding]) -> list[StoredFinding]:
    return [
        StoredFinding(
            id=row.id,
            rule=row.rule,
            field=row.field,
            worker_id=row.worker_id,
            registration_id=row.registration_id,
            source_id=row.source_id,
            kki_digest=row.kki_digest,
            sisdmk_digest=row.sisdmk_digest,
        )
        for row in rows
    ]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
