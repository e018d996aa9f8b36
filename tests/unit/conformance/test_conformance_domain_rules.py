"""Domain rules on records, without a server: NIK/NIP agreement, STR and SIP terms of UU 17/2023."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from conformance.context import Credentials, RunContext, RunOptions
from conformance.domain import PersonList, check_people
from conformance.findings import Severity
from conformance.provider import ApiKeyAuth, ProviderClient
from conformance.spec import load_contract
from conformance.systems import SYSTEMS
from indonesian_ids.nik import make_nik
from indonesian_ids.nip import make_nip

TODAY = dt.date(2026, 12, 1)
KKI = PersonList("listRegistrations", "str_number", Severity.WARNING)
SISDMK = PersonList("listHealthWorkers", "worker_id", Severity.ERROR)


def _context(records: list[dict[str, Any]], people: PersonList) -> RunContext:
    options = RunOptions(system="kki", base_url="http://127.0.0.1:9", credentials=Credentials())
    client = ProviderClient(options.base_url, ApiKeyAuth("X-API-Key", "unused"))
    ctx = RunContext(options, load_contract(SYSTEMS["kki"].contract), client, lambda: TODAY)
    ctx.records[people.operation] = records
    return ctx


def _registration(**changes: Any) -> dict[str, Any]:
    born = dt.date(1990, 8, 17)
    record: dict[str, Any] = {
        "str_number": "QZ00011234567890",
        "nik": make_nik("317101", born, "female", 42),
        "birth_date": born.isoformat(),
        "gender": "female",
        "citizenship": "WNI",
        "issued_at": "2024-03-11",
        "certification": {"status": "AKTIF", "status_reason": None, "valid_until": None},
        "sips": [
            {"sip_number": "503/SIP/1", "issued_at": "2023-06-01", "valid_until": "2028-05-31"}
        ],
    }
    for key, value in changes.items():
        if key == "valid_until":
            record["certification"] = {**record["certification"], "valid_until": value}
        else:
            record[key] = value
    return record


def _rules(ctx: RunContext) -> list[tuple[str, Severity]]:
    return [(f.rule, f.severity) for f in ctx.findings]


def test_consistent_registration_has_no_findings() -> None:
    ctx = _context([_registration()], KKI)
    check_people(ctx, KKI)
    assert ctx.findings == []
    assert ("domain/str-citizen-lifetime", "listRegistrations") in ctx.checked


def test_birth_date_against_nik_is_warning_at_kki_and_error_at_sisdmk() -> None:
    shifted = _registration(birth_date="1990-08-18")
    kki, sisdmk = _context([shifted], KKI), _context([{**shifted, "worker_id": "w"}], SISDMK)
    check_people(kki, KKI)
    check_people(sisdmk, SISDMK)
    assert _rules(kki) == [("domain/nik-birth-date", Severity.WARNING)]
    assert _rules(sisdmk) == [("domain/nik-birth-date", Severity.ERROR)]


def test_gender_against_nik_is_reported() -> None:
    ctx = _context([{**_registration(gender="male"), "worker_id": "w"}], SISDMK)
    check_people(ctx, SISDMK)
    assert _rules(ctx) == [("domain/nik-sex", Severity.ERROR)]


def test_impossible_nik_is_structure_error_without_leaking_it() -> None:
    nik = "9971015708900042"
    ctx = _context([_registration(nik=nik)], KKI)
    check_people(ctx, KKI)
    assert _rules(ctx) == [("domain/nik-structure", Severity.ERROR)]
    assert nik not in ctx.findings[0].message


@pytest.mark.parametrize(
    ("field", "number", "hidden"),
    [
        # kecamatan 00 and 30 February: the masked NIK hides digits 5 to 12.
        ("nik", "3171003002900042", ("00", "1990-02-30", "30", "02")),
        # born 1995-03-01, TMT 2010-05, at 15: the masked NIP hides digits 5 to 14.
        ("nip", "199503012010051001", ("1995-03-01", "2010-05", "03-01")),
    ],
)
def test_an_impossible_nik_or_nip_is_reported_without_the_digits_its_mask_hides(
    field: str, number: str, hidden: tuple[str, ...]
) -> None:
    # The reasons quoted the decoded dates and codes after the masked number: the whole
    # number could be read back from the report.
    record = {**_registration(), "worker_id": "w", field: number}
    ctx = _context([record], SISDMK)
    check_people(ctx, SISDMK)
    [finding] = [f for f in ctx.findings if f.rule == f"domain/{field}-structure"]
    masked = finding.message.split(" is not a possible ")[1]
    for digits in hidden:
        assert digits not in masked, finding.message
    assert "does not exist" in masked or "before the holder turned 18" in masked


def test_nip_disagreeing_with_gender_is_reported() -> None:
    born = dt.date(1990, 8, 17)
    nip = make_nip(born, dt.date(2015, 3, 1), "male", 1)
    ctx = _context([{**_registration(nip=nip), "worker_id": "w"}], SISDMK)
    check_people(ctx, SISDMK)
    assert _rules(ctx) == [("domain/nip-agreement", Severity.ERROR)]


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"valid_until": "2031-01-31"}, "domain/str-citizen-lifetime"),
        ({"issued_at": "2020-01-10", "valid_until": "2027-01-10"}, "domain/str-citizen-lifetime"),
        ({"citizenship": "WNA"}, "domain/str-foreigner-term"),
        ({"citizenship": "WNA", "valid_until": "2028-03-12"}, "domain/str-foreigner-term"),
        (
            {
                "sips": [
                    {"sip_number": "S/1", "issued_at": "2020-01-01", "valid_until": "2025-01-02"}
                ]
            },
            "domain/sip-five-years",
        ),
        ({"str_number": "KKI-2020-77"}, "domain/str-format"),
    ],
)
def test_law_rule_broken_is_reported(changes: dict[str, Any], rule: str) -> None:
    ctx = _context([_registration(**changes)], KKI)
    check_people(ctx, KKI)
    assert rule in {f.rule for f in ctx.findings}


@pytest.mark.parametrize(
    "changes",
    [
        {"issued_at": "2020-01-10", "valid_until": "2025-01-09"},  # Pasal 449: old dates kept
        {"citizenship": "WNA", "valid_until": "2028-03-10"},  # two years + one extension
        {"str_number": "3171221234567890"},  # old 16-digit KKI STR
    ],
)
def test_lawful_variant_is_not_reported(changes: dict[str, Any]) -> None:
    ctx = _context([_registration(**changes)], KKI)
    check_people(ctx, KKI)
    assert ctx.findings == []


def test_unknown_str_shape_is_only_a_warning() -> None:
    ctx = _context([_registration(str_number="AB123")], KKI)
    check_people(ctx, KKI)
    assert _rules(ctx) == [("domain/str-format", Severity.WARNING)]


def test_an_error_after_five_warnings_of_the_same_check_is_kept() -> None:
    ctx = _context([], KKI)
    for index in range(5):
        ctx.fail("domain/str-format", "listRegistrations", f"odd {index}", None, Severity.WARNING)
    ctx.fail("domain/str-format", "listRegistrations", "illegal character", None, Severity.ERROR)
    ctx.fail("domain/str-format", "listRegistrations", "sixth warning", None, Severity.WARNING)

    assert [f.severity for f in ctx.findings].count(Severity.ERROR) == 1
    assert len(ctx.findings) == 6
    assert ctx.stats["findings_per_check"] == {"domain/str-format listRegistrations": 7}
