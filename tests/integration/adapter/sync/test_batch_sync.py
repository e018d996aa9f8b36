"""`sync_system` against real `hf-mock` processes and real PostgreSQL and SQLite databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.crypto import BlindIndex, FieldCipher, Key, KeyRing, decrypt_fields
from adapter.store.models import (
    HealthWorker,
    IdentityFinding,
    QuarantinedRecord,
    Registration,
    SyncCheckpoint,
    SyncRun,
)
from adapter.store.repositories import HealthWorkerRepository
from adapter.sync import SyncProgress
from tests.integration.adapter.sync.support import (
    Mock,
    expected_findings,
    expected_rule_findings,
    run_sync,
    running_mock,
    store,
)
from tests.support.databases import BACKENDS

pytestmark = pytest.mark.integration

SIZE = 300
SAMPLE = 25


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=SIZE, seed=7)


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=SIZE, seed=7)


@pytest.fixture
def mocks(sisdmk: Mock, kki: Mock) -> Iterator[tuple[Mock, Mock]]:
    sisdmk.reset()
    kki.reset()
    yield sisdmk, kki
    sisdmk.reset()
    kki.reset()


@pytest.fixture
def sessions(empty_database_url: URL) -> Iterator[sessionmaker[Session]]:
    with store(empty_database_url) as factory:
        yield factory


def _count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _counts(result: Any) -> dict[str, int]:
    c = result.counts
    return {
        "fetched": c.fetched,
        "created": c.created,
        "updated": c.updated,
        "unchanged": c.unchanged,
        "rejected": c.rejected,
    }


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_full_sync_stores_every_record_encrypted_idempotently_with_findings(
    mocks: tuple[Mock, Mock],
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    sisdmk, kki = mocks
    workers = sisdmk.records("health-workers")
    registrations = kki.records("registrations")
    assert len(workers) == sisdmk.health()["records"]["health-workers"] == SIZE
    assert len(registrations) == kki.health()["records"]["registrations"]

    first = run_sync("sisdmk", sisdmk, sessions, cipher, blind_index)
    assert first.succeeded, first.error
    assert first.mode == "full"
    assert first.findings == expected_rule_findings(workers)
    assert _counts(first) == {
        "fetched": SIZE,
        "created": SIZE,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
    }
    registered = run_sync("kki", kki, sessions, cipher, blind_index)
    assert registered.succeeded, registered.error
    assert registered.counts.created == len(registrations)
    assert _count(sessions, HealthWorker, HealthWorker.sisdmk_worker_id.is_not(None)) == SIZE
    assert _count(sessions, Registration) == len(registrations)

    # Every deliberate mismatch (--mismatch-rate) is one finding per differing field; KKI's
    # differing birth dates also contradict the NIK KKI sends with them.
    identity = expected_findings(registrations, workers)
    rules = expected_rule_findings(registrations)
    assert identity > 0
    assert rules > 0
    assert registered.findings == identity + rules
    assert (
        _count(
            sessions,
            IdentityFinding,
            IdentityFinding.resolved_at.is_(None),
            IdentityFinding.rule == "identity_mismatch",
        )
        == identity
    )
    assert _count(sessions, IdentityFinding, IdentityFinding.resolved_at.is_(None)) == (
        identity + rules + first.findings
    )

    # Stored encrypted, decrypts to the source's values field by field.
    with sessions() as session:
        repository = HealthWorkerRepository(session, cipher, blind_index)
        for worker in workers[:: SIZE // SAMPLE]:
            stored = repository.find_by_nik(worker["nik"])
            assert stored is not None
            assert stored.nik == worker["nik"]
            assert stored.full_name == worker["full_name"]
            assert stored.birth_date == dt.date.fromisoformat(worker["birth_date"])
            assert stored.facility_code == worker.get("facility_code")
            row = session.get(HealthWorker, stored.id)
            assert row is not None
            assert worker["nik"] not in row.nik
            assert worker["full_name"] not in row.full_name

    # Runs recorded with their counts; a second incremental run finds nothing newer.
    for system, mock in (("sisdmk", sisdmk), ("kki", kki)):
        again = run_sync(system, mock, sessions, cipher, blind_index)
        assert again.succeeded, again.error
        assert again.mode == "incremental"
        assert _counts(again) == dict.fromkeys(_counts(again), 0)
    # A second full run re-reads everything and changes nothing.
    full = run_sync("sisdmk", sisdmk, sessions, cipher, blind_index, full=True)
    assert full.succeeded, full.error
    assert _counts(full) == {
        "fetched": SIZE,
        "created": 0,
        "updated": 0,
        "unchanged": SIZE,
        "rejected": 0,
    }
    assert full.findings == 0
    with sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.started_at)).all()
        assert [(r.system, r.mode, r.status) for r in runs] == [
            ("sisdmk", "full", "succeeded"),
            ("kki", "full", "succeeded"),
            ("sisdmk", "incremental", "succeeded"),
            ("kki", "incremental", "succeeded"),
            ("sisdmk", "full", "succeeded"),
        ]
        assert (runs[0].fetched, runs[0].created) == (SIZE, SIZE)
        assert all(r.finished_at is not None and r.error is None for r in runs)


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_incremental_run_fetches_only_changed_records_and_quarantines_bad_ones(
    mocks: tuple[Mock, Mock],
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    sisdmk, kki = mocks
    assert run_sync("sisdmk", sisdmk, sessions, cipher, blind_index).succeeded
    assert run_sync("kki", kki, sessions, cipher, blind_index).succeeded
    workers = sisdmk.records("health-workers")
    registration = kki.records("registrations")[0]

    changed = sisdmk.patch("health-workers", workers[0]["worker_id"], {"is_active": False})
    kki.patch(
        "registrations",
        registration["str_number"],
        {"certification": {"status": "DICABUT", "status_reason": "Sanksi disiplin (sintetis)"}},
    )
    result = run_sync("sisdmk", sisdmk, sessions, cipher, blind_index)
    assert result.succeeded, result.error
    assert _counts(result) == {
        "fetched": 1,
        "created": 0,
        "updated": 1,
        "unchanged": 0,
        "rejected": 0,
    }
    status = run_sync("kki", kki, sessions, cipher, blind_index)
    assert (status.counts.fetched, status.counts.updated) == (1, 1)
    with sessions() as session:
        repository = HealthWorkerRepository(session, cipher, blind_index)
        stored = repository.find_by_nik(workers[0]["nik"], decrypt=False)
        assert stored is not None
        assert stored.is_active is False
        assert stored.source_version == changed["version"]
        row = session.scalars(
            select(Registration).where(Registration.str_number == registration["str_number"])
        ).one()
        assert row.status == "DICABUT"

    # A worker that takes another's NIK is refused by the store: quarantined, run goes on.
    sisdmk.patch("health-workers", workers[2]["worker_id"], {"nik": workers[1]["nik"]})
    sisdmk.patch("health-workers", workers[3]["worker_id"], {"is_active": False})
    result = run_sync("sisdmk", sisdmk, sessions, cipher, blind_index)
    assert result.succeeded, result.error
    assert _counts(result) == {
        "fetched": 2,
        "created": 0,
        "updated": 1,
        "unchanged": 0,
        "rejected": 1,
    }
    assert result.quarantined_ids == (workers[2]["worker_id"],)
    with sessions() as session:
        quarantined = session.scalars(select(QuarantinedRecord)).one()
        assert quarantined.source_id == workers[2]["worker_id"]
        assert quarantined.run_id == result.run_id
        assert quarantined.reason.startswith("identity_conflict")
        assert workers[1]["nik"] not in quarantined.reason
        assert quarantined.payload is not None
        assert workers[1]["nik"] not in quarantined.payload
        clear = decrypt_fields(
            cipher, "quarantine", quarantined.id, {"payload": quarantined.payload}
        )["payload"]
        assert clear is not None
        assert workers[1]["nik"] in clear
        run = session.get(SyncRun, result.run_id)
        assert run is not None
        assert (run.status, run.rejected, run.updated) == ("succeeded", 1, 1)


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_page_that_keeps_failing_fails_the_run_and_the_next_run_resumes(
    mocks: tuple[Mock, Mock],
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    sisdmk, _ = mocks
    committed: list[SyncProgress] = []

    def break_after_first_page(progress: SyncProgress) -> None:
        committed.append(progress)
        if progress.pages == 1:
            sisdmk.fault(
                {"route": "listHealthWorkers", "kind": "error", "status": 503, "times": 20}
            )

    failed = run_sync(
        "sisdmk",
        sisdmk,
        sessions,
        cipher,
        blind_index,
        page_size=50,
        on_page=break_after_first_page,
        read_ahead=False,  # the fault must meet the second page's request
    )
    assert failed.status == "failed"
    assert failed.error_type in {"UpstreamUnavailable", "CircuitOpen"}
    assert failed.pages == 1
    assert failed.counts.fetched == 50
    with sessions() as session:
        run = session.get(SyncRun, failed.run_id)
        assert run is not None
        assert (run.status, run.fetched, run.created) == ("failed", 50, 50)
        assert run.error is not None
        assert run.error.startswith(str(failed.error_type))
        checkpoint = session.get(SyncCheckpoint, "sisdmk")
        assert checkpoint is not None
        assert checkpoint.cursor is not None
        assert checkpoint.run_id == failed.run_id
    assert _count(sessions, HealthWorker) == 50

    sisdmk.admin.delete("/faults").raise_for_status()
    resumed = run_sync("sisdmk", sisdmk, sessions, cipher, blind_index, page_size=50)
    assert resumed.succeeded, resumed.error
    assert resumed.resumed
    assert (resumed.counts.fetched, resumed.counts.created) == (SIZE - 50, SIZE - 50)
    assert _count(sessions, HealthWorker) == SIZE
    with sessions() as session:
        checkpoint = session.get(SyncCheckpoint, "sisdmk")
        assert checkpoint is not None
        assert checkpoint.cursor is None


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_key_retired_too_early_fails_the_run_and_quarantines_nothing(
    mocks: tuple[Mock, Mock],
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    """A SISDMK merge reads the stored KKI registration of the same person (decrypted): with
    its key gone from ENCRYPTION_KEYS no incoming record is at fault, so nothing is
    quarantined; the run fails naming the key and the next run, with the key back, writes."""
    sisdmk, kki = mocks
    assert run_sync("kki", kki, sessions, cipher, blind_index, full=True).succeeded
    assert run_sync("sisdmk", sisdmk, sessions, cipher, blind_index, full=True).succeeded
    with sessions.begin() as session:  # every SISDMK record a correction of itself
        session.execute(update(HealthWorker).values(payload_hash="stale"))
    retired = FieldCipher(KeyRing([Key("test-2", bytes(range(1, 33)))]))

    failed = run_sync("sisdmk", sisdmk, sessions, retired, blind_index, full=True)

    assert (failed.status, failed.error_type) == ("failed", "KeyNotFoundError")
    assert "test-1" in (failed.error or "")
    assert (failed.pages, failed.counts.rejected, failed.quarantined_ids) == (0, 0, ())
    assert _count(sessions, QuarantinedRecord) == 0
    assert _count(sessions, HealthWorker, HealthWorker.payload_hash == "stale") > 0
    again = run_sync("sisdmk", sisdmk, sessions, cipher, blind_index, full=True)
    assert again.succeeded, again.error
    assert _count(sessions, HealthWorker, HealthWorker.payload_hash == "stale") == 0
