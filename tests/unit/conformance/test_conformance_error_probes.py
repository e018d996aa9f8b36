"""The errors phase, without a server (httpx's mock transport): each provoked error must get the
status the contract documents for it, not only a documented body when it happens to be an
error."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import httpx
import pytest

from conformance import protocol
from conformance.context import Credentials, PartlyRun, RunContext, RunOptions
from conformance.provider import ApiKeyAuth, ProviderClient
from conformance.spec import load_contract
from conformance.systems import SYSTEMS

TODAY = dt.date(2026, 12, 1)
Handler = Callable[[httpx.Request], httpx.Response]
STR_NUMBER = "AB12345678901234"
PROBED = {
    # operation: the status the contract documents for its provoked error
    "getRegistration": 404,  # an STR number no registration has
    "listTrainings": 404,  # ditto, under a list
    "listRegistrations": 400,  # a cursor the server did not issue
    "lookupRegistrationsByNik": 422,  # a NIK that cannot exist
}


def context(handler: Handler) -> RunContext:
    options = RunOptions(
        system="kki",
        base_url="http://kki.test",
        credentials=Credentials(),
        include=tuple(PROBED),
    )
    client = ProviderClient(options.base_url, ApiKeyAuth("X-API-Key", "k"), sleep=lambda _: None)
    client.http = httpx.Client(base_url=options.base_url, transport=httpx.MockTransport(handler))
    ctx = RunContext(options, load_contract(SYSTEMS["kki"].contract), client, lambda: TODAY)
    ctx.stats["absent_values"] = SYSTEMS["kki"].absent_values
    ctx.samples["str_number"] = STR_NUMBER
    return ctx


def status_findings(ctx: RunContext) -> dict[str, str]:
    return {f.operation: f.message for f in ctx.findings if f.rule == "errors/status"}


def test_a_provider_answering_200_to_every_provoked_error_fails_each_probe() -> None:
    ctx = context(lambda request: httpx.Response(200, json={"data": [], "page": {}}))

    protocol.check_error_responses(ctx)

    found = status_findings(ctx)
    # listTrainings is probed twice (unknown registration, unissued cursor): one finding kept
    # per probe, both under its operation.
    assert set(found) == set(PROBED)
    assert found["getRegistration"] == (
        "a record that does not exist was answered 200; the contract documents 404 for it"
    )
    assert found["listRegistrations"] == (
        "a cursor this server never issued (cursor=AAAAAAAA) was answered 200; the contract "
        "documents 400 for it"
    )
    assert found["lookupRegistrationsByNik"] == (
        "a 16-digit NIK that cannot exist (province 99) was answered 200; the contract "
        "documents 422 for it"
    )
    assert {("errors/status", op) for op in PROBED} <= ctx.checked


def test_a_documented_error_of_another_status_fails_too() -> None:
    # A 404 for an unissued cursor is an error, but not the one the contract documents.
    ctx = context(lambda request: httpx.Response(404, json={}))

    protocol.check_error_responses(ctx)

    found = status_findings(ctx)
    assert "getRegistration" not in found
    assert found["listRegistrations"].endswith(
        "was answered 404; the contract documents 400 for it"
    )
    assert found["lookupRegistrationsByNik"].endswith("documents 422 for it")


def _correct(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/registrations/lookup":
        return httpx.Response(422, json={})
    if "cursor" in request.url.params:
        return httpx.Response(400, json={})
    return httpx.Response(404, json={})


def test_the_documented_statuses_pass_and_are_recorded_as_checked() -> None:
    ctx = context(_correct)

    protocol.check_error_responses(ctx)

    assert status_findings(ctx) == {}
    assert {("errors/status", op) for op in PROBED} <= ctx.checked


def test_a_probe_still_rate_limited_is_not_judged_and_the_phase_is_partly_run() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/registrations/lookup":
            return httpx.Response(429, headers={"Retry-After": "1"}, json={})
        return _correct(request)

    ctx = context(handler)

    with pytest.raises(PartlyRun) as partly:
        protocol.check_error_responses(ctx)

    assert ("errors/status", "lookupRegistrationsByNik") not in ctx.checked
    assert "lookupRegistrationsByNik (a 16-digit NIK that cannot exist" in str(partly.value)
    assert "--rate-limit" in str(partly.value)
