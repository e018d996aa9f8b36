"""Domain rules a source record can break (UU 17/2023, the NIK layout), and the rule ids.

A record that breaks one is still stored, its source being authoritative; the store records a
finding naming the rule, the record and the field, and resolves it once a later version of the
record no longer breaks the rule.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from adapter.merge.documents import Identity, KkiRegistration, SisdmkWorker
from indonesian_ids.nik import contradicted_fields

# UU 17/2023 took effect on 8 August 2023: STRs issued from then on are for life (Pasal
# 260(4)); older ones keep their printed end date (Pasal 449), five years after issue.
LAW_DATE: Final = dt.date(2023, 8, 8)
PRE_LAW_STR_YEARS: Final = 5
# A foreign national's STR (sementara): two years, extendable once by two years.
FOREIGN_STR_YEARS: Final = 2 + 2
SIP_YEARS: Final = 5


class Rule(enum.StrEnum):
    """What a finding says is wrong."""

    # KKI and SISDMK disagree on an identity field of the same person (NIK).
    IDENTITY_MISMATCH = "identity_mismatch"
    # A citizen's STR issued under UU 17/2023 has an end date, or an older one runs past 5 years.
    STR_CITIZEN_LIFETIME = "str_citizen_lifetime"
    # A foreign national's STR has no end date, or runs past two years plus one extension.
    STR_FOREIGNER_TERM = "str_foreigner_term"
    # A SIP runs for more than five years.
    SIP_FIVE_YEARS = "sip_five_years"
    # The NIK's DDMMYY digits say another birth date (day + 40 for women).
    NIK_BIRTH_DATE = "nik_birth_date"
    # The NIK's day digits say the other sex.
    NIK_SEX = "nik_sex"


RULES: Final = tuple(rule.value for rule in Rule)
_NIK_RULES: Final = {"birth_date": Rule.NIK_BIRTH_DATE, "gender": Rule.NIK_SEX}


@dataclass(frozen=True)
class Breach:
    """A record breaks `rule` at `field` (a document path such as ``sips[2].valid_until``)."""

    rule: Rule
    field: str


def registration_breaches(registration: KkiRegistration) -> tuple[Breach, ...]:
    """The rules a KKI registration breaks: its STR's term, its SIPs' terms, its NIK."""
    found = list(_str_term(registration))
    found.extend(
        Breach(Rule.SIP_FIVE_YEARS, f"sips[{sip.sip_seq}].valid_until")
        for sip in registration.sips
        if sip.valid_until > add_years(sip.issued_at, SIP_YEARS)
    )
    found.extend(nik_breaches(registration.nik, registration.identity))
    return tuple(found)


def worker_breaches(worker: SisdmkWorker) -> tuple[Breach, ...]:
    """The rules a SISDMK worker record breaks: its NIK against its birth date and sex."""
    return nik_breaches(worker.nik, worker.identity)


def nik_breaches(nik: str, identity: Identity) -> tuple[Breach, ...]:
    """Where `nik` contradicts the birth date or sex of the same record."""
    birth_date: dt.date | None
    try:
        birth_date = (
            None if identity.birth_date is None else dt.date.fromisoformat(identity.birth_date)
        )
    except ValueError:
        birth_date = None  # the contract admits none; nothing to compare
    contradicted = contradicted_fields(nik, birth_date=birth_date, gender=identity.gender)
    return tuple(Breach(_NIK_RULES[field], field) for field in contradicted)


def _str_term(registration: KkiRegistration) -> Iterator[Breach]:
    issued, valid_until = registration.issued_at, registration.valid_until
    if registration.citizenship == "WNI" and valid_until is not None:
        if issued >= LAW_DATE or valid_until > add_years(issued, PRE_LAW_STR_YEARS):
            yield Breach(Rule.STR_CITIZEN_LIFETIME, "valid_until")
    elif registration.citizenship == "WNA" and (
        valid_until is None or valid_until > add_years(issued, FOREIGN_STR_YEARS)
    ):
        yield Breach(Rule.STR_FOREIGNER_TERM, "valid_until")


def add_years(day: dt.date, years: int) -> dt.date:
    """The same day `years` later; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)
