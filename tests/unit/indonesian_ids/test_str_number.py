"""STR numbers: the two known shapes, and the opaque rules every STR number must meet."""

from __future__ import annotations

import pytest

from indonesian_ids.str_number import classify_str, validate_str


@pytest.mark.parametrize("number", ["QN00001234567890", "QZ00011234567890", "AB99999999999999"])
def test_classify_str_recognises_the_new_two_letter_format(number: str) -> None:
    assert classify_str(number) == "new"


def test_classify_str_recognises_an_old_16_digit_kki_str() -> None:
    assert classify_str("1234567887654321") == "old_kki"


@pytest.mark.parametrize(
    "number",
    [
        "qn00001234567890",  # lowercase letters
        "QN0000123456789",  # 13 digits
        "QNX0001234567890",  # three letters
        "123456788765432",  # 15 digits
        "12345678876543210",  # 17 digits
        "KTKI2019000123",  # an old KTKI number: format unknown
        "",
    ],
)
def test_classify_str_calls_every_other_shape_unknown(number: str) -> None:
    assert classify_str(number) == "unknown"


@pytest.mark.parametrize(
    "number", ["QN00001234567890", "1234567887654321", "KTKI2019000123", "A", "9" * 50]
)
def test_validate_str_accepts_any_1_to_50_uppercase_letters_and_digits(number: str) -> None:
    assert validate_str(number) == []


def test_validate_str_rejects_an_empty_number() -> None:
    assert validate_str("") == ["STR number is empty"]


def test_validate_str_rejects_more_than_50_characters() -> None:
    assert validate_str("9" * 51) == ["STR number is 51 characters long; at most 50 are allowed"]


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        (
            "qn00001234567890",
            "STR number may contain only A-Z and 0-9; character 1 ('q') is not allowed",
        ),
        (
            "QN-0001234567890",
            "STR number may contain only A-Z and 0-9; character 3 ('-') is not allowed",
        ),
        (
            "QN0000 234567890",
            "STR number may contain only A-Z and 0-9; character 7 (' ') is not allowed",
        ),
    ],
)
def test_validate_str_rejects_a_character_outside_a_to_z_and_0_to_9(
    number: str, problem: str
) -> None:
    assert validate_str(number) == [problem]


def test_validate_str_reports_length_and_characters_together() -> None:
    assert validate_str("a" * 51) == [
        "STR number is 51 characters long; at most 50 are allowed",
        "STR number may contain only A-Z and 0-9; character 1 ('a') is not allowed",
    ]
