"""The two source schemas read into plain values: a SISDMK ``HealthWorker``, a KKI ``Registration``.

Personal values stay as received (clear); the store encrypts them. A missing required field
raises `KeyError`, a malformed date `ValueError`, as the store's callers expect of a bad record.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from adapter.errors import AdapterError

# The identity fields KKI and SISDMK are compared on (a finding per field that differs).
IDENTITY_FIELDS: Final = ("full_name", "gelar_depan", "gelar_belakang", "birth_date", "gender")


# The contracts set no maximum on a record's `version`; the store's version columns are INTEGER,
# 32-bit signed on PostgreSQL (SQLite's would hold 64 bits): the bound every backend holds.
MAX_SOURCE_VERSION: Final = 2**31 - 1


class VersionOutOfRange(AdapterError):
    """A record's `version` is larger than the store keeps: refused alike on every backend."""

    default_reason = "version_out_of_range"


def source_version(doc: Mapping[str, Any]) -> int:
    """The record's `version`, or `VersionOutOfRange` above `MAX_SOURCE_VERSION`."""
    version = int(doc["version"])
    if version > MAX_SOURCE_VERSION:
        raise VersionOutOfRange(
            f"version is larger than {MAX_SOURCE_VERSION} (2^31 - 1), the largest the store keeps"
        )
    return version


@dataclass(frozen=True)
class Identity:
    """How one source spells a person: name, titles, birth date (ISO text) and gender."""

    full_name: str | None
    gelar_depan: str | None
    gelar_belakang: str | None
    birth_date: str | None
    gender: str | None

    def value(self, field: str) -> str | None:
        if field not in IDENTITY_FIELDS:
            raise KeyError(field)
        value: str | None = getattr(self, field)
        return value


def fold(value: str | None) -> str | None:
    """`value` as identities are compared: compatibility forms, case and spacing folded.

    ``None`` when nothing is left. The store's blind index folds the same way, so two values
    with equal folds have equal digests.
    """
    if value is None:
        return None
    folded = " ".join(unicodedata.normalize("NFKC", value).casefold().split())
    return folded or None


@dataclass(frozen=True)
class EmploymentValues:
    facility_code: str
    facility_name: str | None
    unit_code: str
    unit: str
    jabatan: str
    jenis_sdmk_id: int
    employment_status: str
    tmt_start: dt.date
    end_date: dt.date | None
    end_reason: str | None
    is_current: bool
    nip: str | None  # personal

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> EmploymentValues:
        return cls(
            facility_code=str(item["facility_code"]),
            facility_name=item.get("facility_name"),
            unit_code=str(item["unit_code"]),
            unit=str(item["unit"]),
            jabatan=str(item["jabatan"]),
            jenis_sdmk_id=int(item["jenis_sdmk_id"]),
            employment_status=str(item["employment_status"]),
            tmt_start=to_date(item["tmt_start"]),
            end_date=to_optional_date(item.get("end_date")),
            end_reason=item.get("end_reason"),
            is_current=bool(item["is_current"]),
            nip=item.get("nip"),
        )


@dataclass(frozen=True)
class EducationValues:
    level: str
    program: str
    institution: str
    graduation_year: int
    ijazah_no: str  # personal

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> EducationValues:
        return cls(
            level=str(item["level"]),
            program=str(item["program"]),
            institution=str(item["institution"]),
            graduation_year=int(item["graduation_year"]),
            ijazah_no=str(item["ijazah_no"]),
        )


@dataclass(frozen=True)
class SisdmkWorker:
    """A SISDMK ``HealthWorker`` document: the person as Dukcapil knows them, and their posts."""

    sisdmk_id: uuid.UUID
    version: int
    # The worker's personal columns, clear: nik, names, birth date and place, address (JSON),
    # phone, email, IHS number, NIP.
    personal: Mapping[str, str | None]
    gender: str
    citizenship: str
    profession: str
    tenaga_group: str
    province_code: str | None
    regency_code: str | None
    facility_code: str | None
    is_active: bool
    employments: tuple[EmploymentValues, ...]
    educations: tuple[EducationValues, ...]

    @property
    def nik(self) -> str:
        return str(self.personal["nik"])

    @property
    def identity(self) -> Identity:
        return Identity(
            full_name=self.personal["full_name"],
            gelar_depan=self.personal["gelar_depan"],
            gelar_belakang=self.personal["gelar_belakang"],
            birth_date=self.personal["birth_date"],
            gender=self.gender,
        )

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> SisdmkWorker:
        address = doc.get("address")
        return cls(
            sisdmk_id=uuid.UUID(str(doc["worker_id"])),
            version=source_version(doc),
            personal={
                "nik": str(doc["nik"]),
                "full_name": str(doc["full_name"]),
                "gelar_depan": doc.get("gelar_depan"),
                "gelar_belakang": doc.get("gelar_belakang"),
                "birth_date": str(doc["birth_date"]),
                "birth_place": doc.get("birth_place"),
                "address": None if address is None else canonical_json(address),
                "phone": doc.get("phone"),
                "email": doc.get("email"),
                "ihs_number": doc.get("ihs_number"),
                "nip": doc.get("nip"),
            },
            gender=str(doc["gender"]),
            citizenship=str(doc["citizenship"]),
            profession=str(doc["profession"]),
            tenaga_group=str(doc["tenaga_group"]),
            province_code=None if address is None else address.get("province_code"),
            regency_code=None if address is None else address.get("regency_code"),
            facility_code=doc.get("facility_code"),
            is_active=bool(doc["is_active"]),
            employments=tuple(
                EmploymentValues.from_item(item) for item in doc.get("employments") or []
            ),
            educations=tuple(
                EducationValues.from_item(item) for item in doc.get("educations") or []
            ),
        )


@dataclass(frozen=True)
class CpdValues:
    period_start: dt.date
    period_end: dt.date
    required_total: int
    earned_total: Decimal
    pembelajaran: Decimal
    pelayanan: Decimal
    pengabdian: Decimal
    adequacy: str
    as_of: dt.date

    @classmethod
    def from_item(cls, skp: Mapping[str, Any]) -> CpdValues:
        by_domain = skp["by_domain"]
        return cls(
            period_start=to_date(skp["period_start"]),
            period_end=to_date(skp["period_end"]),
            required_total=int(skp["required_total"]),
            earned_total=to_decimal(skp["earned_total"]),
            pembelajaran=to_decimal(by_domain["pembelajaran"]),
            pelayanan=to_decimal(by_domain["pelayanan"]),
            pengabdian=to_decimal(by_domain["pengabdian"]),
            adequacy=str(skp["adequacy"]),
            as_of=to_date(skp["as_of"]),
        )


@dataclass(frozen=True)
class PracticeLicenseValues:
    sip_number: str
    sip_seq: int
    issuer_regency_code: str
    facility_code: str
    issued_at: dt.date
    valid_until: dt.date
    status: str

    @classmethod
    def from_item(cls, sip: Mapping[str, Any]) -> PracticeLicenseValues:
        return cls(
            sip_number=str(sip["sip_number"]),
            sip_seq=int(sip["sip_seq"]),
            issuer_regency_code=str(sip["issuer_regency_code"]),
            facility_code=str(sip["facility_code"]),
            issued_at=to_date(sip["issued_at"]),
            valid_until=to_date(sip["valid_until"]),
            status=str(sip["status"]),
        )


@dataclass(frozen=True)
class TrainingValues:
    course_id: str
    source: str
    title: str
    provider: str
    jpl: int
    skp_value: Decimal
    domain: str
    completed_at: dt.date
    certificate_no: str

    @classmethod
    def from_item(cls, training: Mapping[str, Any]) -> TrainingValues:
        return cls(
            course_id=str(training["course_id"]),
            source=str(training["source"]),
            title=str(training["title"]),
            provider=str(training["provider"]),
            jpl=int(training["jpl"]),
            skp_value=to_decimal(training["skp_value"]),
            domain=str(training["domain"]),
            completed_at=to_date(training["completed_at"]),
            certificate_no=str(training["certificate_no"]),
        )


@dataclass(frozen=True)
class KkiRegistration:
    """A KKI ``Registration`` document: one STR, with its SKP, trainings and SIPs, and KKI's
    spelling of the holder's identity."""

    str_number: str
    version: int
    nik: str
    identity: Identity
    citizenship: str
    profession: str
    tenaga_group: str
    kompetensi: str
    registration_type: str
    issued_at: dt.date
    status: str
    status_reason: str | None
    status_changed_at: dt.datetime
    valid_until: dt.date | None  # None: an STR for life (UU 17/2023)
    validated: bool
    skp: CpdValues | None
    sips: tuple[PracticeLicenseValues, ...]
    trainings: tuple[TrainingValues, ...]

    @property
    def gender(self) -> str:
        return str(self.identity.gender)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> KkiRegistration:
        certification = doc["certification"]
        skp = doc.get("skp")
        return cls(
            str_number=str(doc["str_number"]),
            version=source_version(doc),
            nik=str(doc["nik"]),
            identity=Identity(
                full_name=str(doc["full_name"]),
                gelar_depan=doc.get("gelar_depan"),
                gelar_belakang=doc.get("gelar_belakang"),
                birth_date=str(doc["birth_date"]),
                gender=str(doc["gender"]),
            ),
            citizenship=str(doc["citizenship"]),
            profession=str(doc["profession"]),
            tenaga_group=str(doc["tenaga_group"]),
            kompetensi=str(doc["kompetensi"]),
            registration_type=str(doc["registration_type"]),
            issued_at=to_date(doc["issued_at"]),
            status=str(certification["status"]),
            status_reason=certification.get("status_reason"),
            status_changed_at=to_datetime(certification["status_changed_at"]),
            valid_until=to_optional_date(certification.get("valid_until")),
            validated=bool(certification["validated"]),
            skp=None if skp is None else CpdValues.from_item(skp),
            sips=tuple(PracticeLicenseValues.from_item(sip) for sip in doc.get("sips") or []),
            trainings=tuple(
                TrainingValues.from_item(training) for training in doc.get("trainings") or []
            ),
        )


def canonical_json(value: Any) -> str:
    """One spelling per JSON value (sorted keys, no spaces), for hashing and storing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def to_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def to_optional_date(value: Any) -> dt.date | None:
    return None if value is None else to_date(value)


def to_datetime(value: Any) -> dt.datetime:
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def to_decimal(value: Any) -> Decimal:
    return Decimal(str(value))
