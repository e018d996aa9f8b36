"""Which version wins, which source writes which field, KKI first then SISDMK, registrations
moving between people — the merge over plain values, no database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from adapter.merge.documents import (
    CpdValues,
    EducationValues,
    EmploymentValues,
    Identity,
    KkiRegistration,
    PracticeLicenseValues,
    SisdmkWorker,
)
from adapter.merge.findings import StoredFinding
from adapter.merge.plans import (
    IdentityConflictError,
    KkiChanges,
    LinkedRegistration,
    SisdmkChanges,
    StoredRegistration,
    StoredWorker,
    UpsertResult,
    held,
    merge_kki,
    merge_sisdmk,
    sisdmk_target,
)
from adapter.merge.rules import Rule
from adapter.store.personal_fields import WORKER_PERSONAL_FIELDS
from tests.unit.adapter.merge.merge_documents import (
    NIK,
    SISDMK_ID,
    STR_NUMBER,
    fingerprint,
    kki_document,
    sisdmk_document,
    with_certification,
)

FETCHED_AT = dt.datetime(2026, 1, 30, 1, 2, 3, tzinfo=dt.UTC)
WORKER_ID = uuid.UUID(int=100)
OTHER_ID = uuid.UUID(int=200)
REGISTRATION_ID = uuid.UUID(int=300)
NEW_IDS = (uuid.UUID(int=901), uuid.UUID(int=902))

# The worker's fields and who writes them: SISDMK always; KKI only while it stands in.
SISDMK_ONLY = (
    "birth_place",
    "address",
    "phone",
    "email",
    "ihs_number",
    "nip",
    "province_code",
    "regency_code",
    "facility_code",
    "is_active",
    "sisdmk_worker_id",
)
STANDS_IN = (
    "nik",
    "full_name",
    "gelar_depan",
    "gelar_belakang",
    "birth_date",
    "gender",
    "citizenship",
    "profession",
    "tenaga_group",
)


def _new_ids() -> Any:
    ids = iter(NEW_IDS)
    return lambda: next(ids)


def _worker(identity_source: str, *, worker_id: uuid.UUID = WORKER_ID) -> StoredWorker:
    return StoredWorker(worker_id, identity_source, source_version=1, payload_hash="h1")


def _sisdmk(
    doc: dict[str, Any],
    target: StoredWorker | None = None,
    registrations: tuple[LinkedRegistration, ...] = (),
    open_findings: tuple[StoredFinding, ...] = (),
) -> SisdmkChanges:
    return merge_sisdmk(
        SisdmkWorker.from_document(doc),
        target=target,
        registrations=registrations,
        open_findings=open_findings,
        fetched_at=FETCHED_AT,
        payload_hash="hash-of-doc",
        fingerprint=fingerprint,
        new_id=_new_ids(),
    )


def _kki(
    doc: dict[str, Any],
    *,
    registration: StoredRegistration | None = None,
    worker: StoredWorker | None = None,
    sisdmk: Identity | None = None,
    open_findings: tuple[StoredFinding, ...] = (),
) -> KkiChanges:
    return merge_kki(
        KkiRegistration.from_document(doc),
        registration=registration,
        worker=worker,
        sisdmk=sisdmk,
        open_findings=open_findings,
        fetched_at=FETCHED_AT,
        payload_hash="hash-of-doc",
        fingerprint=fingerprint,
        new_id=_new_ids(),
    )


def _written(write: Any) -> dict[str, Any]:
    return {**write.personal, **write.columns}


def _stored(finding: Any) -> StoredFinding:
    return StoredFinding(
        id=uuid.uuid4(),
        rule=finding.rule,
        field=finding.field,
        worker_id=finding.worker_id,
        registration_id=finding.registration_id,
        source_id=finding.source_id,
        kki_digest=finding.kki_digest,
        sisdmk_digest=finding.sisdmk_digest,
    )


SISDMK_IDENTITY = SisdmkWorker.from_document(sisdmk_document()).identity


# -- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "payload_hash", "outcome"),
    [
        (1, "stored", UpsertResult.SUPERSEDED),  # older: a late delivery
        (2, "stored", UpsertResult.UNCHANGED),  # the same document again
        (2, "corrected", None),  # same version, other content: a correction, applied
        (3, "stored", None),  # newer: applied
    ],
    ids=["older", "same-version-same-hash", "same-version-other-hash", "newer"],
)
def test_a_document_is_held_back_only_when_older_or_identical(
    version: int, payload_hash: str, outcome: UpsertResult | None
) -> None:
    assert held(2, "stored", version, payload_hash) is outcome


# -- which stored worker a SISDMK document updates -------------------------------------------


def test_a_sisdmk_document_updates_the_worker_with_its_sisdmk_id() -> None:
    own = _worker("sisdmk")
    assert sisdmk_target(SISDMK_ID, own, None) is own
    assert sisdmk_target(SISDMK_ID, own, own) is own


def test_a_sisdmk_document_takes_over_the_person_kki_told_us_about_first() -> None:
    kki_first = _worker("kki")
    assert sisdmk_target(SISDMK_ID, None, kki_first) is kki_first
    assert sisdmk_target(SISDMK_ID, None, None) is None


def test_a_sisdmk_document_with_another_stored_persons_nik_is_a_conflict() -> None:
    with pytest.raises(IdentityConflictError, match="merge the two by hand") as raised:
        sisdmk_target(SISDMK_ID, _worker("sisdmk"), _worker("sisdmk", worker_id=OTHER_ID))
    assert raised.value.reason == "identity_conflict"
    assert NIK not in str(raised.value)


def test_a_sisdmk_document_with_the_nik_another_sisdmk_record_holds_is_a_conflict() -> None:
    """Two SISDMK records of one NIK: the second must not take the first's row (its version,
    its employments), or the two would take it from each other at every write."""
    held_by_another = _worker("sisdmk", worker_id=OTHER_ID)
    with pytest.raises(IdentityConflictError, match="another SISDMK record holds") as raised:
        sisdmk_target(SISDMK_ID, None, held_by_another)
    assert raised.value.reason == "identity_conflict"
    assert NIK not in str(raised.value)


# -- SISDMK ---------------------------------------------------------------------------------


def test_a_new_sisdmk_person_is_created_with_every_field_from_sisdmk() -> None:
    doc = sisdmk_document()

    changes = _sisdmk(doc)

    assert changes.result is UpsertResult.CREATED
    assert (changes.worker.id, changes.worker.created) == (NEW_IDS[0], True)
    written = _written(changes.worker)
    assert {name: written[name] for name in ("nik", "full_name", "gelar_belakang", "phone")} == {
        name: doc[name] for name in ("nik", "full_name", "gelar_belakang", "phone")
    }
    assert written["address"] == (
        '{"district_code":"327301","line":"Jl. Kenanga No. 1","province_code":"32",'
        '"province_name":"Jawa Barat","regency_code":"3273","regency_name":"Kota Bandung",'
        '"village_code":"3273011002"}'
    )
    assert (written["province_code"], written["regency_code"]) == ("32", "3273")
    assert (written["identity_source"], written["sisdmk_worker_id"]) == ("sisdmk", SISDMK_ID)
    provenance = changes.worker.provenance
    assert (provenance.system, provenance.source_id, provenance.version) == (
        "sisdmk",
        str(SISDMK_ID),
        1,
    )
    assert changes.employments == (
        EmploymentValues(
            facility_code="3273021",
            facility_name="Klinik Pratama Sehat",
            unit_code="RJ-01",
            unit="Rawat Jalan",
            jabatan="Perawat Pelaksana",
            jenis_sdmk_id=5,
            employment_status="KONTRAK",
            tmt_start=dt.date(2019, 6, 1),
            end_date=None,
            end_reason=None,
            is_current=True,
            nip="198503122010011001",
        ),
    )
    assert changes.educations == (
        EducationValues(
            "PROFESI", "Pendidikan Profesi Ners", "STIKes Contoh", 2009, "NERS/2009/00042"
        ),
    )
    assert changes.findings.opened == changes.findings.resolved == ()


def test_a_sisdmk_document_without_employments_replaces_them_with_none() -> None:
    changes = _sisdmk(sisdmk_document(employments=None, educations=[]), _worker("sisdmk"))

    assert (changes.employments, changes.educations) == ((), ())


def test_sisdmk_writes_every_worker_field_whoever_wrote_it_before() -> None:
    changes = _sisdmk(sisdmk_document(), _worker("kki"))

    assert changes.result is UpsertResult.UPDATED
    assert (changes.worker.id, changes.worker.created) == (WORKER_ID, False)
    assert set(_written(changes.worker)) == {*SISDMK_ONLY, *STANDS_IN, "identity_source"}
    # The personal ones are the columns the store encrypts, no more, no fewer.
    assert sorted(changes.worker.personal) == sorted(WORKER_PERSONAL_FIELDS)


def test_kki_first_then_sisdmk_keeps_the_person_and_gives_sisdmk_the_identity() -> None:
    kki_doc = kki_document(full_name="Budi Santoso", gelar_belakang="S.Kep.")
    first = _kki(kki_doc)
    assert first.worker is not None
    assert first.worker.created
    assert _written(first.worker)["full_name"] == "Budi Santoso"
    kki_first = _worker("kki", worker_id=first.worker.id)
    registration = LinkedRegistration(
        first.registration.id, KkiRegistration.from_document(kki_doc).identity
    )

    then = _sisdmk(sisdmk_document(), kki_first, (registration,))

    assert (then.result, then.worker.id) == (UpsertResult.UPDATED, first.worker.id)
    written = _written(then.worker)
    assert (written["full_name"], written["gelar_belakang"]) == ("Budi Santosa", "S.Kep., Ners")
    assert written["identity_source"] == "sisdmk"
    assert [(f.field, f.registration_id) for f in then.findings.opened] == [
        ("full_name", first.registration.id),
        ("gelar_belakang", first.registration.id),
    ]


def test_sisdmk_resolves_a_registrations_finding_once_it_spells_the_person_as_kki() -> None:
    kki = dataclasses.replace(SISDMK_IDENTITY, full_name="Budi Santoso")
    opened = _sisdmk(
        sisdmk_document(), _worker("sisdmk"), (LinkedRegistration(REGISTRATION_ID, kki),)
    ).findings.opened
    stored = _stored(opened[0])

    corrected = _sisdmk(
        sisdmk_document(full_name="Budi Santoso", version=2),
        _worker("sisdmk"),
        (LinkedRegistration(REGISTRATION_ID, kki, (stored,)),),
    )

    assert corrected.findings.resolved == (stored.id,)
    assert corrected.findings.opened == ()


def test_a_sisdmk_record_that_breaks_a_rule_gets_a_finding_on_the_record() -> None:
    changes = _sisdmk(sisdmk_document(birth_date="1985-03-21"), _worker("sisdmk"))

    [finding] = changes.findings.opened
    assert (finding.rule, finding.field, finding.registration_id) == (
        Rule.NIK_BIRTH_DATE,
        "birth_date",
        None,
    )
    assert (finding.source_system, finding.source_id) == ("sisdmk", str(SISDMK_ID))

    fixed = _sisdmk(sisdmk_document(version=2), _worker("sisdmk"), (), (_stored(finding),))
    assert [len(fixed.findings.opened), len(fixed.findings.resolved)] == [0, 1]


def test_a_new_worker_cannot_have_registrations() -> None:
    with pytest.raises(ValueError, match="no registrations"):
        _sisdmk(sisdmk_document(), None, (LinkedRegistration(REGISTRATION_ID, SISDMK_IDENTITY),))


# -- KKI ------------------------------------------------------------------------------------


def test_a_kki_registration_of_an_unknown_person_creates_both_with_kkis_identity() -> None:
    doc = kki_document()

    changes = _kki(doc)

    assert changes.result is UpsertResult.CREATED
    assert changes.worker is not None
    assert (changes.worker.id, changes.worker.created) == (NEW_IDS[0], True)
    assert (changes.registration.id, changes.registration.worker_id) == (NEW_IDS[1], NEW_IDS[0])
    written = _written(changes.worker)
    # KKI stands in for the identity only: nothing SISDMK alone knows.
    assert set(written) == {*STANDS_IN, "identity_source", "is_active"}
    assert (written["identity_source"], written["is_active"]) == ("kki", True)
    assert {name: written[name] for name in STANDS_IN} == {name: doc[name] for name in STANDS_IN}
    assert changes.worker.provenance.system == "kki"
    assert changes.worker.provenance.source_id == STR_NUMBER
    assert changes.findings.opened == ()  # nobody in SISDMK to disagree with


def test_a_later_kki_registration_refreshes_the_stand_in_identity_only() -> None:
    changes = _kki(kki_document(full_name="Budi Santoso"), worker=_worker("kki"))

    assert changes.worker is not None
    assert (changes.worker.id, changes.worker.created) == (WORKER_ID, False)
    assert set(_written(changes.worker)) == set(STANDS_IN)
    assert _written(changes.worker)["full_name"] == "Budi Santoso"


def test_kki_writes_nothing_of_a_worker_sisdmk_owns_and_records_its_disagreement() -> None:
    doc = kki_document(full_name="Budi Santoso", citizenship="WNA", profession="bidan")

    changes = _kki(doc, worker=_worker("sisdmk"), sisdmk=SISDMK_IDENTITY)

    assert changes.worker is None
    assert changes.registration.worker_id == WORKER_ID
    assert changes.registration.personal["kki_full_name"] == "Budi Santoso"
    assert [(f.rule, f.field) for f in changes.findings.opened] == [
        (Rule.IDENTITY_MISMATCH, "full_name"),
        (Rule.STR_FOREIGNER_TERM, "valid_until"),  # a foreigner's STR for life
    ]


def test_kki_writes_every_registration_field_and_its_details() -> None:
    doc = kki_document()

    changes = _kki(doc, worker=_worker("sisdmk"), sisdmk=SISDMK_IDENTITY)

    assert _written(changes.registration) == {
        "kki_full_name": "Budi Santosa",
        "kki_gelar_depan": None,
        "kki_gelar_belakang": "S.Kep., Ners",
        "kki_birth_date": "1985-03-12",
        "kki_gender": "male",
        "str_number": STR_NUMBER,
        "status": "AKTIF",
        "status_reason": None,
        "status_changed_at": dt.datetime(2024, 3, 11, 2, 15, tzinfo=dt.UTC),
        "valid_until": None,
        "validated": True,
        "registration_type": "reguler",
        "profession": "perawat",
        "tenaga_group": "keperawatan",
        "kompetensi": "Ners",
        "issued_at": dt.date(2024, 3, 11),
    }
    provenance = changes.registration.provenance
    assert (provenance.system, provenance.source_id, provenance.fetched_at) == (
        "kki",
        STR_NUMBER,
        FETCHED_AT,
    )
    assert changes.skp == CpdValues(
        dt.date(2024, 6, 1),
        dt.date(2029, 5, 31),
        50,
        Decimal("21.5"),
        Decimal("12.0"),
        Decimal("9.5"),
        Decimal("0.0"),
        "TIDAK_CUKUP",
        dt.date(2026, 1, 30),
    )
    assert changes.sips == (
        PracticeLicenseValues(
            "445/0042/SIPP/DINKES/2024",
            1,
            "3273",
            "3273021",
            dt.date(2024, 6, 1),
            dt.date(2029, 5, 31),
            "BERLAKU",
        ),
    )
    assert [t.course_id for t in changes.trainings] == ["PS-2025-0001"]


def test_a_kki_document_without_skp_sips_or_trainings_replaces_them_with_none() -> None:
    changes = _kki(kki_document(skp=None, sips=[], trainings=None), worker=_worker("kki"))

    assert (changes.skp, changes.sips, changes.trainings) == (None, (), ())


def test_a_kki_correction_of_the_same_registration_is_an_update() -> None:
    stored = StoredRegistration(REGISTRATION_ID, WORKER_ID, 2, "old")

    changes = _kki(
        with_certification(kki_document(version=2), status="DICABUT"),
        registration=stored,
        worker=_worker("sisdmk"),
        sisdmk=SISDMK_IDENTITY,
    )

    assert changes.result is UpsertResult.UPDATED
    assert (changes.registration.id, changes.registration.created) == (REGISTRATION_ID, False)
    assert changes.registration.columns["status"] == "DICABUT"


def _mismatch_on_other(doc: dict[str, Any]) -> StoredFinding:
    """The identity mismatch `doc`'s registration has, stored, with the SISDMK worker OTHER_ID."""
    before = _kki(
        doc,
        registration=StoredRegistration(REGISTRATION_ID, OTHER_ID, 1, "old"),
        worker=_worker("sisdmk", worker_id=OTHER_ID),
        sisdmk=SISDMK_IDENTITY,
    )
    [on_other] = [_stored(f) for f in before.findings.opened]
    assert (on_other.rule, on_other.worker_id) == (Rule.IDENTITY_MISMATCH, OTHER_ID)
    return on_other


def test_a_registration_whose_nik_now_names_another_person_moves_with_its_findings() -> None:
    doc = kki_document(full_name="Budi Santoso")
    on_other = _mismatch_on_other(doc)

    moved = _kki(
        {**doc, "version": 2},
        registration=StoredRegistration(REGISTRATION_ID, OTHER_ID, 1, "old"),
        worker=_worker("sisdmk"),
        sisdmk=SISDMK_IDENTITY,
        open_findings=(on_other,),
    )

    assert moved.registration.worker_id == WORKER_ID
    assert moved.findings.resolved == (on_other.id,)
    assert [(f.field, f.worker_id) for f in moved.findings.opened] == [("full_name", WORKER_ID)]


def test_a_registration_moving_to_a_person_only_kki_knows_resolves_its_identity_mismatch() -> None:
    """KKI corrects a registration's NIK to one no SISDMK worker has: it moves to a stand-in,
    and its mismatch with the SISDMK worker it left stayed open for ever (nothing compared it
    again)."""
    doc = kki_document(full_name="Budi Santoso")
    mismatch = _mismatch_on_other(doc)

    moved = _kki(
        {**doc, "version": 2},
        registration=StoredRegistration(REGISTRATION_ID, OTHER_ID, 1, "old"),
        worker=None,  # the new NIK names nobody yet: a stand-in is made
        open_findings=(mismatch,),
    )

    assert moved.registration.worker_id != OTHER_ID
    assert moved.findings.resolved == (mismatch.id,)
    assert [f.rule for f in moved.findings.opened if f.rule == Rule.IDENTITY_MISMATCH] == []


def test_a_registration_that_breaks_rules_is_stored_with_a_finding_per_rule() -> None:
    sip = {**kki_document()["sips"][0], "sip_seq": 2, "valid_until": "2030-06-01"}
    doc = with_certification(
        kki_document(sips=[sip], birth_date="1985-12-03"), valid_until="2029-03-10"
    )

    changes = _kki(doc, worker=_worker("kki"))

    assert changes.result is UpsertResult.CREATED
    assert changes.registration.columns["valid_until"] == dt.date(2029, 3, 10)
    assert [(f.rule, f.field, f.source_id) for f in changes.findings.opened] == [
        (Rule.STR_CITIZEN_LIFETIME, "valid_until", STR_NUMBER),
        (Rule.SIP_FIVE_YEARS, "sips[2].valid_until", STR_NUMBER),
        (Rule.NIK_BIRTH_DATE, "birth_date", STR_NUMBER),
    ]


def test_a_kki_document_for_a_sisdmk_owned_worker_needs_sisdmks_identity() -> None:
    with pytest.raises(ValueError, match="SISDMK owns"):
        _kki(kki_document(), worker=_worker("sisdmk"))


def test_a_document_missing_a_required_field_is_refused_before_any_merge() -> None:
    doc = kki_document()
    del doc["certification"]["status"]
    with pytest.raises(KeyError):
        KkiRegistration.from_document(doc)
