"""NIK rules: building, decoding and every kind of invalid NIK, with the exact problem text."""

from __future__ import annotations

import datetime as dt

import pytest

from indonesian_ids.nik import (
    InvalidNikError,
    NikParts,
    contradicted_fields,
    could_be_nik,
    make_nik,
    parse_nik,
    validate_nik,
)
from indonesian_ids.regions import PROVINCES, REGENCIES, regencies_of

REFERENCE = dt.date(2026, 1, 15)


def test_make_nik_encodes_region_birth_date_and_serial_for_men() -> None:
    assert make_nik("327301", dt.date(1985, 3, 12), "male", 7) == "3273011203850007"


def test_make_nik_adds_40_to_the_day_for_women() -> None:
    assert make_nik("317401", dt.date(1990, 8, 17), "female", 42) == "3174015708900042"


@pytest.mark.parametrize("district", ["32730", "3273011", "32730A"])
def test_make_nik_rejects_a_kecamatan_code_that_is_not_6_digits(district: str) -> None:
    with pytest.raises(ValueError, match="kecamatan code must be 6 digits"):
        make_nik(district, dt.date(1985, 3, 12), "male", 1)


@pytest.mark.parametrize("serial", [0, 10_000])
def test_make_nik_rejects_a_serial_outside_1_to_9999(serial: int) -> None:
    with pytest.raises(ValueError, match=r"serial must be 1\.\.9999"):
        make_nik("327301", dt.date(1985, 3, 12), "male", serial)


def test_parse_nik_decodes_every_part() -> None:
    assert parse_nik("3174015708900042", reference=REFERENCE) == NikParts(
        province_code="31",
        regency_code="3174",
        district_code="317401",
        birth_date=dt.date(1990, 8, 17),
        gender="female",
        serial=42,
    )


def test_parse_nik_round_trips_make_nik() -> None:
    birth = dt.date(1962, 2, 28)
    parts = parse_nik(make_nik("950101", birth, "female", 9999), reference=REFERENCE)
    assert (parts.birth_date, parts.gender, parts.serial) == (birth, "female", 9999)


def test_parse_nik_raises_with_the_problems_when_invalid() -> None:
    with pytest.raises(InvalidNikError) as raised:
        parse_nik("9974015708900000", reference=REFERENCE)
    assert raised.value.problems == [
        "province code 99 does not exist",
        "serial 0000 is not valid; serials start at 0001",
    ]
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("yymmdd", "reference", "year"),
    [
        ("150126", dt.date(2026, 1, 15), 2026),  # born today: age 0
        ("160126", dt.date(2026, 1, 15), 1926),  # tomorrow in 2026 would be the future
        ("150126", dt.date(2025, 12, 31), 1926),
        ("010100", dt.date(2026, 1, 15), 2000),
        ("010199", dt.date(2026, 1, 15), 1999),
    ],
)
def test_parse_nik_reads_the_year_in_the_century_that_makes_the_holder_0_to_100(
    yymmdd: str, reference: dt.date, year: int
) -> None:
    day, month, yy = yymmdd[:2], yymmdd[2:4], yymmdd[4:]
    nik = f"327301{day}{month}{yy}0001"
    assert parse_nik(nik, reference=reference).birth_date.year == year


@pytest.mark.parametrize("nik", ["3273011203850007", "3174015708900042", "9601014102000001"])
def test_validate_nik_accepts_a_valid_nik(nik: str) -> None:
    assert validate_nik(nik, reference=REFERENCE) == []


@pytest.mark.parametrize("code", sorted(PROVINCES))
def test_validate_nik_accepts_every_one_of_the_38_provinces(code: str) -> None:
    assert validate_nik(f"{code}01011203850007", reference=REFERENCE) == []


def test_regions_hold_38_provinces_including_the_six_papua_provinces() -> None:
    assert len(PROVINCES) == 38
    assert {code: PROVINCES[code].name for code in ("91", "92", "93", "94", "95", "96")} == {
        "91": "Papua",
        "92": "Papua Barat",
        "93": "Papua Selatan",
        "94": "Papua Tengah",
        "95": "Papua Pegunungan",
        "96": "Papua Barat Daya",
    }


def test_regions_hold_3_to_9_real_kab_kota_per_province_under_its_code() -> None:
    for code in PROVINCES:
        regencies = regencies_of(code)
        assert 3 <= len(regencies) <= 9, code
        assert all(r.code.startswith(code) and len(r.code) == 4 for r in regencies)
    assert REGENCIES["3273"].name == "Kota Bandung"
    assert REGENCIES["3174"].name == "Kota Administrasi Jakarta Selatan"


@pytest.mark.parametrize(
    ("nik", "problem"),
    [
        ("327301120385007", "NIK must be 16 digits, got 15 characters"),
        ("32730112038500071", "NIK must be 16 digits, got 17 characters"),
        ("", "NIK must be 16 digits, got 0 characters"),
        ("3273O11203850007", "NIK must contain digits only; character 5 is not a digit"),
        ("3273011203850 07", "NIK must contain digits only; character 14 is not a digit"),
        # An Arabic-Indic zero is a Unicode digit but not an ASCII one.
        ("3273011203850\u066007", "NIK must contain digits only; character 14 is not a digit"),
    ],
)
def test_validate_nik_rejects_a_wrong_shape_with_only_that_problem(nik: str, problem: str) -> None:
    assert validate_nik(nik, reference=REFERENCE) == [problem]


@pytest.mark.parametrize(
    ("nik", "problem"),
    [
        ("9973011203850007", "province code 99 does not exist"),
        ("2073011203850007", "province code 20 does not exist"),
        ("9773011203850007", "province code 97 does not exist"),
        ("3200011203850007", "kab/kota code 00 does not exist"),
        ("3273001203850007", "kecamatan code 00 does not exist"),
        ("3273011203850000", "serial 0000 is not valid; serials start at 0001"),
    ],
)
def test_validate_nik_rejects_an_impossible_code(nik: str, problem: str) -> None:
    assert validate_nik(nik, reference=REFERENCE) == [problem]


@pytest.mark.parametrize("day", ["00", "32", "40", "72", "99"])
def test_validate_nik_rejects_a_day_field_outside_both_ranges(day: str) -> None:
    assert validate_nik(f"327301{day}03850007", reference=REFERENCE) == [
        f"birth day field {day} is impossible: it must be 01-31 (men) or 41-71 (women, day + 40)"
    ]


@pytest.mark.parametrize("month", ["00", "13", "21"])
def test_validate_nik_rejects_a_month_that_does_not_exist(month: str) -> None:
    assert validate_nik(f"32730112{month}850007", reference=REFERENCE) == [
        f"birth month {month} does not exist"
    ]


@pytest.mark.parametrize(
    ("nik", "problem"),
    [
        ("3273013104900007", "birth date 1990-04-31 does not exist"),
        ("3273017102900007", "birth date 1990-02-31 does not exist"),  # woman: 71 = 31 + 40
        ("3273012902010007", "birth date 2001-02-29 does not exist"),
        ("3273016902230007", "birth date 2023-02-29 does not exist"),
    ],
)
def test_validate_nik_rejects_a_date_that_does_not_exist(nik: str, problem: str) -> None:
    assert validate_nik(nik, reference=REFERENCE) == [problem]


def test_validate_nik_accepts_29_february_in_a_leap_year() -> None:
    assert validate_nik("3273012902000007", reference=REFERENCE) == []
    assert validate_nik("3273016902960007", reference=REFERENCE) == []


def test_validate_nik_reports_every_problem_at_once() -> None:
    assert validate_nik("9900003113850000", reference=REFERENCE) == [
        "province code 99 does not exist",
        "kab/kota code 00 does not exist",
        "kecamatan code 00 does not exist",
        "birth month 13 does not exist",
        "serial 0000 is not valid; serials start at 0001",
    ]


def test_validate_nik_accepts_a_matching_birth_date_and_gender() -> None:
    problems = validate_nik(
        "3174015708900042", birth_date=dt.date(1990, 8, 17), gender="female", reference=REFERENCE
    )
    assert problems == []


def test_validate_nik_rejects_a_different_birth_date() -> None:
    assert validate_nik(
        "3174015708900042", birth_date=dt.date(1990, 8, 18), reference=REFERENCE
    ) == [
        "NIK encodes birth date 17-08-90 (DD-MM-YY) but the given birth date is 18-08-90",
    ]


def test_validate_nik_rejects_a_man_whose_nik_says_woman() -> None:
    assert validate_nik("3174015708900042", gender="male", reference=REFERENCE) == [
        "NIK encodes gender female but the given gender is male"
    ]


def test_validate_nik_rejects_a_woman_whose_nik_says_man() -> None:
    problems = validate_nik(
        "3273011203850007", birth_date=dt.date(1985, 3, 12), gender="female", reference=REFERENCE
    )
    assert problems == ["NIK encodes gender male but the given gender is female"]


def test_validate_nik_defaults_the_reference_to_today() -> None:
    born_this_year = dt.date.today().replace(month=1, day=1)
    nik = make_nik("327301", born_this_year, "male", 1)
    assert parse_nik(nik).birth_date == born_this_year
    assert validate_nik(nik) == []


@pytest.mark.parametrize(
    ("birth_date", "gender", "contradicted"),
    [
        (dt.date(1990, 8, 17), "female", ()),
        (dt.date(1990, 8, 18), "female", ("birth_date",)),
        (dt.date(2090, 8, 17), "female", ()),  # only DDMMYY is encoded: the century is not
        (dt.date(1990, 8, 17), "male", ("gender",)),
        (dt.date(1991, 8, 17), "male", ("birth_date", "gender")),
        (None, None, ()),
    ],
)
def test_contradicted_fields_names_what_the_nik_disagrees_with(
    birth_date: dt.date | None, gender: str | None, contradicted: tuple[str, ...]
) -> None:
    assert (
        contradicted_fields("3174015708900042", birth_date=birth_date, gender=gender)
        == contradicted
    )


def test_contradicted_fields_reads_the_birth_digits_of_an_otherwise_invalid_nik() -> None:
    # Province 99 does not exist and day 35 is neither a man's nor a woman's.
    assert contradicted_fields(
        "9973013503850007", birth_date=dt.date(1985, 3, 5), gender="female"
    ) == ("birth_date",)
    assert contradicted_fields("99730112038500", birth_date=dt.date(1985, 3, 5)) == ()


@pytest.mark.parametrize(
    "number",
    [
        "3273011203850007",  # a man
        "3174015708900042",  # a woman: day + 40
        "9601017112990001",  # day field 71, the highest
        "3273013104900007",  # 31 April: no such date, but the digits are a NIK's
        "3273011203300007",  # born in a year a 0-100 age window would not take today
    ],
)
def test_could_be_nik_accepts_a_nik_shaped_number_whatever_the_date(number: str) -> None:
    assert could_be_nik(number)


@pytest.mark.parametrize(
    "number",
    [
        "3221133367807823",  # an old KKI STR number: day field 33
        "9973011203850007",  # province 99 does not exist
        "3273010003850007",  # day field 00
        "3273017203850007",  # day field 72
        "3273011213850007",  # month 13
        "3273011200850007",  # month 00
        "3273011203850000",  # serial 0000
        "327301120385000",  # 15 digits
        "QZ00011234567890",  # a new-format STR number
    ],
)
def test_could_be_nik_refuses_a_number_that_cannot_be_a_nik(number: str) -> None:
    assert not could_be_nik(number)
