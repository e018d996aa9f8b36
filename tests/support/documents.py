"""Synthetic KKI and SISDMK documents, shaped like the contracts, unique on every call."""

from __future__ import annotations

import copy
import secrets
import uuid
from typing import Any


def synthetic_nik() -> str:
    # Province 32, random regency and district, born 12-03-85, a random serial: never a real one.
    return f"32{secrets.randbelow(10_000):04d}120385{secrets.randbelow(10_000):04d}"


def unique_name() -> str:
    return f"Budi Santosa Sintetis{secrets.token_hex(4).upper()}"


def sisdmk_worker(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "worker_id": str(uuid.uuid4()),
        "version": 1,
        "updated_at": "2025-11-02T04:30:00.000000Z",
        "nik": synthetic_nik(),
        "ihs_number": f"1000{secrets.randbelow(10_000_000):07d}",
        "nip": None,
        "full_name": unique_name(),
        "gelar_depan": None,
        "gelar_belakang": "S.Kep., Ners",
        "display_name": "",
        "gender": "male",
        "birth_place": f"Bandung{secrets.token_hex(3)}",
        "birth_date": "1985-03-12",
        "citizenship": "WNI",
        "address": {
            "line": f"Jl. Kenanga Sintetis No. {secrets.token_hex(3)}",
            "province_code": "32",
            "province_name": "Jawa Barat",
            "regency_code": "3273",
            "regency_name": "Kota Bandung",
            "district_code": "327301",
            "village_code": "3273011002",
        },
        "phone": f"0812{secrets.randbelow(100_000_000):08d}",
        "email": f"budi.{secrets.token_hex(4)}@example.id",
        "profession": "perawat",
        "tenaga_group": "keperawatan",
        "is_active": True,
        "facility_code": "3273021",
        "employments": [
            {
                "facility_code": "3273021",
                "facility_name": "Klinik Pratama Sehat Sintetis",
                "unit_code": "RJ-01",
                "unit": "Rawat Jalan",
                "jabatan": "Perawat Pelaksana",
                "jenis_sdmk_id": 5,
                "employment_status": "KONTRAK",
                "nip": None,
                "tmt_start": "2019-06-01",
                "end_date": None,
                "end_reason": None,
                "is_current": True,
            }
        ],
        "educations": [
            {
                "level": "PROFESI",
                "program": "Pendidikan Profesi Ners",
                "institution": "Sekolah Tinggi Ilmu Kesehatan Contoh",
                "graduation_year": 2009,
                "ijazah_no": f"NERS/2009/{secrets.randbelow(100_000):05d}",
            }
        ],
        "certifications": [],
    }
    doc.update(overrides)
    return doc


def kki_registration(
    worker: dict[str, Any] | None = None, *, str_number: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A registration for `worker` (a SISDMK document) with the same identity, or a new person;
    a new STR number unless `str_number` is given."""
    person = worker if worker is not None else sisdmk_worker()
    if str_number is None:
        str_number = f"QN{secrets.randbelow(10**14):014d}"
    doc: dict[str, Any] = {
        "str_number": str_number,
        "version": 1,
        "updated_at": "2025-11-02T04:30:00.000000Z",
        "nik": person["nik"],
        "full_name": person["full_name"],
        "gelar_depan": person["gelar_depan"],
        "gelar_belakang": person["gelar_belakang"],
        "display_name": "",
        "birth_date": person["birth_date"],
        "gender": person["gender"],
        "citizenship": "WNI",
        "profession": "perawat",
        "tenaga_group": "keperawatan",
        "kompetensi": "Ners",
        "registration_type": "reguler",
        "issued_at": "2019-05-20",
        "certification": {
            "str_number": str_number,
            "status": "AKTIF",
            "status_reason": None,
            "status_changed_at": "2019-05-20T00:00:00.000000Z",
            "valid_until": None,
            "validated": True,
        },
        "skp": {
            "str_number": str_number,
            "period_start": "2024-06-01",
            "period_end": "2029-05-31",
            "required_total": 50,
            "earned_total": 21.5,
            "by_domain": {"pembelajaran": 12.0, "pelayanan": 9.5, "pengabdian": 0.0},
            "adequacy": "TIDAK_CUKUP",
            "as_of": "2026-01-30",
        },
        "trainings": [
            {
                "course_id": "PS-2025-0001",
                "source": "PLATARAN_SEHAT",
                "title": "Pencegahan dan Pengendalian Infeksi",
                "provider": "Kemenkes",
                "jpl": 30,
                "skp_value": 6.0,
                "domain": "pembelajaran",
                "completed_at": "2025-03-01",
                "certificate_no": "CERT-2025-0001",
            }
        ],
        "sips": [
            {
                "sip_number": "445/0042/SIPP/DINKES/2024",
                "sip_seq": 1,
                "issuer_regency_code": "3273",
                "facility_code": "3273021",
                "issued_at": "2024-06-01",
                "valid_until": "2029-05-31",
                "status": "BERLAKU",
            }
        ],
    }
    doc.update(overrides)
    return doc


def bumped(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `doc` as its source would send it after a change: version + 1."""
    new = copy.deepcopy(doc)
    new.update(changes)
    new["version"] = doc["version"] + 1
    return new
