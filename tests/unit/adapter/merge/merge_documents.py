"""Plain SISDMK and KKI documents for the merge's unit tests: fixed values, consistent NIKs."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from adapter.merge.documents import fold

# Born 12-03-1985, male: 3273 01 120385 0007. Her NIK: day + 40.
NIK = "3273011203850007"
HER_NIK = "3174015708900042"  # born 17-08-1990, female
SISDMK_ID = uuid.UUID("5a1f0d0e-6c1b-4a8e-9d3a-2f6b7c8d9e01")
STR_NUMBER = "QN00010000000042"


def fingerprint(field: str, value: str) -> str:
    """Stands in for the blind index: folds as it does, keyed by nothing (tests only)."""
    return f"{field}:{fold(value)}"


def sisdmk_document(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "worker_id": str(SISDMK_ID),
        "version": 1,
        "updated_at": "2025-11-02T04:30:00.000000Z",
        "nik": NIK,
        "ihs_number": "10001234567",
        "nip": None,
        "full_name": "Budi Santosa",
        "gelar_depan": None,
        "gelar_belakang": "S.Kep., Ners",
        "display_name": "",
        "gender": "male",
        "birth_place": "Bandung",
        "birth_date": "1985-03-12",
        "citizenship": "WNI",
        "address": {
            "line": "Jl. Kenanga No. 1",
            "province_code": "32",
            "province_name": "Jawa Barat",
            "regency_code": "3273",
            "regency_name": "Kota Bandung",
            "district_code": "327301",
            "village_code": "3273011002",
        },
        "phone": "081234567890",
        "email": "budi@example.id",
        "profession": "perawat",
        "tenaga_group": "keperawatan",
        "is_active": True,
        "facility_code": "3273021",
        "employments": [
            {
                "facility_code": "3273021",
                "facility_name": "Klinik Pratama Sehat",
                "unit_code": "RJ-01",
                "unit": "Rawat Jalan",
                "jabatan": "Perawat Pelaksana",
                "jenis_sdmk_id": 5,
                "employment_status": "KONTRAK",
                "nip": "198503122010011001",
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
                "institution": "STIKes Contoh",
                "graduation_year": 2009,
                "ijazah_no": "NERS/2009/00042",
            }
        ],
        "certifications": [],
    }
    doc.update(overrides)
    return doc


def kki_document(**overrides: Any) -> dict[str, Any]:
    """The same person as `sisdmk_document`, with one lifetime STR and one SIP."""
    doc: dict[str, Any] = {
        "str_number": STR_NUMBER,
        "version": 1,
        "updated_at": "2025-11-02T04:30:00.000000Z",
        "nik": NIK,
        "full_name": "Budi Santosa",
        "gelar_depan": None,
        "gelar_belakang": "S.Kep., Ners",
        "display_name": "",
        "birth_date": "1985-03-12",
        "gender": "male",
        "citizenship": "WNI",
        "profession": "perawat",
        "tenaga_group": "keperawatan",
        "kompetensi": "Ners",
        "registration_type": "reguler",
        "issued_at": "2024-03-11",
        "certification": {
            "str_number": STR_NUMBER,
            "status": "AKTIF",
            "status_reason": None,
            "status_changed_at": "2024-03-11T02:15:00.000000Z",
            "valid_until": None,
            "validated": True,
        },
        "skp": {
            "str_number": STR_NUMBER,
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


def with_certification(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    new = copy.deepcopy(doc)
    new["certification"].update(changes)
    return new
