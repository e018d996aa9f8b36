"""What storing one source document changes: which version wins, which source owns which field,
the new values of each row, the children replaced and the findings opened or resolved.

Authority: SISDMK owns a person's identity, demographics, employments and educations; KKI owns
registrations (STR status and certification), SKP, trainings and SIPs. KKI's identity stands
in for a person SISDMK has not sent yet and gives way once SISDMK's arrives; after that KKI's
spelling is kept on the registration only, and compared with SISDMK's. Versions never go back.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapter.errors import AdapterError
from adapter.merge.documents import (
    CpdValues,
    EducationValues,
    EmploymentValues,
    Identity,
    KkiRegistration,
    PracticeLicenseValues,
    SisdmkWorker,
    TrainingValues,
)
from adapter.merge.findings import (
    FindingChanges,
    Fingerprint,
    StoredFinding,
    reconcile_breaches,
    reconcile_identity,
)
from adapter.merge.rules import Rule, registration_breaches, worker_breaches

NewId = Callable[[], uuid.UUID]


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
class StoredWorker:
    """A stored worker, as far as a merge needs it (no personal values)."""

    id: uuid.UUID
    identity_source: str  # "kki" until SISDMK knows the person, then "sisdmk"
    source_version: int
    payload_hash: str


@dataclass(frozen=True)
class StoredRegistration:
    id: uuid.UUID
    worker_id: uuid.UUID
    source_version: int
    payload_hash: str


@dataclass(frozen=True)
class LinkedRegistration:
    """A registration of the worker a SISDMK document updates: KKI's spelling of the holder
    (decrypted) and its open findings."""

    id: uuid.UUID
    kki: Identity
    open_findings: Sequence[StoredFinding] = ()


@dataclass(frozen=True)
class Provenance:
    system: str
    source_id: str
    version: int
    fetched_at: dt.datetime
    payload_hash: str


@dataclass(frozen=True)
class WorkerWrite:
    """New values for a worker row: `personal` in clear (the store encrypts them, ``None``
    stays NULL; ``nik`` is also blind-indexed), `columns` stored as they are."""

    id: uuid.UUID
    created: bool
    personal: Mapping[str, str | None]
    columns: Mapping[str, Any]
    provenance: Provenance


@dataclass(frozen=True)
class RegistrationWrite:
    """New values for a registration row, hung under `worker_id` (moved there if elsewhere)."""

    id: uuid.UUID
    created: bool
    worker_id: uuid.UUID
    personal: Mapping[str, str | None]
    columns: Mapping[str, Any]
    provenance: Provenance


@dataclass(frozen=True)
class SisdmkChanges:
    """A SISDMK document's writes: the worker, its employments and educations (replacing the
    stored ones), and the findings of its registrations and of the record itself."""

    result: UpsertResult
    worker: WorkerWrite
    employments: tuple[EmploymentValues, ...]
    educations: tuple[EducationValues, ...]
    findings: FindingChanges


@dataclass(frozen=True)
class KkiChanges:
    """A KKI document's writes: the registration, its SKP, SIPs and trainings (replacing the
    stored ones), the worker only while KKI's identity stands in, and the findings."""

    result: UpsertResult
    registration: RegistrationWrite
    # None: the worker exists and SISDMK owns its identity; KKI writes nothing of it.
    worker: WorkerWrite | None
    skp: CpdValues | None
    sips: tuple[PracticeLicenseValues, ...]
    trainings: tuple[TrainingValues, ...]
    findings: FindingChanges


def held(
    stored_version: int, stored_hash: str, version: int, payload_hash: str
) -> UpsertResult | None:
    """What the store holds instead when a document needs no write, against the row read
    under lock; ``None`` when the document is newer, or a correction of the same version."""
    if version < stored_version:
        return UpsertResult.SUPERSEDED  # a late delivery or a page read before a newer write
    if version == stored_version and stored_hash == payload_hash:
        return UpsertResult.UNCHANGED
    return None


def sisdmk_target(
    sisdmk_id: uuid.UUID, by_sisdmk_id: StoredWorker | None, by_nik: StoredWorker | None
) -> StoredWorker | None:
    """The stored worker a SISDMK document updates (``None``: a new person).

    Its own SISDMK id first; else the person with its NIK, whom KKI told us about first
    (they keep their id). A NIK that belongs to another stored person is a conflict, and so is
    a NIK whose person another SISDMK record already holds (two SISDMK records of one NIK,
    which would otherwise take the row from each other at every write).
    """
    if by_sisdmk_id is None:
        if by_nik is not None and by_nik.identity_source == "sisdmk":
            raise IdentityConflictError(
                f"SISDMK worker {sisdmk_id} has the NIK of stored worker {by_nik.id}, which "
                "another SISDMK record holds; quarantine it and merge the two by hand"
            )
        return by_nik
    if by_nik is not None and by_nik.id != by_sisdmk_id.id:
        raise IdentityConflictError(
            f"SISDMK worker {sisdmk_id} now has the NIK of stored worker {by_nik.id}; "
            "quarantine it and merge the two by hand"
        )
    return by_sisdmk_id


def merge_sisdmk(
    doc: SisdmkWorker,
    *,
    target: StoredWorker | None,
    registrations: Sequence[LinkedRegistration],
    open_findings: Sequence[StoredFinding],
    fetched_at: dt.datetime,
    payload_hash: str,
    fingerprint: Fingerprint,
    new_id: NewId = uuid.uuid4,
) -> SisdmkChanges:
    """The writes of a SISDMK document that is not `held` for `target` (`sisdmk_target`).

    `registrations` are the target's, `open_findings` the target's findings on its SISDMK
    record. SISDMK's values replace the identity, whoever wrote it before.
    """
    if target is None and registrations:
        raise ValueError("a new worker has no registrations")
    worker_id = new_id() if target is None else target.id
    worker = WorkerWrite(
        id=worker_id,
        created=target is None,
        personal=doc.personal,
        columns={
            "gender": doc.gender,
            "citizenship": doc.citizenship,
            "profession": doc.profession,
            "tenaga_group": doc.tenaga_group,
            "province_code": doc.province_code,
            "regency_code": doc.regency_code,
            "facility_code": doc.facility_code,
            "is_active": doc.is_active,
            "sisdmk_worker_id": doc.sisdmk_id,
            "identity_source": "sisdmk",
        },
        provenance=Provenance("sisdmk", str(doc.sisdmk_id), doc.version, fetched_at, payload_hash),
    )
    findings = FindingChanges()
    for registration in registrations:
        findings += reconcile_identity(
            worker_id=worker_id,
            registration_id=registration.id,
            kki=registration.kki,
            sisdmk=doc.identity,
            open_findings=registration.open_findings,
            fingerprint=fingerprint,
        )
    findings += reconcile_breaches(
        worker_breaches(doc),
        open_findings,
        worker_id=worker_id,
        registration_id=None,
        source_system="sisdmk",
        source_id=str(doc.sisdmk_id),
    )
    return SisdmkChanges(
        result=UpsertResult.CREATED if target is None else UpsertResult.UPDATED,
        worker=worker,
        employments=doc.employments,
        educations=doc.educations,
        findings=findings,
    )


def merge_kki(
    doc: KkiRegistration,
    *,
    registration: StoredRegistration | None,
    worker: StoredWorker | None,
    sisdmk: Identity | None,
    open_findings: Sequence[StoredFinding],
    fetched_at: dt.datetime,
    payload_hash: str,
    fingerprint: Fingerprint,
    new_id: NewId = uuid.uuid4,
) -> KkiChanges:
    """The writes of a KKI document that is not `held` for `registration` (its STR number).

    `worker` is the stored person with the document's NIK (``None``: nobody yet); the
    registration moves to them if it hung elsewhere. `sisdmk` is that worker's identity as
    SISDMK spells it, required when SISDMK owns it. `open_findings` are the registration's.
    """
    if worker is not None and worker.identity_source == "sisdmk" and sisdmk is None:
        raise ValueError("SISDMK owns this worker's identity: pass it to compare KKI's with")
    provenance = Provenance("kki", doc.str_number, doc.version, fetched_at, payload_hash)
    worker_id = new_id() if worker is None else worker.id
    stands_in = worker is None or worker.identity_source == "kki"
    worker_write = None
    if stands_in:
        # Nobody in SISDMK yet: KKI's identity stands in until SISDMK's arrives.
        columns: dict[str, Any] = {
            "gender": doc.gender,
            "citizenship": doc.citizenship,
            "profession": doc.profession,
            "tenaga_group": doc.tenaga_group,
        }
        if worker is None:
            columns |= {"identity_source": "kki", "is_active": True}
        identity = doc.identity
        worker_write = WorkerWrite(
            id=worker_id,
            created=worker is None,
            personal={
                "nik": doc.nik,
                "full_name": identity.full_name,
                "gelar_depan": identity.gelar_depan,
                "gelar_belakang": identity.gelar_belakang,
                "birth_date": identity.birth_date,
            },
            columns=columns,
            provenance=provenance,
        )
    registration_id = new_id() if registration is None else registration.id
    identity = doc.identity
    registration_write = RegistrationWrite(
        id=registration_id,
        created=registration is None,
        worker_id=worker_id,
        personal={
            "kki_full_name": identity.full_name,
            "kki_gelar_depan": identity.gelar_depan,
            "kki_gelar_belakang": identity.gelar_belakang,
            "kki_birth_date": identity.birth_date,
        },
        columns={
            "str_number": doc.str_number,
            "status": doc.status,
            "status_reason": doc.status_reason,
            "status_changed_at": doc.status_changed_at,
            "valid_until": doc.valid_until,
            "validated": doc.validated,
            "registration_type": doc.registration_type,
            "profession": doc.profession,
            "tenaga_group": doc.tenaga_group,
            "kompetensi": doc.kompetensi,
            "issued_at": doc.issued_at,
            "kki_gender": doc.gender,
        },
        provenance=provenance,
    )
    findings = FindingChanges()
    if sisdmk is not None and not stands_in:
        findings += reconcile_identity(
            worker_id=worker_id,
            registration_id=registration_id,
            kki=doc.identity,
            sisdmk=sisdmk,
            open_findings=open_findings,
            fingerprint=fingerprint,
        )
    else:
        # No SISDMK identity to disagree with (the NIK now names a person only KKI knows): a
        # mismatch with the worker it was linked to before no longer holds. Left open, nothing
        # would ever resolve it.
        findings += FindingChanges(
            resolved=tuple(f.id for f in open_findings if f.rule == Rule.IDENTITY_MISMATCH)
        )
    findings += reconcile_breaches(
        registration_breaches(doc),
        open_findings,
        worker_id=worker_id,
        registration_id=registration_id,
        source_system="kki",
        source_id=doc.str_number,
    )
    return KkiChanges(
        result=UpsertResult.CREATED if registration is None else UpsertResult.UPDATED,
        registration=registration_write,
        worker=worker_write,
        skp=doc.skp,
        sips=doc.sips,
        trainings=doc.trainings,
        findings=findings,
    )
