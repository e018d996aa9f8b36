"""Plain SISDMK and KKI documents for the merge's unit tests: fixed values, consistent NIKs."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from adapter.merge.documents import fold
from tests.support.documents import kki_registration, sisdmk_worker

# Born 12-03-1985, male: 3273 01 120385 0007. Her NIK: day + 40.
NIK = "3273011203850007"
HER_NIK = "3174015708900042"  # born 17-08-1990, female
SISDMK_ID = uuid.UUID("5a1f0d0e-6c1b-4a8e-9d3a-2f6b7c8d9e01")
STR_NUMBER = "QN00010000000042"


def fingerprint(field: str, value: str) -> str:
    """Stands in for the blind index: folds as it does, keyed by nothing (tests only)."""
    return f"{field}:{fold(value)}"


def sisdmk_document(**overrides: Any) -> dict[str, Any]:
    """The shared synthetic worker with every random value fixed."""
    doc = sisdmk_worker(
        worker_id=str(SISDMK_ID),
        nik=NIK,
        ihs_number="10001234567",
        full_name="Budi Santosa",
        birth_place="Bandung",
        phone="081234567890",
        email="budi@example.id",
    )
    doc["address"]["line"] = "Jl. Kenanga No. 1"
    doc["employments"][0].update(facility_name="Klinik Pratama Sehat", nip="198503122010011001")
    doc["educations"][0].update(institution="STIKes Contoh", ijazah_no="NERS/2009/00042")
    doc.update(overrides)
    return doc


def kki_document(**overrides: Any) -> dict[str, Any]:
    """The same person as `sisdmk_document`, with one lifetime STR and one SIP."""
    doc = kki_registration(sisdmk_document(), str_number=STR_NUMBER, issued_at="2024-03-11")
    doc["certification"]["status_changed_at"] = "2024-03-11T02:15:00.000000Z"
    doc.update(overrides)
    return doc


def with_certification(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    new = copy.deepcopy(doc)
    new["certification"].update(changes)
    return new
