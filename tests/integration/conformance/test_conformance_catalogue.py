"""The catalogue of broken providers: each made from a real mock (a proxy that rewrites its
traffic, or a record changed through its admin API) must be reported with the rule and the
operation it breaks. Every entry runs only the phases that can see it, to keep the suite short.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conformance.webhooks import FAST_POLICY
from tests.integration.conformance.support import DeliveryRelay, Target, failing, run_conformance
from tests.support.breaking_proxy import Breakage, Exchange, HangUp

pytestmark = pytest.mark.integration


def _json(exchange: Exchange) -> Any:
    return json.loads(exchange.response_body)


def _set_json(exchange: Exchange, document: Any) -> None:
    exchange.response_body = json.dumps(document).encode()


class Rewrite(Breakage):
    """Rewrite the JSON body of answers to `method path` (a regex) with status `status`."""

    def __init__(
        self, method: str, path: str, status: int, change: Callable[[Any], Any | None]
    ) -> None:
        self.method, self.path, self.status, self.change = method, re.compile(path), status, change

    def response(self, exchange: Exchange) -> None:
        if (
            exchange.method == self.method
            and self.path.fullmatch(exchange.path)
            and exchange.status == self.status
        ):
            document = _json(exchange)
            changed = self.change(document)
            _set_json(exchange, document if changed is None else changed)


class WrongStatus(Breakage):
    def response(self, exchange: Exchange) -> None:
        if re.fullmatch(r"/v1/registrations/[^/]+", exchange.path) and exchange.status == 404:
            exchange.status = 410  # not documented: 404 is


class FindsWhatDoesNotExist(Breakage):
    """An STR number no registration has is answered 200 (the contract documents 404)."""

    def response(self, exchange: Exchange) -> None:
        if re.fullmatch(r"/v1/registrations/[^/]+", exchange.path) and exchange.status == 404:
            exchange.status = 200


class LetInWithoutKey(Breakage):
    """listPracticeLicenses no longer asks for credentials (the proxy adds valid ones)."""

    def request(self, exchange: Exchange) -> None:
        if exchange.path.endswith("/sips"):
            exchange.headers = {
                k: v for k, v in exchange.headers.items() if k.lower() != "x-api-key"
            }
            exchange.headers["X-API-Key"] = "kki-dev-token"


class HangUpOnReads(Breakage):
    """Reading one registration: the connection is closed without an answer."""

    def request(self, exchange: Exchange) -> None:
        if exchange.method == "GET" and re.fullmatch(r"/v1/registrations/[^/]+", exchange.path):
            raise HangUp


class RepeatRecord(Breakage):
    """Each page after the first starts with the last record of the page before."""

    def __init__(self) -> None:
        self.last: Any = None

    def response(self, exchange: Exchange) -> None:
        if exchange.path != "/v1/registrations" or exchange.status != 200:
            return
        document = _json(exchange)
        if exchange.param("cursor") and self.last is not None:
            document["data"].insert(0, self.last)
        if document["data"]:
            self.last = document["data"][-1]
        _set_json(exchange, document)


class LoseRecord(Breakage):
    """Pages after the first silently drop their last record."""

    def response(self, exchange: Exchange) -> None:
        if exchange.path == "/v1/registrations" and exchange.param("cursor"):
            document = _json(exchange)
            document["data"] = document["data"][:-1]
            _set_json(exchange, document)


class CursorLoop(Breakage):
    """From the second page on, the next cursor is the one just used."""

    def response(self, exchange: Exchange) -> None:
        cursor = exchange.param("cursor")
        if exchange.path == "/v1/health-workers" and cursor and exchange.status == 200:
            document = _json(exchange)
            document["page"] = {**document["page"], "next_cursor": cursor, "has_more": True}
            _set_json(exchange, document)


class HasMoreLies(Breakage):
    def response(self, exchange: Exchange) -> None:
        if exchange.path == "/v1/facilities" and exchange.status == 200:
            document = _json(exchange)
            if document["page"]["next_cursor"] is not None:
                document["page"]["has_more"] = False
                _set_json(exchange, document)


class IgnoreUpdatedSince(Breakage):
    def request(self, exchange: Exchange) -> None:
        exchange.query = [(k, v) for k, v in exchange.query if k != "updated_since"]


class DropRetryAfter(Breakage):
    def response(self, exchange: Exchange) -> None:
        if exchange.status == 429:
            exchange.response_headers = {
                k: v for k, v in exchange.response_headers.items() if k.lower() != "retry-after"
            }


class OffSchemaError(Breakage):
    def response(self, exchange: Exchange) -> None:
        if exchange.status == 401 and exchange.path.startswith("/v1/registrations/"):
            _set_json(exchange, {"error": "unauthorized"})


class AcceptAnySecret(Breakage):
    """The token endpoint takes any secret for the development client."""

    def request(self, exchange: Exchange) -> None:
        if exchange.path == "/oauth2/v1/accesstoken":
            exchange.body = exchange.body.replace(b"wrong-secret", b"sisdmk-dev-secret")


class GrantTypeOptional(Breakage):
    """The token endpoint no longer needs grant_type in the query (the proxy supplies it)."""

    def request(self, exchange: Exchange) -> None:
        if exchange.path == "/oauth2/v1/accesstoken" and exchange.param("grant_type") is None:
            exchange.query.append(("grant_type", "client_credentials"))


class PlainTextNotFound(Breakage):
    def response(self, exchange: Exchange) -> None:
        if re.fullmatch(r"/v1/registrations/[^/]+", exchange.path) and exchange.status == 404:
            exchange.response_headers = {
                **{
                    k: v
                    for k, v in exchange.response_headers.items()
                    if k.lower() != "content-type"
                },
                "content-type": "text/plain",
            }
            exchange.response_body = b"Not Found"


class SkpReactivated(Breakage):
    """The certification endpoint shows an SKP-deactivated STR as active."""

    def response(self, exchange: Exchange) -> None:
        if exchange.path.endswith("/certification") and exchange.status == 200:
            document = _json(exchange)
            if document["status"] == "NONAKTIF_SEMENTARA":
                document["status"] = "AKTIF"
                _set_json(exchange, document)


class EmitMisbehaving(Breakage):
    """The events the command causes through the admin API are sent in a misbehaving mode."""

    admin = True

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def request(self, exchange: Exchange) -> None:
        if exchange.path == "/__admin/events":
            exchange.body = json.dumps({**json.loads(exchange.body), "mode": self.mode}).encode()


class NoRetries(Breakage):
    """The provider gives up after the first attempt."""

    admin = True

    def request(self, exchange: Exchange) -> None:
        if exchange.path == "/__admin/webhook-policy" and exchange.method == "PUT":
            document = json.loads(exchange.body)
            if document == FAST_POLICY:  # the command's fast policy, not its restore
                exchange.body = json.dumps({**document, "max_attempts": 1}).encode()


class ImmediateRetries(Breakage):
    """The provider retries at once, never backing off."""

    admin = True

    def request(self, exchange: Exchange) -> None:
        if exchange.path == "/__admin/webhook-policy" and exchange.method == "PUT":
            document = json.loads(exchange.body)
            if document == FAST_POLICY:  # the command's fast policy, not its restore
                at_once = {**document, "base_delay_ms": 0, "max_delay_ms": 0}
                exchange.body = json.dumps(at_once).encode()


def _same_webhook_id(headers: dict[str, str], body: dict[str, Any], count: int) -> None:
    headers["webhook-id"] = "msg_always_the_same"


def _new_webhook_id_per_attempt(headers: dict[str, str], body: dict[str, Any], count: int) -> None:
    headers["webhook-id"] = f"msg_attempt_{count}"


def _event_without_source(headers: dict[str, str], body: dict[str, Any], count: int) -> None:
    body.pop("source", None)


def _drop_full_name(document: dict[str, Any]) -> None:
    document.pop("full_name", None)


def _version_as_text(document: dict[str, Any]) -> None:
    document["version"] = str(document["version"])


def _token_lifetime_of_seconds(document: dict[str, Any]) -> None:
    document["expires_in"] = "30"


def _token_without_type(document: dict[str, Any]) -> None:
    document.pop("token_type", None)


def _odd_str_number(document: dict[str, Any]) -> None:
    document["data"][0]["str_number"] = "KKI/2020/77"


def _nip_with_month_13(target: Target) -> None:
    worker = _first(target, "/v1/health-workers", lambda w: w["nip"] is not None)
    nip = worker["nip"]
    target.patch("health-workers", worker["worker_id"], {"nip": nip[:12] + "13" + nip[14:]})


def _flip_gender(target: Target) -> None:
    worker = _first(target, "/v1/health-workers", lambda w: w["nip"] is None)
    flipped = "male" if worker["gender"] == "female" else "female"
    target.patch("health-workers", worker["worker_id"], {"gender": flipped})


def _first(target: Target, path: str, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    with target.public() as client:
        items = client.get(path, params={"limit": 500}).json()["data"]
    return next(item for item in items if accept(item))


def _shift_birth_date(target: Target) -> None:
    worker = _first(target, "/v1/health-workers", lambda w: True)
    born = dt.date.fromisoformat(worker["birth_date"])
    target.patch(
        "health-workers",
        worker["worker_id"],
        {"birth_date": (born + dt.timedelta(days=3)).isoformat()},
    )


def _impossible_nik(target: Target) -> None:
    worker = _first(target, "/v1/health-workers", lambda w: True)
    target.patch("health-workers", worker["worker_id"], {"nik": "99" + worker["nik"][2:]})


def _flip_nip_gender(target: Target) -> None:
    worker = _first(target, "/v1/health-workers", lambda w: w["nip"] is not None)
    nip = worker["nip"]
    flipped = nip[:14] + ("2" if nip[14] == "1" else "1") + nip[15:]
    target.patch("health-workers", worker["worker_id"], {"nip": flipped})


def _is_new_citizen_str(r: dict[str, Any]) -> bool:
    return (
        r["citizenship"] == "WNI"
        and r["issued_at"] >= "2023-08-08"
        and r["certification"]["valid_until"] is None
    )


def _citizen_str_with_end_date(target: Target) -> None:
    registration = _first(target, "/v1/registrations", _is_new_citizen_str)
    target.patch(
        "registrations",
        registration["str_number"],
        {"certification": {"valid_until": "2031-01-31"}},
    )


def _foreign_str_for_ten_years(target: Target) -> None:
    registration = _first(target, "/v1/registrations", _is_new_citizen_str)
    issued = dt.date.fromisoformat(registration["issued_at"])
    target.patch(
        "registrations",
        registration["str_number"],
        {
            "citizenship": "WNA",
            "registration_type": "sementara",
            "certification": {"valid_until": issued.replace(year=issued.year + 10).isoformat()},
        },
    )


def _sip_for_seven_years(target: Target) -> None:
    registration = _first(target, "/v1/registrations", lambda r: bool(r["sips"]))
    sips = registration["sips"]
    issued = dt.date.fromisoformat(sips[0]["issued_at"])
    sips[0] = {**sips[0], "valid_until": issued.replace(year=issued.year + 7).isoformat()}
    target.patch("registrations", registration["str_number"], {"sips": sips})


def _rate_limit(target: Target) -> None:
    response = target.mock.admin.post(
        "/faults",
        # One 429 after two requests, however slowly they come (a 1 s window needed three
        # requests within a second, which a loaded machine may not send).
        json={
            "route": "listRegistrations",
            "kind": "rate_limit",
            "limit": 2,
            "window_s": 60,
            "retry_after_s": 1,
            "times": 1,
        },
    )
    assert response.status_code == 201, response.text


def _server_error(target: Target) -> None:
    response = target.mock.admin.post(
        "/faults", json={"route": "getFacility", "kind": "error", "status": 500}
    )
    assert response.status_code == 201, response.text


@dataclass(frozen=True)
class Entry:
    name: str
    system: str
    rule: str
    operation: str
    breakage: Callable[[], Breakage] | None = None
    setup: Callable[[Target], None] | None = None
    args: tuple[str, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)


PAGING = ("--phases", "pagination")
FUZZ_ONE = ("--phases", "schemathesis", "--max-examples", "3", "--seed", "7", "--include")

CATALOGUE = [
    Entry(
        "required field dropped",
        "kki",
        "contract/response_schema_conformance",
        "getRegistration",
        breakage=lambda: Rewrite("GET", r"/v1/registrations/[A-Z0-9]+", 200, _drop_full_name),
        args=("--phases", "pagination", "reads"),
    ),
    Entry(
        "required field dropped from a list page",
        "kki",
        "contract/response_schema_conformance",
        "listRegistrations",
        breakage=lambda: Rewrite(
            "GET",
            r"/v1/registrations",
            200,
            lambda d: [_drop_full_name(r) for r in d["data"][:1]] and None,
        ),
        args=PAGING,
    ),
    Entry(
        "list drifted from the adapter's pact",
        "kki",
        "pact/interaction",
        "a request for the first page of registrations",
        breakage=lambda: Rewrite(
            "GET",
            r"/v1/registrations",
            200,
            lambda d: [_drop_full_name(r) for r in d["data"]] and None,
        ),
        args=("--phases", "pact"),
    ),
    Entry(
        "type changed",
        "kki",
        "contract/response_schema_conformance",
        "getRegistration",
        breakage=lambda: Rewrite("GET", r"/v1/registrations/[A-Z0-9]+", 200, _version_as_text),
        args=("--phases", "pagination", "reads"),
    ),
    Entry(
        "undocumented status code",
        "kki",
        "contract/status_code_conformance",
        "getRegistration",
        breakage=WrongStatus,
        args=(*FUZZ_ONE, "getRegistration"),
    ),
    Entry(
        "server error",
        "sisdmk",
        "contract/not_a_server_error",
        "getFacility",
        setup=_server_error,
        args=(*FUZZ_ONE, "getFacility"),
    ),
    Entry(
        "connection closed without an answer",
        "kki",
        "contract/run-error",
        "getRegistration",
        breakage=HangUpOnReads,
        args=(*FUZZ_ONE, "getRegistration"),
    ),
    Entry(
        "operation without authentication",
        "kki",
        "auth/missing-credentials",
        "listPracticeLicenses",
        breakage=LetInWithoutKey,
        args=("--phases", "pagination", "credentials"),
    ),
    Entry(
        "operation taking any key",
        "kki",
        "auth/wrong-credentials",
        "listPracticeLicenses",
        breakage=LetInWithoutKey,
        args=("--phases", "pagination", "credentials"),
    ),
    Entry(
        "page repeating a record",
        "kki",
        "pagination/repeated-record",
        "listRegistrations",
        breakage=RepeatRecord,
        args=PAGING,
    ),
    Entry(
        "page losing a record",
        "kki",
        "pagination/lost-record",
        "listRegistrations",
        breakage=LoseRecord,
        args=PAGING,
    ),
    Entry(
        "cursor loop",
        "sisdmk",
        "pagination/cursor-loop",
        "listHealthWorkers",
        breakage=CursorLoop,
        args=PAGING,
    ),
    Entry(
        "has_more contradicting next_cursor",
        "sisdmk",
        "pagination/has-more",
        "listFacilities",
        breakage=HasMoreLies,
        args=PAGING,
    ),
    Entry(
        "updated_since ignored",
        "kki",
        "pagination/updated-since",
        "listRegistrations",
        breakage=IgnoreUpdatedSince,
        args=PAGING,
    ),
    Entry(
        "429 without Retry-After",
        "kki",
        "rate-limit/retry-after",
        "listRegistrations",
        breakage=DropRetryAfter,
        setup=_rate_limit,
        args=PAGING,
    ),
    Entry(
        "error body off the documented schema",
        "kki",
        "errors/error-body",
        "getRegistration",
        breakage=OffSchemaError,
        args=("--phases", "pagination", "credentials"),
    ),
    Entry(
        "unknown record answered 200",
        "kki",
        "errors/status",
        "getRegistration",
        breakage=FindsWhatDoesNotExist,
        args=("--phases", "pagination", "errors"),
    ),
    Entry(
        "token endpoint accepting a wrong secret",
        "sisdmk",
        "token/wrong-secret",
        "issueAccessToken",
        breakage=AcceptAnySecret,
        args=("--phases", "token"),
    ),
    Entry(
        "SKP deactivation not shown by the certification endpoint",
        "kki",
        "domain/skp-deactivation",
        "getCertificationStatus",
        breakage=SkpReactivated,
        args=("--phases", "pagination", "skp"),
    ),
    Entry(
        "NIK contradicting the birth date",
        "sisdmk",
        "domain/nik-birth-date",
        "listHealthWorkers",
        setup=_shift_birth_date,
        args=("--phases", "pagination", "domain"),
    ),
    Entry(
        "NIK that cannot exist",
        "sisdmk",
        "domain/nik-structure",
        "listHealthWorkers",
        setup=_impossible_nik,
        args=("--phases", "pagination", "domain"),
    ),
    Entry(
        "NIP contradicting the gender",
        "sisdmk",
        "domain/nip-agreement",
        "listHealthWorkers",
        setup=_flip_nip_gender,
        args=("--phases", "pagination", "domain"),
    ),
    Entry(
        "citizen's STR with an end date",
        "kki",
        "domain/str-citizen-lifetime",
        "listRegistrations",
        setup=_citizen_str_with_end_date,
        args=("--phases", "pagination", "domain"),
    ),
    Entry(
        "foreigner's STR for ten years",
        "kki",
        "domain/str-foreigner-term",
        "listRegistrations",
        setup=_foreign_str_for_ten_years,
        args=("--phases", "pagination", "domain"),
    ),
    Entry(
        "SIP for seven years",
        "kki",
        "domain/sip-five-years",
        "listRegistrations",
        setup=_sip_for_seven_years,
        args=("--phases", "pagination", "domain"),
    ),
]


TOKEN = ("--phases", "token")
CATALOGUE += [
    Entry(
        "token endpoint without grant_type in the query",
        "sisdmk",
        "token/grant-type",
        "issueAccessToken",
        breakage=GrantTypeOptional,
        args=TOKEN,
    ),
    Entry(
        "token living 30 seconds",
        "sisdmk",
        "token/lifetime",
        "issueAccessToken",
        breakage=lambda: Rewrite("POST", "/oauth2/v1/accesstoken", 200, _token_lifetime_of_seconds),
        args=TOKEN,
    ),
    Entry(
        "token document without token_type",
        "sisdmk",
        "token/client-credentials",
        "issueAccessToken",
        breakage=lambda: Rewrite("POST", "/oauth2/v1/accesstoken", 200, _token_without_type),
        args=TOKEN,
    ),
    Entry(
        "NIK contradicting the gender",
        "sisdmk",
        "domain/nik-sex",
        "listHealthWorkers",
        setup=_flip_gender,
        args=("--phases", "pagination", "domain"),
    ),
    Entry(
        "NIP with a TMT month 13",
        "sisdmk",
        "domain/nip-structure",
        "listHealthWorkers",
        setup=_nip_with_month_13,
        args=("--phases", "pagination", "domain"),
    ),
    Entry(
        "STR number with characters an STR never has",
        "kki",
        "domain/str-format",
        "listRegistrations",
        breakage=lambda: Rewrite("GET", "/v1/registrations", 200, _odd_str_number),
        args=("--phases", "pagination", "domain"),
    ),
    Entry(
        "undocumented content type",
        "kki",
        "contract/content_type_conformance",
        "getRegistration",
        breakage=PlainTextNotFound,
        args=(*FUZZ_ONE, "getRegistration"),
    ),
]

WEBHOOKS = ("--phases", "webhooks", "--webhooks")
CATALOGUE += [
    Entry(
        "webhook with a bad signature",
        "kki",
        "webhooks/signature",
        "createWebhookSubscription",
        breakage=lambda: EmitMisbehaving("bad_signature"),
        args=WEBHOOKS,
    ),
    Entry(
        "webhook with a stale timestamp",
        "sisdmk",
        "webhooks/timestamp",
        "createWebhookSubscription",
        breakage=lambda: EmitMisbehaving("stale_timestamp"),
        args=WEBHOOKS,
    ),
    Entry(
        "webhook ids reused for different events",
        "kki",
        "webhooks/unique-id",
        "createWebhookSubscription",
        breakage=lambda: DeliveryRelay(_same_webhook_id),
        args=WEBHOOKS,
    ),
    Entry(
        "webhook id changing on redelivery",
        "sisdmk",
        "webhooks/stable-id",
        "createWebhookSubscription",
        breakage=lambda: DeliveryRelay(_new_webhook_id_per_attempt),
        args=WEBHOOKS,
    ),
    Entry(
        "webhook event without its source",
        "kki",
        "webhooks/payload",
        "createWebhookSubscription",
        breakage=lambda: DeliveryRelay(_event_without_source),
        args=WEBHOOKS,
    ),
    Entry(
        "webhook not retried after a 503",
        "sisdmk",
        "webhooks/retry",
        "createWebhookSubscription",
        breakage=NoRetries,
        # Past the fast policy's retries (1 s, then 2 s), short of the mocks' 10 s wait: a
        # retry would have come within it.
        args=(*WEBHOOKS, "--webhook-wait", "5"),
    ),
    Entry(
        "webhook retried at once",
        "kki",
        "webhooks/retry",
        "createWebhookSubscription",
        breakage=ImmediateRetries,
        args=WEBHOOKS,
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[entry.name for entry in CATALOGUE])
def test_broken_provider_is_reported_with_rule_and_operation(
    entry: Entry, kki_target: Target, sisdmk_target: Target, tmp_path: Path
) -> None:
    target = kki_target if entry.system == "kki" else sisdmk_target
    target.reset(entry.breakage() if entry.breakage else None)
    if entry.setup is not None:
        entry.setup(target)
    code, report = run_conformance(entry.system, target.proxy.url, tmp_path, *entry.args)
    found = failing(report)
    assert (entry.rule, entry.operation) in found, (
        f"{entry.name}: expected {entry.rule} on {entry.operation}; got {sorted(found)}; "
        f"notes {report.get('notes')}"
    )
    assert code == 1


def test_a_request_without_an_answer_stops_its_phase_and_keeps_the_rest(
    kki_target: Target, tmp_path: Path
) -> None:
    """A staging system that drops one request must not cost QA the whole run: the phase it
    happened in is partly run (naming the operation), the other phases and the reports stand."""
    kki_target.reset(HangUpOnReads())
    code, report = run_conformance(
        "kki", kki_target.proxy.url, tmp_path, "--phases", "pagination", "reads"
    )
    phases = {phase["name"]: phase["status"] for phase in report["phases"]}
    assert phases["pagination"] == "done"
    assert phases["reads"].startswith("partly run (stopped: ")
    assert "(getRegistration)" in phases["reads"]
    assert report["verdict"] == "incomplete"
    assert code == 2
