"""Identity findings between KKI and SISDMK, and rule findings of one record: opened, kept,
resolved."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from adapter.merge.documents import IDENTITY_FIELDS, Identity
from adapter.merge.findings import (
    FindingChanges,
    NewFinding,
    StoredFinding,
    reconcile_breaches,
    reconcile_identity,
)
from adapter.merge.rules import Breach, Rule
from tests.unit.adapter.merge.merge_documents import fingerprint

WORKER = uuid.UUID(int=1)
OTHER_WORKER = uuid.UUID(int=2)
REGISTRATION = uuid.UUID(int=10)
SISDMK = Identity("Budi Santosa", None, "S.Kep., Ners", "1985-03-12", "male")

DIFFERENT = {
    "full_name": "Budi Santoso",
    "gelar_depan": "dr.",
    "gelar_belakang": "S.Kep.",
    "birth_date": "1985-03-21",
    "gender": "female",
}


def _reconcile(kki: Identity, *open_findings: StoredFinding) -> FindingChanges:
    return reconcile_identity(
        worker_id=WORKER,
        registration_id=REGISTRATION,
        kki=kki,
        sisdmk=SISDMK,
        open_findings=open_findings,
        fingerprint=fingerprint,
    )


def _stored(new: NewFinding) -> StoredFinding:
    return StoredFinding(
        id=uuid.uuid4(),
        rule=new.rule,
        field=new.field,
        worker_id=new.worker_id,
        registration_id=new.registration_id,
        source_id=new.source_id,
        kki_digest=new.kki_digest,
        sisdmk_digest=new.sisdmk_digest,
    )


def test_sources_that_agree_have_no_finding() -> None:
    assert _reconcile(SISDMK) == FindingChanges()


@pytest.mark.parametrize("field", IDENTITY_FIELDS)
def test_each_identity_field_kki_spells_differently_is_one_finding(field: str) -> None:
    kki = dataclasses.replace(SISDMK, **{field: DIFFERENT[field]})

    changes = _reconcile(kki)

    assert changes.resolved == ()
    assert [(f.rule, f.field) for f in changes.opened] == [(Rule.IDENTITY_MISMATCH, field)]
    finding = changes.opened[0]
    assert (finding.worker_id, finding.registration_id) == (WORKER, REGISTRATION)
    assert finding.kki_digest == fingerprint(field, DIFFERENT[field])
    assert finding.sisdmk_digest == (
        None if SISDMK.value(field) is None else fingerprint(field, str(SISDMK.value(field)))
    )
    assert (finding.source_system, finding.source_id) == (None, None)


@pytest.mark.parametrize(
    ("field", "spelling"),
    [
        ("full_name", "BUDI SANTOSA"),
        ("full_name", "  budi   Santosa "),
        ("full_name", "\uff22\uff55\uff44\uff49 Santosa"),  # full-width letters (NFKC)
        ("gelar_belakang", "s.kep.,  NERS"),
        ("gelar_depan", "   "),  # blank is no value, as SISDMK's None
        ("gender", "MALE"),
    ],
)
def test_case_and_spacing_only_differences_are_no_finding(field: str, spelling: str) -> None:
    assert _reconcile(dataclasses.replace(SISDMK, **{field: spelling})) == FindingChanges()


def test_a_value_one_source_leaves_out_is_a_finding_with_one_digest() -> None:
    changes = _reconcile(dataclasses.replace(SISDMK, gelar_belakang=None))

    [finding] = changes.opened
    assert finding.field == "gelar_belakang"
    assert (finding.kki_digest, finding.sisdmk_digest is not None) == (None, True)


def test_an_open_finding_stays_while_the_sources_disagree_the_same_way() -> None:
    kki = dataclasses.replace(SISDMK, full_name="Budi Santoso")
    [opened] = _reconcile(kki).opened

    assert _reconcile(kki, _stored(opened)) == FindingChanges()


def test_an_open_finding_is_resolved_when_the_sources_agree_again() -> None:
    kki = dataclasses.replace(SISDMK, full_name="Budi Santoso")
    stored = _stored(_reconcile(kki).opened[0])

    assert _reconcile(SISDMK, stored) == FindingChanges(resolved=(stored.id,))


def test_an_open_finding_whose_values_changed_is_resolved_and_opened_anew() -> None:
    stored = _stored(_reconcile(dataclasses.replace(SISDMK, full_name="Budi Santoso")).opened[0])

    changes = _reconcile(dataclasses.replace(SISDMK, full_name="Budi Susanto"), stored)

    assert changes.resolved == (stored.id,)
    assert [f.kki_digest for f in changes.opened] == [fingerprint("full_name", "Budi Susanto")]


def test_an_open_finding_of_another_worker_is_resolved_and_opened_for_this_one() -> None:
    opened = _reconcile(dataclasses.replace(SISDMK, full_name="Budi Santoso")).opened[0]
    elsewhere = dataclasses.replace(_stored(opened), worker_id=OTHER_WORKER)

    changes = _reconcile(dataclasses.replace(SISDMK, full_name="Budi Santoso"), elsewhere)

    assert changes.resolved == (elsewhere.id,)
    assert [(f.field, f.worker_id) for f in changes.opened] == [("full_name", WORKER)]


def _rules(breaches: list[Breach], *open_findings: StoredFinding) -> FindingChanges:
    return reconcile_breaches(
        breaches,
        open_findings,
        worker_id=WORKER,
        registration_id=REGISTRATION,
        source_system="kki",
        source_id="QN00010000000042",
    )


LIFETIME = Breach(Rule.STR_CITIZEN_LIFETIME, "valid_until")
SIP = Breach(Rule.SIP_FIVE_YEARS, "sips[2].valid_until")


@pytest.mark.parametrize("stale_first", [True, False])
def test_two_open_findings_of_one_field_leave_one_open_whatever_their_order(
    stale_first: bool,
) -> None:
    # Two writers meeting on a registration each opened one; a dict by field kept the last
    # read and left the other open for ever (or resolved the live one and reopened it).
    kki = dataclasses.replace(SISDMK, full_name="Budi Santoso")
    live = _stored(_reconcile(kki).opened[0])
    stale = dataclasses.replace(_stored(_reconcile(kki).opened[0]), worker_id=OTHER_WORKER)
    twin = _stored(_reconcile(kki).opened[0])
    found = (stale, live, twin) if stale_first else (twin, live, stale)

    changes = _reconcile(kki, *found)

    assert changes.opened == ()
    assert set(changes.resolved) == {stale.id, live.id if not stale_first else twin.id}
    assert _reconcile(SISDMK, *found).resolved == tuple(f.id for f in found)  # agree: all go


def test_a_breach_opens_a_finding_keyed_by_rule_record_and_field() -> None:
    changes = _rules([SIP, LIFETIME])

    assert changes.resolved == ()
    assert [
        (f.rule, f.field, f.source_system, f.source_id, f.registration_id) for f in changes.opened
    ] == [
        (Rule.SIP_FIVE_YEARS, "sips[2].valid_until", "kki", "QN00010000000042", REGISTRATION),
        (Rule.STR_CITIZEN_LIFETIME, "valid_until", "kki", "QN00010000000042", REGISTRATION),
    ]
    assert all(f.kki_digest is None and f.sisdmk_digest is None for f in changes.opened)


def test_a_breach_already_open_is_kept_and_one_no_longer_broken_is_resolved() -> None:
    lifetime, sip = (_stored(f) for f in _rules([LIFETIME, SIP]).opened)

    assert _rules([LIFETIME], lifetime, sip) == FindingChanges(resolved=(sip.id,))


def test_a_rule_finding_of_another_record_or_worker_is_resolved_and_opened_anew() -> None:
    [lifetime] = (_stored(f) for f in _rules([LIFETIME]).opened)
    moved = dataclasses.replace(lifetime, worker_id=OTHER_WORKER)

    changes = _rules([LIFETIME], moved)

    assert changes.resolved == (moved.id,)
    assert [(f.rule, f.worker_id) for f in changes.opened] == [(LIFETIME.rule, WORKER)]


def test_rule_findings_leave_identity_findings_alone_and_the_other_way_round() -> None:
    identity = _stored(_reconcile(dataclasses.replace(SISDMK, gender="female")).opened[0])
    [lifetime] = (_stored(f) for f in _rules([LIFETIME]).opened)

    assert _rules([], identity, lifetime) == FindingChanges(resolved=(lifetime.id,))
    assert _reconcile(dataclasses.replace(SISDMK, gender="female"), identity, lifetime) == (
        FindingChanges()
    )
