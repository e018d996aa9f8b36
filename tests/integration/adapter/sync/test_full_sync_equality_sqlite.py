"""The N=10,000 field-by-field equality of test_full_sync_equality.py, on the SQLite default."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL

from adapter.store.crypto import BlindIndex, FieldCipher
from tests.integration.adapter.sync import test_full_sync_equality as equality
from tests.integration.adapter.sync.support import Mock, running_mock

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=equality.N, seed=2026)


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=equality.N, seed=2026)


@pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)
def test_full_sync_of_ten_thousand_equals_the_source_field_by_field_on_sqlite(
    sisdmk: Mock,
    kki: Mock,
    empty_database_url: URL,
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    equality.check_full_sync_equals_source(sisdmk, kki, empty_database_url, cipher, blind_index)
