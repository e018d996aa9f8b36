"""The synthetic population: valid identifiers, determinism, independence of size, mismatches."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from indonesian_ids.nik import parse_nik, validate_nik
from indonesian_ids.nip import parse_nip, validate_nip
from indonesian_ids.regions import PROVINCES
from indonesian_ids.str_number import classify_str, validate_str
from mocks.core.people import Person
from mocks.core.population import (
    EPOCH_BASE,
    MAX_POPULATION,
    TENAGA_GROUPS,
    Population,
    generate_facilities,
    generate_population,
    people_digest,
    person_at,
    population_epoch,
)
from openapi_schemas import load_yaml

ROOT = Path(__file__).resolve().parents[3]
SEED = 42


@pytest.fixture(scope="module")
def population() -> Population:
    return generate_population(size=5000, seed=SEED)


@pytest.fixture(scope="module")
def large_population() -> Population:
    return generate_population(size=20_000, seed=SEED)


def identifiers(person: Person) -> Iterator[str]:
    yield person.nik
    yield person.registration.str_number
    yield from (e.nip for e in person.employments if e.nip is not None)


# -- identifiers -----------------------------------------------------------------------------


def test_every_nik_validates_and_agrees_with_birth_date_and_gender(
    population: Population,
) -> None:
    for person in population.people:
        identity = person.sisdmk_identity
        assert validate_nik(person.nik, birth_date=identity.birth_date, gender=person.gender) == []
        parts = parse_nik(person.nik)
        assert parts.birth_date == identity.birth_date
        assert parts.gender == person.gender
        assert parts.district_code == person.region.district_code


def test_every_nip_validates_and_agrees_with_birth_date_and_gender(
    population: Population,
) -> None:
    nips = 0
    for person in population.people:
        for employment in person.employments:
            if employment.nip is None:
                continue
            nips += 1
            birth = person.sisdmk_identity.birth_date
            assert validate_nip(employment.nip, birth, person.gender) == []
            kind = parse_nip(employment.nip).kind
            expected = "PNS" if employment.employment_status == "PNS" else "PPPK"
            assert kind == expected
    assert nips > 1000


def test_only_civil_servants_have_a_nip(population: Population) -> None:
    for person in population.people:
        for employment in person.employments:
            is_asn = employment.employment_status in ("PNS", "PPPK", "PPPK_PARUH_WAKTU")
            assert (employment.nip is not None) == is_asn


def test_every_str_validates_and_most_are_in_the_new_format(population: Population) -> None:
    kinds: collections.Counter[str] = collections.Counter()
    for person in population.people:
        registration = person.registration
        assert validate_str(registration.str_number) == []
        kind = classify_str(registration.str_number)
        kinds[kind] += 1
        if kind == "new":
            assert registration.str_number[2:6] in ("0000", "0001")
            # For life, except a foreigner's temporary STR (see the test below).
            assert (registration.valid_until is None) == (person.citizenship == "WNI")
        else:
            assert kind == "old_kki"
            assert registration.profession.startswith("dokter")
            assert registration.valid_until is not None
    assert kinds["new"] > 0.9 * len(population.people)
    assert kinds["old_kki"] > 0


def test_old_strs_past_their_end_date_are_kedaluwarsa(population: Population) -> None:
    expired = 0
    for person in population.people:
        registration = person.registration
        if registration.status == "KEDALUWARSA":
            expired += 1
            assert registration.valid_until is not None
            assert registration.valid_until < person.updated_at.date()
            assert all(sip.status == "TIDAK_BERLAKU" for sip in person.licenses)
        elif registration.valid_until is not None:
            assert registration.valid_until >= person.updated_at.date() - dt.timedelta(days=1)
    assert expired > 0


def test_nik_str_ihs_worker_id_and_email_are_unique_at_20000(
    large_population: Population,
) -> None:
    people = large_population.people
    for attribute in ("nik", "ihs_number", "worker_id", "email"):
        assert len({getattr(p, attribute) for p in people}) == len(people), attribute
    assert len({p.registration.str_number for p in people}) == len(people)


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_people(population: Population) -> None:
    again = generate_population(size=500, seed=SEED)
    assert again.people == population.people[:500]
    assert people_digest(again.people) == people_digest(population.people[:500])
    assert again.facilities == population.facilities


def test_same_seed_gives_byte_identical_people_in_another_process(
    population: Population,
) -> None:
    code = (
        "from mocks.core.population import generate_population, people_digest\n"
        f"print(people_digest(generate_population(size=300, seed={SEED}).people))\n"
    )
    # A different hash seed proves nothing depends on hash() or set order.
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert result.stdout.strip() == people_digest(population.people[:300])


def test_person_does_not_depend_on_the_population_size(
    population: Population, large_population: Population
) -> None:
    assert large_population.people[:5000] == population.people
    assert generate_population(size=1, seed=SEED).people == population.people[:1]


def test_person_at_gives_the_same_person_as_the_population(population: Population) -> None:
    for index in (0, 1, 999, 4321, 4999):
        assert person_at(SEED, index, population.facilities) == population.people[index]


def test_the_last_allowed_index_still_gets_valid_unique_numbers(population: Population) -> None:
    last = person_at(SEED, MAX_POPULATION - 1, population.facilities)
    birth = last.sisdmk_identity.birth_date
    assert validate_nik(last.nik, birth_date=birth, gender=last.gender) == []
    assert last.nik not in {p.nik for p in population.people}
    with pytest.raises(ValueError, match="index must be"):
        person_at(SEED, MAX_POPULATION, population.facilities)


def test_different_seeds_give_different_people_and_facilities(population: Population) -> None:
    other = generate_population(size=200, seed=SEED + 1)
    pairs = list(zip(population.people[:200], other.people, strict=True))
    assert sum(a.nik == b.nik for a, b in pairs) < 5
    assert sum(a.sisdmk_identity.full_name == b.sisdmk_identity.full_name for a, b in pairs) < 20
    assert other.facilities != population.facilities
    assert population_epoch(SEED) != population_epoch(SEED + 1)


def test_facilities_depend_on_the_seed_only(population: Population) -> None:
    assert generate_facilities(SEED) == population.facilities


# -- mismatches ------------------------------------------------------------------------------


def differing_fields(person: Person) -> set[str]:
    sisdmk, kki = person.sisdmk_identity, person.kki_identity
    fields: set[str] = set()
    if sisdmk.full_name != kki.full_name:
        fields.add("name")
    if sisdmk.birth_date != kki.birth_date:
        fields.add("birth_date")
    return fields


@pytest.mark.parametrize("rate", [0.02, 0.1])
def test_mismatch_share_is_close_to_the_rate_at_5000(rate: float) -> None:
    people = generate_population(size=5000, seed=SEED, mismatch_rate=rate).people
    share = sum(bool(p.mismatch) for p in people) / len(people)
    # Binomial sd is 0.002 at 2% and 0.004 at 10%: a tolerance of about 3 sd.
    assert abs(share - rate) < max(0.006, 3 * (rate * (1 - rate) / len(people)) ** 0.5)


def test_mismatched_people_differ_in_the_named_fields_only(population: Population) -> None:
    mismatched = [p for p in population.people if p.mismatch]
    assert mismatched
    for person in population.people:
        assert differing_fields(person) == set(person.mismatch)
        assert person.kki_identity.gelar_depan == person.sisdmk_identity.gelar_depan
        assert person.kki_identity.gelar_belakang == person.sisdmk_identity.gelar_belakang
    kinds = collections.Counter(p.mismatch for p in mismatched)
    assert set(kinds) == {("name",), ("birth_date",), ("name", "birth_date")}


def test_mismatched_birth_dates_are_a_swap_or_one_day_off(population: Population) -> None:
    for person in population.people:
        if "birth_date" not in person.mismatch:
            continue
        sisdmk, kki = person.sisdmk_identity.birth_date, person.kki_identity.birth_date
        swapped = (kki.day, kki.month, kki.year) == (sisdmk.month, sisdmk.day, sisdmk.year)
        assert swapped or abs((kki - sisdmk).days) == 1


def test_mismatch_rate_changes_nothing_but_the_kki_identity(population: Population) -> None:
    never = generate_population(size=300, seed=SEED, mismatch_rate=0.0).people
    always = generate_population(size=300, seed=SEED, mismatch_rate=1.0).people
    assert all(not p.mismatch for p in never)
    assert all(p.mismatch for p in always)
    for a, b, c in zip(never, always, population.people, strict=False):
        assert dataclasses.replace(b, kki_identity=a.kki_identity, mismatch=()) == a
        assert dataclasses.replace(c, kki_identity=a.kki_identity, mismatch=()) == a


# -- shape of the data -----------------------------------------------------------------------


def test_referenced_facility_codes_exist_in_the_pool(population: Population) -> None:
    codes = {f.code for f in population.facilities}
    for person in population.people:
        assert {e.facility_code for e in person.employments} <= codes
        assert {sip.facility_code for sip in person.licenses} <= codes
        assert all(sip.issuer_regency_code == sip.facility_code[:4] for sip in person.licenses)


def test_facility_pool_has_2000_unique_codes_and_every_province_has_a_hospital(
    population: Population,
) -> None:
    facilities = population.facilities
    assert len({f.code for f in facilities}) == len(facilities) == 2000
    assert len({f.satusehat_org_id for f in facilities}) == 2000
    for code in PROVINCES:
        types = {f.org_type for f in facilities if f.region.province_code == code}
        assert {"102", "104"} <= types, code
    for f in facilities:
        assert f.code[:4] == f.region.regency_code
        assert (f.rs_class is not None) == (f.bpjs_code is not None) == (f.org_type == "104")


def test_updated_at_ascends_with_index_and_lies_in_the_two_years_before_the_epoch(
    large_population: Population,
) -> None:
    stamps = [p.updated_at for p in large_population.people]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert large_population.epoch - dt.timedelta(days=731) <= stamps[0]
    # The epoch is fixed (reproducible data), not read from the real clock.
    assert stamps[-1] < large_population.epoch <= EPOCH_BASE


def test_nothing_in_a_record_happens_after_its_updated_at(population: Population) -> None:
    for person in population.people:
        today = person.updated_at.date()
        assert person.registration.status_changed_at < person.updated_at
        assert person.registration.issued_at < today
        assert all(e.tmt_start < today for e in person.employments)
        assert all(e.end_date is None or e.end_date < today for e in person.employments)
        assert all(sip.issued_at < today for sip in person.licenses)
        assert all(t.completed_at < today for t in person.trainings)
        assert all(e.graduation_year <= today.year for e in person.educations)
        assert person.cpd.as_of == today


def test_ages_are_22_to_64(population: Population) -> None:
    for person in population.people:
        today, birth = person.updated_at.date(), person.sisdmk_identity.birth_date
        age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
        assert 22 <= age <= 64


def test_nurses_and_midwives_are_most_common_then_doctors(population: Population) -> None:
    counts = collections.Counter(p.registration.profession for p in population.people)
    ranking = [profession for profession, _ in counts.most_common(3)]
    assert ranking == ["perawat", "bidan", "dokter"]
    groups = {p.registration.tenaga_group for p in population.people}
    assert groups <= set(TENAGA_GROUPS)
    assert len(groups) == 13


def test_titles_fit_the_profession(population: Population) -> None:
    for person in population.people:
        profession = person.registration.profession
        identity = person.sisdmk_identity
        if profession.startswith("dokter gigi"):
            assert identity.gelar_depan == "drg."
        elif profession.startswith("dokter"):
            assert identity.gelar_depan == "dr."
        if profession in ("dokter spesialis", "dokter subspesialis"):
            assert identity.gelar_belakang is not None
            assert identity.gelar_belakang.startswith("Sp.")
        if profession == "bidan":
            assert identity.gelar_belakang is not None
            assert "Keb" in identity.gelar_belakang


def test_skp_targets_follow_the_profession_and_add_up(population: Population) -> None:
    targets = {"dokter": 250, "dokter spesialis": 250, "dokter gigi": 100, "perawat": 50}
    for person in population.people:
        cpd = person.cpd
        expected = targets.get(person.registration.profession)
        if expected is not None:
            assert cpd.required_total == expected
        assert cpd.earned_total == sum(cpd.by_domain.values())
        assert cpd.period_end == person.licenses[0].valid_until
        if cpd.adequacy == "CUKUP":
            assert cpd.earned_total >= cpd.required_total


def test_statuses_are_mostly_aktif_with_a_few_percent_of_the_others(
    population: Population,
) -> None:
    counts = collections.Counter(p.registration.status for p in population.people)
    total = len(population.people)
    assert counts["AKTIF"] > 0.9 * total
    for status in ("NONAKTIF_SEMENTARA", "DICABUT", "KEDALUWARSA"):
        assert 0 < counts[status] < 0.06 * total, status


def test_licenses_employments_educations_and_trainings_are_in_range(
    population: Population,
) -> None:
    for person in population.people:
        assert 1 <= len(person.licenses) <= 3
        assert [sip.sip_seq for sip in person.licenses] == list(range(1, len(person.licenses) + 1))
        for sip in person.licenses:
            assert sip.issued_at < sip.valid_until < sip.issued_at + dt.timedelta(days=5 * 366)
        assert 1 <= len(person.employments) <= 2
        assert 1 <= len(person.educations) <= 3
        assert 0 <= len(person.trainings) <= 6
        assert person.is_active == (person.employments[0].end_date is None)
        if len(person.employments) == 2:
            assert person.employments[1].end_date is not None
            assert person.employments[1].end_date < person.employments[0].tmt_start
    sources = collections.Counter(t.source for p in population.people for t in p.trainings)
    assert sources["PLATARAN_SEHAT"] > sources["OTHER"]


def test_contact_details_are_indonesian_and_e_mail_uses_example_domains_only(
    population: Population,
) -> None:
    for person in population.people:
        assert re.fullmatch(r"\+62 8\d\d-\d{4}-\d{4}", person.phone)
        domain = person.email.rsplit("@", 1)[1]
        assert domain in ("example.com", "example.org", "example.id")


@cache
def contract_schemas(name: str) -> dict[str, Any]:
    spec = load_yaml((ROOT / "contracts" / "openapi" / name).read_text())
    schemas: dict[str, Any] = spec["components"]["schemas"]
    return schemas


def contract_pattern(name: str, schema: str, prop: str | None = None) -> re.Pattern[str]:
    node = contract_schemas(name)[schema]
    if prop is not None:
        node = node["properties"][prop]
    return re.compile(node["pattern"])


def test_values_match_the_patterns_of_the_public_contracts(population: Population) -> None:
    def check(value: str, name: str, schema: str, prop: str | None = None) -> None:
        assert contract_pattern(name, schema, prop).search(value), (schema, prop, value)

    for facility in population.facilities:
        check(facility.code, "sisdmk.yaml", "FacilityCode")
        check(facility.org_type, "sisdmk.yaml", "Facility", "org_type")
        check(facility.name, "sisdmk.yaml", "Facility", "name")
        if facility.bpjs_code is not None:
            check(facility.bpjs_code, "sisdmk.yaml", "Facility", "bpjs_code")
    for person in population.people:
        check(person.phone, "sisdmk.yaml", "HealthWorker", "phone")
        check(person.registration.profession, "kki.yaml", "Profession")
        check(person.registration.tenaga_group, "kki.yaml", "Registration", "tenaga_group")
        check(person.registration.str_number, "kki.yaml", "StrNumber")
        for identity in (person.sisdmk_identity, person.kki_identity):
            check(identity.full_name, "kki.yaml", "Registration", "full_name")
        for sip in person.licenses:
            check(sip.sip_number, "kki.yaml", "PracticeLicense", "sip_number")
        for training in person.trainings:
            check(training.course_id, "kki.yaml", "Training", "course_id")
            check(training.certificate_no, "kki.yaml", "Training", "certificate_no")
        for employment in person.employments:
            check(employment.unit_code, "sisdmk.yaml", "Employment", "unit_code")
            check(employment.employment_status, "sisdmk.yaml", "Employment", "employment_status")
        for education in person.educations:
            check(education.ijazah_no, "sisdmk.yaml", "Education", "ijazah_no")


def test_on_progress_is_called_every_1000_people_and_at_the_end() -> None:
    calls: list[int] = []
    generate_population(size=2500, seed=SEED, on_progress=calls.append)
    assert calls == [1000, 2000, 2500]


def test_by_nik_and_by_str_number_find_the_person(population: Population) -> None:
    person = population.people[1234]
    assert population.by_nik(person.nik) is person
    assert population.by_str_number(person.registration.str_number) is person
    assert population.by_nik("3273011203850007") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": -1, "seed": 1}, "size must be"),
        ({"size": 10_000_001, "seed": 1}, "size must be"),
        ({"size": 1, "seed": 1, "mismatch_rate": 1.5}, "mismatch_rate must be"),
    ],
)
def test_generate_population_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_population(**kwargs)


def test_a_foreigners_str_is_temporary_and_ends_within_two_years(population: Population) -> None:
    foreigners = [p for p in population.people if p.citizenship == "WNA"]
    assert foreigners, "the data set has foreign nationals"
    for person in foreigners:
        registration = person.registration
        assert registration.registration_type == "sementara"
        assert registration.valid_until is not None
        assert registration.valid_until < registration.issued_at.replace(
            year=registration.issued_at.year + 2
        )
        assert registration.issued_at < person.updated_at.date()
