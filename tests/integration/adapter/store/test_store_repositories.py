"""The health-worker repository against real PostgreSQL and SQLite: encryption at rest,
look-up by NIK through the blind index, idempotent upserts, identity findings."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text, update
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from adapter.errors import DecryptionError
from adapter.merge.plans import IdentityConflictError
from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.models import (
    Education,
    Employment,
    HealthWorker,
    IdentityFinding,
    PracticeLicense,
    Registration,
    Training,
)
from adapter.store.repositories import (
    Address,
    FacilityRepository,
    HealthWorkerRepository,
    UpsertResult,
)
from tests.support.documents import bumped, kki_registration, sisdmk_worker

pytestmark = pytest.mark.integration

FETCHED_AT = dt.datetime(2026, 1, 30, 1, 2, 3, tzinfo=dt.UTC)
PERSONAL_KEYS = ("nik", "full_name", "birth_place", "phone", "email", "ihs_number")


def _repository(session: Session, cipher: FieldCipher, blind_index: BlindIndex) -> Any:
    return HealthWorkerRepository(session, cipher, blind_index)


def _upsert_sisdmk(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    doc: dict[str, Any],
) -> UpsertResult:
    with sessions.begin() as session:
        result: UpsertResult = _repository(session, cipher, blind_index).upsert_from_sisdmk(
            doc, fetched_at=FETCHED_AT
        )
    return result


def _upsert_kki(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    doc: dict[str, Any],
) -> UpsertResult:
    with sessions.begin() as session:
        result: UpsertResult = _repository(
            session, cipher, blind_index
        ).upsert_registration_from_kki(doc, fetched_at=FETCHED_AT)
    return result


def _worker_id(session: Session, doc: dict[str, Any]) -> uuid.UUID:
    return session.scalars(
        select(HealthWorker.id).where(HealthWorker.sisdmk_worker_id == uuid.UUID(doc["worker_id"]))
    ).one()


def test_upsert_from_sisdmk_stores_only_ciphertext_when_reading_raw_rows(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = sisdmk_worker(nip="198503122010011001")
    _upsert_sisdmk(sessions, cipher, blind_index, doc)

    with sessions() as session:
        worker_id = _worker_id(session, doc)
        raw = (
            session.execute(
                text("SELECT * FROM health_workers WHERE nik_bidx = :digest"),
                {"digest": blind_index.digest(doc["nik"], purpose="nik")},
            )
            .mappings()
            .one()
        )
        employment_nip = session.execute(
            text("SELECT nip FROM employments WHERE worker_id = :id"),
            {"id": raw["id"]},
        ).scalar_one()

    stored = " ".join(str(value) for value in raw.values())
    for key in (*PERSONAL_KEYS, "nip"):
        assert doc[key] not in stored, key
    assert doc["address"]["line"] not in stored
    for column in ("nik", "full_name", "birth_date", "phone", "email", "nip", "address"):
        assert str(raw[column]).startswith("v1.test-1."), column
    assert employment_nip is None  # the employment carried no NIP

    with sessions() as session:
        record = _repository(session, cipher, blind_index).get(worker_id)
    assert record is not None
    for key in (*PERSONAL_KEYS, "nip", "gelar_depan", "gelar_belakang"):
        assert getattr(record, key) == doc[key], key
    assert record.birth_date == dt.date.fromisoformat(doc["birth_date"])
    assert record.address == Address(**doc["address"])
    assert record.identity_source == "sisdmk"
    assert record.facility_code == doc["facility_code"]


def test_get_leaves_personal_fields_empty_when_not_decrypting(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = sisdmk_worker()
    _upsert_sisdmk(sessions, cipher, blind_index, doc)

    with sessions() as session:
        record = _repository(session, cipher, blind_index).get(
            _worker_id(session, doc), decrypt=False
        )

    assert record is not None
    assert (record.nik, record.full_name, record.birth_date) == (None, None, None)
    assert record.profession == doc["profession"]


def test_find_by_nik_finds_worker_through_blind_index(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = sisdmk_worker()
    other = sisdmk_worker()
    _upsert_sisdmk(sessions, cipher, blind_index, doc)
    _upsert_sisdmk(sessions, cipher, blind_index, other)

    with sessions() as session:
        repository = _repository(session, cipher, blind_index)
        found = repository.find_by_nik(doc["nik"])
        stored_index = session.scalars(
            select(HealthWorker.nik_bidx).where(HealthWorker.id == _worker_id(session, doc))
        ).one()

    assert found is not None
    assert found.full_name == doc["full_name"]
    assert stored_index == blind_index.digest(doc["nik"], purpose="nik")
    assert doc["nik"] not in stored_index


def test_find_by_nik_returns_none_when_nobody_has_it(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    with sessions() as session:
        assert _repository(session, cipher, blind_index).find_by_nik("3200000000000000") is None


def test_upsert_from_sisdmk_is_unchanged_when_repeated(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = sisdmk_worker()

    first = _upsert_sisdmk(sessions, cipher, blind_index, doc)
    second = _upsert_sisdmk(sessions, cipher, blind_index, doc)

    assert (first, second) == (UpsertResult.CREATED, UpsertResult.UNCHANGED)
    with sessions() as session:
        worker_id = _worker_id(session, doc)
        assert session.scalar(select(func.count()).where(Employment.worker_id == worker_id)) == 1
        assert session.scalar(select(func.count()).where(Education.worker_id == worker_id)) == 1


def test_upsert_from_sisdmk_updates_when_version_is_bumped(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = sisdmk_worker()
    _upsert_sisdmk(sessions, cipher, blind_index, doc)
    changed = bumped(doc, email="pindah@example.id", is_active=False, educations=[])

    result = _upsert_sisdmk(sessions, cipher, blind_index, changed)

    assert result is UpsertResult.UPDATED
    with sessions() as session:
        worker_id = _worker_id(session, doc)
        record = _repository(session, cipher, blind_index).get(worker_id)
        educations = session.scalar(select(func.count()).where(Education.worker_id == worker_id))
    assert record is not None
    assert (record.email, record.is_active, record.source_version) == (
        "pindah@example.id",
        False,
        2,
    )
    assert educations == 0


def test_upsert_from_sisdmk_changes_nothing_when_an_older_version_arrives_late(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = sisdmk_worker()
    newer = bumped(doc, email="baru@example.id")
    _upsert_sisdmk(sessions, cipher, blind_index, newer)

    result = _upsert_sisdmk(sessions, cipher, blind_index, doc)

    assert result is UpsertResult.SUPERSEDED
    with sessions() as session:
        record = _repository(session, cipher, blind_index).find_by_nik(doc["nik"])
    assert record is not None
    assert record.email == "baru@example.id"


def test_a_second_sisdmk_record_with_the_same_nik_is_refused_and_the_first_keeps_its_row(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    first = sisdmk_worker(version=10, email="pertama@example.id")
    _upsert_sisdmk(sessions, cipher, blind_index, first)
    second = sisdmk_worker(nik=first["nik"], version=3, email="kedua@example.id")

    with pytest.raises(IdentityConflictError, match="another SISDMK record holds"):
        _upsert_sisdmk(sessions, cipher, blind_index, second)

    with sessions() as session:
        record = _repository(session, cipher, blind_index).find_by_nik(first["nik"])
        worker = session.get(HealthWorker, _worker_id(session, first))
    assert record is not None
    assert record.email == "pertama@example.id"
    assert worker is not None
    assert (str(worker.sisdmk_worker_id), worker.source_version) == (first["worker_id"], 10)


def test_upsert_registration_from_kki_writes_nothing_when_an_older_version_arrives_late(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = kki_registration()
    revoked = bumped(doc, sips=[], certification={**doc["certification"], "status": "DICABUT"})
    _upsert_kki(sessions, cipher, blind_index, revoked)

    result = _upsert_kki(sessions, cipher, blind_index, doc)

    assert result is UpsertResult.SUPERSEDED
    with sessions() as session:
        registration = session.scalars(
            select(Registration).where(Registration.str_number == doc["str_number"])
        ).one()
        sips = session.scalar(
            select(func.count()).where(PracticeLicense.registration_id == registration.id)
        )
    assert (registration.source_version, registration.status, sips) == (2, "DICABUT", 0)


def test_page_keeps_a_newer_version_written_after_it_loaded_its_rows(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    """A batch-sync page loads its rows, another writer stores a newer version, then the page
    upserts the older one: the newer version stays (PostgreSQL: the page's row locks make the
    writer wait; SQLite: the page holds the database's write lock from its first read)."""
    doc = kki_registration()
    _upsert_kki(sessions, cipher, blind_index, doc)
    synced = bumped(doc, kompetensi="Kompetensi (koreksi)")
    newer = bumped(synced, certification={**doc["certification"], "status": "DICABUT"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        with sessions() as session:
            page = _repository(session, cipher, blind_index)
            page.prefetch_kki([synced])
            writer = pool.submit(_upsert_kki, sessions, cipher, blind_index, newer)
            # Today the writer waits for the page; a store without locks lets it finish here.
            concurrent.futures.wait([writer], timeout=1.0)
            result = page.upsert_registration_from_kki(synced, fetched_at=FETCHED_AT)
            session.commit()
        assert writer.result() is UpsertResult.UPDATED

    assert result is UpsertResult.UPDATED or result is UpsertResult.SUPERSEDED
    with sessions() as session:
        registration = session.scalars(
            select(Registration).where(Registration.str_number == doc["str_number"])
        ).one()
    assert (registration.source_version, registration.status) == (3, "DICABUT")


def test_upsert_registration_from_kki_is_idempotent_and_updates_on_version_bump(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    worker = sisdmk_worker()
    _upsert_sisdmk(sessions, cipher, blind_index, worker)
    doc = kki_registration(worker)

    results = [_upsert_kki(sessions, cipher, blind_index, doc) for _ in range(2)]
    revoked = bumped(doc, trainings=[], certification={**doc["certification"], "status": "DICABUT"})
    results.append(_upsert_kki(sessions, cipher, blind_index, revoked))

    assert results == [UpsertResult.CREATED, UpsertResult.UNCHANGED, UpsertResult.UPDATED]
    with sessions() as session:
        registration = session.scalars(
            select(Registration).where(Registration.str_number == doc["str_number"])
        ).one()
        assert registration.worker_id == _worker_id(session, worker)
        assert registration.status == "DICABUT"
        assert registration.valid_until is None
        rid = registration.id
        assert session.scalar(select(func.count()).where(Training.registration_id == rid)) == 0
        assert (
            session.scalar(select(func.count()).where(PracticeLicense.registration_id == rid)) == 1
        )


def test_upsert_registration_from_kki_creates_worker_when_sisdmk_has_not_sent_them(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = kki_registration()
    _upsert_kki(sessions, cipher, blind_index, doc)
    worker = sisdmk_worker(nik=doc["nik"], full_name=doc["full_name"])

    result = _upsert_sisdmk(sessions, cipher, blind_index, worker)

    assert result is UpsertResult.UPDATED  # the person KKI told us about, not a second one
    with sessions() as session:
        record = _repository(session, cipher, blind_index).find_by_nik(doc["nik"])
        count = session.scalar(
            select(func.count()).where(
                HealthWorker.nik_bidx == blind_index.digest(doc["nik"], purpose="nik")
            )
        )
    assert record is not None
    assert (record.identity_source, record.sisdmk_worker_id, count) == (
        "sisdmk",
        uuid.UUID(worker["worker_id"]),
        1,
    )


def test_kki_name_mismatch_records_finding_without_clear_values(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    worker = sisdmk_worker()
    _upsert_sisdmk(sessions, cipher, blind_index, worker)
    kki_name = worker["full_name"] + " Berbeda"
    doc = kki_registration(worker, full_name=kki_name)

    _upsert_kki(sessions, cipher, blind_index, doc)

    with sessions() as session:
        repository = _repository(session, cipher, blind_index)
        worker_id = _worker_id(session, worker)
        findings = repository.open_findings(worker_id)
        record = repository.get(worker_id)
        raw = session.execute(text("SELECT * FROM identity_findings")).all()
    assert [finding.field for finding in findings] == ["full_name"]
    assert findings[0].kki_digest == blind_index.digest(kki_name, purpose="identity.full_name")
    assert record is not None
    assert record.full_name == worker["full_name"]  # SISDMK's identity is kept
    assert kki_name not in repr(raw)
    assert worker["full_name"] not in repr(raw)

    _upsert_kki(sessions, cipher, blind_index, bumped(doc, full_name=worker["full_name"]))

    with sessions() as session:
        assert _repository(session, cipher, blind_index).open_findings(worker_id) == []
        resolved = session.scalars(
            select(IdentityFinding.resolved_at).where(IdentityFinding.worker_id == worker_id)
        ).all()
    assert len(resolved) == 1
    assert resolved[0] is not None


def test_swapped_ciphertext_between_rows_fails_to_decrypt(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    victim, donor = sisdmk_worker(), sisdmk_worker()
    _upsert_sisdmk(sessions, cipher, blind_index, victim)
    _upsert_sisdmk(sessions, cipher, blind_index, donor)
    with sessions.begin() as session:
        victim_id, donor_id = _worker_id(session, victim), _worker_id(session, donor)
        donor_token = session.scalars(
            select(HealthWorker.full_name).where(HealthWorker.id == donor_id)
        ).one()
        session.execute(
            update(HealthWorker).where(HealthWorker.id == victim_id).values(full_name=donor_token)
        )

    with sessions() as session, pytest.raises(DecryptionError, match=r"health_workers\.full_name"):
        _repository(session, cipher, blind_index).get(victim_id)


def test_encrypted_column_refuses_clear_text_on_flush(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = sisdmk_worker()
    _upsert_sisdmk(sessions, cipher, blind_index, doc)

    with sessions() as session:
        worker = session.get(HealthWorker, _worker_id(session, doc))
        assert worker is not None
        worker.full_name = doc["full_name"]
        with pytest.raises(StatementError, match="not a field token") as raised:
            session.flush()
        assert doc["full_name"] not in str(raised.value)


def test_facility_upsert_is_unchanged_when_repeated(
    sessions: sessionmaker[Session], blind_index: BlindIndex
) -> None:
    doc = {
        "code": f"{uuid.uuid4().int % 10**7:07d}",
        "version": 1,
        "updated_at": "2025-12-01T00:00:00.000000Z",
        "name": "RSUD Kemayoran Sintetis",
        "org_type": "104",
        "rs_class": "C",
        "bpjs_code": "3171R014",
        "satusehat_org_id": "100012345",
        "ownership": "PEMERINTAH_DAERAH",
        "region": {
            "province_code": "31",
            "province_name": "DKI Jakarta",
            "regency_code": "3171",
            "regency_name": "Kota Jakarta Pusat",
            "district_code": "317101",
            "village_code": "3171011001",
        },
    }
    results = []
    for version_doc in (doc, doc, bumped(doc, name="RSUD Kemayoran Baru Sintetis")):
        with sessions.begin() as session:
            results.append(
                FacilityRepository(session, blind_index).upsert_from_sisdmk(
                    version_doc, fetched_at=FETCHED_AT
                )
            )

    assert results == [UpsertResult.CREATED, UpsertResult.UNCHANGED, UpsertResult.UPDATED]


def _findings(sessions: sessionmaker[Session], **where: Any) -> list[IdentityFinding]:
    with sessions() as session:
        query = select(IdentityFinding).order_by(IdentityFinding.detected_at, IdentityFinding.field)
        for column, value in where.items():
            query = query.where(getattr(IdentityFinding, column) == value)
        return list(session.scalars(query))


def test_a_kki_record_that_breaks_domain_rules_is_stored_with_findings_until_corrected(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    worker = sisdmk_worker()
    _upsert_sisdmk(sessions, cipher, blind_index, worker)
    sip = {**kki_registration()["sips"][0], "valid_until": "2030-06-01"}  # issued 2024-06-01
    doc = kki_registration(
        worker,
        issued_at="2024-03-11",
        sips=[sip],
        birth_date="1985-03-21",  # the NIK says 12-03-85
    )
    doc["certification"]["valid_until"] = "2029-03-10"  # a citizen's STR under UU 17/2023

    assert _upsert_kki(sessions, cipher, blind_index, doc) is UpsertResult.CREATED

    with sessions() as session:
        registration = session.scalars(
            select(Registration).where(Registration.str_number == doc["str_number"])
        ).one()
        raw = session.execute(
            text("SELECT * FROM identity_findings WHERE source_id = :id"),
            {"id": doc["str_number"]},
        ).all()
    assert registration.valid_until == dt.date(2029, 3, 10)  # stored as KKI sent it
    opened = _findings(sessions, registration_id=registration.id)
    assert {(f.rule, f.field) for f in opened} == {
        ("str_citizen_lifetime", "valid_until"),
        ("sip_five_years", "sips[1].valid_until"),
        ("nik_birth_date", "birth_date"),
        ("identity_mismatch", "birth_date"),  # and SISDMK's birth date is another
    }
    rule_findings = [f for f in opened if f.rule != "identity_mismatch"]
    assert {(f.source_system, f.source_id) for f in rule_findings} == {("kki", doc["str_number"])}
    assert all(f.kki_digest is None and f.digest_kid is None for f in rule_findings)
    assert all(f.resolved_at is None for f in opened)
    for value in (doc["nik"], doc["birth_date"], doc["full_name"]):
        assert value not in repr(raw)

    fixed = bumped(doc, birth_date=worker["birth_date"], sips=[])
    fixed["certification"]["valid_until"] = None
    assert _upsert_kki(sessions, cipher, blind_index, fixed) is UpsertResult.UPDATED

    after = _findings(sessions, registration_id=registration.id)
    assert len(after) == 4
    assert all(f.resolved_at is not None for f in after)


def test_a_sisdmk_record_whose_nik_contradicts_its_sex_gets_a_finding_on_the_record(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    doc = sisdmk_worker(gender="female")  # the NIK's day 12 is a man's
    _upsert_sisdmk(sessions, cipher, blind_index, doc)

    with sessions() as session:
        worker_id = _worker_id(session, doc)
    [finding] = _findings(sessions, worker_id=worker_id)
    assert (finding.rule, finding.field, finding.registration_id) == ("nik_sex", "gender", None)
    assert (finding.source_system, finding.source_id) == ("sisdmk", doc["worker_id"])
    assert finding.resolved_at is None

    # Unchanged documents leave it alone; the corrected version resolves it.
    assert _upsert_sisdmk(sessions, cipher, blind_index, doc) is UpsertResult.UNCHANGED
    _upsert_sisdmk(sessions, cipher, blind_index, bumped(doc, gender="male"))
    [resolved] = _findings(sessions, worker_id=worker_id)
    assert resolved.id == finding.id
    assert resolved.resolved_at is not None


def test_a_page_of_sisdmk_documents_finds_the_open_findings_it_prefetched(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    broken = [sisdmk_worker(birth_date="1985-03-13") for _ in range(3)]
    for doc in broken:
        _upsert_sisdmk(sessions, cipher, blind_index, doc)
    corrected = [bumped(doc, birth_date="1985-03-12") for doc in broken]

    with sessions.begin() as session:
        page = _repository(session, cipher, blind_index)
        page.prefetch_sisdmk(corrected)
        for doc in corrected:
            assert page.upsert_from_sisdmk(doc, fetched_at=FETCHED_AT) is UpsertResult.UPDATED

    for doc in broken:
        with sessions() as session:
            worker_id = _worker_id(session, doc)
        [finding] = _findings(sessions, worker_id=worker_id)
        assert finding.rule == "nik_birth_date"
        assert finding.resolved_at is not None


def test_a_registration_whose_nik_names_another_person_moves_there_with_its_findings(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    first, second = sisdmk_worker(), sisdmk_worker()
    for worker in (first, second):
        _upsert_sisdmk(sessions, cipher, blind_index, worker)
    doc = kki_registration(first, full_name="Nama Lain Sintetis")
    _upsert_kki(sessions, cipher, blind_index, doc)
    with sessions() as session:
        first_id, second_id = _worker_id(session, first), _worker_id(session, second)
    [before] = _findings(sessions, worker_id=first_id)

    moved = bumped(doc, nik=second["nik"])
    assert _upsert_kki(sessions, cipher, blind_index, moved) is UpsertResult.UPDATED

    with sessions() as session:
        registration = session.scalars(
            select(Registration).where(Registration.str_number == doc["str_number"])
        ).one()
        repository = _repository(session, cipher, blind_index)
        assert registration.worker_id == second_id
        assert repository.open_findings(first_id) == []
        assert [f.field for f in repository.open_findings(second_id)] == ["full_name"]
    [resolved] = _findings(sessions, worker_id=first_id)
    assert (resolved.id, resolved.resolved_at is not None) == (before.id, True)
    with sessions() as session:
        assert session.get(HealthWorker, first_id) is not None  # SISDMK's person stays


def _page_kki(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    docs: list[dict[str, Any]],
) -> list[UpsertResult]:
    """`docs` written as a sync page or a batch of events writes them: prefetched, staged."""
    with sessions.begin() as session:
        page = _repository(session, cipher, blind_index)
        page.prefetch_kki(docs)
        results = [page.upsert_registration_from_kki(doc, fetched_at=FETCHED_AT) for doc in docs]
        page.write_staged()
    return results


def _worker_of(sessions: sessionmaker[Session], str_number: str) -> uuid.UUID:
    with sessions() as session:
        return session.scalars(
            select(Registration.worker_id).where(Registration.str_number == str_number)
        ).one()


def _write_kki(
    paged: bool,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    doc: dict[str, Any],
) -> UpsertResult:
    if paged:
        [result] = _page_kki(sessions, cipher, blind_index, [doc])
        return result
    return _upsert_kki(sessions, cipher, blind_index, doc)


@pytest.mark.parametrize("paged", [True, False], ids=["page", "one document"])
@pytest.mark.parametrize("known_to_sisdmk", [True, False], ids=["to SISDMK's", "to nobody's"])
def test_a_person_only_kki_knew_is_deleted_when_their_registration_moves_to_its_corrected_nik(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    paged: bool,
    known_to_sisdmk: bool,
) -> None:
    """KKI sends a registration with a mistyped NIK (nobody in SISDMK has it: a worker made
    from KKI's identity stands in), then corrects the NIK: the registration moves, and the
    stand-in, holding nothing now, no longer shows as a second person under the mistyped NIK.
    The registration keeps all its findings, resolved ones included."""
    person = sisdmk_worker()
    if known_to_sisdmk:
        _upsert_sisdmk(sessions, cipher, blind_index, person)
    # Born on the 12th; the mistyped NIK says the 13th.
    typo = person["nik"][:6] + "13" + person["nik"][8:]
    doc = kki_registration(person, nik=typo)
    _write_kki(paged, sessions, cipher, blind_index, doc)
    stand_in = _worker_of(sessions, doc["str_number"])
    with sessions() as session:
        record = _repository(session, cipher, blind_index).find_by_nik(typo)
        assert record is not None
        assert (record.id, record.identity_source) == (stand_in, "kki")
        registration_id = session.scalars(
            select(Registration.id).where(Registration.str_number == doc["str_number"])
        ).one()
    findings_before = {f.id for f in _findings(sessions, registration_id=registration_id)}
    assert findings_before, "the mistyped NIK contradicts the birth date: a finding"

    corrected = bumped(doc, nik=person["nik"])
    assert _write_kki(paged, sessions, cipher, blind_index, corrected) is UpsertResult.UPDATED

    holder = _worker_of(sessions, doc["str_number"])
    assert holder != stand_in
    with sessions() as session:
        repository = _repository(session, cipher, blind_index)
        assert repository.find_by_nik(typo) is None
        assert session.get(HealthWorker, stand_in) is None
        now = repository.find_by_nik(person["nik"])
        assert now is not None
        assert now.id == holder
        assert now.identity_source == ("sisdmk" if known_to_sisdmk else "kki")
    after = _findings(sessions, registration_id=registration_id)
    assert findings_before <= {f.id for f in after}
    assert {f.worker_id for f in after} == {holder}
    assert _findings(sessions, worker_id=stand_in) == []


@pytest.mark.parametrize("paged", [True, False], ids=["page", "one document"])
def test_a_person_only_kki_knows_stays_while_another_registration_is_theirs(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex, paged: bool
) -> None:
    person, typo = sisdmk_worker(), sisdmk_worker()
    first = kki_registration(typo)
    second = kki_registration(typo)
    _page_kki(sessions, cipher, blind_index, [first, second])
    stand_in = _worker_of(sessions, first["str_number"])

    _write_kki(paged, sessions, cipher, blind_index, bumped(first, nik=person["nik"]))

    assert _worker_of(sessions, first["str_number"]) != stand_in
    assert _worker_of(sessions, second["str_number"]) == stand_in
    with sessions() as session:
        record = _repository(session, cipher, blind_index).find_by_nik(typo["nik"])
        assert record is not None
        assert record.id == stand_in


def test_a_page_that_moves_a_registration_off_a_person_and_gives_them_another_keeps_them(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    """The page's first document empties the stand-in, a later one names its NIK again: the
    later one finds the same person (not a second row with that NIK) and they stay."""
    person, typo = sisdmk_worker(), sisdmk_worker()
    leaving = kki_registration(typo)
    _page_kki(sessions, cipher, blind_index, [leaving])
    stand_in = _worker_of(sessions, leaving["str_number"])
    arriving = kki_registration(typo)

    results = _page_kki(
        sessions, cipher, blind_index, [bumped(leaving, nik=person["nik"]), arriving]
    )

    assert results == [UpsertResult.UPDATED, UpsertResult.CREATED]
    assert _worker_of(sessions, arriving["str_number"]) == stand_in
    with sessions() as session:
        assert session.get(HealthWorker, stand_in) is not None


@pytest.mark.parametrize("migrated_engine", ["postgresql"], indirect=True)
def test_a_page_locks_the_person_a_registration_moves_away_from(
    sessions: sessionmaker[Session], cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    """While a page moves a registration off a person (who may be deleted, or whose findings
    it resolves), another writer of that person waits for the page's commit (PostgreSQL: the
    page holds the row's lock; SQLite writers are serialised anyway)."""
    person, typo = sisdmk_worker(), sisdmk_worker()
    doc = kki_registration(typo)
    _upsert_kki(sessions, cipher, blind_index, doc)
    moving = bumped(doc, nik=person["nik"])
    other = kki_registration(typo)  # names the person the page's registration leaves

    with sessions.begin() as page_session:
        page = _repository(page_session, cipher, blind_index)
        page.prefetch_kki([moving])
        with sessions.begin() as other_session:
            other_session.execute(text("SET LOCAL lock_timeout = '300ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                _repository(other_session, cipher, blind_index).prefetch_kki([other])
            other_session.rollback()


@pytest.mark.parametrize("migrated_engine", ["postgresql"], indirect=True)
def test_a_kki_page_locks_all_its_workers_in_one_statement_in_id_order(
    migrated_engine: Engine,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    """Two statements (the workers the NIKs name, then those left) took locks out of id order:
    a page moving a registration from W to X against a page holding W and wanting X was a
    deadlock. Now one statement, ordered by id, as every other page takes them."""
    first, second = sisdmk_worker(), sisdmk_worker()
    for worker in (first, second):
        _upsert_sisdmk(sessions, cipher, blind_index, worker)
    doc = kki_registration(first)
    _upsert_kki(sessions, cipher, blind_index, doc)
    locking: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM health_workers" in statement and "FOR NO KEY UPDATE" in statement:
            locking.append(statement)

    event.listen(migrated_engine, "before_cursor_execute", record)
    try:
        _page_kki(sessions, cipher, blind_index, [bumped(doc, nik=second["nik"])])
    finally:
        event.remove(migrated_engine, "before_cursor_execute", record)
    assert len(locking) == 1, locking
    assert "ORDER BY health_workers.id" in locking[0]
