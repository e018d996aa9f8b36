"""NIP PNS and NI PPPK rules: building, decoding and each kind of invalid number."""

from __future__ import annotations

import datetime as dt

import pytest

from indonesian_ids.nip import (
    InvalidNipError,
    NipParts,
    make_ni_pppk,
    make_nip,
    parse_nip,
    validate_nip,
)

REFERENCE = dt.date(2026, 1, 15)
BIRTH = dt.date(1985, 3, 12)


def test_make_nip_encodes_birth_date_tmt_gender_and_serial() -> None:
    assert make_nip(BIRTH, dt.date(2010, 4, 1), "male", 3) == "198503122010041003"


def test_make_ni_pppk_puts_21_where_the_tmt_month_would_be() -> None:
    assert make_ni_pppk(BIRTH, 2023, "female", 17) == "198503122023212017"


@pytest.mark.parametrize("serial", [0, 1000])
def test_make_nip_rejects_a_serial_outside_1_to_999(serial: int) -> None:
    with pytest.raises(ValueError, match=r"serial must be 1\.\.999"):
        make_nip(BIRTH, dt.date(2010, 4, 1), "male", serial)


def test_parse_nip_decodes_a_pns_nip() -> None:
    assert parse_nip("198503122010041003", reference=REFERENCE) == NipParts(
        kind="PNS",
        birth_date=BIRTH,
        tmt_year=2010,
        tmt_month=4,
        gender="male",
        serial=3,
    )


def test_parse_nip_decodes_an_ni_pppk() -> None:
    assert parse_nip("198503122023212017", reference=REFERENCE) == NipParts(
        kind="PPPK",
        birth_date=BIRTH,
        tmt_year=2023,
        tmt_month=None,
        gender="female",
        serial=17,
    )


def test_parse_nip_raises_with_the_problems_when_invalid() -> None:
    with pytest.raises(InvalidNipError) as raised:
        parse_nip("198503122010043000", reference=REFERENCE)
    assert raised.value.problems == [
        "gender digit 3 must be 1 (male) or 2 (female)",
        "serial 000 is not valid; serials start at 001",
    ]


@pytest.mark.parametrize("nip", ["198503122010041003", "198503122023212017"])
def test_validate_nip_accepts_a_valid_pns_nip_and_ni_pppk(nip: str) -> None:
    assert validate_nip(nip, reference=REFERENCE) == []


@pytest.mark.parametrize(
    ("nip", "problem"),
    [
        ("19850312201004100", "NIP must be 18 digits, got 17 characters"),
        ("1985031220100410031", "NIP must be 18 digits, got 19 characters"),
        ("19850312 010041003", "NIP must contain digits only; character 9 is not a digit"),
        ("198503122010041OO3", "NIP must contain digits only; character 16 is not a digit"),
    ],
)
def test_validate_nip_rejects_a_wrong_shape_with_only_that_problem(nip: str, problem: str) -> None:
    assert validate_nip(nip, BIRTH, "male", reference=REFERENCE) == [problem]


@pytest.mark.parametrize(
    ("nip", "problem"),
    [
        ("198502302010041003", "birth date 1985-02-30 does not exist"),
        ("198513012010041003", "birth date 1985-13-01 does not exist"),
        ("203001012050041003", "birth date 2030-01-01 is in the future"),
        ("198503122010131003", "TMT month 13 is neither 01-12 (NIP PNS) nor 21 (NI PPPK)"),
        ("198503122010001003", "TMT month 00 is neither 01-12 (NIP PNS) nor 21 (NI PPPK)"),
        ("198503122003021003", "TMT 2003-02 is before the holder turned 18 (born 1985-03-12)"),
        ("198503122002212003", "TMT 2002 is before the holder turned 18 (born 1985-03-12)"),
        ("198503122010040003", "gender digit 0 must be 1 (male) or 2 (female)"),
        ("198503122099121003", "TMT 2099-12 is more than a year ahead"),
        ("198503122099212003", "TMT 2099 is more than a year ahead"),
        ("180001012020011001", "birth date 1800-01-01 makes the holder over 100"),
        ("198503122010041000", "serial 000 is not valid; serials start at 001"),
    ],
)
def test_validate_nip_rejects_an_impossible_part(nip: str, problem: str) -> None:
    assert validate_nip(nip, reference=REFERENCE) == [problem]


def test_validate_nip_accepts_a_tmt_in_the_month_the_holder_turned_18() -> None:
    assert validate_nip("198503122003031003", reference=REFERENCE) == []


def test_validate_nip_rejects_a_different_birth_date() -> None:
    assert validate_nip("198503122010041003", dt.date(1985, 3, 21), reference=REFERENCE) == [
        "NIP encodes birth date 1985-03-12 but the given birth date is 1985-03-21"
    ]


def test_validate_nip_rejects_a_different_gender() -> None:
    assert validate_nip("198503122023212017", BIRTH, "male", reference=REFERENCE) == [
        "NIP encodes gender female but the given gender is male"
    ]


def test_validate_nip_accepts_a_matching_birth_date_and_gender() -> None:
    assert validate_nip("198503122010041003", BIRTH, "male", reference=REFERENCE) == []
