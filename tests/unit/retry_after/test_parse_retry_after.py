"""`Retry-After` as seconds: delay-seconds, the three HTTP-date forms, garbage as None."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest

from retry_after import parse_retry_after

NOW = dt.datetime(2026, 11, 2, 8, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("0", 0.0)])
def test_delay_seconds_read_as_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_http_date_in_the_future_is_the_time_until_it() -> None:
    value = email.utils.format_datetime(NOW + dt.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(value, now=NOW) == 90.0


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 02 Nov 2026 08:01:30 GMT",
        "Monday, 02-Nov-26 08:01:30 GMT",
        "Mon Nov  2 08:01:30 2026",
        "Mon, 02 Nov 2026 08:01:30 -0000",
    ],
)
def test_all_http_date_forms_accepted_as_gmt(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == 90.0


def test_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=NOW) == 0.0


def test_without_now_measured_from_the_current_time() -> None:
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT") == 0.0
    far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT")
    assert far is not None
    assert far > 0


@pytest.mark.parametrize(
    "value", [None, "", "  ", "soon", "-5", "1.5", "1.5e3", "\u0663", "12 34", "Sun, 99 Foo"]
)
def test_unparseable_value_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("9" * 400, 9_999_999_999.0),  # past a float's range: it overflowed
        ("1" * 5000, 9_999_999_999.0),  # past Python's 4,300 digits for int(): ValueError
        ("0" * 5000 + "7", 7.0),
        ("9999999999", 9_999_999_999.0),
    ],
)
def test_any_length_of_delay_seconds_is_a_float_never_an_error(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds
