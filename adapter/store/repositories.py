"""Idempotent upserts of source documents into the store, and decrypted reads of a worker.

Repositories work inside the caller's session and never commit: a batch sync commits once per
page, together with its checkpoint. Personal fields are encrypted here, bound to the row's id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final, TypeVar

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from adapter.errors import AdapterError
from adapter.store.crypto import BlindIndex, FieldCipher, decrypt_fields, encrypt_fields
from adapter.store.models import (
    IDENTITY_FIELDS,
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


class UpsertResult(enum.StrEnum):
    """What an upsert did; a batch sync counts these (superseded with unchanged)."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    # The store holds a newer version than the document: nothing was written.
    SUPERSEDED = "superseded"


class IdentityConflictError(AdapterError):
    """A source record would give a person the NIK another stored person already has."""

    default_reason = "identity_conflict"


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

    by_sisdmk: dict[uuid.UUID, HealthWorker] = dataclasses.field(default_factory=dict)
    sisdmk_known: set[uuid.UUID] = dataclasses.field(default_factory=set)
    by_nik: dict[str, HealthWorker] = dataclasses.field(default_factory=dict)
    nik_of: dict[uuid.UUID, str] = dataclasses.field(default_factory=dict)
    nik_known: set[str] = dataclasses.field(default_factory=set)
    by_str: dict[str, Registration] = dataclasses.field(default_factory=dict)
    str_known: set[str] = dataclasses.field(default_factory=set)
    registrations_of: dict[uuid.UUID, list[Registration]] = dataclasses.field(default_factory=dict)
    findings_of: dict[uuid.UUID, list[IdentityFinding]] = dataclasses.field(default_factory=dict)
    # Rows created in this page: they have no children to delete yet.
    new_rows: set[uuid.UUID] = dataclasses.field(default_factory=set)

    def index_worker(self, worker: HealthWorker) -> None:
        """(Re-)index a worker under its current keys; a NIK it no longer has points nowhere."""
        if worker.sisdmk_worker_id is not None:
            self.by_sisdmk[worker.sisdmk_worker_id] = worker
            self.sisdmk_known.add(worker.sisdmk_worker_id)
        previous = self.nik_of.get(worker.id)
        if previous is not None and previous != worker.nik_bidx:
            self.by_nik.pop(previous, None)
        self.by_nik[worker.nik_bidx] = worker
        self.nik_known.add(worker.nik_bidx)
        self.nik_of[worker.id] = worker.nik_bidx

    def add_worker(self, worker: HealthWorker) -> None:
        self.new_rows.add(worker.id)
        self.registrations_of[worker.id] = []

    def add_registration(self, registration: Registration) -> None:
        self.new_rows.add(registration.id)
        self.findings_of[registration.id] = []


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

    Upserts stage rows in the session and leave the flush to the caller's commit (one batched
    INSERT per table per page). A batch sync first calls `prefetch_sisdmk` / `prefetch_kki`
    with the page so that the upserts find stored rows without a query per document.

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

    @property
    def cipher(self) -> FieldCipher:
        """The cipher personal fields are sealed with (the quarantine seals its payloads too)."""
        return self._cipher

    # -- batching ---------------------------------------------------------------------------

    def prefetch_sisdmk(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Load the workers (and their registrations and open findings) SISDMK `docs` touch."""
        ids = {uuid.UUID(str(doc["worker_id"])) for doc in docs if _has(doc, "worker_id")}
        niks = {self._nik_digest(doc["nik"]) for doc in docs if _has(doc, "nik")}
        self._begin_write()
        self._load_workers(ids, niks)

    def prefetch_kki(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Load the registrations and workers (with their open findings) KKI `docs` touch."""
        numbers = {str(doc["str_number"]) for doc in docs if _has(doc, "str_number")}
        niks = {self._nik_digest(doc["nik"]) for doc in docs if _has(doc, "nik")}
        rows = self._rows
        self._begin_write()
        for registration in self._session.scalars(
            _locked(
                select(Registration)
                .where(Registration.str_number.in_(numbers))
                .order_by(Registration.str_number)
            )
        ):
            rows.by_str[registration.str_number] = registration
        rows.str_known |= numbers
        self._load_workers(set(), niks)

    def _load_workers(self, sisdmk_ids: set[uuid.UUID], niks: set[str]) -> None:
        rows = self._rows
        workers = list(
            self._session.scalars(
                _locked(
                    select(HealthWorker)
                    .where(
                        HealthWorker.sisdmk_worker_id.in_(sisdmk_ids)
                        | HealthWorker.nik_bidx.in_(niks)
                    )
                    .order_by(HealthWorker.id)
                )
            )
        )
        for worker in workers:
            rows.index_worker(worker)
            rows.registrations_of[worker.id] = []
        rows.sisdmk_known |= sisdmk_ids
        rows.nik_known |= niks
        worker_ids = [worker.id for worker in workers]
        registrations = list(
            self._session.scalars(
                select(Registration).where(Registration.worker_id.in_(worker_ids))
            )
        )
        for registration in registrations:
            rows.registrations_of[registration.worker_id].append(registration)
            rows.by_str.setdefault(registration.str_number, registration)
        touched = {registration.id for registration in registrations}
        touched |= {registration.id for registration in rows.by_str.values()}
        for registration_id in touched:
            rows.findings_of.setdefault(registration_id, [])
        for finding in self._session.scalars(
            select(IdentityFinding).where(
                IdentityFinding.registration_id.in_(touched),
                IdentityFinding.resolved_at.is_(None),
            )
        ):
            rows.findings_of[finding.registration_id].append(finding)

    def _worker_by_sisdmk_id(self, sisdmk_id: uuid.UUID) -> HealthWorker | None:
        if sisdmk_id in self._rows.sisdmk_known:
            return self._rows.by_sisdmk.get(sisdmk_id)
        return self._session.scalars(
            _locked(select(HealthWorker).where(HealthWorker.sisdmk_worker_id == sisdmk_id))
        ).one_or_none()

    def _worker_by_nik_digest(self, digest: str) -> HealthWorker | None:
        if digest in self._rows.nik_known:
            return self._rows.by_nik.get(digest)
        return self._session.scalars(
            _locked(select(HealthWorker).where(HealthWorker.nik_bidx == digest))
        ).one_or_none()

    def _registration_by_str(self, str_number: str) -> Registration | None:
        if str_number in self._rows.str_known:
            return self._rows.by_str.get(str_number)
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
        nik_bidx = self._nik_digest(doc["nik"])
        if worker is not None and (held := _held(worker, version, payload_hash)) is not None:
            return held
        by_nik = self._worker_by_nik_digest(nik_bidx)
        if worker is None:
            # A person KKI told us about first keeps their id; SISDMK now owns their identity.
            worker = by_nik
        elif by_nik is not None and by_nik.id != worker.id:
            raise IdentityConflictError(
                f"SISDMK worker {sisdmk_id} now has the NIK of stored worker {by_nik.id}; "
                "quarantine it and merge the two by hand"
            )
        result = UpsertResult.UPDATED
        if worker is None:
            worker = HealthWorker(id=uuid.uuid4())
            self._session.add(worker)
            self._rows.add_worker(worker)
            result = UpsertResult.CREATED

        address = doc.get("address")
        clear: dict[str, str | None] = {
            "nik": str(doc["nik"]),
            "full_name": str(doc["full_name"]),
            "gelar_depan": doc.get("gelar_depan"),
            "gelar_belakang": doc.get("gelar_belakang"),
            "birth_date": str(doc["birth_date"]),
            "birth_place": doc.get("birth_place"),
            "address": None if address is None else _canonical_json(address),
            "phone": doc.get("phone"),
            "email": doc.get("email"),
            "ihs_number": doc.get("ihs_number"),
            "nip": doc.get("nip"),
        }
        for column, token in encrypt_fields(
            self._cipher, HealthWorker.__tablename__, worker.id, clear
        ).items():
            setattr(worker, column, token)
        worker.nik_bidx = nik_bidx
        worker.nik_bidx_kid = self._blind_index.kid
        worker.gender = str(doc["gender"])
        worker.citizenship = str(doc["citizenship"])
        worker.profession = str(doc["profession"])
        worker.tenaga_group = str(doc["tenaga_group"])
        worker.province_code = None if address is None else address.get("province_code")
        worker.regency_code = None if address is None else address.get("regency_code")
        worker.facility_code = doc.get("facility_code")
        worker.is_active = bool(doc["is_active"])
        worker.sisdmk_worker_id = sisdmk_id
        worker.identity_source = "sisdmk"
        _set_provenance(worker, "sisdmk", str(sisdmk_id), version, fetched_at, payload_hash)
        worker.updated_at = _now()
        self._remember_worker(worker)

        self._replace_employments(worker, doc.get("employments") or [])
        self._replace_educations(worker, doc.get("educations") or [])
        sisdmk_identity = _identity(clear, gender=worker.gender)
        for registration in self._registrations_of(worker):
            self._reconcile_identity(worker, registration, sisdmk_identity, self._kki(registration))
        return result

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
            and (held := _held(registration, version, payload_hash)) is not None
        ):
            return held

        kki_clear: dict[str, str | None] = {
            "full_name": str(doc["full_name"]),
            "gelar_depan": doc.get("gelar_depan"),
            "gelar_belakang": doc.get("gelar_belakang"),
            "birth_date": str(doc["birth_date"]),
        }
        worker = self._worker_by_nik_digest(self._nik_digest(doc["nik"]))
        if worker is None:
            worker = HealthWorker(id=uuid.uuid4(), identity_source="kki")
            self._session.add(worker)
            self._rows.add_worker(worker)
        if worker.identity_source == "kki":
            # Nobody in SISDMK yet: KKI's identity stands in until SISDMK's arrives.
            self._fill_worker_from_kki(worker, doc, kki_clear, fetched_at, payload_hash)

        result = UpsertResult.UPDATED
        if registration is None:
            registration = Registration(id=uuid.uuid4())
            self._session.add(registration)
            self._rows.add_registration(registration)
            result = UpsertResult.CREATED
        certification = doc["certification"]
        self._move_registration(registration, worker)
        registration.str_number = str_number
        registration.status = str(certification["status"])
        registration.status_reason = certification.get("status_reason")
        registration.status_changed_at = _datetime(certification["status_changed_at"])
        registration.valid_until = _optional_date(certification.get("valid_until"))
        registration.validated = bool(certification["validated"])
        registration.registration_type = str(doc["registration_type"])
        registration.profession = str(doc["profession"])
        registration.tenaga_group = str(doc["tenaga_group"])
        registration.kompetensi = str(doc["kompetensi"])
        registration.issued_at = _date(doc["issued_at"])
        tokens = encrypt_fields(
            self._cipher,
            Registration.__tablename__,
            registration.id,
            {f"kki_{name}": value for name, value in kki_clear.items()},
        )
        for column, token in tokens.items():
            setattr(registration, column, token)
        registration.kki_gender = str(doc["gender"])
        _set_provenance(registration, "kki", str_number, version, fetched_at, payload_hash)
        registration.updated_at = _now()
        self._rows.by_str[str_number] = registration
        self._rows.str_known.add(str_number)

        self._replace_registration_details(registration, doc)
        if worker.identity_source == "sisdmk":
            self._reconcile_identity(
                worker,
                registration,
                self._sisdmk_identity(worker),
                _identity(kki_clear, gender=registration.kki_gender),
            )
        return result

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
        plain = hashlib.sha256(_canonical_json(doc).encode("utf-8")).hexdigest()
        return self._blind_index.digest(plain, purpose=_PAYLOAD)

    # -- internals --------------------------------------------------------------------------

    def _worker_by_nik(self, nik: str) -> HealthWorker | None:
        """For reads: no lock, whatever the page has loaded."""
        return self._session.scalars(
            select(HealthWorker).where(HealthWorker.nik_bidx == self._nik_digest(nik))
        ).one_or_none()

    def _move_registration(self, registration: Registration, worker: HealthWorker) -> None:
        """Hang `registration` under `worker`, keeping the page's index of them right."""
        if registration.worker_id == worker.id:
            return
        previous = self._rows.registrations_of.get(registration.worker_id)
        if previous is not None and registration in previous:
            previous.remove(registration)
        registration.worker_id = worker.id
        mine = self._rows.registrations_of.get(worker.id)
        if mine is not None:
            mine.append(registration)

    def _fill_worker_from_kki(
        self,
        worker: HealthWorker,
        doc: Mapping[str, Any],
        kki_clear: Mapping[str, str | None],
        fetched_at: dt.datetime,
        payload_hash: str,
    ) -> None:
        clear = {"nik": str(doc["nik"]), **kki_clear}
        for column, token in encrypt_fields(
            self._cipher, HealthWorker.__tablename__, worker.id, clear
        ).items():
            setattr(worker, column, token)
        worker.nik_bidx = self._nik_digest(doc["nik"])
        worker.nik_bidx_kid = self._blind_index.kid
        worker.gender = str(doc["gender"])
        worker.citizenship = str(doc["citizenship"])
        worker.profession = str(doc["profession"])
        worker.tenaga_group = str(doc["tenaga_group"])
        if worker.is_active is None:
            worker.is_active = True
        _set_provenance(
            worker, "kki", str(doc["str_number"]), int(doc["version"]), fetched_at, payload_hash
        )
        worker.updated_at = _now()
        self._remember_worker(worker)

    def _replace_employments(
        self, worker: HealthWorker, items: Sequence[Mapping[str, Any]]
    ) -> None:
        # Deleted now (at once), so re-inserted natural keys never meet their old rows.
        if worker.id not in self._rows.new_rows:
            self._session.execute(delete(Employment).where(Employment.worker_id == worker.id))
        for item in items:
            employment = Employment(
                id=uuid.uuid4(),
                worker_id=worker.id,
                facility_code=str(item["facility_code"]),
                facility_name=item.get("facility_name"),
                unit_code=str(item["unit_code"]),
                unit=str(item["unit"]),
                jabatan=str(item["jabatan"]),
                jenis_sdmk_id=int(item["jenis_sdmk_id"]),
                employment_status=str(item["employment_status"]),
                tmt_start=_date(item["tmt_start"]),
                end_date=_optional_date(item.get("end_date")),
                end_reason=item.get("end_reason"),
                is_current=bool(item["is_current"]),
            )
            employment.nip = encrypt_fields(
                self._cipher, Employment.__tablename__, employment.id, {"nip": item.get("nip")}
            )["nip"]
            _copy_provenance(employment, worker)
            self._session.add(employment)

    def _replace_educations(self, worker: HealthWorker, items: Sequence[Mapping[str, Any]]) -> None:
        if worker.id not in self._rows.new_rows:
            self._session.execute(delete(Education).where(Education.worker_id == worker.id))
        for item in items:
            education = Education(
                id=uuid.uuid4(),
                worker_id=worker.id,
                level=str(item["level"]),
                program=str(item["program"]),
                institution=str(item["institution"]),
                graduation_year=int(item["graduation_year"]),
            )
            education.ijazah_no = str(
                encrypt_fields(
                    self._cipher,
                    Education.__tablename__,
                    education.id,
                    {"ijazah_no": str(item["ijazah_no"])},
                )["ijazah_no"]
            )
            _copy_provenance(education, worker)
            self._session.add(education)

    def _replace_registration_details(
        self, registration: Registration, doc: Mapping[str, Any]
    ) -> None:
        if registration.id not in self._rows.new_rows:
            for model in (PracticeLicense, CpdSummary, Training):
                self._session.execute(delete(model).where(model.registration_id == registration.id))
        details: list[PracticeLicense | CpdSummary | Training] = []
        skp = doc.get("skp")
        if skp is not None:
            by_domain = skp["by_domain"]
            details.append(
                CpdSummary(
                    period_start=_date(skp["period_start"]),
                    period_end=_date(skp["period_end"]),
                    required_total=int(skp["required_total"]),
                    earned_total=_decimal(skp["earned_total"]),
                    pembelajaran=_decimal(by_domain["pembelajaran"]),
                    pelayanan=_decimal(by_domain["pelayanan"]),
                    pengabdian=_decimal(by_domain["pengabdian"]),
                    adequacy=str(skp["adequacy"]),
                    as_of=_date(skp["as_of"]),
                )
            )
        details.extend(
            PracticeLicense(
                sip_number=str(sip["sip_number"]),
                sip_seq=int(sip["sip_seq"]),
                issuer_regency_code=str(sip["issuer_regency_code"]),
                facility_code=str(sip["facility_code"]),
                issued_at=_date(sip["issued_at"]),
                valid_until=_date(sip["valid_until"]),
                status=str(sip["status"]),
            )
            for sip in doc.get("sips") or []
        )
        details.extend(
            Training(
                course_id=str(training["course_id"]),
                source=str(training["source"]),
                title=str(training["title"]),
                provider=str(training["provider"]),
                jpl=int(training["jpl"]),
                skp_value=_decimal(training["skp_value"]),
                domain=str(training["domain"]),
                completed_at=_date(training["completed_at"]),
                certificate_no=str(training["certificate_no"]),
            )
            for training in doc.get("trainings") or []
        )
        for detail in details:
            detail.id = uuid.uuid4()
            detail.registration_id = registration.id
            _copy_provenance(detail, registration)
            self._session.add(detail)

    def _sisdmk_identity(self, worker: HealthWorker) -> dict[str, str | None]:
        columns = ("full_name", "gelar_depan", "gelar_belakang", "birth_date")
        clear = decrypt_fields(
            self._cipher,
            HealthWorker.__tablename__,
            worker.id,
            {column: getattr(worker, column) for column in columns},
        )
        return _identity(clear, gender=worker.gender)

    def _kki(self, registration: Registration) -> dict[str, str | None]:
        columns = ("full_name", "gelar_depan", "gelar_belakang", "birth_date")
        clear = decrypt_fields(
            self._cipher,
            Registration.__tablename__,
            registration.id,
            {f"kki_{column}": getattr(registration, f"kki_{column}") for column in columns},
        )
        return _identity(
            {column: clear[f"kki_{column}"] for column in columns}, gender=registration.kki_gender
        )

    def _reconcile_identity(
        self,
        worker: HealthWorker,
        registration: Registration,
        sisdmk: Mapping[str, str | None],
        kki: Mapping[str, str | None],
    ) -> None:
        """Open a finding per field the sources disagree on; resolve those they now agree on."""
        now = _now()
        open_findings = {finding.field: finding for finding in self._open_findings_of(registration)}
        for field in IDENTITY_FIELDS:
            kki_digest = self._identity_digest(field, kki[field])
            sisdmk_digest = self._identity_digest(field, sisdmk[field])
            current = open_findings.get(field)
            if current is not None and (
                current.worker_id != worker.id
                or (current.kki_digest, current.sisdmk_digest) != (kki_digest, sisdmk_digest)
            ):
                current.resolved_at = now
                current = None
            if kki_digest != sisdmk_digest and current is None:
                finding = IdentityFinding(
                    id=uuid.uuid4(),
                    worker_id=worker.id,
                    registration_id=registration.id,
                    field=field,
                    kki_digest=kki_digest,
                    sisdmk_digest=sisdmk_digest,
                    digest_kid=self._blind_index.kid,
                    detected_at=now,
                )
                self._session.add(finding)
                self._rows.findings_of.setdefault(registration.id, []).append(finding)

    def _identity_digest(self, field: str, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        # Normalised (case and spacing folded) before hashing: only real differences count.
        return self._blind_index.digest(value, purpose=f"identity.{field}")

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
        version = int(doc["version"])
        plain = hashlib.sha256(_canonical_json(doc).encode("utf-8")).hexdigest()
        payload_hash = self._blind_index.digest(plain, purpose=_PAYLOAD)
        _begin_write(self._session)
        facility = self._session.scalars(
            _locked(select(Facility).where(Facility.code == code))
        ).one_or_none()
        if facility is not None and (held := _held(facility, version, payload_hash)) is not None:
            return held
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
        _set_provenance(facility, "sisdmk", code, version, fetched_at, payload_hash)
        facility.updated_at = _now()
        self._session.flush()
        return result


# -- helpers ------------------------------------------------------------------------------


def _has(doc: Mapping[str, Any], key: str) -> bool:
    """Whether `doc` has a usable `key` (bad documents are left for their upsert to refuse)."""
    value = doc.get(key)
    if key == "worker_id":
        try:
            uuid.UUID(str(value))
        except ValueError:
            return False
    return value is not None


def _held(row: Any, version: int, payload_hash: str) -> UpsertResult | None:
    """What the store holds instead, when `row` (read under lock) needs no write: ``None``
    when the document is newer or a correction of the same version."""
    stored: int = row.source_version
    if version < stored:
        return UpsertResult.SUPERSEDED  # a late delivery or a page read before a newer write
    if version == stored and row.payload_hash == payload_hash:
        return UpsertResult.UNCHANGED
    return None


def _locked(query: _Query) -> _Query:
    """`query` locking its rows until commit; rows already in the session are refreshed, so
    the version compared is the one the lock protects, not a copy loaded earlier.

    ``FOR NO KEY UPDATE`` (the lock an UPDATE takes anyway): writers of a row wait for each
    other, but a foreign-key check (an identity finding inserted for a locked registration)
    does not, so a KKI page and a SISDMK writer of the same person cannot deadlock.
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


def _set_provenance(
    row: Any,
    system: str,
    source_id: str,
    version: int,
    fetched_at: dt.datetime,
    payload_hash: str,
) -> None:
    row.source_system = system
    row.source_id = source_id
    row.source_version = version
    row.fetched_at = fetched_at
    row.payload_hash = payload_hash


def _copy_provenance(row: Any, parent: Any) -> None:
    _set_provenance(
        row,
        parent.source_system,
        parent.source_id,
        parent.source_version,
        parent.fetched_at,
        parent.payload_hash,
    )


def _identity(clear: Mapping[str, str | None], *, gender: str) -> dict[str, str | None]:
    return {
        "full_name": clear["full_name"],
        "gelar_depan": clear["gelar_depan"],
        "gelar_belakang": clear["gelar_belakang"],
        "birth_date": clear["birth_date"],
        "gender": gender,
    }


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _optional_date(value: Any) -> dt.date | None:
    return None if value is None else _date(value)


def _datetime(value: Any) -> dt.datetime:
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value))
