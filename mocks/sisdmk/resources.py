"""SISDMK's view of the ground truth: `Person` → `HealthWorker`, `Facility` → `Facility` documents
of contracts/openapi/sisdmk.yaml.

Pure functions returning JSON-ready dicts (dates as ISO strings, timestamps in the store's format).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from mocks.core.people import (
    Education,
    Employment,
    Facility,
    Person,
    PracticeLicense,
    Region,
    Registration,
)
from mocks.core.store import format_timestamp


def current_employment(person: Person) -> Employment | None:
    """The ongoing employment: the newest one, unless it has ended."""
    if person.employments and person.employments[0].end_date is None:
        return person.employments[0]
    return None


def region_document(region: Region) -> dict[str, str]:
    """`Region`: Kemendagri codes and names."""
    return {
        "province_code": region.province_code,
        "province_name": region.province_name,
        "regency_code": region.regency_code,
        "regency_name": region.regency_name,
        "district_code": region.district_code,
        "village_code": region.village_code,
    }


def address_document(person: Person) -> dict[str, str]:
    """`Address`: the domicile line with its region codes."""
    return {"line": person.address, **region_document(person.region)}


def employment_document(
    employment: Employment,
    facilities_by_code: Mapping[str, Facility],
    *,
    is_current: bool,
) -> dict[str, Any]:
    """`Employment`: one job, with the facility's name when the register has it."""
    facility = facilities_by_code.get(employment.facility_code)
    return {
        "facility_code": employment.facility_code,
        "facility_name": facility.name if facility is not None else None,
        "unit_code": employment.unit_code,
        "unit": employment.unit,
        "jabatan": employment.jabatan,
        "jenis_sdmk_id": employment.jenis_sdmk_id,
        "employment_status": employment.employment_status,
        "nip": employment.nip,
        "tmt_start": employment.tmt_start.isoformat(),
        "end_date": _date_or_none(employment.end_date),
        "end_reason": employment.end_reason,
        "is_current": is_current,
    }


def education_document(education: Education) -> dict[str, Any]:
    """`Education`: one completed education."""
    return {
        "level": education.level,
        "program": education.program,
        "institution": education.institution,
        "graduation_year": education.graduation_year,
        "ijazah_no": education.ijazah_no,
    }


def str_certification_document(registration: Registration) -> dict[str, Any]:
    """`StrCertification`: the STR as a facility entered it (number and dates, no status)."""
    return {
        "kind": "STR",
        "str_number": registration.str_number,
        "issued_at": registration.issued_at.isoformat(),
        "valid_until": _date_or_none(registration.valid_until),
    }


def sip_certification_document(license_: PracticeLicense, *, str_number: str) -> dict[str, Any]:
    """`SipCertification`: one SIP as SISDMK records it, with the STR it was issued on."""
    return {
        "kind": "SIP",
        "sip_number": license_.sip_number,
        "str_number": str_number,
        "sip_seq": license_.sip_seq,
        "issuer_regency_code": license_.issuer_regency_code,
        "facility_code": license_.facility_code,
        "issued_at": license_.issued_at.isoformat(),
        "valid_until": license_.valid_until.isoformat(),
        "status": license_.status,
    }


def health_worker_document(
    person: Person,
    facilities_by_code: Mapping[str, Facility],
    *,
    version: int,
    updated_at: dt.datetime,
) -> dict[str, Any]:
    """`HealthWorker`: the person as SISDMK registers them, with their lists inline.

    Identity comes from `person.sisdmk_identity` (authoritative). `facility_code` and `nip` are
    those of the current employment, null without one. Employments stay newest first, educations
    are ordered by graduation, certifications are the STR followed by the SIPs by `sip_seq`.
    """
    identity = person.sisdmk_identity
    current = current_employment(person)
    employments = sorted(person.employments, key=lambda e: e.tmt_start, reverse=True)
    educations = sorted(person.educations, key=lambda e: (e.graduation_year, e.level))
    licenses = sorted(person.licenses, key=lambda lic: (lic.sip_seq, lic.issued_at))
    return {
        "worker_id": person.worker_id,
        "version": version,
        "updated_at": format_timestamp(updated_at),
        "nik": person.nik,
        "ihs_number": person.ihs_number,
        "nip": current.nip if current is not None else None,
        "full_name": identity.full_name,
        "gelar_depan": identity.gelar_depan,
        "gelar_belakang": identity.gelar_belakang,
        "display_name": identity.display_name,
        "gender": person.gender,
        "birth_place": person.birth_place,
        "birth_date": identity.birth_date.isoformat(),
        "citizenship": person.citizenship,
        "address": address_document(person),
        "phone": person.phone,
        "email": person.email,
        "profession": person.registration.profession,
        "tenaga_group": person.registration.tenaga_group,
        "is_active": person.is_active,
        "facility_code": current.facility_code if current is not None else None,
        "employments": [
            employment_document(e, facilities_by_code, is_current=e is current) for e in employments
        ],
        "educations": [education_document(e) for e in educations],
        "certifications": [
            str_certification_document(person.registration),
            *(
                sip_certification_document(lic, str_number=person.registration.str_number)
                for lic in licenses
            ),
        ],
    }


def facility_document(
    facility: Facility, *, version: int, updated_at: dt.datetime
) -> dict[str, Any]:
    """`Facility`: one entry of the facility register."""
    return {
        "code": facility.code,
        "version": version,
        "updated_at": format_timestamp(updated_at),
        "name": facility.name,
        "org_type": facility.org_type,
        "rs_class": facility.rs_class,
        "bpjs_code": facility.bpjs_code,
        "satusehat_org_id": facility.satusehat_org_id,
        "ownership": facility.ownership,
        "region": region_document(facility.region),
    }


def health_worker_key(doc: Mapping[str, Any]) -> str:
    """Natural key of a `HealthWorker` document: its SISDMK worker id."""
    return str(doc["worker_id"])


def facility_key(doc: Mapping[str, Any]) -> str:
    """Natural key of a `Facility` document: its 7-digit code."""
    return str(doc["code"])


def event_subject(doc: Mapping[str, Any]) -> dict[str, str]:
    """`WebhookEventSubject` of a worker or facility document, without `nik_hash`.

    A worker's subject carries the current facility when there is one; `nik_hash` is added per
    subscription because it is keyed with the subscription's secret.
    """
    if "worker_id" not in doc:
        return {"facility_code": facility_key(doc)}
    subject = {"worker_id": health_worker_key(doc)}
    if doc.get("facility_code"):
        subject["facility_code"] = str(doc["facility_code"])
    return subject


def event_data(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`WebhookEventData` of a worker or facility document: its key and version only."""
    if "worker_id" not in doc:
        return {"facility_code": facility_key(doc), "version": int(doc["version"])}
    return {"worker_id": health_worker_key(doc), "version": int(doc["version"])}


def _date_or_none(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()
