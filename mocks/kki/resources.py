"""KKI's view of the ground truth: `Person` → `Registration` documents (contracts/openapi/kki.yaml).

Pure functions returning JSON-ready dicts (dates as ISO strings, timestamps in the store's format).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from mocks.core.people import (
    CpdSummary,
    Person,
    PracticeLicense,
    Registration,
    Training,
)
from mocks.core.store import format_timestamp


def certification_document(registration: Registration) -> dict[str, Any]:
    """`CertificationStatus`: the status of one STR (`valid_until` null for a lifetime STR)."""
    return {
        "str_number": registration.str_number,
        "status": registration.status,
        "status_reason": registration.status_reason,
        "status_changed_at": format_timestamp(registration.status_changed_at),
        "valid_until": _date_or_none(registration.valid_until),
        "validated": registration.validated,
    }


def skp_summary_document(cpd: CpdSummary, *, str_number: str) -> dict[str, Any]:
    """`SkpSummary`: SKP credits of the current period against the profession's target."""
    return {
        "str_number": str_number,
        "period_start": cpd.period_start.isoformat(),
        "period_end": cpd.period_end.isoformat(),
        "required_total": cpd.required_total,
        "earned_total": float(cpd.earned_total),
        "by_domain": {
            domain: float(cpd.by_domain.get(domain, 0.0))
            for domain in ("pembelajaran", "pelayanan", "pengabdian")
        },
        "adequacy": cpd.adequacy,
        "as_of": cpd.as_of.isoformat(),
    }


def training_document(training: Training) -> dict[str, Any]:
    """`Training`: one completed course."""
    return {
        "course_id": training.course_id,
        "source": training.source,
        "title": training.title,
        "provider": training.provider,
        "jpl": training.jpl,
        "skp_value": float(training.skp_value),
        "domain": training.domain,
        "completed_at": training.completed_at.isoformat(),
        "certificate_no": training.certificate_no,
    }


def practice_license_document(license_: PracticeLicense) -> dict[str, Any]:
    """`PracticeLicense`: one SIP."""
    return {
        "sip_number": license_.sip_number,
        "sip_seq": license_.sip_seq,
        "issuer_regency_code": license_.issuer_regency_code,
        "facility_code": license_.facility_code,
        "issued_at": license_.issued_at.isoformat(),
        "valid_until": license_.valid_until.isoformat(),
        "status": license_.status,
    }


def registration_document(
    person: Person, *, version: int, updated_at: dt.datetime
) -> dict[str, Any]:
    """`Registration`: the person's STR as KKI knows it, with everything about it inline.

    Identity comes from `person.kki_identity`, which differs from SISDMK's copy for people
    generated with a mismatch. Trainings are newest first and SIPs by `sip_seq`, the orders the
    list operations document.
    """
    identity = person.kki_identity
    registration = person.registration
    trainings = sorted(person.trainings, key=lambda t: t.course_id)
    trainings.sort(key=lambda t: t.completed_at, reverse=True)
    licenses = sorted(person.licenses, key=lambda lic: (lic.sip_seq, lic.issued_at))
    return {
        "str_number": registration.str_number,
        "version": version,
        "updated_at": format_timestamp(updated_at),
        "nik": person.nik,
        "full_name": identity.full_name,
        "gelar_depan": identity.gelar_depan,
        "gelar_belakang": identity.gelar_belakang,
        "display_name": identity.display_name,
        "birth_date": identity.birth_date.isoformat(),
        "gender": person.gender,
        "citizenship": person.citizenship,
        "profession": registration.profession,
        "tenaga_group": registration.tenaga_group,
        "kompetensi": registration.kompetensi,
        "registration_type": registration.registration_type,
        "issued_at": registration.issued_at.isoformat(),
        "certification": certification_document(registration),
        "skp": skp_summary_document(person.cpd, str_number=registration.str_number),
        "trainings": [training_document(t) for t in trainings],
        "sips": [practice_license_document(lic) for lic in licenses],
    }


def registration_key(doc: Mapping[str, Any]) -> str:
    """Natural key of a `Registration` document: its STR number."""
    return str(doc["str_number"])


def event_subject(doc: Mapping[str, Any]) -> dict[str, str]:
    """`WebhookEventSubject` without `nik_hash` (added per subscription, keyed by its secret)."""
    return {"str_number": registration_key(doc)}


def event_data(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`WebhookEventData` for the registration's current state (ids and status values only)."""
    return {
        "str_number": registration_key(doc),
        "version": int(doc["version"]),
        "status": str(doc["certification"]["status"]),
    }


def _date_or_none(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()
