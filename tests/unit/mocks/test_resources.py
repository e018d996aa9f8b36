"""The mocks' projections of the ground truth (KKI registrations, SISDMK workers and facilities)
produce documents that satisfy the public response schemas in contracts/openapi/."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from connexion.json_schema import Draft4ResponseValidator, resolve_refs
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

from mocks.core.people import (
    CpdSummary,
    Education,
    Employment,
    Facility,
    Identity,
    Person,
    PracticeLicense,
    Region,
    Registration,
    Training,
)
from mocks.core.store import parse_timestamp
from mocks.kki import resources as kki
from mocks.sisdmk import resources as sisdmk
from openapi_schemas import load_yaml

SPECS = Path(__file__).resolve().parents[3] / "contracts" / "openapi"
UPDATED_AT = dt.datetime(2026, 1, 31, 8, 0, 0, 123456, tzinfo=dt.UTC)
SECRET_KEY = b"synthetic-subscription-key-0001"

JAKARTA_PUSAT = Region("31", "DKI Jakarta", "3171", "Kota Jakarta Pusat", "317101", "3171011001")
BANDUNG = Region("32", "Jawa Barat", "3273", "Kota Bandung", "327301", "3273011002")
KUPANG = Region("53", "Nusa Tenggara Timur", "5371", "Kota Kupang", "537101", "5371011003")

RSUD = Facility(
    code="3171014",
    name="RSUD Kemayoran Sintetis",
    org_type="104",
    rs_class="C",
    bpjs_code="3171R014",
    satusehat_org_id="100012345",
    region=JAKARTA_PUSAT,
    ownership="PEMERINTAH_DAERAH",
)
KLINIK = Facility(
    code="3273021",
    name="Klinik Pratama Sehat Sintetis",
    org_type="103",
    rs_class=None,
    bpjs_code=None,
    satusehat_org_id="100054321",
    region=BANDUNG,
    ownership="SWASTA",
)
PUSKESMAS = Facility(
    code="3171002",
    name="Puskesmas Kemayoran Sintetis",
    org_type="102",
    rs_class=None,
    bpjs_code=None,
    satusehat_org_id="100067890",
    region=JAKARTA_PUSAT,
    ownership="PEMERINTAH_DAERAH",
)
FACILITIES = {f.code: f for f in (RSUD, KLINIK, PUSKESMAS)}


def cpd(required: int, earned: tuple[float, float, float], end: dt.date) -> CpdSummary:
    pembelajaran, pelayanan, pengabdian = earned
    total = pembelajaran + pelayanan + pengabdian
    return CpdSummary(
        period_start=end.replace(year=end.year - 5) + dt.timedelta(days=1),
        period_end=end,
        required_total=required,
        earned_total=total,
        by_domain={
            "pembelajaran": pembelajaran,
            "pelayanan": pelayanan,
            "pengabdian": pengabdian,
        },
        adequacy="CUKUP" if total >= required else "TIDAK_CUKUP",
        as_of=dt.date(2026, 1, 30),
    )


def doctor_woman_lifetime_str() -> Person:
    """A paediatrician: new lifetime STR, two SIPs, a PNS job after a transfer."""
    identity = Identity("Siti Rahmawati", "dr.", "Sp.A", dt.date(1990, 8, 17))
    return Person(
        index=0,
        worker_id="0f8e6a52-3b1d-4c4e-9a7f-2d6b8c1e4f30",
        nik="3171015708900042",  # DD + 40 = 57: a woman born 17-08-90
        ihs_number="10001234567",
        gender="female",
        birth_place="Jakarta",
        region=JAKARTA_PUSAT,
        address="Jl. Melati No. 12 RT 003 RW 005",
        phone="+6281234567890",
        email="siti.rahmawati@example.id",
        citizenship="WNI",
        sisdmk_identity=identity,
        kki_identity=identity,
        mismatch=(),
        registration=Registration(
            str_number="QZ00011234567890",
            registration_type="reguler",
            profession="dokter spesialis",
            tenaga_group="tenaga medis",
            issued_at=dt.date(2024, 3, 11),
            valid_until=None,
            status="AKTIF",
            status_reason=None,
            status_changed_at=dt.datetime(2024, 3, 11, 2, 15, tzinfo=dt.UTC),
            validated=True,
            kompetensi="Spesialis Anak",
        ),
        licenses=(
            PracticeLicense(
                "503/SIP-DS/0077/DPMPTSP/2024",
                2,
                "3171",
                "3171002",
                dt.date(2024, 1, 5),
                dt.date(2029, 1, 4),
                "BERLAKU",
            ),
            PracticeLicense(
                "503/SIP-DS/0042/DPMPTSP/2023",
                1,
                "3171",
                "3171014",
                dt.date(2023, 6, 1),
                dt.date(2028, 5, 31),
                "BERLAKU",
            ),
        ),
        cpd=cpd(250, (70.0, 52.5, 9.0), dt.date(2028, 5, 31)),
        trainings=(
            Training(
                "PS-2024-000077",
                "PLATARAN_SEHAT",
                "Manajemen Nyeri pada Anak",
                "Plataran Sehat",
                20,
                5.0,
                "pembelajaran",
                dt.date(2024, 2, 1),
                "PS/2024/000077/0042",
            ),
            Training(
                "PS-2025-000123",
                "PLATARAN_SEHAT",
                "Tata Laksana Kegawatdaruratan Anak",
                "Plataran Sehat",
                30,
                7.5,
                "pembelajaran",
                dt.date(2025, 9, 14),
                "PS/2025/000123/0042",
            ),
        ),
        employments=(
            Employment(
                facility_code="3171014",
                unit_code="IKA-01",
                unit="Instalasi Kesehatan Anak",
                jabatan="Dokter Spesialis Anak",
                jenis_sdmk_id=2,
                employment_status="PNS",
                nip="199008172015032001",
                tmt_start=dt.date(2022, 7, 1),
                end_date=None,
                end_reason=None,
            ),
            Employment(
                facility_code="3171002",
                unit_code="UGD",
                unit="Unit Gawat Darurat",
                jabatan="Dokter Umum",
                jenis_sdmk_id=1,
                employment_status="PNS",
                nip="199008172015032001",
                tmt_start=dt.date(2015, 3, 1),
                end_date=dt.date(2022, 6, 30),
                end_reason="MUTASI",
            ),
        ),
        educations=(
            Education(
                "SP", "Ilmu Kesehatan Anak", "Universitas Contoh Indonesia", 2022, "SP-2022-000417"
            ),
            Education(
                "PROFESI",
                "Pendidikan Profesi Dokter",
                "Universitas Contoh Indonesia",
                2014,
                "PD-2014-001234",
            ),
        ),
        is_active=True,
        updated_at=dt.datetime(2025, 12, 1, tzinfo=dt.UTC),
    )


def nurse_man_dated_str_deactivated() -> Person:
    """A nurse: old 16-digit dated STR, suspended for SKP, contract ended, deactivated."""
    identity = Identity("Budi Santoso", None, "S.Kep., Ners", dt.date(1985, 3, 12))
    return Person(
        index=1,
        worker_id="7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
        nik="3273011203850007",
        ihs_number="10009876543",
        gender="male",
        birth_place="Bandung",
        region=BANDUNG,
        address="Jl. Kenanga No. 7",
        phone="081298765432",
        email="budi.santoso@example.id",
        citizenship="WNI",
        sisdmk_identity=identity,
        kki_identity=identity,
        mismatch=(),
        registration=Registration(
            str_number="9900123456789012",
            registration_type="reguler",
            profession="perawat",
            tenaga_group="keperawatan",
            issued_at=dt.date(2019, 5, 20),
            valid_until=dt.date(2029, 5, 20),
            status="NONAKTIF_SEMENTARA",
            status_reason="SKP tidak mencukupi per 31 Desember 2024",
            status_changed_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC),
            validated=True,
            kompetensi="Ners",
        ),
        licenses=(
            PracticeLicense(
                "445/0042/SIPP/DINKES/2019",
                1,
                "3273",
                "3273021",
                dt.date(2019, 6, 1),
                dt.date(2024, 5, 31),
                "TIDAK_BERLAKU",
            ),
        ),
        cpd=cpd(50, (12.0, 9.0, 0.0), dt.date(2024, 5, 31)),
        trainings=(),
        employments=(
            Employment(
                facility_code="3273021",
                unit_code="RJ-01",
                unit="Rawat Jalan",
                jabatan="Perawat Pelaksana",
                jenis_sdmk_id=5,
                employment_status="KONTRAK",
                nip=None,
                tmt_start=dt.date(2019, 6, 1),
                end_date=dt.date(2025, 5, 31),
                end_reason="KONTRAK_HABIS",
            ),
        ),
        educations=(
            Education(
                "PROFESI", "Pendidikan Profesi Ners", "STIKes Contoh", 2009, "NERS/2009/00321"
            ),
            Education("S1", "Ilmu Keperawatan", "STIKes Contoh", 2008, "S1-KEP/2008/1177"),
        ),
        is_active=False,
        updated_at=dt.datetime(2025, 12, 2, tzinfo=dt.UTC),
    )


def midwife_with_identity_mismatch() -> Person:
    """A midwife whose KKI record spells her name and birth date differently from SISDMK."""
    sisdmk_identity = Identity("Maria Goreti Lede", None, "A.Md.Keb.", dt.date(1995, 11, 2))
    kki_identity = Identity("Maria Gorety Lede", None, "A.Md.Keb.", dt.date(1995, 2, 11))
    return Person(
        index=2,
        worker_id="2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091",
        nik="5371014211950003",  # 42 = 02 + 40: a woman born 02-11-95
        ihs_number="10005554443",
        gender="female",
        birth_place="Kupang",
        region=KUPANG,
        address="Jl. Timor Raya Km. 5",
        phone="+62 812-3456-7890",
        email="maria.lede@example.id",
        citizenship="WNI",
        sisdmk_identity=sisdmk_identity,
        kki_identity=kki_identity,
        mismatch=("name", "birth_date"),
        registration=Registration(
            str_number="QZ00019876543210",
            registration_type="reguler",
            profession="bidan",
            tenaga_group="kebidanan",
            issued_at=dt.date(2025, 2, 3),
            valid_until=None,
            status="AKTIF",
            status_reason=None,
            status_changed_at=dt.datetime(2025, 2, 3, 1, 0, tzinfo=dt.UTC),
            validated=False,
            kompetensi="Bidan Vokasi",
        ),
        licenses=(),
        cpd=cpd(50, (30.0, 20.0, 5.0), dt.date(2030, 2, 2)),
        trainings=(
            Training(
                "OTH-88",
                "OTHER",
                "Pelatihan Asuhan Persalinan Normal",
                "Ikatan Bidan (sintetis)",
                40,
                10.0,
                "pelayanan",
                dt.date(2025, 8, 8),
                "APN-2025-0088",
            ),
        ),
        employments=(
            Employment(
                facility_code="5371011",  # not in SISDMK's facility register
                unit_code="KIA",
                unit="Kesehatan Ibu dan Anak",
                jabatan="Bidan Pelaksana",
                jenis_sdmk_id=7,
                employment_status="HONORER",
                nip=None,
                tmt_start=dt.date(2025, 3, 1),
                end_date=None,
                end_reason=None,
            ),
        ),
        educations=(Education("D3", "Kebidanan", "Poltekkes Contoh", 2016, "D3-KEB/2016/0456"),),
        is_active=True,
        updated_at=dt.datetime(2025, 12, 3, tzinfo=dt.UTC),
    )


def dentist_revoked_without_records() -> Person:
    """A foreign dentist with a conditional STR, revoked, and no SIP, training or job."""
    identity = Identity("Kenji Watanabe", "drg.", None, dt.date(1979, 1, 30))
    return Person(
        index=3,
        worker_id="9e8d7c6b-5a49-4382-a716-b5c4d3e2f1a0",
        nik="3171013001790009",
        ihs_number="10007778889",
        gender="male",
        birth_place="Osaka",
        region=JAKARTA_PUSAT,
        address="Apartemen Contoh Tower B Lt. 9",
        phone="+81 90 1234 5678",
        email="kenji.watanabe@example.id",
        citizenship="WNA",
        sisdmk_identity=identity,
        kki_identity=identity,
        mismatch=(),
        registration=Registration(
            str_number="QZ00020000000001",
            registration_type="bersyarat",
            profession="dokter gigi",
            tenaga_group="tenaga medis",
            issued_at=dt.date(2024, 9, 9),
            valid_until=dt.date(2026, 9, 8),
            status="DICABUT",
            status_reason="Sanksi disiplin (sintetis)",
            status_changed_at=dt.datetime(2025, 10, 10, 10, 10, 10, 101010, tzinfo=dt.UTC),
            validated=True,
            kompetensi="Dokter Gigi",
        ),
        licenses=(),
        cpd=cpd(100, (0.0, 0.0, 0.0), dt.date(2029, 9, 8)),
        trainings=(),
        employments=(),
        educations=(),
        is_active=True,
        updated_at=dt.datetime(2025, 12, 4, tzinfo=dt.UTC),
    )


PEOPLE = [
    doctor_woman_lifetime_str(),
    nurse_man_dated_str_deactivated(),
    midwife_with_identity_mismatch(),
    dentist_revoked_without_records(),
]
IDS = ["doctor-lifetime-str", "nurse-deactivated", "midwife-mismatch", "dentist-revoked"]


# -- schema helpers -------------------------------------------------------------------------


@cache
def spec(name: str) -> dict[str, Any]:
    with (SPECS / name).open(encoding="utf-8") as fh:
        loaded: dict[str, Any] = load_yaml(fh)
    return loaded


@cache
def resolved(name: str) -> dict[str, Any]:
    result: dict[str, Any] = resolve_refs(spec(name))
    return result


def schema_errors(name: str, schema_name: str, document: Any) -> list[str]:
    """Problems under the mock's own check (connexion's response validator, as the runtime
    uses for admin writes) and under a full OpenAPI 3.0 validator (discriminators included)."""
    schema = resolved(name)["components"]["schemas"][schema_name]
    runtime = Draft4ResponseValidator(schema, format_checker=FormatChecker())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in runtime.iter_errors(document)]
    oas = OAS30ReadValidator(
        {**schema, "components": spec(name)["components"]}, format_checker=oas30_format_checker
    )
    errors += [f"{list(e.absolute_path)}: {e.message}" for e in oas.iter_errors(document)]
    return errors


def registration(person: Person, version: int = 1) -> dict[str, Any]:
    return kki.registration_document(person, version=version, updated_at=UPDATED_AT)


def worker(person: Person, version: int = 1) -> dict[str, Any]:
    return sisdmk.health_worker_document(person, FACILITIES, version=version, updated_at=UPDATED_AT)


def page(items: list[Any]) -> dict[str, Any]:
    return {"data": items, "page": {"limit": 100, "next_cursor": None, "has_more": False}}


def envelope(data: Any, **extra: Any) -> dict[str, Any]:
    return {"status": 200, "message": "OK", "data": data, **extra}


# -- KKI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("person", PEOPLE, ids=IDS)
def test_registration_document_satisfies_the_kki_schemas(person: Person) -> None:
    doc = registration(person, version=3)
    assert schema_errors("kki.yaml", "Registration", doc) == []
    assert schema_errors("kki.yaml", "RegistrationPage", page([doc])) == []
    assert schema_errors("kki.yaml", "RegistrationList", {"data": [doc]}) == []
    assert schema_errors("kki.yaml", "CertificationStatus", doc["certification"]) == []
    assert schema_errors("kki.yaml", "SkpSummary", doc["skp"]) == []
    assert schema_errors("kki.yaml", "TrainingPage", page(doc["trainings"])) == []
    assert schema_errors("kki.yaml", "PracticeLicensePage", page(doc["sips"])) == []
    # The KKI admin extension answers the same document.
    assert schema_errors("kki-admin.yaml", "Registration", doc) == []


@pytest.mark.parametrize("person", PEOPLE, ids=IDS)
def test_registration_document_uses_kkis_identity(person: Person) -> None:
    doc = registration(person)
    assert doc["full_name"] == person.kki_identity.full_name
    assert doc["birth_date"] == person.kki_identity.birth_date.isoformat()
    assert doc["nik"] == person.nik
    assert kki.registration_key(doc) == person.registration.str_number


def test_lifetime_str_has_no_end_date_and_dated_str_has_one() -> None:
    lifetime, dated = registration(PEOPLE[0]), registration(PEOPLE[1])
    assert lifetime["certification"]["valid_until"] is None
    assert dated["certification"]["valid_until"] == "2029-05-20"
    assert dated["certification"]["status_reason"] == "SKP tidak mencukupi per 31 Desember 2024"


def test_display_name_puts_titles_around_the_name() -> None:
    assert registration(PEOPLE[0])["display_name"] == "dr. Siti Rahmawati, Sp.A"
    assert registration(PEOPLE[1])["display_name"] == "Budi Santoso, S.Kep., Ners"
    assert registration(PEOPLE[3])["display_name"] == "drg. Kenji Watanabe"
    plain = Identity("Ani", None, None, dt.date(2000, 1, 1))
    assert plain.display_name == "Ani"
    for person in PEOPLE:
        identity = person.sisdmk_identity
        assert worker(person)["display_name"] == identity.display_name


def test_registration_lists_are_in_documented_order() -> None:
    doc = registration(PEOPLE[0])
    completed = [t["completed_at"] for t in doc["trainings"]]
    assert completed == sorted(completed, reverse=True)
    assert [s["sip_seq"] for s in doc["sips"]] == [1, 2]


def test_skp_summary_carries_period_and_adequacy() -> None:
    skp = registration(PEOPLE[0])["skp"]
    assert skp == {
        "str_number": "QZ00011234567890",
        "period_start": "2023-06-01",
        "period_end": "2028-05-31",
        "required_total": 250,
        "earned_total": 131.5,
        "by_domain": {"pembelajaran": 70.0, "pelayanan": 52.5, "pengabdian": 9.0},
        "adequacy": "TIDAK_CUKUP",
        "as_of": "2026-01-30",
    }


@pytest.mark.parametrize("person", PEOPLE, ids=IDS)
def test_kki_event_subject_and_data_satisfy_the_webhook_schemas(person: Person) -> None:
    doc = registration(person, version=4)
    subject = {**kki.event_subject(doc), "nik_hash": nik_hash(person.nik)}
    assert schema_errors("kki.yaml", "WebhookEventSubject", subject) == []
    data = kki.event_data(doc)
    assert data == {
        "str_number": person.registration.str_number,
        "version": 4,
        "status": person.registration.status,
    }
    assert schema_errors("kki.yaml", "WebhookEventData", data) == []
    for event_type in ("registration.corrected", "registration.status_changed"):
        event = {
            "event_id": "3f2a8c1d-5b6e-4f70-9a8b-1c2d3e4f5a6b",
            "type": event_type,
            "occurred_at": "2026-02-01T09:30:00.000000Z",
            "source": "kki",
            "subject": subject,
            "data": data,
            "version": "1",
        }
        assert schema_errors("kki.yaml", "WebhookEvent", event) == []


def nik_hash(nik: str) -> str:
    return hmac.new(SECRET_KEY, nik.encode(), hashlib.sha256).hexdigest()


# -- SISDMK ---------------------------------------------------------------------------------


@pytest.mark.parametrize("person", PEOPLE, ids=IDS)
def test_health_worker_document_satisfies_the_sisdmk_schemas(person: Person) -> None:
    doc = worker(person, version=2)
    assert schema_errors("sisdmk.yaml", "HealthWorker", doc) == []
    assert schema_errors("sisdmk.yaml", "HealthWorkerEnvelope", envelope(doc)) == []
    full_page = envelope([doc], page=page([])["page"])
    assert schema_errors("sisdmk.yaml", "HealthWorkerPageEnvelope", full_page) == []
    for field, schema_name in [
        ("employments", "EmploymentPageEnvelope"),
        ("educations", "EducationPageEnvelope"),
        ("certifications", "CertificationPageEnvelope"),
    ]:
        listing = envelope(doc[field], page=page([])["page"])
        assert schema_errors("sisdmk.yaml", schema_name, listing) == [], field


@pytest.mark.parametrize("person", PEOPLE, ids=IDS)
def test_health_worker_document_uses_sisdmks_identity(person: Person) -> None:
    doc = worker(person)
    assert doc["full_name"] == person.sisdmk_identity.full_name
    assert doc["birth_date"] == person.sisdmk_identity.birth_date.isoformat()
    assert sisdmk.health_worker_key(doc) == person.worker_id


def test_identity_mismatch_shows_in_the_two_views() -> None:
    midwife = PEOPLE[2]
    seen_by_kki, seen_by_sisdmk = registration(midwife), worker(midwife)
    assert seen_by_kki["nik"] == seen_by_sisdmk["nik"]
    assert seen_by_kki["full_name"] == "Maria Gorety Lede"
    assert seen_by_sisdmk["full_name"] == "Maria Goreti Lede"
    assert seen_by_kki["birth_date"] != seen_by_sisdmk["birth_date"]


@pytest.mark.parametrize("person", PEOPLE, ids=IDS)
def test_every_sisdmk_certification_joins_with_the_kki_registration(person: Person) -> None:
    certifications = worker(person)["certifications"]
    assert certifications[0]["kind"] == "STR"
    assert {c["str_number"] for c in certifications} == {registration(person)["str_number"]}
    sips = [c for c in certifications if c["kind"] == "SIP"]
    assert [s["sip_number"] for s in sips] == [
        s["sip_number"] for s in registration(person)["sips"]
    ]


def test_current_employment_sets_facility_and_nip() -> None:
    doctor = worker(PEOPLE[0])
    assert doctor["facility_code"] == "3171014"
    assert doctor["nip"] == "199008172015032001"
    assert [e["is_current"] for e in doctor["employments"]] == [True, False]
    assert [e["facility_name"] for e in doctor["employments"]] == [
        "RSUD Kemayoran Sintetis",
        "Puskesmas Kemayoran Sintetis",
    ]
    assert doctor["employments"][1]["end_reason"] == "MUTASI"


def test_ended_employment_leaves_no_current_facility() -> None:
    nurse = worker(PEOPLE[1])
    assert nurse["facility_code"] is None
    assert nurse["nip"] is None
    assert nurse["is_active"] is False
    assert [e["is_current"] for e in nurse["employments"]] == [False]


def test_employment_at_unregistered_facility_has_no_name() -> None:
    midwife = worker(PEOPLE[2])
    assert midwife["facility_code"] == "5371011"
    assert midwife["employments"][0]["facility_name"] is None


def test_lifetime_str_is_recorded_without_end_date_in_sisdmk() -> None:
    [str_entry, *_] = worker(PEOPLE[0])["certifications"]
    assert str_entry == {
        "kind": "STR",
        "str_number": "QZ00011234567890",
        "issued_at": "2024-03-11",
        "valid_until": None,
    }


def test_worker_lists_are_in_documented_order() -> None:
    doc = worker(PEOPLE[1])
    assert [e["graduation_year"] for e in doc["educations"]] == [2008, 2009]
    starts = [e["tmt_start"] for e in worker(PEOPLE[0])["employments"]]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize("facility", list(FACILITIES.values()), ids=list(FACILITIES))
def test_facility_document_satisfies_the_sisdmk_schemas(facility: Facility) -> None:
    doc = sisdmk.facility_document(facility, version=1, updated_at=UPDATED_AT)
    assert schema_errors("sisdmk.yaml", "Facility", doc) == []
    assert schema_errors("sisdmk.yaml", "FacilityEnvelope", envelope(doc)) == []
    assert sisdmk.facility_key(doc) == facility.code


def test_sisdmk_event_subjects_and_data_satisfy_the_webhook_schemas() -> None:
    for person in PEOPLE:
        doc = worker(person, version=5)
        subject = {**sisdmk.event_subject(doc), "nik_hash": nik_hash(person.nik)}
        assert schema_errors("sisdmk.yaml", "WebhookEventSubject", subject) == []
        assert ("facility_code" in subject) == (doc["facility_code"] is not None)
        data = sisdmk.event_data(doc)
        assert data == {"worker_id": person.worker_id, "version": 5}
        assert schema_errors("sisdmk.yaml", "WebhookEventData", data) == []
    facility = sisdmk.facility_document(RSUD, version=2, updated_at=UPDATED_AT)
    assert sisdmk.event_subject(facility) == {"facility_code": "3171014"}
    assert sisdmk.event_data(facility) == {"facility_code": "3171014", "version": 2}
    event = {
        "event_id": "8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d",
        "type": "facility.updated",
        "occurred_at": "2026-02-01T09:30:00.000000Z",
        "source": "sisdmk",
        "subject": sisdmk.event_subject(facility),
        "data": sisdmk.event_data(facility),
        "version": "1",
    }
    assert schema_errors("sisdmk.yaml", "WebhookEvent", event) == []


# -- both -----------------------------------------------------------------------------------


def all_documents() -> list[dict[str, Any]]:
    return [
        *(registration(p) for p in PEOPLE),
        *(worker(p) for p in PEOPLE),
        *(
            sisdmk.facility_document(f, version=1, updated_at=UPDATED_AT)
            for f in FACILITIES.values()
        ),
    ]


def test_documents_are_json_ready() -> None:
    for doc in all_documents():
        assert json.loads(json.dumps(doc)) == doc


def test_documents_carry_version_and_store_timestamp() -> None:
    for doc in all_documents():
        assert doc["version"] == 1
        assert parse_timestamp(doc["updated_at"]) == UPDATED_AT


def test_projections_are_deterministic() -> None:
    for person in PEOPLE:
        assert registration(person) == registration(person)
        assert worker(person) == worker(person)


# -- the generated population -----------------------------------------------------------------


@pytest.fixture(scope="module")
def population() -> Any:
    module = pytest.importorskip("mocks.core.population")
    return module.generate_population(size=500, seed=42)


def first_errors(items: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    return {key: errors[:3] for key, errors in items if errors}


def test_generated_people_project_to_valid_registrations(population: Any) -> None:
    docs = [
        kki.registration_document(p, version=1, updated_at=p.updated_at) for p in population.people
    ]
    failures = first_errors(
        [(kki.registration_key(d), schema_errors("kki.yaml", "Registration", d)) for d in docs]
    )
    assert not failures, dict(list(failures.items())[:5])
    assert len({kki.registration_key(d) for d in docs}) == len(docs)


def test_generated_people_project_to_valid_health_workers(population: Any) -> None:
    facilities: Mapping[str, Facility] = {f.code: f for f in population.facilities}
    docs = [
        sisdmk.health_worker_document(p, facilities, version=1, updated_at=p.updated_at)
        for p in population.people
    ]
    failures = first_errors(
        [
            (sisdmk.health_worker_key(d), schema_errors("sisdmk.yaml", "HealthWorker", d))
            for d in docs
        ]
    )
    assert not failures, dict(list(failures.items())[:5])
    assert len({sisdmk.health_worker_key(d) for d in docs}) == len(docs)


def test_generated_facilities_project_to_valid_facilities(population: Any) -> None:
    moment = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    docs = [
        sisdmk.facility_document(f, version=1, updated_at=moment) for f in population.facilities
    ]
    failures = first_errors(
        [(sisdmk.facility_key(d), schema_errors("sisdmk.yaml", "Facility", d)) for d in docs]
    )
    assert not failures, dict(list(failures.items())[:5])
    assert len({sisdmk.facility_key(d) for d in docs}) == len(docs)
