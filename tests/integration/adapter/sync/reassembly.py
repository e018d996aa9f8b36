"""Source documents rebuilt from the store (decrypting), to compare with the mocks' field by field.

Only what the adapter keeps is rebuilt; `STORED_SISDMK` and `STORED_KKI` project a source
document onto the same fields, so `project(doc) == rebuild(row)` is the whole comparison.
Not kept, on purpose: `display_name` (derived from the name parts), `updated_at` (used only
for the checkpoint), SISDMK's `certifications` (KKI is authoritative for them) and the copies
of `str_number` inside `certification` and `skp`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping, Select, select
from sqlalchemy.orm import Session

from adapter.store.crypto import FieldCipher, decrypt_fields
from adapter.store.models import (
    CpdSummary,
    Education,
    Employment,
    HealthWorker,
    PracticeLicense,
    Registration,
    Training,
)

SISDMK_PERSONAL = (
    "nik",
    "ihs_number",
    "nip",
    "full_name",
    "gelar_depan",
    "gelar_belakang",
    "birth_place",
    "birth_date",
    "phone",
    "email",
)
SISDMK_PLAIN = (
    "gender",
    "citizenship",
    "profession",
    "tenaga_group",
    "is_active",
    "facility_code",
    "version",
)
EMPLOYMENT_FIELDS = (
    "facility_code",
    "facility_name",
    "unit_code",
    "unit",
    "jabatan",
    "jenis_sdmk_id",
    "employment_status",
    "nip",
    "tmt_start",
    "end_date",
    "end_reason",
    "is_current",
)
EDUCATION_FIELDS = ("level", "program", "institution", "graduation_year", "ijazah_no")
SIP_FIELDS = (
    "sip_number",
    "sip_seq",
    "issuer_regency_code",
    "facility_code",
    "issued_at",
    "valid_until",
    "status",
)
TRAINING_FIELDS = (
    "course_id",
    "source",
    "title",
    "provider",
    "jpl",
    "skp_value",
    "domain",
    "completed_at",
    "certificate_no",
)


def _plain(value: Any) -> Any:
    """One spelling for both sides: dates as ISO text, numbers as 2-decimal text."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float | Decimal):
        return f"{Decimal(str(value)):.2f}"
    return value


def _instant(text: str) -> str:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC).isoformat()


# -- SISDMK ----------------------------------------------------------------------------------


def project_sisdmk(doc: dict[str, Any]) -> dict[str, Any]:
    out = {name: _plain(doc.get(name)) for name in (*SISDMK_PERSONAL, *SISDMK_PLAIN)}
    out["worker_id"] = doc["worker_id"]
    out["address"] = doc.get("address")
    out["employments"] = sorted(
        (
            {name: _plain(item.get(name)) for name in EMPLOYMENT_FIELDS}
            for item in doc["employments"]
        ),
        key=json.dumps,
    )
    out["educations"] = sorted(
        ({name: _plain(item.get(name)) for name in EDUCATION_FIELDS} for item in doc["educations"]),
        key=json.dumps,
    )
    return out


def rebuild_sisdmk(session: Session, cipher: FieldCipher) -> dict[str, dict[str, Any]]:
    """Every SISDMK-owned worker as a projected document, by SISDMK worker id."""
    employments = _children(session, Employment, Employment.worker_id, cipher, ("nip",))
    educations = _children(session, Education, Education.worker_id, cipher, ("ijazah_no",))
    rebuilt: dict[str, dict[str, Any]] = {}
    workers = HealthWorker.__table__
    for row in _rows(session, select(workers).where(workers.c.sisdmk_worker_id.is_not(None))):
        clear = decrypt_fields(
            cipher,
            HealthWorker.__tablename__,
            row["id"],
            {name: row[name] for name in (*SISDMK_PERSONAL, "address")},
        )
        doc: dict[str, Any] = {name: clear[name] for name in SISDMK_PERSONAL}
        doc.update({name: _plain(row[name]) for name in SISDMK_PLAIN if name != "version"})
        doc["version"] = row["source_version"]
        doc["worker_id"] = str(row["sisdmk_worker_id"])
        doc["address"] = None if clear["address"] is None else json.loads(clear["address"])
        doc["employments"] = sorted(
            ({name: item[name] for name in EMPLOYMENT_FIELDS} for item in employments[row["id"]]),
            key=json.dumps,
        )
        doc["educations"] = sorted(
            ({name: item[name] for name in EDUCATION_FIELDS} for item in educations[row["id"]]),
            key=json.dumps,
        )
        rebuilt[doc["worker_id"]] = doc
    return rebuilt


# -- KKI -------------------------------------------------------------------------------------


def project_kki(doc: dict[str, Any]) -> dict[str, Any]:
    certification = doc["certification"]
    skp = doc.get("skp")
    return {
        "str_number": doc["str_number"],
        "version": doc["version"],
        "nik": doc["nik"],
        "full_name": doc["full_name"],
        "gelar_depan": doc.get("gelar_depan"),
        "gelar_belakang": doc.get("gelar_belakang"),
        "birth_date": doc["birth_date"],
        "gender": doc["gender"],
        "profession": doc["profession"],
        "tenaga_group": doc["tenaga_group"],
        "kompetensi": doc["kompetensi"],
        "registration_type": doc["registration_type"],
        "issued_at": doc["issued_at"],
        "certification": {
            "status": certification["status"],
            "status_reason": certification.get("status_reason"),
            "status_changed_at": _instant(certification["status_changed_at"]),
            "valid_until": certification.get("valid_until"),
            "validated": certification["validated"],
        },
        "skp": None
        if skp is None
        else {
            "period_start": skp["period_start"],
            "period_end": skp["period_end"],
            "required_total": skp["required_total"],
            "earned_total": _plain(skp["earned_total"]),
            "by_domain": {name: _plain(value) for name, value in skp["by_domain"].items()},
            "adequacy": skp["adequacy"],
            "as_of": skp["as_of"],
        },
        "sips": sorted(
            ({name: _plain(sip.get(name)) for name in SIP_FIELDS} for sip in doc.get("sips") or []),
            key=json.dumps,
        ),
        "trainings": sorted(
            (
                {name: _plain(training.get(name)) for name in TRAINING_FIELDS}
                for training in doc.get("trainings") or []
            ),
            key=json.dumps,
        ),
    }


def rebuild_kki(session: Session, cipher: FieldCipher) -> dict[str, dict[str, Any]]:
    """Every registration as a projected KKI document, by STR number."""
    sips = _children(session, PracticeLicense, PracticeLicense.registration_id, cipher, ())
    trainings = _children(session, Training, Training.registration_id, cipher, ())
    skps = _children(session, CpdSummary, CpdSummary.registration_id, cipher, ())
    workers = HealthWorker.__table__
    niks = {
        row["id"]: decrypt_fields(
            cipher, HealthWorker.__tablename__, row["id"], {"nik": row["nik"]}
        )["nik"]
        for row in _rows(session, select(workers.c.id, workers.c.nik))
    }
    rebuilt: dict[str, dict[str, Any]] = {}
    for row in _rows(session, select(Registration.__table__)):
        names = ("full_name", "gelar_depan", "gelar_belakang", "birth_date")
        clear = decrypt_fields(
            cipher,
            Registration.__tablename__,
            row["id"],
            {f"kki_{name}": row[f"kki_{name}"] for name in names},
        )
        skp = skps[row["id"]][0] if skps[row["id"]] else None
        rebuilt[row["str_number"]] = {
            "str_number": row["str_number"],
            "version": row["source_version"],
            "nik": niks[row["worker_id"]],
            **{name: clear[f"kki_{name}"] for name in names},
            "gender": row["kki_gender"],
            "profession": row["profession"],
            "tenaga_group": row["tenaga_group"],
            "kompetensi": row["kompetensi"],
            "registration_type": row["registration_type"],
            "issued_at": _plain(row["issued_at"]),
            "certification": {
                "status": row["status"],
                "status_reason": row["status_reason"],
                "status_changed_at": _plain(row["status_changed_at"]),
                "valid_until": _plain(row["valid_until"]),
                "validated": row["validated"],
            },
            "skp": None
            if skp is None
            else {
                "period_start": skp["period_start"],
                "period_end": skp["period_end"],
                "required_total": skp["required_total"],
                "earned_total": skp["earned_total"],
                "by_domain": {
                    name: skp[name] for name in ("pembelajaran", "pelayanan", "pengabdian")
                },
                "adequacy": skp["adequacy"],
                "as_of": skp["as_of"],
            },
            "sips": sorted(
                ({name: item[name] for name in SIP_FIELDS} for item in sips[row["id"]]),
                key=json.dumps,
            ),
            "trainings": sorted(
                ({name: item[name] for name in TRAINING_FIELDS} for item in trainings[row["id"]]),
                key=json.dumps,
            ),
        }
    return rebuilt


def _children(
    session: Session,
    model: Any,
    parent: Any,
    cipher: FieldCipher,
    encrypted: Iterable[str],
) -> defaultdict[uuid.UUID, list[dict[str, Any]]]:
    encrypted = tuple(encrypted)
    columns = [column.key for column in model.__table__.columns]
    grouped: defaultdict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in _rows(session, select(model.__table__)):
        item = {name: _plain(row[name]) for name in columns}
        if encrypted:
            item.update(
                decrypt_fields(
                    cipher, model.__tablename__, row["id"], {name: row[name] for name in encrypted}
                )
            )
        grouped[row[parent.key]].append(item)
    return grouped


def _rows(session: Session, query: Select[Any]) -> Iterator[RowMapping]:
    """The rows of a Core query by column name: the columns' types convert the values as the
    ORM would, without building 100,000 mapped objects the comparison never needs."""
    return iter(session.execute(query).mappings())
