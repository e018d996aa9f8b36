"""One worker in full, as loaded since the single-statement read, is byte for byte the document
the ORM read (five statements, `joinedload` + `selectinload`) built before — both backends."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from adapter.api.services import Caller
from adapter.audit import Actor, record_audit, seal_all, verify_chain
from adapter.composition import build_services
from adapter.queue.embedded import EmbeddedPublisher
from adapter.settings import load_settings
from adapter.store.crypto import BlindIndex, FieldCipher, decrypt_fields
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.models import AuditEvent, HealthWorker, IdentityFinding, Registration
from adapter.store.personal_fields import PERSON_IDENTITY_FIELDS
from adapter.store.repositories import HealthWorkerRepository
from adapter.workforce.directory import WITHHELD, WorkerNotFound, WorkforceDirectory
from tests.integration.adapter.sync.support import adapter_environment
from tests.support.databases import AUDIT_KEYS, BACKENDS, migrate
from tests.support.documents import kki_registration, sisdmk_worker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True),
]

# Microseconds and a non-UTC offset on purpose: both must come back as the ORM gave them.
FETCHED_AT = dt.datetime(2026, 11, 1, 9, 4, 5, 120_000, tzinfo=dt.timezone(dt.timedelta(hours=7)))
READ_AT = dt.datetime(2026, 11, 2, 3, 0, 0, 1_500, tzinfo=dt.UTC)


def _employment(start: str, **changes: Any) -> dict[str, Any]:
    return {
        "facility_code": "3273021",
        "facility_name": "Klinik Pratama Sehat Sintetis",
        "unit_code": "RJ-01",
        "unit": "Rawat Jalan",
        "jabatan": "Perawat Pelaksana",
        "jenis_sdmk_id": 5,
        "employment_status": "KONTRAK",
        "nip": None,
        "tmt_start": start,
        "end_date": None,
        "end_reason": None,
        "is_current": True,
    } | changes


def _training(n: int, completed_at: str, skp_value: float) -> dict[str, Any]:
    return {
        "course_id": f"PS-2025-{n:04d}",
        "source": "PLATARAN_SEHAT" if n % 2 else "OTHER",
        "title": f"Pelatihan {n} — “kutip” ü",
        "provider": "Kemenkes",
        "jpl": 10 * n,
        "skp_value": skp_value,
        "domain": "pembelajaran",
        "completed_at": completed_at,
        "certificate_no": f"CERT-2025-{n:04d}",
    }


def _sip(seq: int, **changes: Any) -> dict[str, Any]:
    return {
        "sip_number": f"445/00{seq}/SIPP/DINKES/2024",
        "sip_seq": seq,
        "issuer_regency_code": "3273",
        "facility_code": f"327302{seq}",
        "issued_at": "2024-06-01",
        "valid_until": "2029-05-31",
        "status": "BERLAKU",
    } | changes


def _full_worker() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    worker = sisdmk_worker(
        gelar_depan="dr.",
        employments=[
            _employment("2021-01-04", facility_name=None),
            _employment("2015-02-01", end_date="2020-12-31", end_reason="MUTASI", is_current=False),
            _employment("2018-07-15", employment_status="PNS", unit="IGD"),
        ],
        educations=[
            {
                "level": "S2",
                "program": "Magister Keperawatan",
                "institution": "Universitas Contoh",
                "graduation_year": 2016,
                "ijazah_no": "S2/2016/00042",
            },
            {
                "level": "PROFESI",
                "program": "Pendidikan Profesi Ners",
                "institution": "STIKes Contoh",
                "graduation_year": 2009,
                "ijazah_no": "NERS/2009/00007",
            },
        ],
    )
    first = kki_registration(
        worker,
        trainings=[
            _training(1, "2025-03-01", 6.0),
            _training(2, "2024-11-20", 0.0),
            _training(3, "2025-01-10", 2.25),
        ],
        sips=[_sip(2, status="TIDAK_BERLAKU"), _sip(1), _sip(3)],
    )
    first["skp"]["earned_total"] = 0.0
    first["certification"]["status_changed_at"] = "2019-05-20T07:15:30.5Z"
    first["certification"]["valid_until"] = "2029-05-19"
    # KKI spells the holder differently: an identity finding on the worker.
    second = kki_registration(
        worker,
        full_name=worker["full_name"] + " Berbeda",
        kompetensi="Spesialis",
        skp=None,
        sips=[],
        trainings=[_training(4, "2023-05-05", 12.75)],
    )
    second["certification"] |= {
        "status": "NONAKTIF_SEMENTARA",
        "status_reason": "Dalam pemeriksaan",
        "status_changed_at": "2025-08-09T23:59:59.000001Z",
    }
    third = kki_registration(worker, trainings=[], registration_type="sementara")
    return worker, [first, second, third]


@pytest.fixture
def stored(
    empty_database_url: URL, cipher: FieldCipher, blind_index: BlindIndex
) -> Iterator[tuple[sessionmaker[Session], uuid.UUID, uuid.UUID]]:
    engine = create_engine_from_url(empty_database_url)
    migrate(engine)
    sessions = session_factory(engine, audit_keys=AUDIT_KEYS)
    full, registrations = _full_worker()
    bare = sisdmk_worker(employments=[], educations=[], gelar_belakang=None)
    with sessions.begin() as session:
        repository = HealthWorkerRepository(session, cipher, blind_index)
        for worker in (full, bare):
            repository.upsert_from_sisdmk(worker, fetched_at=FETCHED_AT)
        for registration in registrations:
            repository.upsert_registration_from_kki(registration, fetched_at=FETCHED_AT)
    with sessions() as session:
        directory = WorkforceDirectory(session, cipher, blind_index)
        full_id, bare_id = (
            uuid.UUID(found["id"])
            for worker in (full, bare)
            if (found := directory.find_by_nik(worker["nik"], clear=False)) is not None
        )
    yield sessions, full_id, bare_id
    engine.dispose()


def test_the_document_is_byte_for_byte_the_orm_one(
    stored: Any, cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    sessions, full_id, bare_id = stored
    with sessions() as session:
        findings = session.scalars(
            select(IdentityFinding.id).where(IdentityFinding.worker_id == full_id)
        ).all()
        assert findings
        if session.get_bind().dialect.name == "postgresql":
            # JSON renders timestamps in the session's zone: the read must not depend on it.
            session.execute(text("SET TIME ZONE 'Asia/Jakarta'"))
        directory = WorkforceDirectory(session, cipher, blind_index, lambda: READ_AT)
        for worker_id in (full_id, bare_id):
            for clear in (True, False):
                before = _document_as_before(session, cipher, lambda: READ_AT, worker_id, clear)
                after = directory.worker(worker_id, clear=clear)
                assert json.dumps(after, ensure_ascii=False) == json.dumps(
                    before, ensure_ascii=False
                )
    with sessions() as session:
        document = WorkforceDirectory(session, cipher, blind_index, lambda: READ_AT).worker(
            full_id, clear=True
        )
    assert [len(r["sips"]) for r in document["registrations"]] != [0, 0, 0]
    assert sorted(len(r["trainings"]) for r in document["registrations"]) == [0, 1, 3]
    assert len(document["employments"]) == 3
    assert len(document["educations"]) == 2


# -- the read as it was (the ORM, five statements), kept as the reference -------------------------


def _document_as_before(
    session: Session,
    cipher: FieldCipher,
    clock: Callable[[], dt.datetime],
    worker_id: uuid.UUID,
    clear: bool,
) -> dict[str, Any]:
    row = (
        session.scalars(
            select(HealthWorker)
            .where(HealthWorker.id == worker_id)
            .options(
                joinedload(HealthWorker.registrations).options(
                    joinedload(Registration.skp),
                    selectinload(Registration.sips),
                    selectinload(Registration.trainings),
                ),
                selectinload(HealthWorker.employments),
                selectinload(HealthWorker.educations),
            )
        )
        .unique()
        .one()
    )
    personal = decrypt_fields(
        cipher,
        HealthWorker.__tablename__,
        row.id,
        {name: getattr(row, name) for name in PERSON_IDENTITY_FIELDS},
    )
    if not clear:
        personal = {
            "nik": _withhold(personal["nik"]),
            "full_name": _withhold(personal["full_name"]),
            "gelar_depan": _withhold(personal["gelar_depan"]),
            "gelar_belakang": _withhold(personal["gelar_belakang"]),
            "birth_date": None,
        }
    document = {
        "id": str(row.id),
        **personal,
        "masked": not clear,
        "gender": row.gender,
        "profession": row.profession,
        "tenaga_group": row.tenaga_group,
        "province_code": row.province_code,
        "regency_code": row.regency_code,
        "facility_code": row.facility_code,
        "is_active": row.is_active,
        "identity_source": row.identity_source,
        "provenance": _provenance(row, clock()),
    }
    document["employments"] = [
        {
            "facility_code": e.facility_code,
            "facility_name": e.facility_name,
            "unit": e.unit,
            "jabatan": e.jabatan,
            "employment_status": e.employment_status,
            "tmt_start": _iso(e.tmt_start),
            "end_date": _iso(e.end_date),
            "end_reason": e.end_reason,
            "is_current": e.is_current,
        }
        for e in row.employments
    ]
    document["educations"] = [
        {
            "level": e.level,
            "program": e.program,
            "institution": e.institution,
            "graduation_year": e.graduation_year,
        }
        for e in row.educations
    ]
    document["registrations"] = [_registration(r, clock) for r in row.registrations]
    return document


def _registration(row: Registration, clock: Callable[[], dt.datetime]) -> dict[str, Any]:
    sips, skp, trainings = row.sips, row.skp, row.trainings
    return {
        "str_number": row.str_number,
        "status": row.status,
        "status_reason": row.status_reason,
        "status_changed_at": _iso(row.status_changed_at),
        "valid_until": _iso(row.valid_until),
        "registration_type": row.registration_type,
        "profession": row.profession,
        "kompetensi": row.kompetensi,
        "issued_at": _iso(row.issued_at),
        "sips": [
            {
                "sip_number": s.sip_number,
                "sip_seq": s.sip_seq,
                "facility_code": s.facility_code,
                "issued_at": _iso(s.issued_at),
                "valid_until": _iso(s.valid_until),
                "status": s.status,
            }
            for s in sips
        ],
        "skp": None
        if skp is None
        else {
            "period_start": _iso(skp.period_start),
            "period_end": _iso(skp.period_end),
            "required_total": skp.required_total,
            "earned_total": float(skp.earned_total),
            "adequacy": skp.adequacy,
            "as_of": _iso(skp.as_of),
        },
        "trainings": [
            {
                "course_id": t.course_id,
                "source": t.source,
                "title": t.title,
                "jpl": t.jpl,
                "skp_value": float(t.skp_value),
                "domain": t.domain,
                "completed_at": _iso(t.completed_at),
            }
            for t in trainings
        ],
        "provenance": _provenance(row, clock()),
    }


def _provenance(row: Any, now: dt.datetime) -> dict[str, Any]:
    fetched: dt.datetime = row.fetched_at
    return {
        "source_system": row.source_system,
        "source_id": row.source_id,
        "source_version": row.source_version,
        "fetched_at": _iso(fetched),
        "age_s": round((now - fetched).total_seconds(), 3),
    }


def _withhold(value: str | None) -> str | None:
    return None if value is None else WITHHELD


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def test_the_read_and_its_audit_entry_take_two_statements_and_commit_before_returning(
    stored: Any, empty_database_url: URL
) -> None:
    sessions, full_id, _ = stored
    engine = sessions.kw["bind"]
    environment = adapter_environment(
        empty_database_url.render_as_string(hide_password=False),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
    )
    services = build_services(
        load_settings(environment), engine=engine, publisher=EmbeddedPublisher()
    )
    try:
        api = services.api
        caller = Caller(Actor(kind="user", subject="reader-1", client="hf-readonly"), pii=False)
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        api.worker(caller, full_id)  # this thread's writer learns its number
        event.listen(engine, "before_cursor_execute", count)
        try:
            document = api.worker(caller, full_id)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert document["masked"] is True
        if engine.dialect.name == "postgresql":
            # The read, then the entry claiming its writer's number: no BEGIN, no COMMIT either
            # (autocommit; they are not cursor statements: the entries below, seen from another
            # connection, show the commit, and the pooled connection is checked below).
            assert len(statements) == 2, statements
            # Autocommit ends with the read: the connection goes back to the pool in the
            # isolation level it came with, so the next transaction on it is a transaction.
            with contextlib.ExitStack() as pooled:
                idle = engine.pool.checkedin()  # type: ignore[attr-defined]
                levels = {
                    pooled.enter_context(engine.connect()).get_isolation_level()
                    for _ in range(idle)
                }
            assert idle, "the reads' connections are back in the pool"
            assert levels == {engine.dialect.default_isolation_level}, levels
        # A rollback takes this thread's next number back: the entry cannot be claimed in one
        # statement and is appended in a transaction instead.
        with sessions() as session:
            record_audit(session, caller.actor, "healthworker.read", "health_worker")
            session.rollback()
        api.worker(caller, full_id)
        unknown = uuid.uuid4()
        with pytest.raises(WorkerNotFound):
            api.worker(caller, unknown)
        # Committed before each call returned: another connection sees all of them.
        with engine.connect() as connection:
            rows = connection.execute(
                select(AuditEvent.resource_id, AuditEvent.detail, AuditEvent.writer_n)
                .where(AuditEvent.action == "healthworker.read")
                .order_by(AuditEvent.writer_n)
            ).all()
        assert [(r.resource_id, json.loads(r.detail)["found"]) for r in rows] == [
            (str(full_id), True),
            (str(full_id), True),
            (str(full_id), True),
            (str(unknown), False),
        ]
        assert [r.writer_n for r in rows] == [1, 2, 3, 4]
        seal_all(sessions)
        with sessions() as session:
            report = verify_chain(session)
        assert report.problem is None, report
    finally:
        services.close()
