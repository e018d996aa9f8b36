"""Domain rules of one record: STR terms by citizenship, SIP terms, the NIK's birth date and sex."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from adapter.merge.documents import KkiRegistration, SisdmkWorker
from adapter.merge.rules import (
    Breach,
    Rule,
    add_years,
    registration_breaches,
    worker_breaches,
)
from tests.unit.adapter.merge.merge_documents import (
    HER_NIK,
    kki_document,
    sisdmk_document,
    with_certification,
)


def _kki(doc: dict[str, Any]) -> tuple[Breach, ...]:
    return registration_breaches(KkiRegistration.from_document(doc))


def _str(citizenship: str, issued_at: str, valid_until: str | None) -> tuple[Breach, ...]:
    doc = with_certification(kki_document(), valid_until=valid_until)
    return _kki({**doc, "citizenship": citizenship, "issued_at": issued_at})


def test_a_record_that_breaks_no_rule_has_no_breach() -> None:
    assert _kki(kki_document()) == ()
    assert worker_breaches(SisdmkWorker.from_document(sisdmk_document())) == ()


@pytest.mark.parametrize(
    ("issued_at", "valid_until"),
    [
        ("2024-03-11", None),  # under UU 17/2023: for life
        ("2023-08-07", None),  # converted to a lifetime STR
        ("2019-05-20", "2024-05-19"),  # before the law: its printed end date (Pasal 449)
        ("2019-05-20", "2024-05-20"),  # five years to the day
    ],
)
def test_a_citizens_str_for_life_or_an_old_five_year_one_is_lawful(
    issued_at: str, valid_until: str | None
) -> None:
    assert _str("WNI", issued_at, valid_until) == ()


@pytest.mark.parametrize(
    ("issued_at", "valid_until"),
    [
        ("2023-08-08", "2028-08-07"),  # issued the day the law took effect, with an end date
        ("2024-03-11", "2029-03-10"),
        ("2019-05-20", "2024-05-21"),  # an old one running past five years
    ],
)
def test_a_citizens_str_with_an_end_date_under_the_law_breaks_the_lifetime_rule(
    issued_at: str, valid_until: str
) -> None:
    assert _str("WNI", issued_at, valid_until) == (
        Breach(Rule.STR_CITIZEN_LIFETIME, "valid_until"),
    )


@pytest.mark.parametrize(
    "valid_until",
    ["2026-03-10", "2026-03-11", "2028-03-11"],  # two years; two plus one two-year extension
)
def test_a_foreigners_str_within_two_years_plus_one_extension_is_lawful(
    valid_until: str,
) -> None:
    assert _str("WNA", "2024-03-11", valid_until) == ()


@pytest.mark.parametrize("valid_until", [None, "2028-03-12", "2034-03-10"])
def test_a_foreigners_str_for_life_or_past_the_extension_breaks_the_term_rule(
    valid_until: str | None,
) -> None:
    assert _str("WNA", "2024-03-11", valid_until) == (
        Breach(Rule.STR_FOREIGNER_TERM, "valid_until"),
    )


def test_each_sip_valid_more_than_five_years_is_a_breach_at_its_own_field() -> None:
    sips = [
        {**kki_document()["sips"][0], "sip_seq": 1, "valid_until": "2029-06-01"},  # 5 y exactly
        {**kki_document()["sips"][0], "sip_seq": 2, "valid_until": "2029-06-02"},  # a day more
        {**kki_document()["sips"][0], "sip_seq": 3, "valid_until": "2034-05-31"},
    ]
    assert _kki(kki_document(sips=sips)) == (
        Breach(Rule.SIP_FIVE_YEARS, "sips[2].valid_until"),
        Breach(Rule.SIP_FIVE_YEARS, "sips[3].valid_until"),
    )


@pytest.mark.parametrize(
    ("overrides", "breaches"),
    [
        ({"birth_date": "1985-03-13"}, [Rule.NIK_BIRTH_DATE]),  # another day
        ({"birth_date": "1985-04-12"}, [Rule.NIK_BIRTH_DATE]),  # another month
        ({"birth_date": "1995-03-12"}, [Rule.NIK_BIRTH_DATE]),  # another year
        ({"gender": "female"}, [Rule.NIK_SEX]),  # a woman's day would be 52
        ({"birth_date": "1985-03-13", "gender": "female"}, [Rule.NIK_BIRTH_DATE, Rule.NIK_SEX]),
        ({"nik": HER_NIK, "birth_date": "1990-08-17", "gender": "female"}, []),  # 57 = 17 + 40
        ({"nik": HER_NIK, "birth_date": "1990-08-17", "gender": "male"}, [Rule.NIK_SEX]),
        ({"nik": HER_NIK, "birth_date": "1990-08-57", "gender": "female"}, []),  # unreadable
    ],
)
def test_a_nik_that_contradicts_the_birth_date_or_sex_of_its_record_is_a_breach(
    overrides: dict[str, Any], breaches: list[Rule]
) -> None:
    expected = tuple(
        Breach(rule, "birth_date" if rule is Rule.NIK_BIRTH_DATE else "gender") for rule in breaches
    )
    assert _kki(kki_document(**overrides)) == expected
    assert worker_breaches(SisdmkWorker.from_document(sisdmk_document(**overrides))) == expected


def test_a_nik_whose_day_encodes_no_sex_contradicts_only_the_birth_date() -> None:
    doc = kki_document(nik="3273013503850007")  # day field 35: neither a man's nor a woman's

    assert _kki(doc) == (Breach(Rule.NIK_BIRTH_DATE, "birth_date"),)


def test_years_are_added_to_29_february_as_28_february() -> None:
    assert add_years(dt.date(2024, 2, 29), 5) == dt.date(2029, 2, 28)
    assert add_years(dt.date(2024, 2, 29), 4) == dt.date(2028, 2, 29)
