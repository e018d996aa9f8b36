"""Reading health workers from the store for the API: search, one worker in full, masking.

Personal fields are decrypted only for callers allowed to see them (`clear=True`); everyone
else gets them withheld (`•••`, no digit or initial of the value). Every answer carries provenance
(source system, version, when fetched) and how stale it is. Lists use keyset pagination on the
row id (`adapter.store.keyset`). No web framework here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from adapter.clock import Clock, utc_now
from adapter.errors import AdapterError
from adapter.merge.rules import Rule
from adapter.store.crypto import BlindIndex, FieldCipher, decrypt_fields
from adapter.store.keyset import MAX_PAGE_SIZE, InvalidQuery, Page, keyset_page
from adapter.store.models import (
    HealthWorker,
    IdentityFinding,
    Registration,
)
from adapter.store.personal_fields import PERSON_IDENTITY_FIELDS

MASK: Final = "•"
# What a caller without `healthworkers:read:pii` gets instead of a personal value: the same for
# every worker, so it tells nothing of the value (docs/security.md, "Masking").
WITHHELD: Final = MASK * 3


class WorkerNotFound(AdapterError):
    default_reason = "not_found"


@dataclass(frozen=True)
class WorkerFilter:
    str_number: str | None = None
    facility_code: str | None = None
    profession: str | None = None
    regency_code: str | None = None
    active: bool | None = None


class WorkforceDirectory:
    """Queries over the store for one session, decrypting with the adapter's keys."""

    def __init__(
        self,
        session: Session,
        cipher: FieldCipher,
        blind_index: BlindIndex,
        clock: Clock = utc_now,
    ) -> None:
        self._clock = clock
        self._session = session
        self._cipher = cipher
        self._blind_index = blind_index

    # -- lists ------------------------------------------------------------------------------

    def search(self, where: WorkerFilter, *, cursor: str | None, limit: int, clear: bool) -> Page:
        query = select(HealthWorker)
        if where.str_number is not None:
            query = query.join(Registration, Registration.worker_id == HealthWorker.id).where(
                Registration.str_number == where.str_number
            )
        if where.facility_code is not None:
            query = query.where(HealthWorker.facility_code == where.facility_code)
        if where.profession is not None:
            query = query.where(HealthWorker.profession == where.profession)
        if where.regency_code is not None:
            query = query.where(HealthWorker.regency_code == where.regency_code)
        if where.active is not None:
            query = query.where(HealthWorker.is_active.is_(where.active))
        return keyset_page(
            self._session,
            query,
            (HealthWorker.id,),
            cursor=cursor,
            limit=limit,
            document=lambda row: self._summary(row, clear=clear),
        )

    def find_by_nik(self, nik: str, *, clear: bool) -> dict[str, Any] | None:
        """The worker with this NIK, through the blind index (the NIK itself is never queried)."""
        # During a blind-index key change a row may still be under the previous key.
        digests = self._blind_index.digests(nik, purpose="nik")
        rows = self._session.scalars(
            select(HealthWorker).where(HealthWorker.nik_bidx.in_(digests))
        ).all()
        row = min(rows, key=lambda found: digests.index(found.nik_bidx), default=None)
        return None if row is None else self._summary(row, clear=clear)

    def findings(
        self, *, cursor: str | None, limit: int, open_only: bool, rule: str | None = None
    ) -> Page:
        """Identity mismatches and broken domain rules, by id; `rule` keeps one kind."""
        query = select(IdentityFinding)
        if open_only:
            query = query.where(IdentityFinding.resolved_at.is_(None))
        if rule is not None:
            query = query.where(IdentityFinding.rule == rule)
        return keyset_page(
            self._session,
            query,
            (IdentityFinding.id,),
            cursor=cursor,
            limit=limit,
            document=_finding_document,
        )

    # -- one worker -------------------------------------------------------------------------

    def worker(self, worker_id: uuid.UUID, *, clear: bool) -> dict[str, Any]:
        """One worker with everything known of them, in five round trips whatever they hold:
        the worker joined to their registrations and SKP, then each other collection of all
        those rows at once (``selectinload``), instead of three queries per registration."""
        row = (
            self._session.scalars(
                select(HealthWorker)
                .where(HealthWorker.id == worker_id)
                .options(
                    joinedload(HealthWorker.registrations).options(
                        joinedload(Registration.skp),
                        selectinload(Registration.sips),
                        selectinload(Registration.trainings),
                    ),
                    selectinload(HealthWorker.employments),
                    selectinload(HealthWorker.educations),
                )
            )
            .unique()
            .one_or_none()
        )
        if row is None:
            raise WorkerNotFound(f"no health worker {worker_id}")
        document = self._summary(row, clear=clear)
        document["employments"] = [
            {
                "facility_code": e.facility_code,
                "facility_name": e.facility_name,
                "unit": e.unit,
                "jabatan": e.jabatan,
                "employment_status": e.employment_status,
                "tmt_start": _iso(e.tmt_start),
                "end_date": _iso(e.end_date),
                "end_reason": e.end_reason,
                "is_current": e.is_current,
            }
            for e in row.employments
        ]
        document["educations"] = [
            {
                "level": e.level,
                "program": e.program,
                "institution": e.institution,
                "graduation_year": e.graduation_year,
            }
            for e in row.educations
        ]
        document["registrations"] = [self._registration(r) for r in row.registrations]
        return document

    def _registration(self, row: Registration) -> dict[str, Any]:
        sips, skp, trainings = row.sips, row.skp, row.trainings
        return {
            "str_number": row.str_number,
            "status": row.status,
            "status_reason": row.status_reason,
            "status_changed_at": _iso(row.status_changed_at),
            "valid_until": _iso(row.valid_until),
            "registration_type": row.registration_type,
            "profession": row.profession,
            "kompetensi": row.kompetensi,
            "issued_at": _iso(row.issued_at),
            "sips": [
                {
                    "sip_number": s.sip_number,
                    "sip_seq": s.sip_seq,
                    "facility_code": s.facility_code,
                    "issued_at": _iso(s.issued_at),
                    "valid_until": _iso(s.valid_until),
                    "status": s.status,
                }
                for s in sips
            ],
            "skp": None
            if skp is None
            else {
                "period_start": _iso(skp.period_start),
                "period_end": _iso(skp.period_end),
                "required_total": skp.required_total,
                "earned_total": float(skp.earned_total),
                "adequacy": skp.adequacy,
                "as_of": _iso(skp.as_of),
            },
            "trainings": [
                {
                    "course_id": t.course_id,
                    "source": t.source,
                    "title": t.title,
                    "jpl": t.jpl,
                    "skp_value": float(t.skp_value),
                    "domain": t.domain,
                    "completed_at": _iso(t.completed_at),
                }
                for t in trainings
            ],
            "provenance": _provenance(row, self._clock()),
        }

    def _summary(self, row: HealthWorker, *, clear: bool) -> dict[str, Any]:
        personal = decrypt_fields(
            self._cipher,
            HealthWorker.__tablename__,
            row.id,
            {name: getattr(row, name) for name in PERSON_IDENTITY_FIELDS},
        )
        if not clear:
            # No digit of the NIK (it encodes district, birth date and gender), no initial of
            # the name, no title: docs/security.md, "Masking", says why field by field.
            personal = {
                "nik": withhold(personal["nik"]),
                "full_name": withhold(personal["full_name"]),
                "gelar_depan": withhold(personal["gelar_depan"]),
                "gelar_belakang": withhold(personal["gelar_belakang"]),
                "birth_date": None,
            }
        return {
            "id": str(row.id),
            **personal,
            "masked": not clear,
            "gender": row.gender,
            "profession": row.profession,
            "tenaga_group": row.tenaga_group,
            "province_code": row.province_code,
            "regency_code": row.regency_code,
            "facility_code": row.facility_code,
            "is_active": row.is_active,
            "identity_source": row.identity_source,
            "provenance": _provenance(row, self._clock()),
        }


def withhold(value: str | None) -> str | None:
    """`WITHHELD` for a value the caller may not see, None when there is none."""
    return None if value is None else WITHHELD


def mask_nik(nik: str | None) -> str | None:
    """First and last four digits, for operator reports (the conformance command).

    Not for API answers: with gender and the NIK search they give the whole NIK back.
    """
    if nik is None:
        return None
    return nik[:4] + MASK * (len(nik) - 8) + nik[-4:] if len(nik) > 8 else MASK * len(nik)


def mask_name(name: str | None) -> str | None:
    if name is None:
        return None
    return " ".join(part[:1] + MASK * 3 for part in name.split())


def _provenance(row: Any, now: dt.datetime) -> dict[str, Any]:
    fetched: dt.datetime = row.fetched_at
    return {
        "source_system": row.source_system,
        "source_id": row.source_id,
        "source_version": row.source_version,
        "fetched_at": _iso(fetched),
        "age_s": round((now - fetched).total_seconds(), 3),
    }


def _finding_document(row: IdentityFinding) -> dict[str, Any]:
    # A resolved mismatch's digests are withdrawn (kid and digests NULL) by a re-index after a
    # blind-index key change: whether a side had a value is then unknown.
    mismatch = row.rule == Rule.IDENTITY_MISMATCH and row.digest_kid is not None
    return {
        "id": str(row.id),
        "rule": row.rule,
        "worker_id": str(row.worker_id),
        "registration_id": None if row.registration_id is None else str(row.registration_id),
        # The record that breaks a domain rule (an STR number, a SISDMK worker id).
        "source_system": row.source_system,
        "source_id": row.source_id,
        "field": row.field,
        # A mismatch: which side has a value; the values themselves are only keyed digests.
        "kki_has_value": row.kki_digest is not None if mismatch else None,
        "sisdmk_has_value": row.sisdmk_digest is not None if mismatch else None,
        "detected_at": _iso(row.detected_at),
        "resolved_at": _iso(row.resolved_at),
    }


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


__all__: Sequence[str] = (
    "MAX_PAGE_SIZE",
    "WITHHELD",
    "InvalidQuery",
    "Page",
    "WorkerFilter",
    "WorkerNotFound",
    "WorkforceDirectory",
    "mask_name",
    "mask_nik",
    "withhold",
)
