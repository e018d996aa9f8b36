"""The ground truth the mocks share: synthetic people, their registrations, work and schooling.

Both mocks build their own view (KKI: registrations; SISDMK: workers) from the same
`Person` objects, so one seed gives the same NIKs everywhere. All values are synthetic.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

Gender = Literal["male", "female"]
StrStatus = Literal["AKTIF", "NONAKTIF_SEMENTARA", "DICABUT", "KEDALUWARSA"]
RegistrationType = Literal["reguler", "sementara", "bersyarat"]
EducationLevel = Literal["D3", "D4", "S1", "PROFESI", "SP", "SUBSP", "S2", "S3"]
SkpDomain = Literal["pembelajaran", "pelayanan", "pengabdian"]


@dataclass(frozen=True, slots=True)
class Region:
    """Kemendagri region codes: province 2, kab/kota 4, kecamatan 6, desa 10 digits."""

    province_code: str
    province_name: str
    regency_code: str
    regency_name: str
    district_code: str
    village_code: str


@dataclass(frozen=True, slots=True)
class Facility:
    """A fasyankes. `code` is the 7-digit SISDMK kdfasyankes (kab/kota code + sequence)."""

    code: str
    name: str
    org_type: str  # terminology.kemkes.go.id organization-type, e.g. "104" Rumah Sakit
    rs_class: str | None  # "A".."D" for hospitals, else None
    bpjs_code: str | None  # ####R### for hospitals
    satusehat_org_id: str  # 9 digits, e.g. 100006530
    region: Region
    ownership: str  # "PEMERINTAH_PUSAT" | "PEMERINTAH_DAERAH" | "SWASTA" | "TNI_POLRI"


@dataclass(frozen=True, slots=True)
class PracticeLicense:
    """A SIP: issued by a kab/kota per practice place, valid at most five years."""

    sip_number: str
    sip_seq: int  # 1..3
    issuer_regency_code: str
    facility_code: str
    issued_at: dt.date
    valid_until: dt.date
    status: Literal["BERLAKU", "TIDAK_BERLAKU"]


@dataclass(frozen=True, slots=True)
class CpdSummary:
    """SKP adequacy for the current five-year period (ends on the SIP end date)."""

    period_start: dt.date
    period_end: dt.date
    required_total: int  # 250 doctors, 100 dentists, 50 others
    earned_total: float
    by_domain: dict[SkpDomain, float]
    adequacy: Literal["CUKUP", "TIDAK_CUKUP"]
    as_of: dt.date


@dataclass(frozen=True, slots=True)
class Training:
    course_id: str
    source: Literal["PLATARAN_SEHAT", "OTHER"]
    title: str
    provider: str
    jpl: int
    skp_value: float
    domain: SkpDomain
    completed_at: dt.date
    certificate_no: str


@dataclass(frozen=True, slots=True)
class Registration:
    """An STR. `valid_until` is None for lifetime STRs under UU 17/2023."""

    str_number: str
    registration_type: RegistrationType
    profession: str  # jenis nakes, e.g. "dokter", "perawat"
    tenaga_group: str  # one of the 13 groups (2 medis + 11 nakes)
    issued_at: dt.date
    valid_until: dt.date | None
    status: StrStatus
    status_reason: str | None
    status_changed_at: dt.datetime
    validated: bool
    kompetensi: str


@dataclass(frozen=True, slots=True)
class Employment:
    facility_code: str
    unit_code: str
    unit: str
    jabatan: str
    jenis_sdmk_id: int
    employment_status: str  # PNS, PPPK, KONTRAK, ...
    nip: str | None  # 18 digits for PNS/PPPK
    tmt_start: dt.date
    end_date: dt.date | None
    end_reason: str | None  # MUTASI | PENSIUN | RESIGN | MENINGGAL | KONTRAK_HABIS


@dataclass(frozen=True, slots=True)
class Education:
    level: EducationLevel
    program: str
    institution: str
    graduation_year: int
    ijazah_no: str


@dataclass(frozen=True, slots=True)
class Identity:
    """How one source spells a person. KKI's copy may differ from SISDMK's (a mismatch)."""

    full_name: str
    gelar_depan: str | None
    gelar_belakang: str | None
    birth_date: dt.date

    @property
    def display_name(self) -> str:
        """`{gelar_depan} {full_name}, {gelar_belakang}` with absent titles left out."""
        name = self.full_name
        if self.gelar_depan:
            name = f"{self.gelar_depan} {name}"
        if self.gelar_belakang:
            name = f"{name}, {self.gelar_belakang}"
        return name


@dataclass(frozen=True, slots=True)
class Person:
    """One synthetic health worker; `index` is its position in the seeded population."""

    index: int
    worker_id: str  # SISDMK id: a UUID derived from seed and index
    nik: str  # 16 digits, PP KK CC DDMMYY SSSS (DD+40 for women)
    ihs_number: str  # 11 digits starting 1000
    gender: Gender
    birth_place: str
    region: Region  # domicile
    address: str
    phone: str
    email: str
    citizenship: Literal["WNI", "WNA"]
    sisdmk_identity: Identity  # authoritative (follows Dukcapil)
    kki_identity: Identity  # equal to sisdmk_identity unless `mismatch` is set
    mismatch: tuple[str, ...]  # which fields differ between the two: "name", "birth_date"
    registration: Registration
    licenses: tuple[PracticeLicense, ...]
    cpd: CpdSummary
    trainings: tuple[Training, ...]
    employments: tuple[Employment, ...]  # newest first; the first is current unless ended
    educations: tuple[Education, ...]
    is_active: bool
    updated_at: dt.datetime  # last change before the mock started; ascending with index
    extra: dict[str, str] = field(default_factory=dict)
