"""Every read of personal data leaves one audit entry whatever came of it: found, found
nothing, KKI's error, refused (a missing scope, the NIK rate limit); at the API and at the CLI.
Real HTTP, real test-IdP tokens, the real KKI mock, PostgreSQL and SQLite."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL, make_url

from adapter.audit import command_line_operator
from adapter.store.crypto import BlindIndex
from adapter.store.models import AuditEvent
from harness.idp import IdpProcess
from tests.integration.adapter.api.stack import OPS, PORTAL, READONLY, Adapter, served_adapter
from tests.integration.adapter.sync.support import Mock, adapter_environment
from tests.support.databases import BACKENDS, PostgresServer

pytestmark = pytest.mark.integration

PROBES = 100
# Enough NIK queries for the probes; the rate-limit test serves its own adapter with a tight one.
GENEROUS_LIMIT = {"NIK_SEARCH_RATE_LIMIT": f"{PROBES + 50}/minute"}
PERSONAL_READS = (  # method, path, body, the audit action
    ("GET", "/api/v1/health-workers", None, "healthworker.list"),
    ("GET", f"/api/v1/health-workers/{uuid.UUID(int=7)}", None, "healthworker.read"),
    (
        "POST",
        "/api/v1/health-workers/search-by-nik",
        {"nik": "3171010101900001"},
        "healthworker.search_by_nik",
    ),
    ("GET", "/api/v1/identity-findings", None, "finding.list"),
    ("POST", "/api/v1/registrations/lookup", {"nik": "3171010101900001"}, "registration.lookup"),
)


@dataclass(frozen=True)
class Entry:
    actor: tuple[str | None, str | None, str | None]
    action: str
    resource_type: str
    resource_id: str | None
    fields: list[str]
    outcome: str
    detail: dict[str, Any]
    raw: str


def entries(adapter: Adapter, after: int = 0, **where: Any) -> list[Entry]:
    """The audit entries after `after` (a seq), in order, filtered by column values."""
    query = select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    with adapter.sessions() as session:
        return [
            Entry(
                actor=(row.actor_kind, row.actor_subject, row.actor_client),
                action=row.action,
                resource_type=row.resource_type,
                resource_id=row.resource_id,
                fields=json.loads(row.fields or "[]"),
                outcome=row.outcome,
                detail=json.loads(row.detail or "{}"),
                raw=json.dumps([row.resource_id, row.fields, row.detail]),
            )
            for row in session.scalars(query)
        ]


def last_seq(adapter: Adapter) -> int:
    with adapter.sessions() as session:
        return int(session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())) or 0)


def unknown_niks(count: int, kki: Mock) -> list[str]:
    """Well-formed NIKs that KKI does not hold."""
    held = {registration["nik"] for registration in kki.records("registrations")}
    candidates = (f"3171{day:02d}0101{serial:06d}" for day in (1, 2) for serial in range(1, 999))
    return [nik for nik in candidates if nik not in held][:count]


def service(client_id: str) -> tuple[str, str, str]:
    # The test IdP names the client as the subject of a client-credentials token (RFC 9068).
    return ("service", client_id, client_id)


def store_url(
    backend: str, postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> URL:
    if backend == "postgresql":
        return postgres_server.create_database()
    return make_url(f"sqlite:///{tmp_path_factory.mktemp('read-audit') / 'adapter.sqlite3'}")


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    idp: IdpProcess,
    kki: Mock,
    sisdmk: Mock,
) -> Iterator[Adapter]:
    url = store_url(request.param, postgres_server, tmp_path_factory)
    with served_adapter(url, idp, kki, sisdmk, GENEROUS_LIMIT) as adapter:
        yield adapter


@pytest.fixture
def mock_kki(kki: Mock) -> Iterator[Mock]:
    kki.reset()
    yield kki
    kki.reset()


@pytest.fixture(scope="module")
def tokens(idp: IdpProcess) -> dict[str, str]:
    return {client: idp.token(client) for client in (PORTAL, OPS, READONLY)}


def test_each_nik_probe_that_finds_nothing_leaves_one_entry_without_the_nik(
    served: Adapter,
    tokens: dict[str, str],
    mock_kki: Mock,
    blind_index: BlindIndex,
) -> None:
    niks = unknown_niks(PROBES, mock_kki)
    before = last_seq(served)
    with served.client(tokens[READONLY]) as reader:
        statuses = [
            reader.post("/api/v1/registrations/lookup", json={"nik": nik}).status_code
            for nik in niks
        ]
    assert statuses == [404] * PROBES
    probes = entries(served, before, action="registration.lookup")
    assert len(probes) == PROBES
    assert {entry.actor for entry in probes} == {service(READONLY)}
    assert {entry.outcome for entry in probes} == {"success"}
    assert all(entry.detail["found"] is False for entry in probes)
    assert [entry.detail["nik_digest"] for entry in probes] == [
        blind_index.digest(nik, purpose="nik") for nik in niks
    ]
    assert all(entry.resource_id is None and entry.fields == ["nik"] for entry in probes)
    assert not any(nik in entry.raw for entry, nik in zip(probes, niks, strict=True))
    # A miss writes nothing to the store, so the read is the only entry.
    assert len(entries(served, before)) == PROBES


def test_a_lookup_that_finds_leaves_one_read_entry_beside_its_write(
    served: Adapter, tokens: dict[str, str], mock_kki: Mock
) -> None:
    registration = mock_kki.records("registrations")[0]
    before = last_seq(served)
    with served.client(tokens[PORTAL]) as portal:
        response = portal.post(
            "/api/v1/registrations/lookup", json={"str_number": registration["str_number"]}
        )
    assert response.status_code == 200, response.text
    (read,) = entries(served, before, action="registration.lookup")
    assert (read.actor, read.outcome, read.resource_id) == (
        service(PORTAL),
        "success",
        registration["str_number"],
    )
    assert read.detail["found"] is True
    assert read.detail["live"] is True
    assert read.detail["masked"] is False
    assert read.detail["worker_ids"] == [response.json()["registrations"][0]["worker_id"]]
    assert read.fields == ["full_name"]
    assert [entry.action for entry in entries(served, before)] == [
        "lookup.refresh",
        "registration.lookup",
    ]


def test_a_lookup_kki_asks_to_wait_for_serves_the_stored_copy_at_once(
    served: Adapter, tokens: dict[str, str], mock_kki: Mock
) -> None:
    """KKI answers 503 with Retry-After: 10. A look-up holds a request thread: it used to sleep
    the 10 s and ask again (up to 4 attempts and 30 s waits); it now serves the stored copy."""
    stored = mock_kki.records("registrations")[1]["str_number"]
    with served.client(tokens[READONLY]) as reader:
        first = reader.post("/api/v1/registrations/lookup", json={"str_number": stored})
        mock_kki.fault(
            {
                "route": "getRegistration",
                "kind": "error",
                "status": 503,
                "retry_after_s": 10,
                "times": 1,
            }
        )
        asked = reader.post("/api/v1/registrations/lookup", json={"str_number": stored})
    assert (first.status_code, first.json()["live"]) == (200, True)
    assert asked.status_code == 200, asked.text
    # One attempt met the fault and gave up (a second, after the wait, would have been live).
    assert (asked.json()["live"], asked.json()["stale"]) == (False, True)


def test_a_str_lookup_kki_cannot_answer_is_audited_as_an_error(
    served: Adapter, tokens: dict[str, str], mock_kki: Mock, blind_index: BlindIndex
) -> None:
    held = mock_kki.records("registrations")[-1]["str_number"]  # not in the store yet
    before = last_seq(served)
    with served.client(tokens[READONLY]) as reader:
        missing = reader.post("/api/v1/registrations/lookup", json={"str_number": "9" * 16})
        mock_kki.fault({"route": "getRegistration", "kind": "malformed"})
        broken = reader.post("/api/v1/registrations/lookup", json={"str_number": held})
    assert (missing.status_code, broken.status_code) == (404, 502)
    miss, error = entries(served, before, action="registration.lookup")
    # Neither answered to a registration: each is named by its digest, not in clear.
    assert (miss.outcome, miss.resource_id, miss.detail["found"]) == ("success", None, False)
    assert miss.detail["str_digest"] == blind_index.digest("9" * 16, purpose="str_number")
    assert (error.outcome, error.resource_id) == ("error", None)
    assert error.detail["str_digest"] == blind_index.digest(held, purpose="str_number")
    assert "9" * 16 not in miss.raw
    assert held not in error.raw
    assert error.detail["reason"] == "contract_violation"
    assert {miss.actor, error.actor} == {service(READONLY)}
    assert len(entries(served, before)) == 2


def test_a_nik_typed_as_an_str_number_is_never_in_the_trail(
    served: Adapter, tokens: dict[str, str], mock_kki: Mock, blind_index: BlindIndex
) -> None:
    """A NIK and an old KKI STR number are both 16 digits, so a NIK typed into `str_number`
    passes the request's checks; KKI knows no such STR. A found STR is the resource read."""
    nik = mock_kki.records("registrations")[0]["nik"]
    known = next(  # a new-style STR number: two letters and 14 digits
        r["str_number"] for r in mock_kki.records("registrations") if r["str_number"][0].isalpha()
    )
    before = last_seq(served)
    with served.client(tokens[READONLY]) as reader:
        typed = reader.post("/api/v1/registrations/lookup", json={"str_number": nik})
        found = reader.post("/api/v1/registrations/lookup", json={"str_number": known})
    assert (typed.status_code, found.status_code) == (404, 200), typed.text
    miss, hit = entries(served, before, action="registration.lookup")
    assert (miss.resource_id, miss.detail["found"]) == (None, False)
    assert miss.detail["str_digest"] == blind_index.digest(nik, purpose="str_number")
    # NIK-shaped: a search of the trail for this person's NIK digest finds it too.
    assert miss.detail["nik_digest"] == blind_index.digest(nik, purpose="nik")
    assert nik not in miss.raw
    assert (hit.resource_id, hit.detail["found"]) == (known, True)
    assert hit.detail["str_digest"] == blind_index.digest(known, purpose="str_number")
    assert "nik_digest" not in hit.detail  # an STR of two letters and 14 digits


def test_reads_that_find_nothing_in_the_store_are_audited(
    served: Adapter, tokens: dict[str, str], blind_index: BlindIndex
) -> None:
    worker_id = uuid.uuid4()
    nik = "3171010101900001"
    before = last_seq(served)
    with served.client(tokens[PORTAL]) as portal:
        assert portal.get(f"/api/v1/health-workers/{worker_id}").status_code == 404
        by_nik = portal.post("/api/v1/health-workers/search-by-nik", json={"nik": nik})
        findings = portal.get("/api/v1/identity-findings", params={"rule": "nik_sex"})
    assert by_nik.status_code == 200
    assert by_nik.json()["data"] == []
    assert findings.status_code == 200
    detail, search, listed = entries(served, before)
    assert (detail.action, detail.resource_id, detail.outcome) == (
        "healthworker.read",
        str(worker_id),
        "success",
    )
    assert detail.detail["found"] is False
    assert detail.fields == []
    assert (search.action, search.resource_id, search.fields) == (
        "healthworker.search_by_nik",
        None,
        ["nik"],
    )
    assert search.detail["found"] is False
    assert search.detail["nik_digest"] == blind_index.digest(nik, purpose="nik")
    assert nik not in search.raw
    assert (listed.action, listed.detail["count"]) == ("finding.list", len(findings.json()["data"]))
    assert {detail.actor, search.actor, listed.actor} == {service(PORTAL)}


def test_a_missing_scope_on_a_personal_read_is_audited_and_logged_with_the_caller(
    served: Adapter, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    before = last_seq(served)
    caplog.set_level(logging.INFO, logger="adapter.auth")
    with served.client(tokens[OPS]) as ops:
        statuses = [
            ops.request(method, path, json=body).status_code
            for method, path, body, _ in PERSONAL_READS
        ]
        # A refused admin call is logged, but it reads no personal data: no entry.
        assert ops.get("/api/v1/audit-events").status_code == 200
    assert statuses == [403] * len(PERSONAL_READS)
    refused = entries(served, before)
    assert [entry.action for entry in refused] == [action for *_, action in PERSONAL_READS]
    for entry in refused:
        assert (entry.actor, entry.outcome) == (service(OPS), "denied")
        assert entry.detail == {
            "reason": "insufficient_scope",
            "missing_scopes": ["healthworkers:read"],
        }
        assert "3171010101900001" not in entry.raw
    lines = [r for r in caplog.records if r.name == "adapter.auth" and "lacking" in r.message]
    assert len(lines) == len(PERSONAL_READS)
    assert {(r.__dict__["subject"], r.__dict__["client"]) for r in lines} == {(OPS, OPS)}
    assert not any("3171010101900001" in r.getMessage() for r in lines)


def test_a_nik_query_over_the_rate_limit_is_audited_as_denied(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    idp: IdpProcess,
    kki: Mock,
    sisdmk: Mock,
    tokens: dict[str, str],
    backend: str,
) -> None:
    url = store_url(backend, postgres_server, tmp_path_factory)
    limit = {"NIK_SEARCH_RATE_LIMIT": "1/hour"}
    with served_adapter(url, idp, kki, sisdmk, limit) as adapter:
        with adapter.client(tokens[PORTAL]) as portal:
            body = {"nik": "3171010101900001"}
            first = portal.post("/api/v1/health-workers/search-by-nik", json=body)
            second = portal.post("/api/v1/health-workers/search-by-nik", json=body)
            third = portal.post("/api/v1/registrations/lookup", json=body)
        assert (first.status_code, second.status_code, third.status_code) == (200, 429, 429)
        allowed, limited, lookup = entries(adapter)
    assert (allowed.action, allowed.outcome) == ("healthworker.search_by_nik", "success")
    assert (limited.action, limited.outcome) == ("healthworker.search_by_nik", "denied")
    assert (lookup.action, lookup.outcome) == ("registration.lookup", "denied")
    for entry in (limited, lookup):
        assert entry.actor == service(PORTAL)
        assert entry.detail == {"reason": "rate_limited"}


def test_str_look_ups_over_their_own_limit_are_refused_before_kki_and_audited_as_denied(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    idp: IdpProcess,
    kki: Mock,
    sisdmk: Mock,
    tokens: dict[str, str],
) -> None:
    url = store_url("postgresql", postgres_server, tmp_path_factory)
    limits = {"STR_LOOKUP_RATE_LIMIT": "2/hour", "NIK_SEARCH_RATE_LIMIT": "1/hour"}
    str_number = kki.records("registrations")[0]["str_number"]
    with served_adapter(url, idp, kki, sisdmk, limits) as adapter:
        with adapter.client(tokens[PORTAL]) as portal:
            by_str = {"str_number": str_number}
            answers = [portal.post("/api/v1/registrations/lookup", json=by_str) for _ in range(3)]
            # A NIK query keeps its own count (this NIK is unknown: 404, not 429).
            by_nik = portal.post("/api/v1/registrations/lookup", json={"nik": "3171010101900001"})
        with adapter.client(tokens[READONLY]) as reader:  # another caller: its own window
            other = reader.post("/api/v1/registrations/lookup", json=by_str)
        audited = entries(adapter, action="registration.lookup")

    assert [a.status_code for a in answers] == [200, 200, 429], answers[-1].text
    refusal = answers[-1]
    assert refusal.headers["content-type"] == "application/problem+json"
    assert refusal.json()["reason"] == "rate_limited"
    assert refusal.json()["detail"].startswith("too many STR look-ups; try again in ")
    assert 1 <= int(refusal.headers["Retry-After"]) <= 3600
    assert str_number not in refusal.text
    assert (by_nik.status_code, other.status_code) == (404, 200)
    assert [(e.actor, e.outcome) for e in audited] == [
        (service(PORTAL), "success"),
        (service(PORTAL), "success"),
        (service(PORTAL), "denied"),
        (service(PORTAL), "success"),  # found nothing (detail: found false)
        (service(READONLY), "success"),
    ]
    assert audited[2].detail == {"reason": "rate_limited"}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_cli_lookup_that_finds_nothing_is_audited_in_the_operators_name(
    served: Adapter, mock_kki: Mock, sisdmk: Mock, blind_index: BlindIndex
) -> None:
    (nik,) = unknown_niks(1, mock_kki)
    url = served.engine.url.render_as_string(hide_password=False)
    before = last_seq(served)
    run = subprocess.run(
        [sys.executable, "-m", "adapter", "lookup", "--nik-stdin"],
        input=nik + "\n",
        env=adapter_environment(url, mock_kki.url, sisdmk.url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1, run.stderr
    assert "KKI has no such registration" in run.stderr
    (entry,) = entries(served, before)
    assert entry.action == "registration.lookup"
    assert entry.actor == ("user", command_line_operator().subject, "hf-adapter-cli")
    assert (entry.outcome, entry.detail["found"]) == ("success", False)
    assert entry.detail["nik_digest"] == blind_index.digest(nik, purpose="nik")
    assert nik not in entry.raw
