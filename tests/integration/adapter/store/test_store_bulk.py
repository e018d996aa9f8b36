"""A page's set-based writes (`adapter.store.bulk`: COPY and UPDATE … FROM on PostgreSQL,
executemany on SQLite and for a few rows) against both real backends: rows land, and a row the
store refuses fails with the same SQLAlchemy error an INSERT or UPDATE would raise."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from typing import Any, cast

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from adapter.store import bulk
from adapter.store.bulk import insert_rows, update_rows
from adapter.store.crypto import BlindIndex, FieldCipher, encrypt_fields
from adapter.store.models import Employment, HealthWorker
from adapter.store.repositories import HealthWorkerRepository
from tests.support.documents import sisdmk_worker

pytestmark = pytest.mark.integration

FETCHED_AT = dt.datetime(2026, 1, 30, 1, 2, 3, tzinfo=dt.UTC)
EMPLOYMENTS = cast(Table, Employment.__table__)
WORKERS = cast(Table, HealthWorker.__table__)


@pytest.fixture(params=["merged", "row_by_row"])
def update_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The way an update goes on PostgreSQL: merged from a temporary table (from
    `MERGE_FROM_ROWS` rows on) or an executemany (fewer rows); each test takes both."""
    merge_from = 1 if request.param == "merged" else sys.maxsize
    monkeypatch.setattr(bulk, "MERGE_FROM_ROWS", merge_from)
    return str(request.param)


def _stored_worker(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> HealthWorker:
    doc = sisdmk_worker()
    with sessions.begin() as session:
        HealthWorkerRepository(session, cipher, blind_index).upsert_from_sisdmk(
            doc, fetched_at=FETCHED_AT
        )
        worker = session.scalars(
            select(HealthWorker).where(HealthWorker.sisdmk_worker_id == uuid.UUID(doc["worker_id"]))
        ).one()
        session.expunge(worker)
    return worker


def _employment(worker: HealthWorker, nip: str | None, **overrides: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "worker_id": worker.id,
        "facility_code": "3171011",
        "facility_name": "RSUD Contoh",
        "unit_code": "U1",
        "unit": "IGD",
        "jabatan": "Perawat",
        "jenis_sdmk_id": 7,
        "employment_status": "PNS",
        "nip": nip,
        "tmt_start": dt.date(2020, 1, 1),
        "end_date": None,
        "end_reason": None,
        "is_current": True,
        "source_system": "sisdmk",
        "source_id": "x",
        "source_version": 1,
        "fetched_at": FETCHED_AT,
        "payload_hash": "h",
        **overrides,
    }


@pytest.mark.usefixtures("update_path")
def test_bulk_rows_are_inserted_and_updated(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    worker = _stored_worker(sessions, cipher, blind_index)
    row_id = uuid.uuid4()
    nip = encrypt_fields(cipher, Employment.__tablename__, row_id, {"nip": "198001012005011001"})
    rows = [_employment(worker, nip["nip"], id=row_id), _employment(worker, None)]
    with sessions.begin() as session:
        insert_rows(session.connection(), EMPLOYMENTS, rows)
        update_rows(
            session.connection(),
            WORKERS,
            [{"row_id": worker.id, "profession": "Bidan", "facility_code": "3171012"}],
        )
    with sessions() as session:
        ids = [row["id"] for row in rows]
        stored = session.scalar(
            select(func.count()).select_from(Employment).where(Employment.id.in_(ids))
        )
        assert stored == 2
        assert session.get(Employment, row_id).nip == nip["nip"]  # type: ignore[union-attr]
        updated = session.get(HealthWorker, worker.id)
        assert updated is not None
        assert (updated.profession, updated.facility_code) == ("Bidan", "3171012")
        assert updated.full_name == worker.full_name  # columns not named stay as they were


def test_bulk_insert_refuses_a_clear_value_in_an_encrypted_column(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    worker = _stored_worker(sessions, cipher, blind_index)
    with sessions() as session, pytest.raises(StatementError, match="not a field token"):
        insert_rows(session.connection(), EMPLOYMENTS, [_employment(worker, "198001012005011001")])


@pytest.mark.usefixtures("update_path")
def test_bulk_writes_raise_integrity_errors_as_statements_would(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    worker = _stored_worker(sessions, cipher, blind_index)
    duplicate = _employment(worker, None)
    with sessions() as session, pytest.raises(IntegrityError):
        insert_rows(session.connection(), EMPLOYMENTS, [duplicate, {**duplicate}])
    with sessions() as session, pytest.raises(IntegrityError):
        update_rows(session.connection(), WORKERS, [{"row_id": worker.id, "gender": None}])
    with sessions() as session:
        assert session.get(HealthWorker, worker.id) is not None
        assert session.get(Employment, duplicate["id"]) is None
