"""The field-by-field equality of test_full_sync_equality.py on the SQLite default, at N=5,000.

Why not 10,000: scale is what the PostgreSQL test proves, and it keeps N=10,000. What this one
adds is that every field of every kind of record comes back equal through SQLite's column
types. 5,000 people per mock (seed 2026) hold every kind the 10,000 hold: each document shape
and every value of the enumerated fields (profession, citizenship — the foreign workers first
appear between 4,000 and 5,000 —, registration type, status, employment status, unit…), checked
against the generator when N was chosen. The other 5,000 people, of the same kinds, would only
measure SQLite's speed, which is reported (the suite's `--durations`), not a goal; at N=10,000
this was the longest test of the suite.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL

from adapter.store.crypto import BlindIndex, FieldCipher
from tests.integration.adapter.sync import test_full_sync_equality as equality
from tests.integration.adapter.sync.support import Mock, running_mock

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 5_000


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=N, seed=2026)


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=N, seed=2026)


@pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)
def test_full_sync_equals_the_source_field_by_field_on_sqlite(
    sisdmk: Mock,
    kki: Mock,
    empty_database_url: URL,
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    equality.check_full_sync_equals_source(
        sisdmk, kki, empty_database_url, cipher, blind_index, size=N
    )
