"""A full sync of N=10,000 equals the mocks' data set field by field, after decryption, on
PostgreSQL (the SQLite default, at N=5,000: test_full_sync_equality_sqlite.py, a separate file
so the two long runs go to different test workers). That a second run changes nothing is shown
at N=300 in test_batch_sync; here it would double the longest test of the suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL

from adapter.store.crypto import BlindIndex, FieldCipher
from tests.integration.adapter.sync.reassembly import (
    project_kki,
    project_sisdmk,
    rebuild_kki,
    rebuild_sisdmk,
)
from tests.integration.adapter.sync.support import Mock, run_sync, running_mock, store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 10_000


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=N, seed=2026)


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=N, seed=2026)


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_full_sync_of_ten_thousand_equals_the_source_field_by_field(
    sisdmk: Mock,
    kki: Mock,
    empty_database_url: URL,
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    check_full_sync_equals_source(sisdmk, kki, empty_database_url, cipher, blind_index)


def check_full_sync_equals_source(
    sisdmk: Mock,
    kki: Mock,
    database_url: URL,
    cipher: FieldCipher,
    blind_index: BlindIndex,
    *,
    size: int = N,
) -> None:
    """Sync both mocks (of `size` people) into `database_url`; the store rebuilt equals their
    documents."""
    workers = sisdmk.records("health-workers")
    registrations = kki.records("registrations")
    assert len(workers) == size
    assert len(registrations) >= size * 0.9

    with store(database_url) as sessions:
        for system, mock in (("sisdmk", sisdmk), ("kki", kki)):
            result = run_sync(system, mock, sessions, cipher, blind_index, page_size=500)
            assert result.succeeded, result.error
            assert result.counts.rejected == 0

        with sessions() as session:
            stored_workers = rebuild_sisdmk(session, cipher)
            stored_registrations = rebuild_kki(session, cipher)

        assert stored_workers.keys() == {worker["worker_id"] for worker in workers}
        differences = [
            worker["worker_id"]
            for worker in workers
            if stored_workers[worker["worker_id"]] != project_sisdmk(worker)
        ]
        assert not differences, f"{len(differences)} workers differ, e.g. {differences[:3]}"
        # Shown in full for the first one, so a failure says which field.
        assert stored_workers[workers[0]["worker_id"]] == project_sisdmk(workers[0])

        assert stored_registrations.keys() == {r["str_number"] for r in registrations}
        assert stored_registrations[registrations[0]["str_number"]] == project_kki(registrations[0])
        differences = [
            registration["str_number"]
            for registration in registrations
            if stored_registrations[registration["str_number"]] != project_kki(registration)
        ]
        assert not differences, f"{len(differences)} registrations differ, e.g. {differences[:3]}"
