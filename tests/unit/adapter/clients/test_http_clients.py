"""KKI and SISDMK clients over `httpx.MockTransport`: headers, paging, contract, token cache."""

from __future__ import annotations

import copy
import gzip
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from adapter.auth.token_cache import MAX_TOKEN_LIFETIME_S
from adapter.clients import (
    AuthenticationFailed,
    CircuitBreaker,
    ClientMetrics,
    ContractViolation,
    HttpKkiClient,
    HttpSisdmkClient,
    RetryPolicy,
    disable_retries,
)
from adapter.clients.contract import CONTRACTS_DIR
from adapter.clients.errors import UpstreamUnavailable
from adapter.clients.http import MAX_EMPTY_PAGES, Timeouts
from adapter.observability.tracing import start_span
from openapi_schemas import load_yaml

Handler = Callable[[httpx.Request], httpx.Response]
NIK = "3171015708900042"


def example(filename: str, path: str, method: str) -> Any:
    spec = load_yaml((CONTRACTS_DIR / filename).read_text(encoding="utf-8"))
    content = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    return copy.deepcopy(content["example"])


REGISTRATION = example("kki.yaml", "/v1/registrations/{str_number}", "get")
WORKER = example("sisdmk.yaml", "/v1/health-workers/lookup", "post")["data"]
TOKEN = example("sisdmk.yaml", "/oauth2/v1/accesstoken", "post")


@pytest.fixture(autouse=True)
def _no_retries() -> Iterator[None]:
    disable_retries()
    yield
    disable_retries(False)


def kki_client(handler: Handler) -> HttpKkiClient:
    return HttpKkiClient(
        "http://kki.test",
        "secret-token",
        transport=httpx.MockTransport(handler),
        metrics=ClientMetrics.for_registry(CollectorRegistry()),
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeSisdmk:
    """Issues numbered tokens; refuses tokens listed in `revoked`."""

    def __init__(self, expires_in: str = "14399") -> None:
        self.expires_in = expires_in
        self.issued = 0
        self.revoked: set[str] = set()
        self.refuse_all = False
        self.data_calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/v1/accesstoken":
            assert request.url.params["grant_type"] == "client_credentials"
            assert b"client_secret=s3cret" in request.content
            self.issued += 1
            token = {
                **TOKEN,
                "access_token": f"token-{self.issued:016d}",
                "expires_in": self.expires_in,
            }
            return httpx.Response(200, json=token)
        self.data_calls += 1
        bearer = request.headers["Authorization"].removeprefix("Bearer ")
        if self.refuse_all or bearer in self.revoked:
            return httpx.Response(401, json={"status": 401, "message": "token expired"})
        return httpx.Response(200, json={"status": 200, "message": "OK", "data": WORKER})


def sisdmk_client(fake: FakeSisdmk, clock: FakeClock | None = None) -> HttpSisdmkClient:
    return HttpSisdmkClient(
        "http://sisdmk.test",
        "client",
        "s3cret",
        transport=httpx.MockTransport(fake),
        metrics=ClientMetrics.for_registry(CollectorRegistry()),
        clock=clock or FakeClock(),
    )


def system_labels(registry: CollectorRegistry) -> dict[str, set[str]]:
    """The values of the `system` label in `registry`, by metric family."""
    return {
        family.name: {sample.labels["system"] for sample in family.samples}
        for family in registry.collect()
        if family.samples
    }


@pytest.mark.parametrize("system", ["kki", "sisdmk"])
def test_metrics_name_a_system_alike_whether_built_as_sync_or_as_the_worker_builds_it(
    system: str,
) -> None:
    """Sync and look-up take the clients' own breakers; the worker passes breakers named as
    the store names the systems. One dashboard query must find both."""
    exported = []
    for breaker in (None, CircuitBreaker(system)):
        registry = CollectorRegistry()
        options: dict[str, Any] = {"metrics": ClientMetrics.for_registry(registry)}
        if breaker is not None:
            options["breaker"] = breaker
        if system == "kki":
            kki = HttpKkiClient(
                "http://kki.test",
                "secret-token",
                transport=httpx.MockTransport(lambda _: httpx.Response(200, json=REGISTRATION)),
                **options,
            )
            kki.get_registration("QZ00011234567890")
        else:
            sisdmk = HttpSisdmkClient(
                "http://sisdmk.test",
                "client",
                "s3cret",
                transport=httpx.MockTransport(FakeSisdmk()),
                clock=FakeClock(),
                **options,
            )
            sisdmk.lookup_by_nik(NIK)  # a token request, then the look-up
        exported.append(system_labels(registry))

    as_sync, as_worker = exported
    assert as_sync == as_worker
    assert set(as_sync) == {
        "hf_external_calls",
        "hf_external_call_duration_seconds",
        "hf_circuit_breaker_state",
    }
    assert all(values == {system} for values in as_sync.values()), as_sync


def test_kki_requests_carry_api_key_user_agent_and_traceparent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=REGISTRATION)

    client = kki_client(handler)
    client.get_registration("QZ00011234567890")
    with start_span("test", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"):
        client.get_registration("QZ00011234567890")
    first, second = seen
    assert first.url.path == "/v1/registrations/QZ00011234567890"
    assert first.headers["X-API-Key"] == "secret-token"
    assert re.fullmatch(r"hf-adapter/\S+", first.headers["User-Agent"])
    # Outside any span a call starts its own trace; inside one it continues it (flags: sampled,
    # and the trace id's "random" bit of Trace Context Level 2 when the SDK made it).
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]", first.headers["traceparent"])
    assert re.fullmatch(
        r"00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01", second.headers["traceparent"]
    )
    assert "00f067aa0ba902b7" not in second.headers["traceparent"]  # a span of its own


def test_kki_lookup_sends_the_nik_in_the_body_never_the_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [REGISTRATION]})

    assert kki_client(handler).lookup_by_nik(NIK) == [REGISTRATION]
    assert NIK not in str(seen[0].url)
    assert json.loads(seen[0].content) == {"nik": NIK}


def test_kki_identifiers_are_quoted_into_one_path_segment() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json=REGISTRATION)

    kki_client(handler).get_registration("../webhook-subscriptions")
    assert seen == ["/v1/registrations/..%2Fwebhook-subscriptions"]


def test_kki_page_walk_follows_cursors_and_resumes_from_one() -> None:
    records = [{**REGISTRATION, "str_number": f"QZ{n:014d}"} for n in range(5)]

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("cursor", "0"))
        limit = int(request.url.params["limit"])
        end = min(start + limit, len(records))
        next_cursor = str(end) if end < len(records) else None
        page = {"limit": limit, "next_cursor": next_cursor, "has_more": next_cursor is not None}
        return httpx.Response(200, json={"data": records[start:end], "page": page})

    client = kki_client(handler)
    pages = list(client.iter_registrations(page_size=2))
    assert [len(page.items) for page in pages] == [2, 2, 1]
    assert [page.cursor for page in pages] == [None, "2", "4"]
    assert [page.next_cursor for page in pages] == ["2", "4", None]
    resumed = list(client.iter_registrations(page_size=2, cursor="4"))
    assert [item["str_number"] for page in resumed for item in page.items] == ["QZ00000000000004"]


def test_kki_page_whose_has_more_contradicts_next_cursor_is_a_contract_violation() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = {"limit": 2, "next_cursor": None, "has_more": True}
        return httpx.Response(200, json={"data": [], "page": page})

    with pytest.raises(ContractViolation, match="has_more"):
        list(kki_client(handler).iter_registrations())


def test_records_that_break_the_contract_are_set_aside_and_the_rest_of_the_page_kept() -> None:
    good = [{**REGISTRATION, "str_number": f"QZ{n:014d}"} for n in range(4)]
    missing = {key: value for key, value in good[1].items() if key != "certification"}
    wrong_type = {**good[2], "nik": 3171015708900042}
    served = [good[0], missing, wrong_type, good[3]]

    def handler(request: httpx.Request) -> httpx.Response:
        page = {"limit": 10, "next_cursor": None, "has_more": False}
        return httpx.Response(200, json={"data": served, "page": page})

    (page,) = list(kki_client(handler).iter_registrations(page_size=10))
    assert [item["str_number"] for item in page.items] == ["QZ00000000000000", "QZ00000000000003"]
    assert [(item.index, item.item) for item in page.rejected] == [(1, missing), (2, wrong_type)]
    assert page.received == 4
    assert "body.data[1]: missing required field(s) certification" in page.rejected[0].reason
    assert "body.data[2].nik: expected string, got integer" in page.rejected[1].reason
    assert "3171015708900042" not in page.rejected[1].reason


def test_a_broken_page_envelope_still_fails_the_whole_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [REGISTRATION], "page": {"limit": "ten"}})

    with pytest.raises(ContractViolation, match=r"body\.page"):
        list(kki_client(handler).iter_registrations())


def test_cursors_that_lead_back_to_a_page_already_read_end_the_walk() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        following = {None: "A", "A": "B", "B": "A"}[request.url.params.get("cursor")]
        page = {"limit": 1, "next_cursor": following, "has_more": True}
        return httpx.Response(200, json={"data": [REGISTRATION], "page": page})

    pages = kki_client(handler).iter_registrations(page_size=1)
    assert [next(pages).cursor, next(pages).cursor] == [None, "A"]
    with pytest.raises(ContractViolation, match="points back to a page already read"):
        next(pages)


def test_empty_pages_with_fresh_cursors_for_ever_end_the_walk() -> None:
    """Each page empty, each with a new cursor and `has_more`: the walk never ended (5,001
    requests in a review before it was stopped by hand)."""
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params.get("cursor"))
        page = {"limit": 1, "next_cursor": f"c{len(asked)}", "has_more": True}
        return httpx.Response(200, json={"data": [], "page": page})

    with pytest.raises(ContractViolation, match="100 empty pages in a row"):
        list(kki_client(handler).iter_registrations(page_size=1))
    assert len(asked) == MAX_EMPTY_PAGES


def test_some_empty_pages_between_records_are_walked_through() -> None:
    """Empty pages are allowed (a source filtering as it pages): only a run of them without
    end is refused, and a page with records starts the count again."""

    def handler(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params.get("cursor") or 0)
        data = [REGISTRATION] if number % (MAX_EMPTY_PAGES - 1) == 0 else []
        last = number == 3 * MAX_EMPTY_PAGES
        page = {"limit": 1, "next_cursor": None if last else str(number + 1), "has_more": not last}
        return httpx.Response(200, json={"data": data, "page": page})

    pages = list(kki_client(handler).iter_registrations(page_size=1))
    assert len(pages) == 3 * MAX_EMPTY_PAGES + 1


class Drip(httpx.SyncByteStream):
    """An answer arriving a few bytes at a time, each well within the read timeout."""

    def __init__(self, body: bytes, pause_s: float) -> None:
        self.body, self.pause_s = body, pause_s
        self.chunks = range(0, len(body), 8)
        self.handed = 0

    def __iter__(self) -> Iterator[bytes]:
        for start in self.chunks:
            time.sleep(self.pause_s)
            self.handed += 1
            yield self.body[start : start + 8]


def test_an_answer_dripped_slower_than_its_deadline_is_a_timeout_not_a_thread_held() -> None:
    """Each wait for bytes is within the read timeout, so the read timeout never fired: an
    answer dripped a byte at a time held the calling thread for as long as the server liked."""
    drip = Drip(json.dumps(REGISTRATION).encode(), pause_s=0.02)  # over a second in all

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        return httpx.Response(200, headers=headers, stream=drip)

    with pytest.raises(UpstreamUnavailable, match=r"timed out \(ReadTimeout\)"):
        slow_client(handler).get_registration(REGISTRATION["str_number"])
    assert len(drip.chunks) * drip.pause_s > 1.0
    assert drip.handed < len(drip.chunks), "stopped reading before the end"


class LateLastChunk(httpx.SyncByteStream):
    """All of a body at once but its last 8 bytes, which come after `pause_s`."""

    def __init__(self, body: bytes, pause_s: float) -> None:
        self.body, self.pause_s = body, pause_s

    def __iter__(self) -> Iterator[bytes]:
        yield self.body[:-8]
        time.sleep(self.pause_s)
        yield self.body[-8:]


def slow_client(handler: Handler) -> HttpKkiClient:
    return HttpKkiClient(
        "http://kki.test",
        "secret-token",
        transport=httpx.MockTransport(handler),
        metrics=ClientMetrics.for_registry(CollectorRegistry()),
        timeouts=Timeouts(connect_s=1.0, read_s=0.05),  # the whole answer: 0.2 s at most
        policy=RetryPolicy(max_attempts=1),
    )


def test_an_answer_whose_declared_length_has_all_arrived_is_kept_however_late() -> None:
    body = json.dumps(REGISTRATION).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        return httpx.Response(200, headers=headers, stream=LateLastChunk(body, pause_s=0.4))

    answer = slow_client(handler).get_registration(REGISTRATION["str_number"])
    assert answer["str_number"] == REGISTRATION["str_number"]


def test_a_compressed_answer_dripped_past_its_deadline_is_refused() -> None:
    """Content-Length counts the bytes as sent: compared with the decoded bytes, a gzip answer
    looked whole after a fifth of it, and the rest could drip for ever."""
    # A long run first: its few compressed bytes decode to 20 KB at once, far past the
    # declared (compressed) length, while the rest of the answer still drips.
    rest = {key: value for key, value in REGISTRATION.items() if key != "kompetensi"}
    body = gzip.compress(json.dumps({"kompetensi": "x" * 20_000, **rest}).encode())
    drip = Drip(body, pause_s=0.005)
    assert len(drip.chunks) * drip.pause_s > 0.4, "the drip outlasts the 0.2 s deadline"

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(body)),
        }
        return httpx.Response(200, headers=headers, stream=drip)

    with pytest.raises(UpstreamUnavailable, match=r"timed out \(ReadTimeout\)"):
        slow_client(handler).get_registration(REGISTRATION["str_number"])
    assert drip.handed < len(drip.chunks)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_answer_larger_than_the_limit_is_refused_unread(declared: bool) -> None:
    body = json.dumps({**REGISTRATION, "kompetensi": "x" * 5_000}).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1_000):
            yield body[start : start + 1_000]

    def handler(request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})
        return httpx.Response(200, content=chunks(), headers={"Content-Type": "application/json"})

    client = kki_client(handler)
    client._exchange.max_response_bytes = 2_000
    with pytest.raises(ContractViolation, match="larger than 2,000 bytes"):
        client.get_registration("QZ00011234567890")


def test_contract_violation_names_the_field_but_not_the_value() -> None:
    bad = {**REGISTRATION, "nik": "31710157089000421234", "birth_date": 19900817}
    bad.pop("full_name")
    client = kki_client(lambda request: httpx.Response(200, json=bad))
    with pytest.raises(ContractViolation) as info:
        client.get_registration("QZ00011234567890")
    message = str(info.value)
    assert info.value.reason == "contract_violation"
    assert "KKI getRegistration: 200 response does not match the contract" in message
    assert re.search(r"\(and \d+ more\)", message)
    assert "31710157089000421234" not in message
    assert "19900817" not in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("nik", "31710157089000421234", "body.nik: violates maxLength 16"),
        ("birth_date", 19900817, "body.birth_date: expected string, got integer"),
        ("gender", "unknown-gender", "body.gender: not one of the allowed values"),
    ],
)
def test_contract_violation_describes_the_rule(field: str, value: Any, expected: str) -> None:
    client = kki_client(lambda request: httpx.Response(200, json={**REGISTRATION, field: value}))
    with pytest.raises(ContractViolation) as info:
        client.get_registration("QZ00011234567890")
    assert expected in str(info.value).replace(" at body", " body")
    assert str(value) not in str(info.value)


def test_body_that_is_not_json_is_a_contract_violation() -> None:
    client = kki_client(
        lambda request: httpx.Response(
            200, content=b'{"str_number": "QZ0001",', headers={"Content-Type": "application/json"}
        )
    )
    with pytest.raises(ContractViolation, match="not valid JSON") as info:
        client.get_registration("QZ00011234567890")
    assert "QZ0001" not in str(info.value)


@pytest.mark.parametrize(
    ("number", "words"),
    [
        ("NaN", r"not valid JSON \(NaN is not a JSON number\)"),
        ("-Infinity", r"not valid JSON \(-Infinity is not a JSON number\)"),
        ("9" * 5_000, "a number too long to read"),
    ],
)
def test_a_number_json_has_not_is_a_contract_violation_not_a_stored_nan(
    number: str, words: str
) -> None:
    # NaN passed the contract (no comparison with it is true) and NUMERIC stores 'NaN'; 5,000
    # digits raised a bare ValueError out of the client.
    body = json.dumps(REGISTRATION).replace('"earned_total": 131.5', f'"earned_total": {number}')
    assert number in body
    client = kki_client(
        lambda request: httpx.Response(
            200, content=body.encode(), headers={"Content-Type": "application/json"}
        )
    )
    with pytest.raises(ContractViolation, match=words):
        client.get_registration("QZ00011234567890")


def test_body_nested_too_deeply_is_a_contract_violation() -> None:
    client = kki_client(
        lambda request: httpx.Response(
            200, content=b"[" * 8_000 + b"]" * 8_000, headers={"Content-Type": "application/json"}
        )
    )
    with pytest.raises(ContractViolation, match="nested too deeply"):
        client.get_registration("QZ00011234567890")


def _labelled(content_type: str, document: Any) -> httpx.Response:
    return httpx.Response(
        200, content=json.dumps(document).encode(), headers={"Content-Type": content_type}
    )


@pytest.mark.parametrize("content_type", ["text/plain", "text/html; charset=utf-8", ""])
def test_json_under_another_content_type_is_a_contract_violation(content_type: str) -> None:
    client = kki_client(lambda request: _labelled(content_type, REGISTRATION))
    with pytest.raises(ContractViolation, match="the contract documents application/json") as info:
        client.get_registration("QZ00011234567890")
    assert info.value.reason == "contract_violation"
    assert (content_type.split(";")[0] or "(none)") in str(info.value)


def test_a_documented_content_type_with_parameters_or_capitals_is_accepted() -> None:
    client = kki_client(lambda request: _labelled("Application/JSON; charset=utf-8", REGISTRATION))
    assert client.get_registration("QZ00011234567890")["str_number"] == REGISTRATION["str_number"]


def test_a_list_page_under_another_content_type_fails_the_whole_page() -> None:
    page = {"limit": 100, "next_cursor": None, "has_more": False}
    client = kki_client(
        lambda request: _labelled("text/plain", {"data": [REGISTRATION], "page": page})
    )
    with pytest.raises(ContractViolation, match="Content-Type text/plain"):
        list(client.iter_registrations())


def test_sisdmk_token_is_reused_until_shortly_before_it_expires() -> None:
    fake, clock = FakeSisdmk(expires_in="3600"), FakeClock()
    client = sisdmk_client(fake, clock)
    for _ in range(3):
        assert client.lookup_by_nik(NIK) == WORKER  # the envelope unwrapped
    assert fake.issued == 1
    clock.now = 3539.0
    client.get_health_worker(WORKER["worker_id"])
    assert fake.issued == 1
    clock.now = 3540.0  # expires_in - 60
    client.get_health_worker(WORKER["worker_id"])
    assert fake.issued == 2


def test_sisdmk_short_lived_token_is_used_for_half_its_life() -> None:
    fake, clock = FakeSisdmk(expires_in="10"), FakeClock()
    client = sisdmk_client(fake, clock)
    client.lookup_by_nik(NIK)
    clock.now = 4.9
    client.lookup_by_nik(NIK)
    assert fake.issued == 1
    clock.now = 5.0
    client.lookup_by_nik(NIK)
    assert fake.issued == 2


def test_sisdmk_refreshes_the_token_once_on_401_and_retries() -> None:
    fake = FakeSisdmk()
    client = sisdmk_client(fake)
    client.lookup_by_nik(NIK)
    fake.revoked.add(f"token-{1:016d}")
    assert client.lookup_by_nik(NIK) == WORKER
    assert fake.issued == 2
    assert fake.data_calls == 3


def test_sisdmk_401_with_a_fresh_token_is_authentication_failed() -> None:
    fake = FakeSisdmk()
    fake.refuse_all = True
    with pytest.raises(AuthenticationFailed) as info:
        sisdmk_client(fake).lookup_by_nik(NIK)
    assert fake.issued == 2  # refreshed once, not in a loop
    assert fake.data_calls == 2
    assert info.value.reason == "authentication_failed"


def test_sisdmk_refused_credentials_are_authentication_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "login", "details": {"text": "bad"}}],
        }
        return httpx.Response(401, json=outcome)

    client = HttpSisdmkClient(
        "http://sisdmk.test",
        "client",
        "wrong",
        transport=httpx.MockTransport(handler),
        metrics=ClientMetrics.for_registry(CollectorRegistry()),
    )
    with pytest.raises(AuthenticationFailed, match="issueAccessToken"):
        client.lookup_by_nik(NIK)


@pytest.mark.parametrize("expires_in", ["soon", "²", "3600.5", "-60"])
def test_sisdmk_expires_in_that_is_not_a_number_is_a_contract_violation(expires_in: str) -> None:
    # "²" passed `str.isdigit` and then failed `float` with a ValueError out of the client.
    with pytest.raises(ContractViolation, match="expires_in"):
        sisdmk_client(FakeSisdmk(expires_in=expires_in)).lookup_by_nik(NIK)


@pytest.mark.parametrize("expires_in", ["9999999999", "31536000"])
def test_sisdmk_token_said_to_live_longer_than_a_day_is_renewed_after_a_day(
    expires_in: str,
) -> None:
    """The contract allows ten digits (317 years): the token was kept until a call was
    refused."""
    fake, clock = FakeSisdmk(expires_in=expires_in), FakeClock()
    client = sisdmk_client(fake, clock)
    client.lookup_by_nik(NIK)
    clock.now = MAX_TOKEN_LIFETIME_S - 61.0
    client.lookup_by_nik(NIK)
    assert fake.issued == 1
    clock.now = MAX_TOKEN_LIFETIME_S - 60.0
    client.lookup_by_nik(NIK)
    assert fake.issued == 2


def test_sisdmk_token_request_is_retried_on_server_errors() -> None:
    disable_retries(False)
    fake = FakeSisdmk()
    failures = [503]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/v1/accesstoken" and failures:
            return httpx.Response(failures.pop(), json={"resourceType": "OperationOutcome"})
        return fake(request)

    client = HttpSisdmkClient(
        "http://sisdmk.test",
        "client",
        "s3cret",
        transport=httpx.MockTransport(handler),
        policy=RetryPolicy(base_delay_s=0),
        metrics=ClientMetrics.for_registry(CollectorRegistry()),
    )
    assert client.lookup_by_nik(NIK) == WORKER
    assert fake.issued == 1
