"""Reading health workers from the store for the API: search, one worker in full, masking.

Personal fields are decrypted only for callers allowed to see them (`clear=True`); everyone
else gets them withheld (`•••`, no digit or initial of the value). Every answer carries provenance
(source system, version, when fetched) and how stale it is. Lists use keyset pagination on the
row id (`adapter.store.keyset`). No web framework here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import column, select, text
from sqlalchemy.orm import Session

from adapter.clock import Clock, utc_now
from adapter.errors import AdapterError
from adapter.merge.rules import Rule
from adapter.store.crypto import BlindIndex, FieldCipher, decrypt_fields
from adapter.store.keyset import MAX_PAGE_SIZE, InvalidQuery, Page, keyset_page
from adapter.store.models import (
    Base,
    CpdSummary,
    Education,
    Employment,
    HealthWorker,
    IdentityFinding,
    PracticeLicense,
    Registration,
    Training,
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
        """One worker with everything known of them. On PostgreSQL in ONE statement whatever
        they hold (each collection a correlated `json_agg` subquery, no ORM objects); on SQLite
        (in process, no round trips) in seven plain Core queries. The same document either way.
        """
        if self._session.get_bind().dialect.name == "postgresql":
            loaded = _load_worker_postgresql(self._session, worker_id)
        else:
            loaded = _load_worker_by_collection(self._session, worker_id)
        if loaded is None:
            raise WorkerNotFound(f"no health worker {worker_id}")
        row, employments, educations, registrations = loaded
        document = self._summary(row, clear=clear)
        document["employments"] = employments
        document["educations"] = educations
        document["registrations"] = [self._registration(r) for r in registrations]
        return document

    def _registration(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """`row`: a registration's columns, dates as ISO text, its SIPs, SKP and trainings
        already as documents (`_load_worker_*`)."""
        return {
            "str_number": row["str_number"],
            "status": row["status"],
            "status_reason": row["status_reason"],
            "status_changed_at": _iso(row["status_changed_at"]),
            "valid_until": row["valid_until"],
            "registration_type": row["registration_type"],
            "profession": row["profession"],
            "kompetensi": row["kompetensi"],
            "issued_at": row["issued_at"],
            "sips": row["sips"],
            "skp": row["skp"],
            "trainings": row["trainings"],
            "provenance": _provenance_of(
                row["source_system"],
                row["source_id"],
                row["source_version"],
                row["fetched_at"],
                self._clock(),
            ),
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
    return _provenance_of(row.source_system, row.source_id, row.source_version, row.fetched_at, now)


def _provenance_of(
    system: str, source_id: str, version: int, fetched: dt.datetime, now: dt.datetime
) -> dict[str, Any]:
    return {
        "source_system": system,
        "source_id": source_id,
        "source_version": version,
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


# -- loading one worker -------------------------------------------------------------------------

# The worker's own columns a document shows (`WorkforceDirectory._summary`).
_WORKER_COLUMNS: Final = (
    "id",
    *PERSON_IDENTITY_FIELDS,
    "gender",
    "profession",
    "tenaga_group",
    "province_code",
    "regency_code",
    "facility_code",
    "is_active",
    "identity_source",
    "source_system",
    "source_id",
    "source_version",
    "fetched_at",
)

# What one worker loads: their row, employments and educations as documents, and registrations
# as mappings of their columns with SIPs, SKP and trainings as documents.
_Loaded = tuple[Any, list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


def _json_object(alias: str, columns: Sequence[str]) -> str:
    return "json_build_object(" + ", ".join(f"'{c}', {alias}.{c}" for c in columns) + ")"


_EMPLOYMENT_KEYS: Final = (
    "facility_code",
    "facility_name",
    "unit",
    "jabatan",
    "employment_status",
    "tmt_start",
    "end_date",
    "end_reason",
    "is_current",
)
_EDUCATION_KEYS: Final = ("level", "program", "institution", "graduation_year")
_SIP_KEYS: Final = ("sip_number", "sip_seq", "facility_code", "issued_at", "valid_until", "status")
_SKP_KEYS: Final = (
    "period_start",
    "period_end",
    "required_total",
    "earned_total",
    "adequacy",
    "as_of",
)
_TRAINING_KEYS: Final = (
    "course_id",
    "source",
    "title",
    "jpl",
    "skp_value",
    "domain",
    "completed_at",
)
_REGISTRATION_KEYS: Final = (
    "str_number",
    "status",
    "status_reason",
    "status_changed_at",
    "valid_until",
    "registration_type",
    "profession",
    "kompetensi",
    "issued_at",
    "source_system",
    "source_id",
    "source_version",
    "fetched_at",
)
# Timestamps go into JSON as UTC wall time (`AT TIME ZONE 'UTC'`, whatever the session's time
# zone), read back as aware UTC datetimes; dates are ISO text in JSON as in `_iso`; numerics
# keep their scale ("21.50"), so JSON hands back floats, as `float(Decimal)` did.
_REGISTRATION_TIMESTAMPS: Final = ("status_changed_at", "fetched_at")
_UTC_IN_JSON: Final = {name: f"r.{name} AT TIME ZONE 'UTC'" for name in _REGISTRATION_TIMESTAMPS}

# Ties in a collection's order (two posts starting the same day) are broken by row id. Built
# from the constant names above only; the worker id is a bound parameter.
_WORKER_IN_ONE_STATEMENT: Final = text(
    "SELECT "  # noqa: S608
    + ", ".join(f"w.{c}" for c in _WORKER_COLUMNS)
    + ", (SELECT json_agg("
    + _json_object("e", _EMPLOYMENT_KEYS)
    + " ORDER BY e.tmt_start, e.id) FROM employments e WHERE e.worker_id = w.id) AS employments"
    + ", (SELECT json_agg("
    + _json_object("d", _EDUCATION_KEYS)
    + " ORDER BY d.graduation_year, d.id) FROM educations d WHERE d.worker_id = w.id)"
    + " AS educations"
    + ", (SELECT json_agg(json_build_object("
    + ", ".join(f"'{c}', {_UTC_IN_JSON.get(c, 'r.' + c)}" for c in _REGISTRATION_KEYS)
    + ", 'sips', (SELECT json_agg("
    + _json_object("s", _SIP_KEYS)
    + " ORDER BY s.sip_seq, s.id) FROM practice_licenses s WHERE s.registration_id = r.id)"
    + ", 'skp', (SELECT "
    + _json_object("k", _SKP_KEYS)
    + " FROM cpd_summaries k WHERE k.registration_id = r.id)"
    + ", 'trainings', (SELECT json_agg("
    + _json_object("t", _TRAINING_KEYS)
    + " ORDER BY t.completed_at, t.id) FROM trainings t WHERE t.registration_id = r.id)"
    + ") ORDER BY r.str_number) FROM registrations r WHERE r.worker_id = w.id) AS registrations"
    + " FROM health_workers w WHERE w.id = :worker_id"
).columns(
    *(HealthWorker.__table__.c[name] for name in _WORKER_COLUMNS),
    column("employments"),
    column("educations"),
    column("registrations"),
)


def _load_worker_postgresql(session: Session, worker_id: uuid.UUID) -> _Loaded | None:
    """The worker and every collection in one round trip (correlated `json_agg` subqueries)."""
    row = session.execute(_WORKER_IN_ONE_STATEMENT, {"worker_id": worker_id}).one_or_none()
    if row is None:
        return None
    registrations: list[dict[str, Any]] = row.registrations or []
    for registration in registrations:
        for name in _REGISTRATION_TIMESTAMPS:
            registration[name] = _utc(registration[name])
        registration["sips"] = registration["sips"] or []
        trainings = registration["trainings"] = registration["trainings"] or []
        for training in trainings:
            training["skp_value"] = float(training["skp_value"])
        if (skp := registration["skp"]) is not None:
            skp["earned_total"] = float(skp["earned_total"])
    return row, row.employments or [], row.educations or [], registrations


def _utc(wall_time: str) -> dt.datetime:
    return dt.datetime.fromisoformat(wall_time).replace(tzinfo=dt.UTC)


def _load_worker_by_collection(session: Session, worker_id: uuid.UUID) -> _Loaded | None:
    """The same as `_load_worker_postgresql` in one Core query per table (for SQLite)."""
    worker = HealthWorker.__table__.c
    row = session.execute(
        select(*(worker[name] for name in _WORKER_COLUMNS)).where(worker.id == worker_id)
    ).one_or_none()
    if row is None:
        return None
    employments = [
        _dated(r._mapping)
        for r in session.execute(
            select(*(Employment.__table__.c[k] for k in _EMPLOYMENT_KEYS))
            .where(Employment.worker_id == worker_id)
            .order_by(Employment.tmt_start, Employment.id)
        )
    ]
    educations = [
        dict(r._mapping)
        for r in session.execute(
            select(*(Education.__table__.c[k] for k in _EDUCATION_KEYS))
            .where(Education.worker_id == worker_id)
            .order_by(Education.graduation_year, Education.id)
        )
    ]
    registrations: dict[uuid.UUID, dict[str, Any]] = {}
    for r in session.execute(
        select(Registration.id, *(Registration.__table__.c[k] for k in _REGISTRATION_KEYS))
        .where(Registration.worker_id == worker_id)
        .order_by(Registration.str_number)
    ):
        values = dict(r._mapping)
        registration_id = values.pop("id")
        values["valid_until"] = _iso(values["valid_until"])
        values["issued_at"] = _iso(values["issued_at"])
        registrations[registration_id] = values | {"sips": [], "skp": None, "trainings": []}
    if registrations:
        ids = list(registrations)
        for r in session.execute(
            select(PracticeLicense.registration_id, *_columns(PracticeLicense, _SIP_KEYS))
            .where(PracticeLicense.registration_id.in_(ids))
            .order_by(PracticeLicense.sip_seq, PracticeLicense.id)
        ):
            registrations[r.registration_id]["sips"].append(_dated(r._mapping, _SIP_KEYS))
        for r in session.execute(
            select(CpdSummary.registration_id, *_columns(CpdSummary, _SKP_KEYS)).where(
                CpdSummary.registration_id.in_(ids)
            )
        ):
            skp = _dated(r._mapping, _SKP_KEYS)
            skp["earned_total"] = float(skp["earned_total"])
            registrations[r.registration_id]["skp"] = skp
        for r in session.execute(
            select(Training.registration_id, *_columns(Training, _TRAINING_KEYS))
            .where(Training.registration_id.in_(ids))
            .order_by(Training.completed_at, Training.id)
        ):
            training = _dated(r._mapping, _TRAINING_KEYS)
            training["skp_value"] = float(training["skp_value"])
            registrations[r.registration_id]["trainings"].append(training)
    return row, employments, educations, list(registrations.values())


def _columns(model: type[Base], keys: Sequence[str]) -> list[Any]:
    return [model.__table__.c[k] for k in keys]


def _dated(values: Mapping[Any, Any], keys: Sequence[str] | None = None) -> dict[str, Any]:
    """`values` (in `keys`' order) with dates as ISO text, as they come out of JSON."""
    return {
        k: _iso(v) if isinstance(v, dt.date) else v
        for k, v in ((k, values[k]) for k in (keys if keys is not None else values.keys()))
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
