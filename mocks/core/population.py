"""Deterministic synthetic population: person i of seed s is the same whatever the size.

Each person draws from its own random stream, derived from (seed, index) with BLAKE2b; the
facility pool depends on the seed alone. Every person, number and facility is synthetic.
"""

from __future__ import annotations

import bisect
import datetime as dt
import gc
import hashlib
import itertools
import math
import random
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from faker.providers.address.id_ID import Provider as _FakerAddress
from faker.providers.person.id_ID import Provider as _FakerPerson

from indonesian_ids.nik import make_nik
from indonesian_ids.nip import make_ni_pppk, make_nip
from indonesian_ids.regions import PROVINCES, Province, Regency, regencies_of
from mocks.core.people import (
    CpdSummary,
    Education,
    EducationLevel,
    Employment,
    Facility,
    Gender,
    Identity,
    Person,
    PracticeLicense,
    Region,
    Registration,
    RegistrationType,
    SkpDomain,
    StrStatus,
    Training,
)

T = TypeVar("T")

# The population's "now": a fixed instant from the seed, never the wall clock, so that the same
# seed gives the same bytes on any day. It lies in the past so live changes sort after it.
EPOCH_BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EPOCH_SPREAD = dt.timedelta(days=30)
# `updated_at` of person i is epoch - window + window * i / (i + UPDATE_HALF_INDEX): ascending,
# independent of the size, and spread over the whole window for small and large populations.
UPDATE_WINDOW = dt.timedelta(days=730)
UPDATE_HALF_INDEX = 250
FACILITY_COUNT = 2000
MAX_POPULATION = 10_000_000
PROGRESS_EVERY = 1000
MAX_AGE = 64

LAW_DATE = dt.date(2023, 8, 8)  # UU 17/2023 in force: STRs issued from then on are for life
LIFETIME_CONVERSION_START = dt.date(2023, 10, 2)
SKP_DEACTIVATION_START = dt.date(2025, 1, 2)  # SE HK.02.01/MENKES/1063/2024
PLATARAN_SEHAT_START = dt.date(2021, 1, 1)
# Statuses that only exist since some date, and what someone hired earlier had instead.
_STATUS_SINCE: dict[str, tuple[dt.date, str]] = {
    "PPPK": (dt.date(2021, 1, 1), "KONTRAK"),
    "PPPK_PARUH_WAKTU": (dt.date(2025, 10, 1), "HONORER"),
    "NUSANTARA_SEHAT": (dt.date(2015, 4, 1), "PTT"),
}

TENAGA_GROUPS: tuple[str, ...] = (
    "dokter",
    "dokter gigi",
    "psikologi klinis",
    "keperawatan",
    "kebidanan",
    "kefarmasian",
    "kesehatan masyarakat",
    "kesehatan lingkungan",
    "gizi",
    "keterapian fisik",
    "keteknisian medis",
    "teknik biomedika",
    "kesehatan tradisional",
)
ASN_STATUSES = frozenset({"PNS", "PPPK", "PPPK_PARUH_WAKTU"})
EMPLOYMENT_STATUSES: tuple[str, ...] = (
    "PNS",
    "PPPK",
    "PPPK_PARUH_WAKTU",
    "TNI_POLRI",
    "BLU",
    "BLUD",
    "KONTRAK",
    "HONORER",
    "PTT",
    "NUSANTARA_SEHAT",
    "INTERNSIP",
    "SWASTA_TETAP",
    "SWASTA_TIDAK_TETAP",
)

# -- random helpers --------------------------------------------------------------------------


def _digest(seed: int, label: str, index: int = 0) -> bytes:
    # hashlib, not hash(): the value must not change between processes or Python versions.
    return hashlib.blake2b(f"{seed}:{label}:{index}".encode(), digest_size=32).digest()


def _stream(seed: int, label: str, index: int = 0) -> random.Random:
    return random.Random(int.from_bytes(_digest(seed, label, index)[:16], "big"))


@dataclass(frozen=True, slots=True)
class _Shuffle:
    """A seeded bijection of range(modulus): x -> (a*x + b) mod m with gcd(a, m) = 1.

    Numbers that must be unique (NIK slot, IHS, STR) are this bijection of the index, so two
    people can never share one, whatever the size.
    """

    modulus: int
    multiplier: int
    offset: int

    @classmethod
    def keyed(cls, seed: int, label: str, modulus: int) -> _Shuffle:
        key = int.from_bytes(_digest(seed, label), "big")
        multiplier = key % (modulus - 1) + 1
        while math.gcd(multiplier, modulus) != 1:
            multiplier = multiplier % (modulus - 1) + 1
        return cls(modulus, multiplier, (key >> 64) % modulus)

    def __call__(self, x: int) -> int:
        return (self.multiplier * x + self.offset) % self.modulus


class _Weighted(Generic[T]):
    """Weighted choice by bisection over cumulative weights (one `random()` per pick)."""

    __slots__ = ("_cumulative", "_items", "_total")

    def __init__(self, pairs: Iterable[tuple[T, float]]) -> None:
        items, weights = zip(*pairs, strict=True)
        self._items: tuple[T, ...] = items
        self._cumulative = list(itertools.accumulate(weights))
        self._total = self._cumulative[-1]

    def pick(self, rng: random.Random) -> T:
        return self._items[bisect.bisect_right(self._cumulative, rng.random() * self._total)]


# Only `random()` and `getrandbits()` are used: their output for a seed is the same on every
# Python version, unlike the algorithms behind randint/choice/sample.
def _int(rng: random.Random, low: int, high: int) -> int:
    """A uniform integer in [low, high]."""
    return low + int(rng.random() * (high - low + 1))


def _pick(rng: random.Random, items: Sequence[T]) -> T:
    return items[int(rng.random() * len(items))]


def _sample(rng: random.Random, items: Sequence[T], count: int) -> list[T]:
    """`count` distinct items (all of them if there are fewer), by a partial Fisher-Yates."""
    pool = list(items)
    count = min(count, len(pool))
    for i in range(count):
        j = i + int(rng.random() * (len(pool) - i))
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:count]


def _uuid4(rng: random.Random) -> str:
    """A version-4 UUID string from 128 random bits."""
    bits = rng.getrandbits(128)
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# One shared object per calendar day: millions of dates, only some 40,000 distinct ones.
_DAYS: dict[int, dt.date] = {}


def _day(ordinal: int) -> dt.date:
    day = _DAYS.get(ordinal)
    if day is None:
        day = _DAYS[ordinal] = dt.date.fromordinal(ordinal)
    return day


def _day_between(rng: random.Random, low: dt.date, high: dt.date) -> dt.date:
    """A uniform day in [low, high]; `low` when the range is empty."""
    if high <= low:
        return low
    return _day(_int(rng, low.toordinal(), high.toordinal()))


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a non-leap year
        return day.replace(year=day.year + years, day=28)


def _first_of_month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _at(rng: random.Random, day: dt.date) -> dt.datetime:
    """A moment during Indonesian office hours (01:00-09:59 UTC) on `day`."""
    return dt.datetime(
        day.year, day.month, day.day, _int(rng, 1, 9), _int(rng, 0, 59), tzinfo=dt.UTC
    )


_HALVES: dict[int, float] = {}


def _half_points(value: float) -> float:
    """`value` rounded to 0.5, as a shared float object (SKP values repeat a lot)."""
    halves = round(value * 2)
    shared = _HALVES.get(halves)
    if shared is None:
        shared = _HALVES[halves] = halves / 2
    return shared


def population_epoch(seed: int) -> dt.datetime:
    """The fixed instant the population is "as of" (all `updated_at` values lie before it)."""
    offset = int.from_bytes(_digest(seed, "epoch")[:8], "big") % int(EPOCH_SPREAD.total_seconds())
    return EPOCH_BASE - dt.timedelta(seconds=offset)


# -- names, read once from Faker's id_ID data lists ------------------------------------------


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(v) for v in values))


_MALE_FIRST = _unique(_FakerPerson.first_names_male)
_FEMALE_FIRST = _unique(_FakerPerson.first_names_female)
_MALE_LAST = _unique(_FakerPerson.last_names_male)
_FEMALE_LAST = _unique(_FakerPerson.last_names_female)
_STREETS = _unique(_FakerAddress.streets)
_CITIES = _unique(c.removeprefix("Kota Administrasi ") for c in _FakerAddress.cities)
_MALE_LEADING = _Weighted((("Muhammad", 70.0), ("Ahmad", 20.0), ("Mochammad", 10.0)))
_FEMALE_LEADING = _Weighted((("Siti", 60.0), ("Nur", 25.0), ("Sri", 15.0)))
_FOREIGN_FIRST: dict[Gender, tuple[str, ...]] = {
    "male": ("Kenji", "Rajesh", "David", "Minh", "Hiroshi", "Daniel"),
    "female": ("Yuki", "Priya", "Anna", "Mei", "Sofia", "Hana"),
}
_FOREIGN_LAST = ("Tanaka", "Sharma", "Nguyen", "Kim", "Santos", "Lee", "Wong", "Fischer")
_MUHAMMAD_VARIANTS = ("Muhamad", "Mohammad", "Mochamad", "M.")
_VOWELS = frozenset("aeiouAEIOU")

# Own word lists for synthetic institution names.
_NAME_WORDS = (
    "Husada",
    "Medika",
    "Sehat",
    "Sentosa",
    "Harapan",
    "Bunda",
    "Permata",
    "Mitra",
    "Citra",
    "Kasih",
    "Bhakti",
    "Insani",
    "Prima",
    "Mulia",
    "Sejahtera",
    "Anugerah",
    "Cahaya",
    "Pelita",
    "Utama",
    "Keluarga",
    "Amanah",
    "Berkah",
    "Nusantara",
    "Mandiri",
    "Asih",
    "Waluyo",
    "Raharja",
    "Lestari",
)
_PLACE_WORDS = (
    "Sukamaju",
    "Sukajadi",
    "Karanganyar",
    "Sumberejo",
    "Mekarsari",
    "Sidomulyo",
    "Kebonsari",
    "Margahayu",
    "Sukamulya",
    "Harjosari",
    "Tegalrejo",
    "Jatimulyo",
    "Kedungsari",
    "Pasirjaya",
    "Wonorejo",
    "Bangunrejo",
    "Sindangsari",
    "Sumbersari",
    "Karangrejo",
    "Tanjungsari",
    "Purwodadi",
    "Mulyorejo",
    "Sukarame",
    "Kotabaru",
)
_ROMAN_MONTHS = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")
_MOBILE_PREFIXES = (
    "811",
    "812",
    "813",
    "821",
    "822",
    "823",
    "852",
    "853",
    "814",
    "815",
    "856",
    "857",
    "858",
    "817",
    "818",
    "819",
    "859",
    "877",
    "878",
    "831",
    "838",
    "895",
    "896",
    "897",
    "881",
    "882",
)
# Documentation domains only (RFC 2606 and the Indonesian example.id): never a real provider.
_EMAIL_DOMAINS = _Weighted((("example.id", 45.0), ("example.com", 35.0), ("example.org", 20.0)))
_STR_LETTERS = ("QN", "QZ", "QA", "RK", "RS", "TA", "TB", "UK")

# -- professions (UU 17/2023: 2 tenaga medis groups + 11 tenaga kesehatan groups) -------------

Titles = tuple[tuple[str | None, str | None, float], ...]
# level, program, kind of school, typical age at graduation, tag used in the ijazah number
EducationStep = tuple[EducationLevel, str, str, int, str]

_MIX_SPECIALIST = (("104", 92.0), ("103", 8.0))
_MIX_GP = (("102", 42.0), ("104", 33.0), ("103", 20.0), ("101", 5.0))
_MIX_DENTIST = (("102", 45.0), ("103", 30.0), ("104", 15.0), ("101", 10.0))
_MIX_NURSE = (("104", 58.0), ("102", 30.0), ("103", 10.0), ("101", 2.0))
_MIX_MIDWIFE = (("102", 55.0), ("104", 22.0), ("103", 10.0), ("101", 13.0))
_MIX_PHARMACIST = (("105", 35.0), ("104", 35.0), ("102", 20.0), ("103", 10.0))
_MIX_PHARMACY_TECH = (("105", 40.0), ("102", 30.0), ("104", 25.0), ("103", 5.0))
_MIX_LAB = (("104", 50.0), ("102", 25.0), ("107", 20.0), ("106", 5.0))
_MIX_HOSPITAL = (("104", 100.0),)
_MIX_BLOOD = (("106", 60.0), ("104", 40.0))
_MIX_PUBLIC_HEALTH = (("102", 80.0), ("104", 20.0))
_MIX_NUTRITION = (("104", 50.0), ("102", 50.0))
_MIX_REHAB = (("104", 80.0), ("103", 20.0))
_MIX_PSYCHOLOGY = (("104", 55.0), ("102", 30.0), ("103", 15.0))
_MIX_TRADITIONAL = (("102", 60.0), ("103", 40.0))
_MIX_DENTAL_TECH = (("104", 50.0), ("103", 50.0))


@dataclass(frozen=True, slots=True)
class _Track:
    """One way into a profession: its titles, schooling, workplaces and licence habits."""

    weight: float
    profession: str
    group: str
    kompetensi: str
    skp_required: int
    female_share: float
    titles: Titles
    education: tuple[EducationStep, ...]
    facility_mix: tuple[tuple[str, float], ...]
    role: str  # which units of a facility the person works in
    jabatan: str  # position outside the civil service
    asn_jabatan: str  # functional position family for ASN, e.g. "Perawat" -> "Perawat Mahir"
    sip_code: str
    topics: str
    association: str
    max_sips: int = 1
    old_kki: bool = False  # may still hold an old 16-digit KKI STR with an end date
    asn_expert: bool = True  # Ahli ladder (S1 and up) rather than Terampil (D3)
    specialist_unit: tuple[str, str] | None = None
    master: tuple[str, str] | None = None  # optional S2: program, gelar

    @property
    def min_age(self) -> int:
        return max(step[3] for step in self.education) + 1

    @property
    def jenis_sdmk_id(self) -> int:
        return _JENIS_SDMK_IDS[self.profession]


_DOCTOR_BASIC: tuple[EducationStep, ...] = (
    ("S1", "Pendidikan Dokter", "fk", 22, "DOK"),
    ("PROFESI", "Pendidikan Profesi Dokter", "fk", 24, "PRODOK"),
)
_DENTIST_BASIC: tuple[EducationStep, ...] = (
    ("S1", "Pendidikan Dokter Gigi", "fkg", 22, "DG"),
    ("PROFESI", "Pendidikan Profesi Dokter Gigi", "fkg", 24, "PRODG"),
)

# gelar, kompetensi, study programme, hospital unit, weight
_SPECIALTIES: tuple[tuple[str, str, str, tuple[str, str], float], ...] = (
    ("Sp.PD", "Penyakit Dalam", "Ilmu Penyakit Dalam", ("PD-01", "SMF Penyakit Dalam"), 16.0),
    ("Sp.A", "Anak", "Ilmu Kesehatan Anak", ("IKA-01", "SMF Ilmu Kesehatan Anak"), 14.0),
    (
        "Sp.OG",
        "Obstetri dan Ginekologi",
        "Obstetri dan Ginekologi",
        ("OBG-01", "SMF Obstetri dan Ginekologi"),
        14.0,
    ),
    ("Sp.B", "Bedah", "Ilmu Bedah", ("BED-01", "SMF Bedah"), 10.0),
    (
        "Sp.An",
        "Anestesiologi dan Terapi Intensif",
        "Anestesiologi dan Terapi Intensif",
        ("ANS-01", "SMF Anestesiologi"),
        9.0,
    ),
    (
        "Sp.JP",
        "Jantung dan Pembuluh Darah",
        "Kardiologi dan Kedokteran Vaskular",
        ("JAN-01", "SMF Jantung dan Pembuluh Darah"),
        6.0,
    ),
    ("Sp.N", "Neurologi", "Neurologi", ("NEU-01", "SMF Neurologi"), 6.0),
    ("Sp.M", "Mata", "Ilmu Kesehatan Mata", ("MAT-01", "SMF Mata"), 5.0),
    (
        "Sp.THT-BKL",
        "Telinga Hidung Tenggorok Bedah Kepala Leher",
        "Ilmu Kesehatan THT-BKL",
        ("THT-01", "SMF THT-BKL"),
        4.0,
    ),
    (
        "Sp.DVE",
        "Dermatologi, Venereologi, dan Estetika",
        "Dermatologi, Venereologi, dan Estetika",
        ("KK-01", "SMF Kulit dan Kelamin"),
        4.0,
    ),
    ("Sp.Rad", "Radiologi", "Radiologi", ("RAD-01", "Instalasi Radiologi"), 5.0),
    (
        "Sp.P",
        "Pulmonologi dan Kedokteran Respirasi",
        "Pulmonologi dan Kedokteran Respirasi",
        ("PAR-01", "SMF Paru"),
        4.0,
    ),
    ("Sp.KJ", "Kedokteran Jiwa", "Ilmu Kedokteran Jiwa", ("JIW-01", "SMF Kedokteran Jiwa"), 3.0),
    ("Sp.PK", "Patologi Klinik", "Patologi Klinik", ("LAB-01", "Instalasi Laboratorium"), 4.0),
    (
        "Sp.OT",
        "Orthopaedi dan Traumatologi",
        "Orthopaedi dan Traumatologi",
        ("ORT-01", "SMF Orthopaedi"),
        3.0,
    ),
    (
        "Sp.KFR",
        "Kedokteran Fisik dan Rehabilitasi",
        "Kedokteran Fisik dan Rehabilitasi",
        ("REH-01", "Instalasi Rehabilitasi Medik"),
        3.0,
    ),
)
# gelar, kompetensi (after "Subspesialis "), parent programme, hospital unit, weight
_SUBSPECIALTIES: tuple[tuple[str, str, str, tuple[str, str], float], ...] = (
    (
        "Sp.PD-KGEH",
        "Gastroenterohepatologi",
        "Ilmu Penyakit Dalam",
        ("PD-01", "SMF Penyakit Dalam"),
        3.0,
    ),
    ("Sp.PD-KKV", "Kardiovaskular", "Ilmu Penyakit Dalam", ("PD-01", "SMF Penyakit Dalam"), 2.0),
    ("Sp.A(K)", "Neonatologi", "Ilmu Kesehatan Anak", ("IKA-01", "SMF Ilmu Kesehatan Anak"), 3.0),
    (
        "Sp.OG(K)",
        "Fetomaternal",
        "Obstetri dan Ginekologi",
        ("OBG-01", "SMF Obstetri dan Ginekologi"),
        2.0,
    ),
    ("Sp.B-KBD", "Bedah Digestif", "Ilmu Bedah", ("BED-01", "SMF Bedah"), 2.0),
)
_DENTAL_SPECIALTIES: tuple[tuple[str, str, float], ...] = (
    ("Sp.Ort", "Ortodonti", 25.0),
    ("Sp.KG", "Konservasi Gigi", 20.0),
    ("Sp.BMM", "Bedah Mulut dan Maksilofasial", 15.0),
    ("Sp.Pros", "Prostodonsia", 15.0),
    ("Sp.Perio", "Periodonsia", 10.0),
    ("Sp.KGA", "Kedokteran Gigi Anak", 15.0),
)


def _medical_tracks() -> list[_Track]:
    tracks = [
        _Track(
            weight=9.0,
            profession="dokter",
            group="dokter",
            kompetensi="Dokter",
            skp_required=250,
            female_share=0.58,
            titles=(("dr.", None, 1.0),),
            education=_DOCTOR_BASIC,
            facility_mix=_MIX_GP,
            role="medis",
            jabatan="Dokter Umum",
            asn_jabatan="Dokter",
            sip_code="SIP-DU",
            topics="medis",
            association="IDI",
            max_sips=3,
            old_kki=True,
            master=("Magister Kesehatan", "M.Kes."),
        ),
        _Track(
            weight=1.8,
            profession="dokter gigi",
            group="dokter gigi",
            kompetensi="Dokter Gigi",
            skp_required=100,
            female_share=0.72,
            titles=(("drg.", None, 1.0),),
            education=_DENTIST_BASIC,
            facility_mix=_MIX_DENTIST,
            role="gigi",
            jabatan="Dokter Gigi",
            asn_jabatan="Dokter Gigi",
            sip_code="SIP-DG",
            topics="gigi",
            association="PDGI",
            max_sips=3,
            old_kki=True,
            master=("Magister Kesehatan", "M.Kes."),
        ),
    ]
    total = sum(s[4] for s in _SPECIALTIES)
    for gelar, name, programme, unit, weight in _SPECIALTIES:
        tracks.append(
            _Track(
                weight=3.2 * weight / total,
                profession="dokter spesialis",
                group="dokter",
                kompetensi=f"Spesialis {name}",
                skp_required=250,
                female_share=0.42,
                titles=(("dr.", gelar, 1.0),),
                education=(
                    *_DOCTOR_BASIC,
                    ("SP", f"Program Pendidikan Dokter Spesialis {programme}", "fk", 31, "PPDS"),
                ),
                facility_mix=_MIX_SPECIALIST,
                role="medis",
                jabatan=f"Dokter Spesialis {name}",
                asn_jabatan="Dokter",
                sip_code="SIP-DS",
                topics="medis",
                association="IDI",
                max_sips=3,
                old_kki=True,
                specialist_unit=unit,
            )
        )
    total = sum(s[4] for s in _SUBSPECIALTIES)
    for gelar, name, programme, unit, weight in _SUBSPECIALTIES:
        tracks.append(
            _Track(
                weight=0.3 * weight / total,
                profession="dokter subspesialis",
                group="dokter",
                kompetensi=f"Subspesialis {name}",
                skp_required=250,
                female_share=0.35,
                titles=(("dr.", gelar, 1.0),),
                education=(
                    _DOCTOR_BASIC[1],
                    ("SP", f"Program Pendidikan Dokter Spesialis {programme}", "fk", 31, "PPDS"),
                    ("SUBSP", f"Program Pendidikan Dokter Subspesialis {name}", "fk", 37, "SUBSP"),
                ),
                facility_mix=_MIX_HOSPITAL,
                role="medis",
                jabatan=f"Dokter Subspesialis {name}",
                asn_jabatan="Dokter",
                sip_code="SIP-DS",
                topics="medis",
                association="IDI",
                max_sips=3,
                old_kki=True,
                specialist_unit=unit,
            )
        )
    total = sum(s[2] for s in _DENTAL_SPECIALTIES)
    for gelar, name, weight in _DENTAL_SPECIALTIES:
        tracks.append(
            _Track(
                weight=0.4 * weight / total,
                profession="dokter gigi spesialis",
                group="dokter gigi",
                kompetensi=f"Spesialis {name}",
                skp_required=100,
                female_share=0.6,
                titles=(("drg.", gelar, 1.0),),
                education=(
                    *_DENTIST_BASIC,
                    ("SP", f"Program Pendidikan Dokter Gigi Spesialis {name}", "fkg", 31, "PPDGS"),
                ),
                facility_mix=_MIX_DENTAL_TECH,
                role="gigi",
                jabatan=f"Dokter Gigi Spesialis {name}",
                asn_jabatan="Dokter Gigi",
                sip_code="SIP-DGS",
                topics="gigi",
                association="PDGI",
                max_sips=3,
                old_kki=True,
            )
        )
    tracks.append(
        _Track(
            weight=0.05,
            profession="dokter gigi subspesialis",
            group="dokter gigi",
            kompetensi="Subspesialis Ortodonti",
            skp_required=100,
            female_share=0.5,
            titles=(("drg.", "Sp.Ort(K)", 1.0),),
            education=(
                _DENTIST_BASIC[1],
                ("SP", "Program Pendidikan Dokter Gigi Spesialis Ortodonti", "fkg", 31, "PPDGS"),
                ("SUBSP", "Program Pendidikan Subspesialis Ortodonti", "fkg", 37, "SUBSP"),
            ),
            facility_mix=_MIX_HOSPITAL,
            role="gigi",
            jabatan="Dokter Gigi Subspesialis Ortodonti",
            asn_jabatan="Dokter Gigi",
            sip_code="SIP-DGS",
            topics="gigi",
            association="PDGI",
            max_sips=3,
            old_kki=True,
        )
    )
    return tracks


def _title_case(words: str) -> str:
    return " ".join(w if w in ("dan", "di") else w.capitalize() for w in words.split())


def _d3(programme: str, tag: str, school: str = "poltekkes") -> tuple[EducationStep, ...]:
    return (("D3", programme, school, 21, tag),)


def _nakes(
    weight: float,
    profession: str,
    group: str,
    titles: str | Titles,
    education: tuple[EducationStep, ...],
    mix: tuple[tuple[str, float], ...],
    role: str,
    topics: str,
    association: str,
    *,
    female_share: float = 0.6,
    sip_code: str = "SIPTK",
    kompetensi: str | None = None,
    jabatan: str | None = None,
    asn_jabatan: str | None = None,
    max_sips: int = 1,
    master: tuple[str, str] | None = None,
) -> _Track:
    """A tenaga kesehatan track (SKP target 50); names default to the profession's."""
    kompetensi = kompetensi or _title_case(profession)
    jabatan = jabatan or kompetensi
    return _Track(
        weight=weight,
        profession=profession,
        group=group,
        kompetensi=kompetensi,
        skp_required=50,
        female_share=female_share,
        titles=((None, titles, 1.0),) if isinstance(titles, str) else titles,
        education=education,
        facility_mix=mix,
        role=role,
        jabatan=jabatan,
        asn_jabatan=asn_jabatan or jabatan,
        sip_code=sip_code,
        topics=topics,
        association=association,
        max_sips=max_sips,
        asn_expert=any(step[0] != "D3" for step in education),
        master=master,
    )


_SKM = "S.K.M."
_MKM = ("Magister Kesehatan Masyarakat", "M.K.M.")


def _health_tracks() -> list[_Track]:
    kesmas = "kesehatan masyarakat"
    kesling = "kesehatan lingkungan"
    fisik = "keterapian fisik"
    teknisi = "keteknisian medis"
    biomedika = "teknik biomedika"
    tradisional = "kesehatan tradisional"

    def public_health(
        weight: float,
        profession: str,
        peminatan: str,
        jabatan: str,
        asn_jabatan: str | None = None,
    ) -> _Track:
        programme = f"Kesehatan Masyarakat Peminatan {peminatan}"
        education: tuple[EducationStep, ...] = (("S1", programme, "fkm", 22, "SKM"),)
        return _nakes(
            weight,
            profession,
            kesmas,
            _SKM,
            education,
            _MIX_PUBLIC_HEALTH,
            "kesmas",
            "kesmas",
            "IAKMI",
            female_share=0.62,
            master=_MKM,
            jabatan=jabatan,
            asn_jabatan=asn_jabatan,
        )

    # fmt: off
    return [
        _nakes(
            22.0, "perawat", "keperawatan", "A.Md.Kep.", _d3("Keperawatan", "D3KEP", "akper"),
            _MIX_NURSE, "keperawatan", "keperawatan", "PPNI", female_share=0.68,
            kompetensi="Perawat Vokasi", jabatan="Perawat Pelaksana", asn_jabatan="Perawat",
            sip_code="SIPP", max_sips=2,
        ),
        _nakes(
            14.0, "perawat", "keperawatan", ((None, "S.Kep., Ners", 3.0), ("Ns.", "S.Kep.", 2.0)),
            (
                ("S1", "Ilmu Keperawatan", "stikes", 22, "SKEP"),
                ("PROFESI", "Pendidikan Profesi Ners", "stikes", 23, "NERS"),
            ),
            _MIX_NURSE, "keperawatan", "keperawatan", "PPNI", female_share=0.68,
            kompetensi="Ners", jabatan="Perawat Pelaksana", asn_jabatan="Perawat",
            sip_code="SIPP", max_sips=2, master=("Magister Keperawatan", "M.Kep."),
        ),
        _nakes(
            16.0, "bidan", "kebidanan", "A.Md.Keb.", _d3("Kebidanan", "D3KEB", "akbid"),
            _MIX_MIDWIFE, "kebidanan", "kebidanan", "IBI", female_share=1.0,
            kompetensi="Bidan Vokasi", jabatan="Bidan Pelaksana", asn_jabatan="Bidan",
            sip_code="SIPB", max_sips=2,
        ),
        _nakes(
            6.0, "bidan", "kebidanan", ((None, "S.Keb., Bd.", 3.0), (None, "S.Tr.Keb., Bd.", 1.0)),
            (
                ("S1", "Kebidanan", "stikes", 22, "SKEB"),
                ("PROFESI", "Pendidikan Profesi Bidan", "stikes", 23, "PROBD"),
            ),
            _MIX_MIDWIFE, "kebidanan", "kebidanan", "IBI", female_share=1.0,
            kompetensi="Bidan Profesi", jabatan="Bidan Pelaksana", asn_jabatan="Bidan",
            sip_code="SIPB", max_sips=2, master=("Magister Kebidanan", "M.Keb."),
        ),
        _nakes(
            3.0, "apoteker", "kefarmasian",
            (("apt.", "S.Farm.", 3.0), (None, "S.Farm., Apt.", 1.0)),
            (
                ("S1", "Farmasi", "farmasi", 22, "SFARM"),
                ("PROFESI", "Pendidikan Profesi Apoteker", "farmasi", 23, "APT"),
            ),
            _MIX_PHARMACIST, "farmasi", "farmasi", "IAI", female_share=0.8,
            jabatan="Apoteker Penanggung Jawab", asn_jabatan="Apoteker", sip_code="SIPA",
            max_sips=3, master=("Magister Farmasi Klinik", "M.Farm.Klin."),
        ),
        _nakes(
            3.0, "tenaga vokasi farmasi", "kefarmasian", "A.Md.Farm.",
            _d3("Farmasi", "D3FARM", "akfar"), _MIX_PHARMACY_TECH, "farmasi", "farmasi", "PAFI",
            female_share=0.78, jabatan="Tenaga Teknis Kefarmasian",
            asn_jabatan="Asisten Apoteker", sip_code="SIPTTK",
        ),
        public_health(0.8, "epidemiolog kesehatan", "Epidemiologi",
                      jabatan="Petugas Surveilans", asn_jabatan="Epidemiolog Kesehatan"),
        public_health(0.8, "tenaga promosi kesehatan dan ilmu perilaku", "Promosi Kesehatan",
                      jabatan="Petugas Promosi Kesehatan",
                      asn_jabatan="Penyuluh Kesehatan Masyarakat"),
        public_health(0.3, "pembimbing kesehatan kerja", "K3", jabatan="Petugas K3"),
        public_health(0.6, "tenaga administrasi dan kebijakan kesehatan", "AKK",
                      jabatan="Staf Manajemen Mutu", asn_jabatan="Administrator Kesehatan"),
        public_health(0.2, "tenaga biostatistik dan kependudukan", "Biostatistik",
                      jabatan="Petugas Data dan Informasi",
                      asn_jabatan="Administrator Kesehatan"),
        public_health(0.3, "tenaga kesehatan reproduksi dan keluarga", "Kesehatan Reproduksi",
                      jabatan="Petugas Kesehatan Keluarga",
                      asn_jabatan="Penyuluh Kesehatan Masyarakat"),
        _nakes(1.3, "tenaga sanitasi lingkungan", kesling, "A.Md.K.L.", _d3("Sanitasi", "D3KL"),
               _MIX_PUBLIC_HEALTH, "kesling", "kesmas", "HAKLI", female_share=0.55,
               kompetensi="Sanitarian"),
        _nakes(0.1, "entomolog kesehatan", kesling, "S.Si., M.Kes.",
               (("S1", "Biologi", "mipa", 22, "SSI"),
                ("S2", "Entomologi Kesehatan", "univ", 26, "MKES")),
               _MIX_PUBLIC_HEALTH, "kesling", "kesmas", "HAKLI", female_share=0.5),
        _nakes(0.1, "mikrobiolog kesehatan", kesling, "S.Si., M.Biomed.",
               (("S1", "Biologi", "mipa", 22, "SSI"), ("S2", "Ilmu Biomedik", "univ", 26, "MBIO")),
               _MIX_LAB, "lab", "teknik", "HAKLI"),
        _nakes(1.4, "nutrisionis", "gizi", "A.Md.Gz.", _d3("Gizi", "D3GZ"), _MIX_NUTRITION, "gizi",
               "gizi", "PERSAGI", female_share=0.85),
        _nakes(0.6, "dietisien", "gizi", "S.Gz., RD",
               (("S1", "Gizi", "univ", 22, "SGZ"),
                ("PROFESI", "Pendidikan Profesi Dietisien", "univ", 23, "RD")),
               _MIX_NUTRITION, "gizi", "gizi", "PERSAGI", female_share=0.85,
               asn_jabatan="Nutrisionis"),
        _nakes(0.8, "fisioterapis", fisik, "A.Md.Ftr.", _d3("Fisioterapi", "D3FT"), _MIX_REHAB,
               "rehab", "rehab", "IFI"),
        _nakes(0.15, "okupasi terapis", fisik, "A.Md.OT.", _d3("Okupasi Terapi", "D3OT"),
               _MIX_REHAB, "rehab", "rehab", "IOTI"),
        _nakes(0.15, "terapis wicara", fisik, "A.Md.TW.", _d3("Terapi Wicara", "D3TW"),
               _MIX_REHAB, "rehab", "rehab", "IKATWI"),
        _nakes(0.1, "akupunktur terapis", fisik, "A.Md.Akp.", _d3("Akupunktur", "D3AKP"),
               _MIX_TRADITIONAL, "tradisional", "rehab", "PATKI"),
        _nakes(1.6, "perekam medis dan informasi kesehatan", teknisi, "A.Md.RMIK.",
               _d3("Rekam Medis dan Informasi Kesehatan", "D3RMIK"), _MIX_NURSE, "rekam_medis",
               "teknik", "PORMIKI", jabatan="Perekam Medis"),
        _nakes(0.6, "penata anestesi", teknisi, "S.Tr.Kes.",
               (("D4", "Keperawatan Anestesiologi", "poltekkes", 22, "D4ANS"),), _MIX_HOSPITAL,
               "anestesi", "keperawatan", "IPAI", female_share=0.45, sip_code="SIPPA"),
        _nakes(0.1, "teknisi gigi", teknisi, "A.Md.T.G.", _d3("Teknik Gigi", "D3TG"),
               _MIX_DENTAL_TECH, "gigi", "gigi", "PTGI"),
        _nakes(0.4, "terapis gigi dan mulut", teknisi, "A.Md.Kes.", _d3("Kesehatan Gigi", "D3KG"),
               _MIX_DENTIST, "gigi", "gigi", "PTGMI", female_share=0.75),
        _nakes(0.1, "refraksionis optisien", teknisi, "A.Md.RO.", _d3("Refraksi Optisi", "D3RO"),
               _MIX_REHAB, "mata", "teknik", "IROPIN"),
        _nakes(0.1, "teknisi pelayanan darah", teknisi, "A.Md.Kes.",
               _d3("Teknologi Bank Darah", "D3TBD"), _MIX_BLOOD, "darah", "teknik", "PATELKI",
               asn_jabatan="Teknisi Transfusi Darah"),
        _nakes(0.1, "teknisi kardiovaskuler", teknisi, "A.Md.Kes.",
               _d3("Teknik Kardiovaskuler", "D3TKV"), _MIX_HOSPITAL, "jantung", "teknik",
               "PATELKI"),
        _nakes(1.8, "ahli teknologi laboratorium medik", biomedika, "A.Md.Kes.",
               _d3("Teknologi Laboratorium Medis", "D3TLM"), _MIX_LAB, "lab", "teknik", "PATELKI",
               female_share=0.7, jabatan="Pranata Laboratorium",
               asn_jabatan="Pranata Laboratorium Kesehatan"),
        _nakes(0.8, "radiografer", biomedika, "A.Md.Rad.", _d3("Radiologi", "D3RAD"),
               _MIX_HOSPITAL, "radiologi", "teknik", "PARI", female_share=0.45),
        _nakes(0.25, "elektromedis", biomedika, "A.Md.T.", _d3("Teknik Elektromedik", "D3TEM"),
               _MIX_HOSPITAL, "elektromedis", "teknik", "IKATEMI", female_share=0.2,
               jabatan="Teknisi Elektromedis"),
        _nakes(0.05, "fisikawan medik", biomedika, "S.Si.",
               (("S1", "Fisika Medis", "mipa", 22, "SSI"),), _MIX_HOSPITAL, "radiologi", "teknik",
               "AFISMI", female_share=0.4, sip_code="SIPFM"),
        _nakes(0.05, "radioterapis", biomedika, "A.Md.Rad.", _d3("Radioterapi", "D3RT"),
               _MIX_HOSPITAL, "radiologi", "teknik", "PARI", asn_jabatan="Radiografer"),
        _nakes(0.05, "ortotis prostetis", biomedika, "A.Md.OP.", _d3("Ortotik Prostetik", "D3OP"),
               _MIX_REHAB, "rehab", "rehab", "IOPI", female_share=0.3),
        _nakes(0.3, "psikolog klinis", "psikologi klinis", "M.Psi., Psikolog",
               (
                   ("S1", "Psikologi", "psikologi", 22, "SPSI"),
                   ("PROFESI", "Magister Psikologi Profesi Peminatan Klinis", "psikologi", 26,
                    "MPSI"),
               ),
               _MIX_PSYCHOLOGY, "psikologi", "psikologi", "HIMPSI", female_share=0.75,
               sip_code="SIPPK", max_sips=2),
        _nakes(0.1, "tenaga kesehatan tradisional ramuan", tradisional, "A.Md.Kes.",
               _d3("Jamu", "D3JM"), _MIX_TRADITIONAL, "tradisional", "tradisional", "ASPETRI",
               kompetensi="Pengobat Tradisional Ramuan",
               jabatan="Tenaga Kesehatan Tradisional"),
        _nakes(0.1, "tenaga kesehatan tradisional keterampilan", tradisional, "A.Md.Kes.",
               _d3("Pengobat Tradisional", "D3BT"), _MIX_TRADITIONAL, "tradisional",
               "tradisional", "ASPETRI", kompetensi="Pengobat Tradisional Keterampilan",
               jabatan="Tenaga Kesehatan Tradisional"),
    ]
    # fmt: on


_TRACK_LIST: tuple[_Track, ...] = (*_medical_tracks(), *_health_tracks())
# Synthetic ID_JENIS_SDMK values (SISDMK's own table is not public): one per profession.
_JENIS_SDMK_IDS: dict[str, int] = {
    profession: number
    for number, profession in enumerate(
        dict.fromkeys(
            (
                "dokter",
                "dokter spesialis",
                "dokter gigi",
                "dokter gigi spesialis",
                "perawat",
                "bidan",
                "apoteker",
                "tenaga vokasi farmasi",
                *(t.profession for t in _TRACK_LIST),
            )
        ),
        start=1,
    )
}
_TRACKS: _Weighted[_Track] = _Weighted((t, t.weight) for t in _TRACK_LIST)
_SIP_COUNT = {
    1: _Weighted(((1, 1.0),)),
    2: _Weighted(((1, 85.0), (2, 15.0))),
    3: _Weighted(((1, 50.0), (2, 35.0), (3, 15.0))),
}

# -- facilities and workplaces ---------------------------------------------------------------

# org type (terminology.kemkes.go.id organization-type): 101 TPMD, 102 Puskesmas, 103 Klinik,
# 104 Rumah Sakit, 105 Apotek, 106 UTD, 107 Laboratorium
_FACILITY_TYPES = _Weighted(
    (
        ("102", 40.0),
        ("104", 25.0),
        ("103", 21.0),
        ("105", 6.0),
        ("107", 4.0),
        ("101", 3.0),
        ("106", 1.0),
    )
)
_PROVINCE_BASE_TYPES = ("104", "102", "102", "103", "105")
_NATIONAL_BASE_TYPES = ("101", "106", "107")
_HOSPITAL_OWNERS = _Weighted(
    (
        ("PEMERINTAH_DAERAH", 40.0),
        ("SWASTA", 48.0),
        ("TNI_POLRI", 8.0),
        ("PEMERINTAH_PUSAT", 4.0),
    )
)
_HOSPITAL_CLASSES: dict[str, _Weighted[str]] = {
    "PEMERINTAH_PUSAT": _Weighted((("A", 60.0), ("B", 40.0))),
    "PEMERINTAH_DAERAH": _Weighted((("A", 3.0), ("B", 25.0), ("C", 50.0), ("D", 22.0))),
    "SWASTA": _Weighted((("B", 15.0), ("C", 45.0), ("D", 40.0))),
    "TNI_POLRI": _Weighted((("B", 20.0), ("C", 50.0), ("D", 30.0))),
}
_STATUSES_BY_OWNER: dict[str, _Weighted[str]] = {
    "PEMERINTAH_DAERAH": _Weighted(
        (
            ("PNS", 42.0),
            ("PPPK", 18.0),
            ("PPPK_PARUH_WAKTU", 3.0),
            ("BLUD", 10.0),
            ("KONTRAK", 10.0),
            ("HONORER", 11.0),
            ("PTT", 3.0),
            ("NUSANTARA_SEHAT", 3.0),
        )
    ),
    "PEMERINTAH_PUSAT": _Weighted(
        (("PNS", 55.0), ("PPPK", 15.0), ("BLU", 20.0), ("KONTRAK", 10.0))
    ),
    "TNI_POLRI": _Weighted((("TNI_POLRI", 45.0), ("PNS", 30.0), ("KONTRAK", 25.0))),
    "SWASTA": _Weighted((("SWASTA_TETAP", 60.0), ("SWASTA_TIDAK_TETAP", 25.0), ("KONTRAK", 15.0))),
}
_PREVIOUS_STATUS_BY_OWNER: dict[str, _Weighted[str]] = {
    "PEMERINTAH_DAERAH": _Weighted((("HONORER", 50.0), ("KONTRAK", 35.0), ("PTT", 15.0))),
    "PEMERINTAH_PUSAT": _Weighted((("KONTRAK", 100.0),)),
    "TNI_POLRI": _Weighted((("KONTRAK", 100.0),)),
    "SWASTA": _Weighted((("SWASTA_TETAP", 50.0), ("SWASTA_TIDAK_TETAP", 50.0))),
}

Unit = tuple[str, str]
_HOSPITAL_UNITS: dict[str, tuple[Unit, ...]] = {
    "medis": (
        ("IGD-01", "Instalasi Gawat Darurat"),
        ("RJ-01", "Instalasi Rawat Jalan"),
        ("RI-01", "Instalasi Rawat Inap"),
    ),
    "keperawatan": (
        ("RI-01", "Instalasi Rawat Inap"),
        ("RI-02", "Ruang Rawat Inap Bedah"),
        ("IGD-01", "Instalasi Gawat Darurat"),
        ("ICU-01", "Intensive Care Unit"),
        ("OK-01", "Instalasi Bedah Sentral"),
        ("RJ-01", "Instalasi Rawat Jalan"),
        ("HD-01", "Unit Hemodialisis"),
    ),
    "kebidanan": (
        ("VK-01", "Kamar Bersalin"),
        ("PONEK-01", "Ruang PONEK"),
        ("RI-03", "Ruang Nifas"),
    ),
    "farmasi": (("FAR-01", "Instalasi Farmasi"),),
    "lab": (("LAB-01", "Instalasi Laboratorium"),),
    "radiologi": (("RAD-01", "Instalasi Radiologi"),),
    "elektromedis": (("IPSRS-01", "Instalasi Pemeliharaan Sarana Rumah Sakit"),),
    "gizi": (("GZ-01", "Instalasi Gizi"),),
    "rekam_medis": (("RM-01", "Instalasi Rekam Medis"),),
    "rehab": (("REH-01", "Instalasi Rehabilitasi Medik"),),
    "kesmas": (("PKRS-01", "Promosi Kesehatan Rumah Sakit"), ("PPI-01", "Komite PPI")),
    "kesling": (("IPL-01", "Instalasi Penyehatan Lingkungan"),),
    "gigi": (("GM-01", "Poli Gigi dan Mulut"),),
    "anestesi": (("OK-01", "Instalasi Bedah Sentral"),),
    "psikologi": (("PSI-01", "Poli Psikologi"),),
    "darah": (("BDRS-01", "Bank Darah Rumah Sakit"),),
    "jantung": (("CATH-01", "Instalasi Kateterisasi Jantung"),),
    "mata": (("MAT-01", "Poli Mata"),),
}
_PUSKESMAS_UNITS: dict[str, tuple[Unit, ...]] = {
    "medis": (("UMUM-01", "Poli Umum"), ("UGD-01", "Unit Gawat Darurat")),
    "keperawatan": (
        ("UMUM-01", "Poli Umum"),
        ("UGD-01", "Unit Gawat Darurat"),
        ("RI-01", "Ruang Rawat Inap"),
        ("PERKESMAS-01", "Perawatan Kesehatan Masyarakat"),
    ),
    "kebidanan": (("KIA-01", "Ruang KIA/KB"), ("PERSALINAN-01", "Ruang Persalinan")),
    "farmasi": (("FAR-01", "Ruang Farmasi"),),
    "lab": (("LAB-01", "Laboratorium"),),
    "gizi": (("GIZI-01", "Ruang Gizi"),),
    "rekam_medis": (("RM-01", "Ruang Rekam Medis"),),
    "kesmas": (("PROMKES-01", "Promosi Kesehatan"), ("P2P-01", "Pencegahan Penyakit")),
    "kesling": (("KESLING-01", "Kesehatan Lingkungan"),),
    "gigi": (("GIGI-01", "Poli Gigi"),),
    "psikologi": (("JIWA-01", "Layanan Kesehatan Jiwa"),),
    "tradisional": (("KESTRAD-01", "Pelayanan Kesehatan Tradisional"),),
}
_CLINIC_UNITS: dict[str, tuple[Unit, ...]] = {
    "kebidanan": (("KIA-01", "Ruang KIA"),),
    "gigi": (("GIGI-01", "Poli Gigi"),),
    "farmasi": (("FAR-01", "Ruang Farmasi"),),
    "lab": (("LAB-01", "Laboratorium"),),
    "rehab": (("FISIO-01", "Ruang Fisioterapi"),),
}
_UNITS_BY_TYPE: dict[str, dict[str, tuple[Unit, ...]]] = {
    "104": _HOSPITAL_UNITS,
    "102": _PUSKESMAS_UNITS,
    "103": _CLINIC_UNITS,
}
_DEFAULT_UNIT: dict[str, Unit] = {
    "101": ("PRAKTIK-01", "Ruang Praktik"),
    "102": ("UMUM-01", "Poli Umum"),
    "103": ("RJ-01", "Rawat Jalan"),
    "104": ("RJ-01", "Instalasi Rawat Jalan"),
    "105": ("PELAYANAN-01", "Pelayanan Kefarmasian"),
    "106": ("UTD-01", "Pelayanan Darah"),
    "107": ("LAB-01", "Laboratorium"),
}

# -- trainings -------------------------------------------------------------------------------

_GENERAL_TOPICS = (
    "Pencegahan dan Pengendalian Infeksi Dasar",
    "Keselamatan Pasien di Fasilitas Pelayanan Kesehatan",
    "Bantuan Hidup Dasar",
    "Komunikasi Efektif dalam Pelayanan Kesehatan",
    "Etika dan Hukum Kesehatan",
    "Rekam Medis Elektronik dan Integrasi SATUSEHAT",
    "Pelayanan Kesehatan Ramah Disabilitas",
    "Kesiapsiagaan Bencana di Fasyankes",
)
_TOPICS: dict[str, tuple[str, ...]] = {
    "medis": (
        "Tata Laksana Tuberkulosis di FKTP",
        "Tata Laksana Hipertensi dan Diabetes Melitus",
        "Advanced Cardiac Life Support (ACLS)",
        "Tata Laksana Kegawatdaruratan Anak",
        "Deteksi Dini Kanker Leher Rahim",
        "Tata Laksana Demam Berdarah Dengue",
        "Penggunaan Antibiotik secara Bijak",
        "Kesehatan Jiwa di FKTP",
    ),
    "gigi": (
        "Tata Laksana Karies Gigi",
        "Pencegahan Penyakit Gigi dan Mulut",
        "Kedaruratan Medis di Praktik Kedokteran Gigi",
    ),
    "keperawatan": (
        "Asuhan Keperawatan Pasien Kritis",
        "Perawatan Luka Modern",
        "Basic Trauma Cardiac Life Support (BTCLS)",
        "Manajemen Nyeri",
        "Asuhan Keperawatan Hemodialisis",
        "Perawatan Paliatif",
    ),
    "kebidanan": (
        "Asuhan Persalinan Normal (APN)",
        "Pelayanan Kontrasepsi",
        "Manajemen Terpadu Balita Sakit (MTBS)",
        "Kegawatdaruratan Maternal dan Neonatal",
        "Pemantauan Pertumbuhan dan Pencegahan Stunting",
        "Konseling Menyusui",
    ),
    "farmasi": (
        "Pelayanan Kefarmasian di Puskesmas",
        "Pengelolaan Obat dan Bahan Medis Habis Pakai",
        "Pemantauan Terapi Obat",
        "Monitoring Efek Samping Obat (MESO)",
    ),
    "teknik": (
        "Pemantapan Mutu Laboratorium",
        "Proteksi Radiasi",
        "Pemeliharaan Alat Kesehatan",
        "Biosafety dan Biosecurity Laboratorium",
        "Koding Diagnosis ICD-10 dan ICD-9-CM",
    ),
    "kesmas": (
        "Surveilans Epidemiologi",
        "Penyelidikan Epidemiologi Kejadian Luar Biasa",
        "Promosi Kesehatan Berbasis Masyarakat",
        "Sanitasi Total Berbasis Masyarakat",
        "Inspeksi Kesehatan Lingkungan",
    ),
    "gizi": (
        "Tata Laksana Gizi Buruk",
        "Pemberian Makan Bayi dan Anak",
        "Asuhan Gizi Terstandar",
    ),
    "rehab": (
        "Rehabilitasi Medik Pasca Stroke",
        "Fisioterapi pada Gangguan Muskuloskeletal",
    ),
    "psikologi": (
        "Intervensi Psikologis Awal",
        "Asesmen Psikologi Klinis",
    ),
    "tradisional": (
        "Pelayanan Kesehatan Tradisional Komplementer",
        "Asuhan Mandiri Pemanfaatan TOGA dan Akupresur",
    ),
}
_TRAINING_COUNT = _Weighted(
    ((0, 10.0), (1, 18.0), (2, 22.0), (3, 20.0), (4, 14.0), (5, 10.0), (6, 6.0))
)
_TRAINING_DOMAIN: _Weighted[SkpDomain] = _Weighted(
    (("pembelajaran", 75.0), ("pelayanan", 15.0), ("pengabdian", 10.0))
)
_JPL = (8, 10, 16, 20, 24, 30, 32, 40, 48)
_DOMAINS: tuple[SkpDomain, ...] = ("pembelajaran", "pelayanan", "pengabdian")
_MIN_DOMAIN_SHARE: dict[SkpDomain, float] = {
    "pembelajaran": 0.45,
    "pelayanan": 0.35,
    "pengabdian": 0.05,
}

# -- schools ---------------------------------------------------------------------------------

_SCHOOL_FORMS: dict[str, tuple[str, ...]] = {
    "fk": ("Fakultas Kedokteran Universitas {city}", "Fakultas Kedokteran Universitas {word}"),
    "fkg": ("Fakultas Kedokteran Gigi Universitas {city}",),
    "fkm": ("Fakultas Kesehatan Masyarakat Universitas {city}", "STIKes {word} {city}"),
    "farmasi": ("Fakultas Farmasi Universitas {city}", "Sekolah Tinggi Farmasi {word} {city}"),
    "psikologi": ("Fakultas Psikologi Universitas {city}",),
    "mipa": ("FMIPA Universitas {city}",),
    "univ": ("Universitas {word} {city}", "Universitas {city}"),
    "poltekkes": ("Poltekkes Kemenkes {city}",),
    "stikes": ("STIKes {word} {city}", "Fakultas Ilmu Kesehatan Universitas {word}"),
    "akper": ("Akademi Keperawatan {word} {city}", "Poltekkes Kemenkes {city}"),
    "akbid": ("Akademi Kebidanan {word} {city}", "Poltekkes Kemenkes {city}"),
    "akfar": ("Akademi Farmasi {word} {city}", "Poltekkes Kemenkes {city}"),
}


# -- the population --------------------------------------------------------------------------

# NIK uniqueness by construction: every index maps to its own (birth day 1..28, kecamatan 01..40,
# serial) triple. Indexes come in blocks of 28*40*50; inside a block a seeded bijection spreads
# them over day and kecamatan, and the block number lifts the serial by 50, so serials stay small.
_NIK_DAYS = 28
_NIK_DISTRICTS = 40
_NIK_SERIAL_BAND = 50
_NIK_BLOCK = _NIK_DAYS * _NIK_DISTRICTS * _NIK_SERIAL_BAND
assert (MAX_POPULATION - 1) // _NIK_BLOCK * _NIK_SERIAL_BAND + _NIK_SERIAL_BAND <= 9999


@dataclass
class Population:
    """The people and facilities of one seed; person i is `people[i]`."""

    seed: int
    size: int
    mismatch_rate: float
    facilities: tuple[Facility, ...]
    people: list[Person]
    epoch: dt.datetime
    _by_nik: dict[str, Person] | None = field(default=None, init=False, repr=False, compare=False)
    _by_str: dict[str, Person] | None = field(default=None, init=False, repr=False, compare=False)

    def by_nik(self, nik: str) -> Person | None:
        if self._by_nik is None:
            self._by_nik = {p.nik: p for p in self.people}
        return self._by_nik.get(nik)

    def by_str_number(self, str_number: str) -> Person | None:
        if self._by_str is None:
            self._by_str = {p.registration.str_number: p for p in self.people}
        return self._by_str.get(str_number)


def generate_population(
    *,
    size: int,
    seed: int,
    mismatch_rate: float = 0.02,
    on_progress: Callable[[int], None] | None = None,
) -> Population:
    """People 0..size-1 of `seed`; `on_progress(done)` runs every 1,000 people and at the end."""
    if not 0 <= size <= MAX_POPULATION:
        raise ValueError(f"size must be 0..{MAX_POPULATION:,}, got {size}")
    facilities = generate_facilities(seed)
    factory = _PersonFactory(seed, facilities, mismatch_rate)
    people: list[Person] = []
    # People hold no reference cycles, so the cyclic collector only burns time here (~25%).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for index in range(size):
            people.append(factory.person(index))
            if on_progress is not None and (index + 1) % PROGRESS_EVERY == 0:
                on_progress(index + 1)
    finally:
        if collecting:
            gc.enable()
    if on_progress is not None and size % PROGRESS_EVERY != 0:
        on_progress(size)
    return Population(
        seed=seed,
        size=size,
        mismatch_rate=mismatch_rate,
        facilities=facilities,
        people=people,
        epoch=factory.epoch,
    )


def person_at(
    seed: int, index: int, facilities: tuple[Facility, ...], mismatch_rate: float = 0.02
) -> Person:
    """Person `index` of `seed`, exactly as `generate_population` makes it."""
    return _PersonFactory(seed, facilities, mismatch_rate).person(index)


def generate_facilities(seed: int) -> tuple[Facility, ...]:
    """The fixed pool of facilities of `seed` (every province has a hospital and puskesmas)."""
    rng = _stream(seed, "facilities")
    org_ids = _Shuffle.keyed(seed, "satusehat-org", 1_000_000)
    provinces = tuple(PROVINCES.values())
    province_picker = _Weighted((p, p.weight) for p in provinces)
    plan: list[tuple[Province, str]] = [(p, t) for p in provinces for t in _PROVINCE_BASE_TYPES]
    plan += [(province_picker.pick(rng), t) for t in _NATIONAL_BASE_TYPES]
    while len(plan) < FACILITY_COUNT:
        plan.append((province_picker.pick(rng), _FACILITY_TYPES.pick(rng)))

    next_sequence: dict[str, int] = {}
    named_rsud: set[str] = set()
    facilities: list[Facility] = []
    for number, (province, org_type) in enumerate(plan):
        regency = _pick(rng, regencies_of(province.code))
        sequence = next_sequence.get(regency.code, _int(rng, 1, 20)) + _int(rng, 0, 2)
        next_sequence[regency.code] = sequence + 1
        name, ownership, rs_class = _facility_identity(rng, org_type, regency, named_rsud)
        facilities.append(
            Facility(
                code=f"{regency.code}{sequence:03d}",
                name=name,
                org_type=org_type,
                rs_class=rs_class,
                bpjs_code=f"{regency.code}R{sequence:03d}" if org_type == "104" else None,
                satusehat_org_id=f"{100_000_000 + org_ids(number):09d}",
                region=_region(rng, province, regency, _int(rng, 1, _NIK_DISTRICTS)),
                ownership=ownership,
            )
        )
    return tuple(sorted(facilities, key=lambda f: f.code))


def _facility_identity(
    rng: random.Random, org_type: str, regency: Regency, named_rsud: set[str]
) -> tuple[str, str, str | None]:
    """Name, ownership and hospital class of a new facility."""
    first, second = _sample(rng, _NAME_WORDS, 2)
    pair = f"{first} {second}" if rng.random() < 0.6 else first
    place = _pick(rng, _PLACE_WORDS)
    short = regency.short_name
    if org_type == "104":
        ownership = _HOSPITAL_OWNERS.pick(rng)
        if ownership == "PEMERINTAH_DAERAH":
            if regency.code in named_rsud:
                name = f"RSUD {place}"
            else:
                named_rsud.add(regency.code)
                name = f"RSUD {regency.name}"
        elif ownership == "PEMERINTAH_PUSAT":
            name = f"RSUP {pair} {short}"
        elif ownership == "TNI_POLRI":
            name = (
                f"RS Bhayangkara {short}" if rng.random() < 0.5 else f"Rumah Sakit Tentara {short}"
            )
        else:
            name = f"{_pick(rng, ('RS', 'RSU', 'RSIA'))} {pair}"
        return name, ownership, _HOSPITAL_CLASSES[ownership].pick(rng)
    if org_type == "102":
        suffix = _pick(rng, ("", "", "", " I", " II"))
        return f"Puskesmas {place}{suffix}", "PEMERINTAH_DAERAH", None
    if org_type == "103":
        u = rng.random()
        if u < 0.08:
            return f"Klinik Pratama Polres {short}", "TNI_POLRI", None
        if u < 0.14:
            return f"Klinik Pratama Dinas Kesehatan {short}", "PEMERINTAH_DAERAH", None
        kind = "Klinik Utama" if rng.random() < 0.2 else "Klinik Pratama"
        return f"{kind} {pair}", "SWASTA", None
    if org_type == "101":
        if rng.random() < 0.7:
            first = _pick(rng, _FEMALE_FIRST)
            return f"Praktik Mandiri Bidan {first} {_pick(rng, _FEMALE_LAST)}", "SWASTA", None
        first = _pick(rng, _MALE_FIRST)
        return f"Praktik Dokter Mandiri dr. {first} {_pick(rng, _MALE_LAST)}", "SWASTA", None
    if org_type == "105":
        return f"Apotek {pair}", "SWASTA", None
    if org_type == "106":
        return f"UTD {regency.name}", "SWASTA", None
    return f"Laboratorium Klinik {pair}", "SWASTA", None


def _region(rng: random.Random, province: Province, regency: Regency, district: int) -> Region:
    # Codes and names repeat across people: interned, a million people share them.
    district_code = sys.intern(f"{regency.code}{district:02d}")
    # Kelurahan (urban) codes run 1001.., desa (rural) 2001..
    urban = regency.is_city or rng.random() < 0.3
    village = sys.intern(f"{district_code}{1 if urban else 2}{_int(rng, 1, 25):03d}")
    return Region(
        province_code=province.code,
        province_name=province.name,
        regency_code=regency.code,
        regency_name=regency.name,
        district_code=district_code,
        village_code=village,
    )


_PROVINCES = _Weighted((p, p.weight) for p in PROVINCES.values())
_REGENCIES_BY_PROVINCE: dict[str, tuple[Regency, ...]] = {
    code: regencies_of(code) for code in PROVINCES
}


class _PersonFactory:
    """Builds person i of one seed; holds what every person shares (indexes, bijections)."""

    def __init__(self, seed: int, facilities: tuple[Facility, ...], mismatch_rate: float) -> None:
        if not 0.0 <= mismatch_rate <= 1.0:
            raise ValueError(f"mismatch_rate must be 0..1, got {mismatch_rate}")
        if not facilities:
            raise ValueError("the facility pool is empty")
        self.seed = seed
        self.mismatch_rate = mismatch_rate
        self.epoch = population_epoch(seed)
        self._window_start = self.epoch - UPDATE_WINDOW
        self._window_us = UPDATE_WINDOW // dt.timedelta(microseconds=1)
        self._nik_slots = _Shuffle.keyed(seed, "nik-slot", _NIK_BLOCK)
        self._ihs = _Shuffle.keyed(seed, "ihs", 10_000_000)
        self._new_str = _Shuffle.keyed(seed, "str-new", 20_000_000_000)
        self._old_str = _Shuffle.keyed(seed, "str-old", 1_000_000_000_000)
        by_type: dict[str, list[Facility]] = {}
        by_province_type: dict[tuple[str, str], list[Facility]] = {}
        by_regency: dict[str, list[Facility]] = {}
        government: dict[str, list[Facility]] = {}
        for f in facilities:
            province = f.region.province_code
            by_type.setdefault(f.org_type, []).append(f)
            by_province_type.setdefault((province, f.org_type), []).append(f)
            by_regency.setdefault(f.region.regency_code, []).append(f)
            if f.ownership.startswith("PEMERINTAH") and f.org_type in ("102", "104"):
                government.setdefault(province, []).append(f)
        self._all = facilities
        self._by_type = {k: tuple(v) for k, v in by_type.items()}
        self._by_province_type = {k: tuple(v) for k, v in by_province_type.items()}
        self._by_regency = {k: tuple(v) for k, v in by_regency.items()}
        self._government = {k: tuple(v) for k, v in government.items()}
        self._mixes = {t.facility_mix: _Weighted(t.facility_mix) for t in _TRACK_LIST}

    # -- shared numbers ----------------------------------------------------------------------

    def updated_at(self, index: int) -> dt.datetime:
        offset = self._window_us * index // (index + UPDATE_HALF_INDEX)
        return self._window_start + dt.timedelta(microseconds=offset)

    def nik_slot(self, index: int) -> tuple[int, int, int]:
        """(birth day 1..28, kecamatan 1..40, serial) — a different triple for every index."""
        block, rest = divmod(index, _NIK_BLOCK)
        slot = self._nik_slots(rest)
        day = slot % _NIK_DAYS + 1
        district = slot // _NIK_DAYS % _NIK_DISTRICTS + 1
        serial = slot // (_NIK_DAYS * _NIK_DISTRICTS) + 1 + _NIK_SERIAL_BAND * block
        return day, district, serial

    # -- one person --------------------------------------------------------------------------

    def person(self, index: int) -> Person:
        if not 0 <= index < MAX_POPULATION:
            raise ValueError(f"index must be 0..{MAX_POPULATION - 1:,}, got {index}")
        digest = _digest(self.seed, "person", index)
        rng = random.Random(int.from_bytes(digest[:16], "big"))
        updated_at = self.updated_at(index)
        # The record is as of its own last change, so nothing in it happens after updated_at.
        today = updated_at.date()

        track = _TRACKS.pick(rng)
        gender: Gender = "female" if rng.random() < track.female_share else "male"
        foreign = track.old_kki and rng.random() < 0.002
        province = _PROVINCES.pick(rng)
        regency = _pick(rng, _REGENCIES_BY_PROVINCE[province.code])
        day, district, serial = self.nik_slot(index)
        region = _region(rng, province, regency, district)

        age = track.min_age + int((MAX_AGE + 1 - track.min_age) * rng.random() ** 1.35)
        month = _int(rng, 1, 12)
        year = today.year - age - (1 if (month, day) > (today.month, today.day) else 0)
        birth_date = dt.date(year, month, day)
        nik = make_nik(region.district_code, birth_date, gender, serial)

        full_name = _foreign_name(rng, gender) if foreign else _indonesian_name(rng, gender)
        educations, last_graduation = self._educations(rng, track, birth_date, age, today, region)
        gelar_depan, gelar_belakang = self._titles(rng, track, educations)
        first_registration = min(
            last_graduation + dt.timedelta(days=_int(rng, 30, 240)),
            today - dt.timedelta(days=60),
        )
        registration = self._registration(
            rng, index, track, province, age, foreign, first_registration, today
        )
        employments, is_active = self._employments(
            rng, track, province.code, birth_date, gender, age, first_registration, today
        )
        licenses = self._licenses(
            rng, track, employments[0], registration, first_registration, today
        )
        trainings = self._trainings(rng, track, regency, first_registration, today)
        cpd = self._cpd(rng, track, licenses[0], trainings, registration, today)

        sisdmk_identity = Identity(full_name, gelar_depan, gelar_belakang, birth_date)
        kki_identity, mismatch = self._kki_identity(digest, sisdmk_identity)
        birth_place = regency.short_name if rng.random() < 0.55 else _pick(rng, _CITIES)
        return Person(
            index=index,
            worker_id=_uuid4(rng),
            nik=nik,
            ihs_number=f"1000{self._ihs(index):07d}",
            gender=gender,
            birth_place=birth_place,
            region=region,
            address=_address(rng),
            phone=(
                f"+62 {_pick(rng, _MOBILE_PREFIXES)}-{_int(rng, 0, 9999):04d}-"
                f"{_int(rng, 0, 9999):04d}"
            ),
            email=_email(rng, full_name, index),
            citizenship="WNA" if foreign else "WNI",
            sisdmk_identity=sisdmk_identity,
            kki_identity=kki_identity,
            mismatch=mismatch,
            registration=registration,
            licenses=licenses,
            cpd=cpd,
            trainings=trainings,
            employments=employments,
            educations=educations,
            is_active=is_active,
            updated_at=updated_at,
        )

    def _educations(
        self,
        rng: random.Random,
        track: _Track,
        birth_date: dt.date,
        age: int,
        today: dt.date,
        region: Region,
    ) -> tuple[tuple[Education, ...], dt.date]:
        latest = today - dt.timedelta(days=120)
        delay = _int(rng, 0, max(0, min(4, age - track.min_age)))
        steps = list(track.education)
        if track.master is not None and age >= 32 and len(steps) < 3 and rng.random() < 0.08:
            steps.append(("S2", track.master[0], "univ", steps[-1][3] + 5, "MAG"))
        city = self._school_city(rng, region)
        educations: list[Education] = []
        previous = dt.date.min
        graduation = latest
        for level, programme, school, typical_age, tag in steps:
            delay += 1 if rng.random() < 0.2 else 0  # a year longer at some steps
            graduation = dt.date(
                birth_date.year + typical_age + delay, _int(rng, 3, 11), _int(rng, 1, 28)
            )
            graduation = max(min(graduation, latest), previous)
            previous = graduation
            if rng.random() < 0.25:
                city = self._school_city(rng, region)
            institution = sys.intern(
                _pick(rng, _SCHOOL_FORMS[school]).format(city=city, word=_pick(rng, _NAME_WORDS))
            )
            educations.append(
                Education(
                    level=level,
                    program=programme,
                    institution=institution,
                    graduation_year=graduation.year,
                    ijazah_no=f"{tag}/{graduation.year}/{_int(rng, 1, 99999):05d}",
                )
            )
        return tuple(educations), graduation

    @staticmethod
    def _school_city(rng: random.Random, region: Region) -> str:
        if rng.random() < 0.5:
            return _pick(rng, _REGENCIES_BY_PROVINCE[region.province_code]).short_name
        return _pick(rng, _CITIES)

    @staticmethod
    def _titles(
        rng: random.Random, track: _Track, educations: tuple[Education, ...]
    ) -> tuple[str | None, str | None]:
        chosen = 0
        if len(track.titles) > 1:
            point = rng.random() * sum(w for _, _, w in track.titles)
            while point >= track.titles[chosen][2] and chosen < len(track.titles) - 1:
                point -= track.titles[chosen][2]
                chosen += 1
        depan, belakang, _ = track.titles[chosen]
        if track.master is not None and educations[-1].level == "S2":
            belakang = f"{belakang}, {track.master[1]}" if belakang else track.master[1]
        if belakang == "A.Md.Keb." and rng.random() < 0.3:
            belakang = "Amd.Keb."  # both spellings are common in the registers
        return depan, belakang

    def _registration(
        self,
        rng: random.Random,
        index: int,
        track: _Track,
        province: Province,
        age: int,
        foreign: bool,
        first_registration: dt.date,
        today: dt.date,
    ) -> Registration:
        old_kki = (
            track.old_kki
            and not foreign
            and age >= 35
            and first_registration < LAW_DATE
            and rng.random() < 0.3
        )
        valid_until: dt.date | None = None
        if old_kki:
            # The last five-year renewal before the law; Pasal 449 keeps its end date.
            low = max(first_registration, _add_years(LAW_DATE, -5))
            issued = _day_between(rng, low, LAW_DATE - dt.timedelta(days=1))
            valid_until = _add_years(issued, 5) - dt.timedelta(days=1)
            str_number = f"{province.code}{issued.year % 100:02d}{self._old_str(index):012d}"
        else:
            conversion_end = min(today - dt.timedelta(days=14), dt.date(2025, 6, 30))
            if (
                first_registration >= LAW_DATE
                or conversion_end <= LIFETIME_CONVERSION_START
                or rng.random() < 0.3
            ):
                issued = first_registration
            else:
                issued = _day_between(rng, LIFETIME_CONVERSION_START, conversion_end)
            str_number = f"{_pick(rng, _STR_LETTERS)}{self._new_str(index):014d}"
        if foreign:
            # A foreigner's STR (sementara) is never for life: one year plus at most one
            # extension, so the current one was issued within the last two years.
            recent = _day_between(
                rng, today - dt.timedelta(days=700), today - dt.timedelta(days=30)
            )
            issued = max(issued, recent)
            valid_until = _add_years(issued, 2) - dt.timedelta(days=1)

        status: StrStatus = "AKTIF"
        reason: str | None = None
        changed_on = issued
        u = rng.random()
        last = today - dt.timedelta(days=1)
        if valid_until is not None and valid_until < last:
            status, reason = "KEDALUWARSA", "Masa berlaku STR telah berakhir"
            changed_on = valid_until + dt.timedelta(days=1)
        elif u < 0.03:
            status = "NONAKTIF_SEMENTARA"
            if issued < SKP_DEACTIVATION_START <= last:
                reason = "SKP belum mencukupi per 31 Desember 2024 (SE HK.02.01/MENKES/1063/2024)"
                changed_on = _day_between(
                    rng, SKP_DEACTIVATION_START, min(last, dt.date(2025, 3, 31))
                )
            else:
                reason = "Dinonaktifkan sementara selama pemeriksaan disiplin"
                changed_on = _day_between(rng, issued + dt.timedelta(days=30), last)
        elif u < 0.04:
            status, reason = "DICABUT", "Dicabut sebagai sanksi disiplin"
            changed_on = _day_between(rng, issued + dt.timedelta(days=30), last)
        changed_on = min(max(changed_on, issued), last)

        registration_type: RegistrationType = "reguler"
        if foreign:
            registration_type = "sementara"
        elif rng.random() < 0.015:
            registration_type = "bersyarat"
        return Registration(
            str_number=str_number,
            registration_type=registration_type,
            profession=track.profession,
            tenaga_group=track.group,
            issued_at=issued,
            valid_until=valid_until,
            status=status,
            status_reason=reason,
            status_changed_at=_at(rng, changed_on),
            validated=status != "AKTIF" or rng.random() < 0.96,
            kompetensi=track.kompetensi,
        )

    def _facility_near(self, rng: random.Random, org_type: str, province_code: str) -> Facility:
        local = self._by_province_type.get((province_code, org_type))
        if local and rng.random() < 0.88:
            return _pick(rng, local)
        national = self._by_type.get(org_type)
        return _pick(rng, national) if national else _pick(rng, self._all)

    def _employments(
        self,
        rng: random.Random,
        track: _Track,
        province_code: str,
        birth_date: dt.date,
        gender: Gender,
        age: int,
        first_registration: dt.date,
        today: dt.date,
    ) -> tuple[tuple[Employment, ...], bool]:
        mix = self._mixes[track.facility_mix]
        facility = self._facility_near(rng, mix.pick(rng), province_code)
        status = _STATUSES_BY_OWNER[facility.ownership].pick(rng)
        career_start = min(
            first_registration + dt.timedelta(days=_int(rng, 0, 180)),
            today - dt.timedelta(days=45),
        )
        last_start = today - dt.timedelta(days=30)
        if track.profession == "dokter" and age <= 27 and rng.random() < 0.4:
            status = "INTERNSIP"
        low = career_start
        if status == "INTERNSIP":
            low = max(career_start, today - dt.timedelta(days=330))
        elif status in _STATUS_SINCE:
            since, instead = _STATUS_SINCE[status]
            if last_start < since:
                status = instead
            else:
                low = max(career_start, since)
        # Many still work where they started; the others moved there some time later.
        start = low if rng.random() < 0.35 else _day_between(rng, low, last_start)
        start = _first_of_month(start)
        two_jobs = (
            status != "INTERNSIP" and (start - career_start).days > 2 * 365 and rng.random() < 0.45
        )

        nip_serial = _int(rng, 1, 999)
        cpns_tmt = start  # a NIP PNS keeps the TMT of the first CPNS appointment

        def nip(status: str, tmt_start: dt.date) -> str | None:
            if status == "PNS":
                return make_nip(birth_date, cpns_tmt, gender, nip_serial)
            if status in ASN_STATUSES:
                return make_ni_pppk(birth_date, tmt_start.year, gender, nip_serial)
            return None

        previous: Employment | None = None
        if two_jobs:
            previous_start = _first_of_month(
                _day_between(rng, career_start, start - dt.timedelta(days=365))
            )
            if status == "PNS" and rng.random() < 0.5:
                other = _pick(rng, self._government.get(province_code) or (facility,))
                previous_status, reason = "PNS", "MUTASI"
                cpns_tmt = previous_start
            else:
                other = self._facility_near(rng, mix.pick(rng), province_code)
                previous_status = _PREVIOUS_STATUS_BY_OWNER[other.ownership].pick(rng)
                reason = "RESIGN" if previous_status.startswith("SWASTA") else "KONTRAK_HABIS"
            previous = self._employment(
                rng,
                track,
                other,
                previous_status,
                nip=nip(previous_status, previous_start),
                start=previous_start,
                end=(start - dt.timedelta(days=1), reason),
                today=today,
            )

        end: tuple[dt.date, str] | None = None
        if rng.random() < 0.03 and (today - start).days > 240:
            # Left within the last three years; SISDMK keeps the record with is_active=0.
            end_date = _day_between(
                rng,
                max(start + dt.timedelta(days=180), _add_years(today, -3)),
                today - dt.timedelta(days=1),
            )
            if age >= 58 and status in ASN_STATUSES:
                end = (end_date, "PENSIUN")
            elif status in ("KONTRAK", "HONORER", "PTT", "NUSANTARA_SEHAT", "SWASTA_TIDAK_TETAP"):
                end = (end_date, "KONTRAK_HABIS" if rng.random() < 0.7 else "RESIGN")
            else:
                end = (end_date, "MENINGGAL" if rng.random() < 0.05 else "RESIGN")
        current = self._employment(
            rng, track, facility, status, nip=nip(status, start), start=start, end=end, today=today
        )
        employments = (current,) if previous is None else (current, previous)
        return employments, end is None

    @staticmethod
    def _employment(
        rng: random.Random,
        track: _Track,
        facility: Facility,
        status: str,
        *,
        nip: str | None,
        start: dt.date,
        end: tuple[dt.date, str] | None,
        today: dt.date,
    ) -> Employment:
        if track.specialist_unit is not None and facility.org_type == "104":
            unit = track.specialist_unit
        else:
            units = _UNITS_BY_TYPE.get(facility.org_type, {}).get(track.role)
            unit = _pick(rng, units) if units else _DEFAULT_UNIT[facility.org_type]
        years = ((end[0] if end else today) - start).days // 365
        return Employment(
            facility_code=facility.code,
            unit_code=unit[0],
            unit=unit[1],
            jabatan=_jabatan(track, status, years),
            jenis_sdmk_id=track.jenis_sdmk_id,
            employment_status=status,
            nip=nip,
            tmt_start=start,
            end_date=end[0] if end else None,
            end_reason=end[1] if end else None,
        )

    def _licenses(
        self,
        rng: random.Random,
        track: _Track,
        employment: Employment,
        registration: Registration,
        first_registration: dt.date,
        today: dt.date,
    ) -> tuple[PracticeLicense, ...]:
        count = _SIP_COUNT[track.max_sips].pick(rng)
        first_facility = employment.facility_code
        regency_code = first_facility[:4]
        nearby = self._by_regency.get(regency_code, ())
        codes = [first_facility]
        for _ in range(count - 1):
            candidates = [f.code for f in nearby if f.code not in codes and f.org_type != "102"]
            if not candidates:
                break
            codes.append(_pick(rng, candidates))
        earliest = max(employment.tmt_start, first_registration)
        if registration.valid_until is not None:
            # An old STR's SIPs were issued while it was still valid.
            earliest = min(earliest, registration.valid_until - dt.timedelta(days=30))
        last = today - dt.timedelta(days=7)
        if employment.end_date is not None:
            # A SIP lapses when its holder leaves the practice place.
            last = min(last, employment.end_date - dt.timedelta(days=30))
        licenses: list[PracticeLicense] = []
        for seq, code in enumerate(codes, start=1):
            if rng.random() < 0.06:
                low, high = _add_years(today, -6), _add_years(today, -5) - dt.timedelta(days=1)
            else:
                low, high = _add_years(today, -5) + dt.timedelta(days=1), last
            issued = _day_between(rng, max(low, earliest), high)
            issued = min(issued, last)
            valid_until = _add_years(issued, 5) - dt.timedelta(days=1)
            in_force = (
                valid_until >= today
                and registration.status == "AKTIF"
                and employment.end_date is None
            )
            licenses.append(
                PracticeLicense(
                    sip_number=_sip_number(rng, track.sip_code, code[:4], issued),
                    sip_seq=seq,
                    issuer_regency_code=code[:4],
                    facility_code=code,
                    issued_at=issued,
                    valid_until=valid_until,
                    status="BERLAKU" if in_force else "TIDAK_BERLAKU",
                )
            )
        return tuple(licenses)

    @staticmethod
    def _trainings(
        rng: random.Random,
        track: _Track,
        regency: Regency,
        first_registration: dt.date,
        today: dt.date,
    ) -> tuple[Training, ...]:
        count = _TRAINING_COUNT.pick(rng)
        if count == 0:
            return ()
        pool = _TOPICS[track.topics] + _GENERAL_TOPICS
        low = max(first_registration, _add_years(today, -6))
        trainings: list[Training] = []
        for topic in _sample(rng, pool, count):
            topic_no = pool.index(topic) + 1
            completed = _day_between(rng, low, today - dt.timedelta(days=1))
            jpl = _pick(rng, _JPL)
            source: Literal["PLATARAN_SEHAT", "OTHER"]
            if completed >= PLATARAN_SEHAT_START and rng.random() < 0.85:
                source = "PLATARAN_SEHAT"
                course_id = sys.intern(f"PS-{completed.year}-{topic_no:03d}{completed.month:02d}")
                provider = "Plataran Sehat"
                certificate = f"PS/{completed.year}/{course_id[-5:]}/{_int(rng, 1, 99999):05d}"
            else:
                source = "OTHER"
                course_id = sys.intern(f"{track.association}-{completed.year}-{topic_no:03d}")
                provider = sys.intern(f"{track.association} {regency.name}")
                certificate = f"{track.association}/{completed.year}/{_int(rng, 1, 9999):04d}"
            trainings.append(
                Training(
                    course_id=course_id,
                    source=source,
                    title=topic,
                    provider=provider,
                    jpl=jpl,
                    skp_value=_half_points(jpl * 0.25),
                    domain=_TRAINING_DOMAIN.pick(rng),
                    completed_at=completed,
                    certificate_no=certificate,
                )
            )
        trainings.sort(key=lambda t: t.completed_at, reverse=True)
        return tuple(trainings)

    @staticmethod
    def _cpd(
        rng: random.Random,
        track: _Track,
        license_: PracticeLicense,
        trainings: tuple[Training, ...],
        registration: Registration,
        today: dt.date,
    ) -> CpdSummary:
        period_end = license_.valid_until
        period_start = _add_years(period_end + dt.timedelta(days=1), -5)
        required = track.skp_required
        elapsed = min(1.0, max(0.0, (today - period_start).days / (period_end - period_start).days))
        # Deactivated for missing SKP: well behind, whatever the period.
        lagging = registration.status == "NONAKTIF_SEMENTARA" and "SKP" in (
            registration.status_reason or ""
        )
        pace = rng.uniform(0.1, 0.6) if lagging else rng.uniform(0.3, 1.6)
        target = required * elapsed * pace
        learning = rng.uniform(0.45, 0.6)
        service = rng.uniform(0.32, 0.45)
        shares: dict[SkpDomain, float] = {
            "pembelajaran": learning,
            "pelayanan": service,
            "pengabdian": max(0.02, 1.0 - learning - service),
        }
        from_trainings: dict[SkpDomain, float] = dict.fromkeys(_DOMAINS, 0.0)
        for t in trainings:
            if period_start <= t.completed_at <= today:
                from_trainings[t.domain] += t.skp_value
        by_domain: dict[SkpDomain, float] = {
            d: _half_points(max(from_trainings[d], target * shares[d])) for d in _DOMAINS
        }
        earned = _half_points(sum(by_domain.values()))
        sufficient = earned >= required and all(
            by_domain[d] >= _MIN_DOMAIN_SHARE[d] * required for d in _DOMAINS
        )
        return CpdSummary(
            period_start=period_start,
            period_end=period_end,
            required_total=required,
            earned_total=earned,
            by_domain=by_domain,
            adequacy="CUKUP" if sufficient and not lagging else "TIDAK_CUKUP",
            as_of=today,
        )

    def _kki_identity(self, digest: bytes, identity: Identity) -> tuple[Identity, tuple[str, ...]]:
        # A stream of its own: changing the rate changes who differs, never anything else.
        draw = int.from_bytes(digest[16:24], "big") / 2**64
        if draw >= self.mismatch_rate:
            return identity, ()
        rng = random.Random(int.from_bytes(digest[24:], "big"))
        u = rng.random()
        fields = ("name",) if u < 0.5 else ("birth_date",) if u < 0.8 else ("name", "birth_date")
        name = _misspell(rng, identity.full_name) if "name" in fields else identity.full_name
        birth_date = (
            _shift_birth_date(rng, identity.birth_date)
            if "birth_date" in fields
            else identity.birth_date
        )
        return (
            Identity(name, identity.gelar_depan, identity.gelar_belakang, birth_date),
            fields,
        )


# -- small builders --------------------------------------------------------------------------


def _indonesian_name(rng: random.Random, gender: Gender) -> str:
    firsts, lasts, leading = (
        (_MALE_FIRST, _MALE_LAST, _MALE_LEADING)
        if gender == "male"
        else (_FEMALE_FIRST, _FEMALE_LAST, _FEMALE_LEADING)
    )
    words: list[str] = []
    if rng.random() < 0.1:
        words.append(leading.pick(rng))
    words.append(_pick(rng, firsts))
    shape = rng.random()
    if shape < 0.2:  # two given names and a family name
        words += (_pick(rng, firsts), _pick(rng, lasts))
    elif shape < 0.88:  # given name and family name
        words.append(_pick(rng, lasts))
    # else a single name, still common in Java
    return " ".join(dict.fromkeys(words))


def _foreign_name(rng: random.Random, gender: Gender) -> str:
    return f"{_pick(rng, _FOREIGN_FIRST[gender])} {_pick(rng, _FOREIGN_LAST)}"


def _misspell(rng: random.Random, name: str) -> str:
    """A realistic different spelling of `name` (never `name` itself)."""
    words = name.split()
    variants: list[str] = []
    if "Muhammad" in words:
        variant = _pick(rng, _MUHAMMAD_VARIANTS)
        variants.append(" ".join(variant if w == "Muhammad" else w for w in words))
    if len(words) >= 2:
        swapped = [words[1], words[0], *words[2:]]
        variants.append(" ".join(swapped))
    position = _int(rng, 0, len(words) - 1)
    word = words[position]
    if len(word) >= 4:
        at = _int(rng, 1, len(word) - 2)
        dropped = word[:at] + word[at + 1 :]
        variants.append(" ".join([*words[:position], dropped, *words[position + 1 :]]))
        consonants = [i for i in range(1, len(word)) if word[i] not in _VOWELS]
        if consonants:
            at = _pick(rng, consonants)
            doubled = word[:at] + word[at] + word[at:]
            variants.append(" ".join([*words[:position], doubled, *words[position + 1 :]]))
    if "u" in word[1:]:
        at = word.index("u", 1)
        old_spelling = word[:at] + "oe" + word[at + 1 :]  # pre-1972 spelling: Susanti -> Soesanti
        variants.append(" ".join([*words[:position], old_spelling, *words[position + 1 :]]))
    variants = [v for v in variants if v != name]
    return _pick(rng, variants) if variants else f"{name}h"


def _shift_birth_date(rng: random.Random, birth_date: dt.date) -> dt.date:
    """Day and month swapped (when that is another date) or one day off."""
    if birth_date.day <= 12 and birth_date.day != birth_date.month and rng.random() < 0.5:
        return dt.date(birth_date.year, birth_date.day, birth_date.month)
    return birth_date + dt.timedelta(days=_pick(rng, (-1, 1)))


def _jabatan(track: _Track, status: str, years: int) -> str:
    if status == "INTERNSIP":
        return "Dokter Internsip"
    if status not in ASN_STATUSES or track.specialist_unit is not None:
        return track.jabatan
    if track.asn_expert:
        level = "Ahli Pertama" if years < 8 else "Ahli Muda" if years < 16 else "Ahli Madya"
    else:
        level = "Terampil" if years < 6 else "Mahir" if years < 14 else "Penyelia"
    return sys.intern(f"{track.asn_jabatan} {level}")


def _sip_number(rng: random.Random, code: str, regency_code: str, issued: dt.date) -> str:
    number = _int(rng, 1, 9999)
    form = _int(rng, 0, 3)
    if form == 0:
        return f"500.16.7.2/{code}/{number:03d}/{_ROMAN_MONTHS[issued.month - 1]}/{issued.year}"
    if form == 1:
        return f"503/{code}/{number:04d}/DPMPTSP/{issued.year}"
    if form == 2:
        return f"445/{number:04d}/{code}/DINKES/{issued.year}"
    return f"{code}/{regency_code}/{number:04d}/{issued.year}"


def _address(rng: random.Random) -> str:
    line = f"{_pick(rng, ('Jl.', 'Jalan', 'Gg.'))} {_pick(rng, _STREETS)} No. {_int(rng, 1, 250)}"
    if rng.random() < 0.7:
        line += f" RT {_int(rng, 1, 15):03d} RW {_int(rng, 1, 12):03d}"
    return line


def _email(rng: random.Random, full_name: str, index: int) -> str:
    words = ["".join(c for c in w.lower() if "a" <= c <= "z") for w in full_name.split()]
    words = [w for w in words if w]
    local = f"{words[0]}.{words[-1]}" if len(words) > 1 else words[0]
    # The index makes every address unique without a registry of used ones.
    return f"{local}{index}@{_EMAIL_DOMAINS.pick(rng)}"


def people_digest(people: Sequence[Person]) -> str:
    """SHA-256 over the people's reprs: equal digests mean byte-identical people."""
    sha = hashlib.sha256()
    for person in people:
        sha.update(repr(person).encode())
    return sha.hexdigest()
