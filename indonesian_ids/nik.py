"""NIK (Nomor Induk Kependudukan): `PP KK CC DDMMYY SSSS`, with DD + 40 for women.

PP KK CC is the kecamatan of registration, DDMMYY the birth date, SSSS a serial from 0001.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from indonesian_ids.regions import PROVINCES

Gender = Literal["male", "female"]

NIK_LENGTH = 16
FEMALE_DAY_OFFSET = 40
MAX_AGE_YEARS = 100


class InvalidNikError(ValueError):
    """A NIK that can't be parsed; `problems` says why, as `validate_nik` would."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class NikParts:
    province_code: str  # 2 digits
    regency_code: str  # 4 digits
    district_code: str  # 6 digits (kecamatan)
    birth_date: dt.date
    gender: Gender
    serial: int  # 1..9999


def make_nik(region_district_code: str, birth_date: dt.date, gender: Gender, serial: int) -> str:
    """Build a NIK from a 6-digit kecamatan code, birth date, gender and serial 1..9999."""
    if len(region_district_code) != 6 or not region_district_code.isdigit():
        raise ValueError(f"kecamatan code must be 6 digits, got {region_district_code!r}")
    if not 1 <= serial <= 9999:
        raise ValueError(f"serial must be 1..9999, got {serial}")
    day = birth_date.day + (FEMALE_DAY_OFFSET if gender == "female" else 0)
    return (
        f"{region_district_code}{day:02d}{birth_date.month:02d}"
        f"{birth_date.year % 100:02d}{serial:04d}"
    )


def _shape_problems(nik: str) -> list[str]:
    if len(nik) != NIK_LENGTH:
        return [f"NIK must be {NIK_LENGTH} digits, got {len(nik)} characters"]
    for position, char in enumerate(nik, start=1):
        if not char.isascii() or not char.isdigit():
            return [f"NIK must contain digits only; character {position} is not a digit"]
    return []


def _century_year(yy: int, month: int, day: int, reference: dt.date) -> int:
    """The year ending in `yy` that makes the person 0-100 years old on `reference`."""
    year = reference.year - (reference.year - yy) % 100
    if (year, month, day) > (reference.year, reference.month, reference.day):
        year -= 100
    return year


def _birth_digits(nik: str) -> tuple[int, int, int, Gender | None]:
    """Day, month and two-digit year of DDMMYY, and the gender its day says (``None``: neither
    01-31 nor 41-71, in which case the day is the raw field)."""
    raw_day, month, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    if 1 <= raw_day <= 31:
        return raw_day, month, yy, "male"
    if FEMALE_DAY_OFFSET + 1 <= raw_day <= FEMALE_DAY_OFFSET + 31:
        return raw_day - FEMALE_DAY_OFFSET, month, yy, "female"
    return raw_day, month, yy, None


def could_be_nik(text: str) -> bool:
    """Whether `text` has a NIK's shape and codes: 16 digits, a known province, a day field of
    01-31 or 41-71, a month 01-12 and a serial from 0001. Independent of today's date, so a
    16-digit number that passes is treated as someone's NIK whatever year it encodes."""
    if _shape_problems(text) or text[:2] not in PROVINCES or text[12:] == "0000":
        return False
    _, month, _, gender = _birth_digits(text)
    return gender is not None and 1 <= month <= 12


def _check(
    nik: str, reference: dt.date, *, quote: bool = True
) -> tuple[list[str], dt.date | None, Gender | None, tuple[int, int, int]]:
    """Problems of a well-shaped NIK, plus what could be decoded: date, gender, (day, month, yy).
    Without `quote`, no problem names digits of the middle eight (kecamatan and birth date),
    which a masked NIK hides."""
    problems: list[str] = []
    province = nik[:2]
    if province not in PROVINCES:
        problems.append(f"province code {province} does not exist")
    if nik[2:4] == "00":
        problems.append("kab/kota code 00 does not exist")
    if nik[4:6] == "00":
        problems.append(
            "kecamatan code 00 does not exist" if quote else "its kecamatan code does not exist"
        )

    raw_day = int(nik[6:8])
    day, month, yy, gender = _birth_digits(nik)
    if gender is None:
        field = f"birth day field {raw_day:02d}" if quote else "its birth day field"
        problems.append(f"{field} is impossible: it must be 01-31 (men) or 41-71 (women, day + 40)")
    birth_date: dt.date | None = None
    if not 1 <= month <= 12:
        problems.append(
            f"birth month {month:02d} does not exist" if quote else "its birth month does not exist"
        )
    elif gender is not None:
        year = _century_year(yy, month, day, reference)
        try:
            birth_date = dt.date(year, month, day)
        except ValueError:
            problems.append(
                f"birth date {year:04d}-{month:02d}-{day:02d} does not exist"
                if quote
                else "its birth date does not exist"
            )
    if nik[12:] == "0000":
        problems.append("serial 0000 is not valid; serials start at 0001")
    return problems, birth_date, gender, (day, month, yy)


def validate_nik(
    nik: str,
    *,
    birth_date: dt.date | None = None,
    gender: Gender | None = None,
    reference: dt.date | None = None,
    quote: bool = True,
) -> list[str]:
    """Every reason `nik` can't be a real NIK (or can't be this person's); empty if valid.

    The two-digit year is read in the century that makes the holder 0-100 years old on
    `reference` (default today). `birth_date` and `gender`, when given, must agree with the NIK.
    Without `quote` the reasons name no digit a masked NIK hides (the kecamatan and the birth
    date, or the gender its day field gives): for reports that show the NIK masked.
    """
    problems = _shape_problems(nik)
    if problems:
        return problems
    problems, _, nik_gender, (day, month, yy) = _check(
        nik, reference or dt.date.today(), quote=quote
    )
    contradicted = contradicted_fields(nik, birth_date=birth_date, gender=gender)
    if "birth_date" in contradicted and birth_date is not None:
        problems.append(
            f"NIK encodes birth date {day:02d}-{month:02d}-{yy:02d} (DD-MM-YY) but the given "
            f"birth date is {birth_date:%d-%m-%y}"
            if quote
            else "the birth date it encodes is not the given birth date"
        )
    if "gender" in contradicted:
        problems.append(
            f"NIK encodes gender {nik_gender} but the given gender is {gender}"
            if quote
            else "the gender it encodes is not the given gender"
        )
    return problems


def contradicted_fields(
    nik: str, *, birth_date: dt.date | None = None, gender: str | None = None
) -> tuple[str, ...]:
    """Which of ``birth_date`` and ``gender`` the NIK's DDMMYY digits contradict, in that order.

    Only those digits are read: a NIK with another problem (an unknown region) still says
    whether it agrees. One that is not 16 digits contradicts nothing (`validate_nik` says what
    is wrong with it), nor does a day field that encodes no gender contradict a gender.
    """
    if _shape_problems(nik):
        return ()
    day, month, yy, nik_gender = _birth_digits(nik)
    contradicted: list[str] = []
    if birth_date is not None and (day, month, yy) != (
        birth_date.day,
        birth_date.month,
        birth_date.year % 100,
    ):
        contradicted.append("birth_date")
    if gender is not None and nik_gender is not None and gender != nik_gender:
        contradicted.append("gender")
    return tuple(contradicted)


def parse_nik(nik: str, *, reference: dt.date | None = None) -> NikParts:
    """Decode a NIK; an invalid one raises `InvalidNikError` (a `ValueError`) with the problems."""
    problems = _shape_problems(nik)
    if problems:
        raise InvalidNikError(problems)
    problems, birth_date, gender, _ = _check(nik, reference or dt.date.today())
    if problems or birth_date is None or gender is None:
        raise InvalidNikError(problems)
    return NikParts(
        province_code=nik[:2],
        regency_code=nik[:4],
        district_code=nik[:6],
        birth_date=birth_date,
        gender=gender,
        serial=int(nik[12:]),
    )
