"""Domain checks no generic tool makes: NIK/NIP structure and agreement, STR and SIP rules of
UU 17/2023, SKP deactivation across endpoints, and identity agreement between KKI and SISDMK.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from adapter.merge.rules import (
    FOREIGN_STR_YEARS,
    LAW_DATE,
    PRE_LAW_STR_YEARS,
    SIP_YEARS,
    add_years,
)
from adapter.workforce.directory import mask_nik
from conformance.context import PartlyRun, RunContext
from conformance.findings import Severity
from conformance.protocol import max_limit, walk
from conformance.spec import json_kind
from indonesian_ids.nik import InvalidNikError, parse_nik, validate_nik
from indonesian_ids.nip import validate_nip
from indonesian_ids.str_number import classify_str, validate_str

# The SKP deactivation of SE HK.02.01/MENKES/1063/2024 is recognised by its reason text.
SKP_REASON_MARK = "SKP"
MAX_SKP_RECORDS = 10
MAX_PEER_EXAMPLES = 3
# The arrays inside a record that the domain rules read, and the rule that reads each first.
RECORD_LISTS = {
    "employments": "domain/nip-structure",
    "sips": "domain/sip-five-years",
    "certifications": "domain/str-format",
}


@dataclass(frozen=True, slots=True)
class PersonList:
    """Where a system lists people, whose key identifies a record, and how far its identity
    fields are authoritative (KKI's spelling may differ from Dukcapil's: a warning there)."""

    operation: str
    key: str
    agreement_severity: Severity


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def check_people(ctx: RunContext, people: PersonList) -> None:
    records = ctx.records.get(people.operation)
    if not records:
        return
    today = ctx.clock()
    for rule in (
        "nik-structure",
        "nik-birth-date",
        "nik-sex",
        "str-format",
        "str-citizen-lifetime",
        "str-foreigner-term",
        "sip-five-years",
    ):
        ctx.ok(f"domain/{rule}", people.operation)
    for record in records:
        key = str(record.get(people.key))
        _check_lists(ctx, people.operation, key, record)
        _check_nik(ctx, people, key, record, today)
        _check_nips(ctx, people.operation, key, record, today)
        for str_number, issued, valid_until in _strs(record):
            _check_str(ctx, people.operation, key, record, str_number, issued, valid_until)
        for sip_number, issued, valid_until in _sips(record):
            if issued and valid_until and valid_until > add_years(issued, SIP_YEARS):
                ctx.fail(
                    "domain/sip-five-years",
                    people.operation,
                    f"record {key}: SIP {sip_number} issued {issued} is valid until "
                    f"{valid_until}, more than {SIP_YEARS} years",
                )


def _listed(record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The objects of the record's `name` array; none when it is absent or not an array."""
    items = record.get(name)
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _check_lists(ctx: RunContext, operation: str, key: str, record: dict[str, Any]) -> None:
    """An array the rules read that holds something else fails the rule that reads it."""
    for name, rule in RECORD_LISTS.items():
        value = record.get(name)
        if value is not None and not isinstance(value, list):
            ctx.fail(
                rule,
                operation,
                f"record {key}: {name} is {json_kind(value)}, not an array: its entries cannot be "
                "checked",
            )


def _check_nik(
    ctx: RunContext, people: PersonList, key: str, record: dict[str, Any], today: dt.date
) -> None:
    nik = record.get("nik")
    if not isinstance(nik, str):
        return
    problems = validate_nik(nik, reference=today, quote=False)  # the NIK is shown masked
    if problems:
        ctx.fail(
            "domain/nik-structure",
            people.operation,
            f"record {key}: NIK {mask_nik(nik)} is not a possible NIK: {'; '.join(problems)}",
        )
        return
    try:
        parts = parse_nik(nik, reference=today)
    except InvalidNikError:
        return
    birth_date = _date(record.get("birth_date"))
    if birth_date is not None:
        differing = [
            name
            for name, encoded, actual in (
                ("day", parts.birth_date.day, birth_date.day),
                ("month", parts.birth_date.month, birth_date.month),
                ("year", parts.birth_date.year % 100, birth_date.year % 100),
            )
            if encoded != actual
        ]
        if differing:
            ctx.fail(
                "domain/nik-birth-date",
                people.operation,
                f"record {key}: the birth {'/'.join(differing)} encoded in NIK {mask_nik(nik)} "
                "differs from birth_date",
                severity=people.agreement_severity,
            )
    gender = record.get("gender")
    if gender in ("male", "female") and gender != parts.gender:
        ctx.fail(
            "domain/nik-sex",
            people.operation,
            f"record {key}: NIK {mask_nik(nik)} encodes a {parts.gender} holder but gender is "
            f"{gender}",
            severity=people.agreement_severity,
        )


def _check_nips(
    ctx: RunContext, operation: str, key: str, record: dict[str, Any], today: dt.date
) -> None:
    nips = {record.get("nip")} | {item.get("nip") for item in _listed(record, "employments")}
    birth_date = _date(record.get("birth_date"))
    gender = record.get("gender") if record.get("gender") in ("male", "female") else None
    for nip in sorted(n for n in nips if isinstance(n, str)):
        ctx.ok("domain/nip-structure", operation)
        ctx.ok("domain/nip-agreement", operation)
        structure = validate_nip(nip, reference=today, quote=False)  # shown masked
        if structure:
            ctx.fail(
                "domain/nip-structure",
                operation,
                f"record {key}: NIP {mask_nik(nip)} is not a possible NIP: {'; '.join(structure)}",
            )
            continue
        agreement = validate_nip(nip, birth_date, gender, reference=today, quote=False)
        if agreement:
            what = ["birth date" if "birth date" in problem else "gender" for problem in agreement]
            ctx.fail(
                "domain/nip-agreement",
                operation,
                f"record {key}: the {' and '.join(what)} encoded in NIP {mask_nik(nip)} "
                "differ(s) from the record",
            )


def _strs(record: dict[str, Any]) -> Iterator[tuple[str, dt.date | None, dt.date | None]]:
    """(STR number, issued, valid until), from a KKI registration or SISDMK certifications."""
    certification = record.get("certification")
    if isinstance(certification, dict) and "str_number" in record:
        yield (
            str(record["str_number"]),
            _date(record.get("issued_at")),
            _date(certification.get("valid_until")),
        )
    for item in _listed(record, "certifications"):
        if item.get("kind") == "STR":
            yield (
                str(item.get("str_number")),
                _date(item.get("issued_at")),
                _date(item.get("valid_until")),
            )


def _sips(record: dict[str, Any]) -> Iterator[tuple[str, dt.date | None, dt.date | None]]:
    for item in [*_listed(record, "sips"), *_listed(record, "certifications")]:
        if item.get("kind", "SIP") == "SIP" and "sip_number" in item:
            yield (
                str(item["sip_number"]),
                _date(item.get("issued_at")),
                _date(item.get("valid_until")),
            )


def _check_str(
    ctx: RunContext,
    operation: str,
    key: str,
    record: dict[str, Any],
    str_number: str,
    issued: dt.date | None,
    valid_until: dt.date | None,
) -> None:
    problems = validate_str(str_number)
    if problems or classify_str(str_number) == "unknown":
        ctx.fail(
            "domain/str-format",
            operation,
            f"record {key}: STR {str_number} has no known shape (two letters and 14 digits, or "
            "16 digits)" + (f": {'; '.join(problems)}" if problems else ""),
            # Old KTKI numbers have no published format: unknown shapes are only suspicious.
            severity=Severity.ERROR if problems else Severity.WARNING,
        )
    citizenship = record.get("citizenship")
    if issued is None:
        return
    if citizenship == "WNI" and valid_until is not None:
        if issued >= LAW_DATE:
            ctx.fail(
                "domain/str-citizen-lifetime",
                operation,
                f"record {key}: STR {str_number} of a citizen, issued {issued} under UU 17/2023, "
                f"has an end date ({valid_until}); it must be valid for life",
            )
        elif valid_until > add_years(issued, PRE_LAW_STR_YEARS):
            ctx.fail(
                "domain/str-citizen-lifetime",
                operation,
                f"record {key}: STR {str_number} issued {issued}, before UU 17/2023, is valid "
                f"until {valid_until}: more than {PRE_LAW_STR_YEARS} years",
            )
    if citizenship == "WNA":
        if valid_until is None:
            ctx.fail(
                "domain/str-foreigner-term",
                operation,
                f"record {key}: STR {str_number} of a foreign national has no end date",
            )
        elif valid_until > add_years(issued, FOREIGN_STR_YEARS):
            ctx.fail(
                "domain/str-foreigner-term",
                operation,
                f"record {key}: STR {str_number} of a foreign national issued {issued} is valid "
                f"until {valid_until}: more than two years plus one two-year extension",
            )


def check_skp_deactivation(ctx: RunContext, people: PersonList) -> None:
    """KKI: a registration deactivated for missing SKP looks the same on every endpoint."""
    records = ctx.records.get(people.operation) or []
    deactivated = [
        r
        for r in records
        if "str_number" in r
        and isinstance(r.get("certification"), dict)
        and r["certification"].get("status") == "NONAKTIF_SEMENTARA"
        and SKP_REASON_MARK in str(r["certification"].get("status_reason") or "")
    ][:MAX_SKP_RECORDS]
    ctx.ok("domain/skp-deactivation", people.operation)
    for record in deactivated:
        _one_deactivation(ctx, people, record)


def _one_deactivation(ctx: RunContext, people: PersonList, record: dict[str, Any]) -> None:
    str_number = str(record["str_number"])
    expected = record["certification"]
    views: list[tuple[str, Any, Any]] = []  # (operation, certification-like document, response)

    def get(operation_id: str, suffix: str, items: str | None = None) -> Any:
        if not _comparable(ctx, operation_id):
            return None
        ctx.ok("domain/skp-deactivation", operation_id)
        response = ctx.client.request(
            operation_id, "GET", f"/v1/registrations/{quote(str_number, safe='')}{suffix}"
        )
        if response.status_code != 200:
            return None
        document = _view(ctx, operation_id, response, items)
        return None if document is None else (response, document)

    if (got := get("getRegistration", "")) is not None:
        views.append(("getRegistration", got[1].get("certification"), got[0]))
    if (got := get("getCertificationStatus", "/certification")) is not None:
        views.append(("getCertificationStatus", got[1], got[0]))
    if isinstance(record.get("nik"), str) and _comparable(ctx, "lookupRegistrationsByNik"):
        ctx.ok("domain/skp-deactivation", "lookupRegistrationsByNik")
        response = ctx.client.request(
            "lookupRegistrationsByNik",
            "POST",
            "/v1/registrations/lookup",
            json={"nik": record["nik"]},
        )
        if response.status_code == 200:
            for item in _view(ctx, "lookupRegistrationsByNik", response, "data") or []:
                if item.get("str_number") == str_number:
                    views.append(("lookupRegistrationsByNik", item.get("certification"), response))
    for operation_id, certification, response in views:
        if not isinstance(certification, dict):
            ctx.fail(
                "domain/skp-deactivation",
                operation_id,
                f"{operation_id} shows no certification object for an STR {expected.get('status')} "
                "for missing SKP; its status cannot be compared",
                response,
            )
            continue
        for name in ("status", "status_reason"):
            if certification.get(name) != expected.get(name):
                ctx.fail(
                    "domain/skp-deactivation",
                    operation_id,
                    f"STR {str_number} is {expected.get('status')} for missing SKP in "
                    f"{people.operation}, but {operation_id} shows {name} "
                    f"{certification.get(name)!r}",
                    response,
                )
    skp: dict[str, Any] = record["skp"] if isinstance(record.get("skp"), dict) else {}
    if (got := get("getSkpSummary", "/skp")) is not None:
        skp = got[1]
    if skp.get("adequacy") not in (None, "TIDAK_CUKUP"):
        ctx.fail(
            "domain/skp-deactivation",
            "getSkpSummary",
            f"STR {str_number} is deactivated for missing SKP but its SKP adequacy is "
            f"{skp.get('adequacy')}",
            got[0] if got is not None else None,
        )
    sips = _listed(record, "sips")
    sips_response = None
    if (got := get("listPracticeLicenses", "/sips", "data")) is not None:
        sips_response, sips = got
    in_force = [sip.get("sip_number") for sip in sips if sip.get("status") == "BERLAKU"]
    if in_force:
        ctx.fail(
            "domain/skp-deactivation",
            "listPracticeLicenses",
            f"STR {str_number} is deactivated for missing SKP but {len(in_force)} SIP(s) are "
            "still BERLAKU (SE 1063/2024 declares them invalid)",
            sips_response,
        )


def _view(ctx: RunContext, operation_id: str, response: httpx.Response, items: str | None) -> Any:
    """What a view answered 200 with: a JSON object, or its `items` array of objects. Any other
    body (a proxy's HTML page, a truncated document) is a finding: the view shows nothing to
    compare."""
    try:
        body = response.json()
    except ValueError:
        media = response.headers.get("content-type") or "no content type"
        problem = f"a body that is not JSON ({media})"
    else:
        if items is None and isinstance(body, dict):
            return body
        found = body.get(items) if items is not None and isinstance(body, dict) else None
        if isinstance(found, list) and all(isinstance(item, dict) for item in found):
            return found
        problem = (
            "JSON that is not an object"
            if items is None
            else f"JSON that is not an object with a {items} array of objects"
        )
    ctx.fail(
        "domain/skp-deactivation",
        operation_id,
        f"{operation_id} answered 200 with {problem}: the SKP deactivation cannot be compared "
        "there",
        response,
    )
    return None


def _comparable(ctx: RunContext, operation_id: str) -> bool:
    """Whether an SKP view is compared: its operation selected, and in the contract given (an
    older `--spec` may lack it: a note says so once, not per record)."""
    if not ctx.selected(operation_id):
        return False
    if operation_id not in {op.id for op in ctx.contract.operations}:
        note = f"skp: the contract has no {operation_id}; that view is not compared"
        if note not in ctx.notes:
            ctx.notes.append(note)
        return False
    return True


def check_peer(
    ctx: RunContext, people: PersonList, peer_ctx: RunContext, peer_people: PersonList
) -> None:
    """The same NIK has the same name and birth date in both registries (rate and examples)."""
    records = ctx.records.get(people.operation) or []
    ours = {r["nik"]: r for r in records if isinstance(r.get("nik"), str)}
    if not ours:
        _uncomparable(ctx, people.operation, "record", people.key, records)
        return
    operation = peer_ctx.contract.operation(peer_people.operation)
    walked = walk(peer_ctx, operation, operation.path, max_limit(operation), report=False)
    theirs = walked.items
    ctx.notes.extend(f"peer: {note}" for note in peer_ctx.notes)
    _compare_with_peer(ctx, people, peer_people, records, ours, theirs, walked.complete)
    if not walked.complete:
        # What was compared stands; that no NIK is in both registries, or the rates over all
        # NIKs in both, cannot be said from part of the peer's list.
        stopped = (
            f"its {walked.rate_limited} still answered 429"
            if walked.rate_limited is not None
            else f"a page of it answered {walked.refused.status_code}"
            if walked.refused is not None
            else "it was not read to its end (the peer's notes say why)"
        )
        raise PartlyRun(
            f"compared with the {len(theirs)} records of the peer's list read before it "
            f"stopped: {stopped}"
        )


def _compare_with_peer(
    ctx: RunContext,
    people: PersonList,
    peer_people: PersonList,
    records: list[dict[str, Any]],
    ours: dict[str, dict[str, Any]],
    theirs: list[dict[str, Any]],
    whole: bool,
) -> None:
    ctx.ok("domain/peer-identity", people.operation)
    _uncomparable(ctx, people.operation, "record", people.key, records)
    # The other registry's data is not this provider's to answer for: reported, not failed.
    _uncomparable(
        ctx, people.operation, "the peer's record", peer_people.key, theirs, Severity.WARNING
    )
    both = [
        (ours[item["nik"]], item)
        for item in theirs
        if isinstance(item.get("nik"), str) and item["nik"] in ours
    ]
    ctx.stats["peer_matched"] = len(both)
    if not both:
        if whole:
            ctx.notes.append("peer: no NIK is in both registries")
        return
    for field_name in ("full_name", "birth_date"):
        differing = [(a, b) for a, b in both if a.get(field_name) != b.get(field_name)]
        ctx.stats[f"peer_{field_name}_mismatches"] = len(differing)
        if not differing:
            continue
        examples = ", ".join(str(mask_nik(a["nik"])) for a, _ in differing[:MAX_PEER_EXAMPLES])
        ctx.fail(
            "domain/peer-identity",
            people.operation,
            f"{field_name} differs for {len(differing)} of {len(both)} NIKs in both registries "
            f"({100 * len(differing) / len(both):.1f} %), e.g. NIK {examples}",
            severity=Severity.WARNING,
        )


def _uncomparable(
    ctx: RunContext,
    operation: str,
    whose: str,
    key: str,
    records: list[dict[str, Any]],
    severity: Severity = Severity.ERROR,
) -> None:
    """A record whose NIK is there but not a string fails the comparison it cannot be part of
    (the peer's records: a warning, reported only)."""
    for record in records:
        nik = record.get("nik")
        if nik is not None and not isinstance(nik, str):
            ctx.fail(
                "domain/peer-identity",
                operation,
                f"{whose} {record.get(key)}: nik is {json_kind(nik)}, not a string: it cannot be "
                "compared between the registries",
                severity=severity,
            )
