"""Walking a provider's list pages, without a server (httpx's mock transport): odd answers are
findings or notes, never a crash, and a page refused mid-walk is a violation, not a note."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conformance import protocol, provider, runner
from conformance.context import BudgetSpent, Credentials, PartlyRun, RunContext, RunOptions
from conformance.findings import Severity
from conformance.provider import ApiKeyAuth, ClientCredentialsAuth, ProviderClient
from conformance.spec import load_contract
from conformance.systems import SYSTEMS

TODAY = dt.date(2026, 12, 1)
Handler = Callable[[httpx.Request], httpx.Response]


def context(handler: Handler, **options: Any) -> RunContext:
    run = RunOptions(system="kki", base_url="http://kki.test", credentials=Credentials())
    run = dataclasses.replace(run, **options)
    client = ProviderClient(run.base_url, ApiKeyAuth("X-API-Key", "k"), sleep=lambda _: None)
    client.http = httpx.Client(base_url=run.base_url, transport=httpx.MockTransport(handler))
    ctx = RunContext(run, load_contract(SYSTEMS["kki"].contract), client, lambda: TODAY)
    ctx.stats["record_keys"] = {"listRegistrations": ("str_number",)}
    return ctx


def page(items: list[dict[str, Any]], cursor: Any = None) -> httpx.Response:
    return httpx.Response(
        200,
        json={"data": items, "page": {"next_cursor": cursor, "has_more": cursor is not None}},
    )


def listing(ctx: RunContext) -> Any:
    return next(op for op in ctx.contract.operations if op.id == "listRegistrations")


def test_a_page_refused_mid_walk_is_a_violation_naming_the_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "cursor" in request.url.params:
            return httpx.Response(500, json={"title": "boom"})
        return page([{"str_number": "A1"}], cursor="c2")

    ctx = context(handler)
    walked = protocol.walk(ctx, listing(ctx), "/v1/registrations", 1)

    assert not walked.complete
    refused = [f for f in ctx.findings if f.rule == "pagination/page-answered"]
    assert [(f.severity, f.operation) for f in refused] == [(Severity.ERROR, "listRegistrations")]
    assert "page 2 (limit 1, the cursor of the page before) answered 500" in refused[0].message


def test_a_cursor_that_is_not_a_string_stops_the_walk_without_a_crash() -> None:
    ctx = context(lambda request: page([{"str_number": "A1"}], cursor={"after": "A1"}))

    walked = protocol.walk(ctx, listing(ctx), "/v1/registrations", 1)

    assert not walked.complete
    assert any("not a string" in note for note in ctx.notes)


def test_a_list_longer_than_a_walk_is_a_warning_not_a_violation() -> None:
    served = iter(range(1_000))

    def handler(request: httpx.Request) -> httpx.Response:
        number = next(served)
        return page([{"str_number": f"A{number}"}], cursor=f"c{number}")

    ctx = context(handler, max_pages=3)
    walked = protocol.walk(ctx, listing(ctx), "/v1/registrations", 1)

    assert len(walked.items) == 3
    paging = [f for f in ctx.findings if f.rule.startswith("pagination/")]
    assert [(f.rule, f.severity) for f in paging] == [("pagination/cursor-loop", Severity.WARNING)]
    assert "--max-pages" in paging[0].message


def test_timestamps_without_an_offset_are_left_out_of_the_updated_since_check() -> None:
    items = [
        {"str_number": "A1", "updated_at": "2026-01-01T00:00:00Z"},
        {"str_number": "A2", "updated_at": "2026-01-02T00:00:00"},  # no offset
        {"str_number": "A3", "updated_at": "2026-01-03T00:00:00+07:00"},
    ]
    ctx = context(lambda request: page(items[2:]))

    protocol.check_updated_since(ctx, listing(ctx), "/v1/registrations", items)

    assert ("pagination/updated-since", "listRegistrations") in ctx.checked


def test_a_walk_stops_when_the_time_budget_is_spent() -> None:
    ctx = context(lambda request: page([{"str_number": "A1"}], cursor="c"), time_budget_s=1.0)
    ctx.started -= 2.0  # the budget was spent before this walk

    with pytest.raises(BudgetSpent):
        protocol.walk(ctx, listing(ctx), "/v1/registrations", 1)


def test_a_429_is_not_waited_for_past_the_runs_deadline() -> None:
    waits: list[float] = []
    ctx = context(lambda request: httpx.Response(429, headers={"Retry-After": "30"}))
    ctx.client.sleep = waits.append
    ctx.client.deadline = time.monotonic() + 0.5

    answer = ctx.client.request("listRegistrations", "GET", "/v1/registrations")

    assert answer.status_code == 429
    assert waits
    assert all(wait <= 0.5 for wait in waits)


def test_a_client_credentials_token_is_renewed_before_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued: list[str] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        issued.append(f"t{len(issued) + 1}")
        return httpx.Response(200, json={"access_token": issued[-1], "expires_in": "300"})

    now = [1_000.0]
    monkeypatch.setattr(provider.time, "monotonic", lambda: now[0])
    auth = ClientCredentialsAuth("/oauth2/v1/accesstoken", "client", "secret")
    transport = httpx.MockTransport(token_endpoint)
    http = httpx.Client(base_url="http://sisdmk.test", transport=transport)

    assert auth.headers(http) == {"Authorization": "Bearer t1"}
    now[0] += 269  # 31 s left: still used
    assert auth.headers(http) == {"Authorization": "Bearer t1"}
    now[0] += 2  # 29 s left: renewed
    assert auth.headers(http) == {"Authorization": "Bearer t2"}
    assert auth.lifetime_s == 300


def test_a_providers_value_put_in_a_path_is_quoted() -> None:
    ctx = context(lambda request: page([]))
    ctx.samples["str_number"] = "KKI/2020/77?x#y"
    reading = next(op for op in ctx.contract.operations if op.id == "getRegistration")

    assert protocol.fill_path(ctx, reading) == "/v1/registrations/KKI%2F2020%2F77%3Fx%23y"


def test_a_walk_that_only_reads_notes_a_refused_page_and_updated_since_fails_on_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "updated_since" in request.url.params:
            return httpx.Response(400, json={"title": "bad"})
        return page([{"str_number": "A1", "updated_at": "2026-01-01T00:00:00Z"}])

    ctx = context(handler)
    since = {"updated_since": "2026-01-01T00:00:00Z"}
    quiet = protocol.walk(ctx, listing(ctx), "/v1/registrations", 1, since, report=False)
    assert quiet.refused is not None
    assert not [f for f in ctx.findings if f.rule == "pagination/page-answered"]
    assert any("answered 400" in note for note in ctx.notes)

    items = [
        {"str_number": "A1", "updated_at": "2026-01-01T00:00:00Z"},
        {"str_number": "A2", "updated_at": "2026-01-02T00:00:00Z"},
    ]
    protocol.check_updated_since(ctx, listing(ctx), "/v1/registrations", items)
    assert [f.rule for f in ctx.findings if f.rule == "pagination/updated-since"] == [
        "pagination/updated-since"
    ]


def test_a_token_renewal_that_fails_mid_run_stops_the_phase_not_the_run() -> None:
    def token_endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    auth = ClientCredentialsAuth("/oauth2/v1/accesstoken", "client", "secret")
    client = ProviderClient("http://sisdmk.test", auth, sleep=lambda _: None)
    client.http = httpx.Client(
        base_url="http://sisdmk.test", transport=httpx.MockTransport(token_endpoint)
    )

    with pytest.raises(provider.RequestFailed, match=r"\(listHealthWorkers\)"):
        client.request("listHealthWorkers", "GET", "/v1/health-workers")


def _rate_limited_after_page_one(request: httpx.Request) -> httpx.Response:
    """Page 1 of any walk is answered; every later page is 429 however long one waits."""
    if "cursor" in request.url.params:
        return httpx.Response(429, headers={"Retry-After": "1"}, json={"title": "slow down"})
    return page([{"str_number": "A1", "updated_at": "2026-01-01T00:00:00Z"}], cursor="c2")


def test_a_lasting_429_leaves_the_whole_list_checks_unrecorded_and_the_phase_partly_run() -> None:
    ctx = context(_rate_limited_after_page_one, include=("listRegistrations",))

    with pytest.raises(PartlyRun) as partly:
        protocol.check_pagination(ctx)

    # The page checks were made on the page read; the ones needing the whole list were not.
    assert ("pagination/has-more", "listRegistrations") in ctx.checked
    assert ("pagination/lost-record", "listRegistrations") not in ctx.checked
    assert ("pagination/updated-since", "listRegistrations") not in ctx.checked
    assert str(partly.value).startswith(
        "still answered 429 after 3 waits: listRegistrations page 2 with limit 500 "
        "(lost-record and updated-since not checked)"
    )
    assert "--rate-limit" in str(partly.value)


def test_a_lasting_429_on_the_updated_since_walk_leaves_it_unjudged() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "updated_since" in request.url.params:
            return httpx.Response(429, headers={"Retry-After": "1"}, json={})
        return page([])  # nothing: the check would otherwise pass on an empty answer

    ctx = context(handler)
    items = [
        {"str_number": "A1", "updated_at": "2026-01-01T00:00:00Z"},
        {"str_number": "A2", "updated_at": "2026-01-02T00:00:00Z"},
    ]

    why = protocol.check_updated_since(ctx, listing(ctx), "/v1/registrations", items)

    assert why == (
        "listRegistrations page 1 with limit 500 of the updated_since walk (not checked)"
    )
    assert ("pagination/updated-since", "listRegistrations") not in ctx.checked
    assert not ctx.findings


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (lambda: httpx.Response(200, text="<html>maintenance</html>"), "no data array"),
        (lambda: page([], cursor={"after": "A2"}), "not a string"),
        (lambda: page([], cursor="the-same"), "a cursor already used"),
    ],
    ids=["not a list page", "cursor not a string", "cursor repeated"],
)
def test_an_updated_since_walk_that_stops_short_fails_rather_than_passes(
    answer: Callable[[], httpx.Response], why: str
) -> None:
    """The walk with updated_since reports nothing itself: one that stopped on a page that is
    not a list page, or a cursor it could not follow, was recorded as a pass."""

    def handler(request: httpx.Request) -> httpx.Response:
        return answer() if "updated_since" in request.url.params else page([])

    ctx = context(handler)
    items = [
        {"str_number": "A1", "updated_at": "2026-01-01T00:00:00Z"},
        {"str_number": "A2", "updated_at": "2026-01-02T00:00:00Z"},
    ]

    assert protocol.check_updated_since(ctx, listing(ctx), "/v1/registrations", items) is None

    [finding] = [f for f in ctx.findings if f.rule == "pagination/updated-since"]
    assert finding.severity is Severity.ERROR
    assert "did not reach the list's end" in finding.message
    assert why in finding.message


def _documented_until_rate_limited(request: httpx.Request) -> httpx.Response:
    """As the contract says: an empty first page with a cursor, then a documented 429."""
    if "cursor" not in request.url.params:
        limit = int(request.url.params["limit"])
        return httpx.Response(
            200, json={"data": [], "page": {"limit": limit, "next_cursor": "c2", "has_more": True}}
        )
    problem = {"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": "x"}
    return httpx.Response(
        429,
        headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
        content=json.dumps(problem).encode(),
    )


def test_a_run_whose_list_stays_rate_limited_is_incomplete_not_conforming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = runner.ProviderClient

    def client(*args: Any, **kwargs: Any) -> ProviderClient:
        built = made(*args, **kwargs)
        built.http.close()
        built.http = httpx.Client(
            base_url=args[0], transport=httpx.MockTransport(_documented_until_rate_limited)
        )
        return built

    monkeypatch.setattr(runner, "ProviderClient", client)
    options = RunOptions(
        system="kki",
        base_url="http://kki.test",
        credentials=Credentials(api_key="k"),
        include=("listRegistrations",),
        phases=("pagination",),
    )

    result = runner.execute(options, lambda: TODAY, [], sleep=lambda _: None)

    [phase] = result.phases
    assert phase.status.startswith("partly run (still answered 429 after 3 waits: ")
    assert result.findings == []
    assert (result.verdict, result.exit_code) == ("incomplete", 2)


NANO_ITEMS = [
    # Apart by 100 ns: the contracts allow nine fractional digits; a datetime keeps six.
    {"str_number": "A1", "updated_at": "2026-01-01T00:00:00.123456700Z"},
    {"str_number": "A2", "updated_at": "2026-01-01T00:00:00.123456800Z"},
    {"str_number": "A3", "updated_at": "2026-01-01T07:00:00.1234569+07:00"},
]


def _answering_updated_since(*returned: int) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["updated_since"] == "2026-01-01T00:00:00.123456800Z"
        return page([NANO_ITEMS[n] for n in returned])

    return handler


def test_updated_since_compares_every_fractional_digit() -> None:
    # The provider answers exactly the record changed 100 ns after updated_since; it was failed
    # for "a record not changed after it", the two instants being equal to the microsecond.
    ctx = context(_answering_updated_since(2))

    protocol.check_updated_since(ctx, listing(ctx), "/v1/registrations", NANO_ITEMS)

    assert ctx.findings == []
    assert ("pagination/updated-since", "listRegistrations") in ctx.checked


def test_updated_since_including_the_instant_itself_fails_to_the_nanosecond() -> None:
    ctx = context(_answering_updated_since(1, 2))

    protocol.check_updated_since(ctx, listing(ctx), "/v1/registrations", NANO_ITEMS)

    [finding] = ctx.findings
    assert finding.message == (
        "updated_since=2026-01-01T00:00:00.123456800Z returned 1 record(s) not changed after it "
        "(e.g. one updated 2026-01-01T00:00:00.123456800Z)"
    )


def test_updated_since_leaving_out_a_record_100_ns_later_fails() -> None:
    ctx = context(_answering_updated_since())

    protocol.check_updated_since(ctx, listing(ctx), "/v1/registrations", NANO_ITEMS)

    [finding] = ctx.findings
    assert finding.message.endswith("left out 1 of 1 record(s) changed after it")
