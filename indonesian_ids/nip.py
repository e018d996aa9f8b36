"""NIP PNS (`YYYYMMDD YYYYMM G SSS`) and NI PPPK (`YYYYMMDD YYYY 21 G SSS`), 18 digits each.

Birth date, then the TMT (CPNS start year-month; for PPPK the year and the marker `21` where the
month would be), gender 1 = male / 2 = female, and a 3-digit serial from 001.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from indonesian_ids.nik import Gender

NIP_LENGTH = 18
PPPK_MARKER = 21
MIN_APPOINTMENT_AGE = 18
# Older than this on the reference date is taken for a wrong century or a typo.
MAX_AGE = 100

NipKind = Literal["PNS", "PPPK"]

_GENDER_DIGIT: dict[Gender, str] = {"male": "1", "female": "2"}
_DIGIT_GENDER: dict[str, Gender] = {"1": "male", "2": "female"}


class InvalidNipError(ValueError):
    """A NIP that can't be parsed; `problems` says why, as `validate_nip` would."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class NipParts:
    kind: NipKind
    birth_date: dt.date
    tmt_year: int  # CPNS TMT year (PNS) or appointment year (PPPK)
    tmt_month: int | None  # None for PPPK
    gender: Gender
    serial: int  # 1..999


def _ymd(day: dt.date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _serial_text(serial: int) -> str:
    if not 1 <= serial <= 999:
        raise ValueError(f"serial must be 1..999, got {serial}")
    return f"{serial:03d}"


def make_nip(birth_date: dt.date, tmt: dt.date, gender: Gender, serial: int) -> str:
    """NIP PNS from the birth date, the CPNS TMT (only its year and month count) and gender."""
    return (
        f"{_ymd(birth_date)}{tmt.year:04d}{tmt.month:02d}"
        f"{_GENDER_DIGIT[gender]}{_serial_text(serial)}"
    )


def make_ni_pppk(birth_date: dt.date, appointment_year: int, gender: Gender, serial: int) -> str:
    """NI PPPK: like a NIP, with `21` where the TMT month would be."""
    return (
        f"{_ymd(birth_date)}{appointment_year:04d}{PPPK_MARKER}"
        f"{_GENDER_DIGIT[gender]}{_serial_text(serial)}"
    )


def _decode(
    nip: str, reference: dt.date, *, quote: bool = True
) -> tuple[list[str], NipParts | None]:
    """Problems and parts; without `quote` no problem names the NIP's digits (birth date, TMT,
    gender digit) a masked NIP hides."""
    if len(nip) != NIP_LENGTH:
        return [f"NIP must be {NIP_LENGTH} digits, got {len(nip)} characters"], None
    for position, char in enumerate(nip, start=1):
        if not char.isascii() or not char.isdigit():
            return [f"NIP must contain digits only; character {position} is not a digit"], None

    problems: list[str] = []
    birth_date: dt.date | None = None
    try:
        birth_date = dt.date(int(nip[0:4]), int(nip[4:6]), int(nip[6:8]))
    except ValueError:
        problems.append(
            f"birth date {nip[0:4]}-{nip[4:6]}-{nip[6:8]} does not exist"
            if quote
            else "its birth date does not exist"
        )
    if birth_date is not None and birth_date > reference:
        problems.append(
            f"birth date {birth_date.isoformat()} is in the future"
            if quote
            else "its birth date is in the future"
        )
    elif birth_date is not None and reference.year - birth_date.year > MAX_AGE:
        problems.append(
            f"birth date {birth_date.isoformat()} makes the holder over {MAX_AGE}"
            if quote
            else f"its birth date makes the holder over {MAX_AGE}"
        )

    tmt_year, tmt_month = int(nip[8:12]), int(nip[12:14])
    kind: NipKind | None = None
    if 1 <= tmt_month <= 12:
        kind = "PNS"
    elif tmt_month == PPPK_MARKER:
        kind = "PPPK"
    else:
        month = f"TMT month {nip[12:14]}" if quote else "its TMT month"
        problems.append(f"{month} is neither 01-12 (NIP PNS) nor {PPPK_MARKER} (NI PPPK)")
    born_ahead = birth_date is not None and birth_date > reference  # said already, and implies it
    if kind is not None and tmt_year > reference.year + 1 and not born_ahead:
        # An appointment may take effect months ahead, not years.
        when = f"{tmt_year:04d}-{tmt_month:02d}" if kind == "PNS" else f"{tmt_year:04d}"
        problems.append(
            f"TMT {when} is more than a year ahead"
            if quote
            else "its TMT is more than a year ahead"
        )
    if birth_date is not None and kind is not None:
        # A PPPK marker carries no month, so only its year can be checked.
        earliest = birth_date.year + MIN_APPOINTMENT_AGE
        too_early = (
            (tmt_year, tmt_month) < (earliest, birth_date.month)
            if kind == "PNS"
            else tmt_year < earliest
        )
        if too_early:
            when = f"{tmt_year:04d}-{tmt_month:02d}" if kind == "PNS" else f"{tmt_year:04d}"
            problems.append(
                f"TMT {when} is before the holder turned {MIN_APPOINTMENT_AGE} "
                f"(born {birth_date.isoformat()})"
                if quote
                else f"its TMT is before the holder turned {MIN_APPOINTMENT_AGE}"
            )

    gender = _DIGIT_GENDER.get(nip[14])
    if gender is None:
        digit = f"gender digit {nip[14]}" if quote else "its gender digit"
        problems.append(f"{digit} must be 1 (male) or 2 (female)")
    if nip[15:] == "000":
        problems.append("serial 000 is not valid; serials start at 001")
    if problems or birth_date is None or kind is None or gender is None:
        return problems, None
    return [], NipParts(
        kind=kind,
        birth_date=birth_date,
        tmt_year=tmt_year,
        tmt_month=tmt_month if kind == "PNS" else None,
        gender=gender,
        serial=int(nip[15:]),
    )


def parse_nip(nip: str, *, reference: dt.date | None = None) -> NipParts:
    """Decode a NIP PNS or NI PPPK; raises `InvalidNipError` (a `ValueError`) if it is invalid."""
    problems, parts = _decode(nip, reference or dt.date.today())
    if parts is None:
        raise InvalidNipError(problems)
    return parts


def validate_nip(
    nip: str,
    birth_date: dt.date | None = None,
    gender: Gender | None = None,
    *,
    reference: dt.date | None = None,
    quote: bool = True,
) -> list[str]:
    """Every reason `nip` can't be a real NIP/NI PPPK (or this person's); empty if valid.
    Without `quote` the reasons name none of its digits (for reports showing it masked)."""
    problems, _ = _decode(nip, reference or dt.date.today(), quote=quote)
    if len(nip) != NIP_LENGTH or not (nip.isascii() and nip.isdigit()):
        return problems
    if birth_date is not None and nip[:8] != _ymd(birth_date):
        problems.append(
            f"NIP encodes birth date {nip[0:4]}-{nip[4:6]}-{nip[6:8]} but the given birth date "
            f"is {birth_date.isoformat()}"
            if quote
            else "the birth date it encodes is not the given birth date"
        )
    nip_gender = _DIGIT_GENDER.get(nip[14])
    if gender is not None and nip_gender is not None and nip_gender != gender:
        problems.append(
            f"NIP encodes gender {nip_gender} but the given gender is {gender}"
            if quote
            else "the gender it encodes is not the given gender"
        )
    return problems
