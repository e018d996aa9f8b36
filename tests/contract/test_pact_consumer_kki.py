"""Consumer pact for KKI: the adapter's real `HttpKkiClient` against Pact's mock server.

One interaction per test, each with the provider state it needs; every call the client makes.
"""

from __future__ import annotations

import datetime as dt

import pytest

from adapter.clients import AuthenticationFailed, NotFound, UpstreamRateLimited
from tests.contract.pact_support import (
    EXAMPLE_INSTANT,
    KKI_TOKEN,
    UNKNOWN_NIK,
    PactFactory,
    from_state,
    kki_client,
    page,
    registrations,
    served,
)

pytestmark = pytest.mark.contract

PROVIDER = "kki"
COLLECTION: dict[str, object] = {"collection": "registrations"}
JSON = "application/json"
AUTH = {"X-API-Key": KKI_TOKEN}
TOKEN_STATE = "the API token is valid"
TOKEN_PARAMS: dict[str, object] = {"api_token": KKI_TOKEN}
EXAMPLE_CURSOR = "WyIyMDI2LTAxLTMxVDA4OjAwOjAwLjAwMDAwMFoiLCJRWjAwMDExMjM0NTY3ODkwIl0"


def only_registrations() -> dict[str, object]:
    return {**COLLECTION, "documents": registrations()}


def test_first_page_of_registrations_has_a_cursor_when_more_follow(new_pact: PactFactory) -> None:
    first, _ = registrations()
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a request for the first page of registrations")
        .given("only these records exist", only_registrations())
        .given(TOKEN_STATE, TOKEN_PARAMS)
        .with_request("GET", "/v1/registrations")
        .with_headers(AUTH)
        .with_query_parameter("limit", "1")
        .will_respond_with(200)
        .with_body({"data": [served(first)], "page": page(1, more=True)}, content_type=JSON)
    )
    with pact.serve() as server, kki_client(str(server.url)) as client:
        received = next(client.iter_registrations(page_size=1))
    assert [item["str_number"] for item in received.items] == [first["str_number"]]
    assert received.has_more
    assert received.cursor is None


def test_page_after_a_cursor_ends_the_listing(new_pact: PactFactory) -> None:
    _, last = registrations()
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a request for the page after a cursor")
        .given("only these records exist", only_registrations())
        .given("records follow a cursor", {**COLLECTION, "remaining": 1})
        .given(TOKEN_STATE, TOKEN_PARAMS)
        .with_request("GET", "/v1/registrations")
        .with_headers(AUTH)
        .with_query_parameter("limit", "100")
        .with_query_parameter("cursor", from_state("${cursor}", EXAMPLE_CURSOR))
        .will_respond_with(200)
        .with_body({"data": [served(last)], "page": page(100, more=False)}, content_type=JSON)
    )
    with pact.serve() as server, kki_client(str(server.url)) as client:
        pages = list(client.iter_registrations(cursor=EXAMPLE_CURSOR))
    assert [[item["str_number"] for item in p.items] for p in pages] == [[last["str_number"]]]
    assert pages[0].cursor == EXAMPLE_CURSOR
    assert not pages[0].has_more


def test_registrations_updated_since_a_moment_are_only_the_changed_ones(
    new_pact: PactFactory,
) -> None:
    changed, _ = registrations()
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a request for registrations updated since a moment")
        .given("only these records exist", only_registrations())
        .given("a record changed after a moment", {**COLLECTION, "key": changed["str_number"]})
        .given(TOKEN_STATE, TOKEN_PARAMS)
        .with_request("GET", "/v1/registrations")
        .with_headers(AUTH)
        .with_query_parameter("limit", "100")
        .with_query_parameter("updated_since", from_state("${updated_since}", EXAMPLE_INSTANT))
        .will_respond_with(200)
        .with_body(
            {"data": [served(changed, version=2)], "page": page(100, more=False)},
            content_type=JSON,
        )
    )
    since = dt.datetime(2026, 1, 31, 8, tzinfo=dt.UTC)  # the client writes it as EXAMPLE_INSTANT
    with pact.serve() as server, kki_client(str(server.url)) as client:
        pages = list(client.iter_registrations(updated_since=since))
    assert [item["str_number"] for item in pages[0].items] == [changed["str_number"]]
    assert pages[0].items[0]["version"] == 2


def test_registrations_updated_since_the_newest_change_are_none(new_pact: PactFactory) -> None:
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a request for registrations updated since the newest change")
        .given("only these records exist", only_registrations())
        .given("nothing changed after the newest record", COLLECTION)
        .given(TOKEN_STATE, TOKEN_PARAMS)
        .with_request("GET", "/v1/registrations")
        .with_headers(AUTH)
        .with_query_parameter("limit", "100")
        .with_query_parameter("updated_since", from_state("${updated_since}", EXAMPLE_INSTANT))
        .will_respond_with(200)
        .with_body({"data": [], "page": page(100, more=False)}, content_type=JSON)
    )
    with pact.serve() as server, kki_client(str(server.url)) as client:
        pages = list(client.iter_registrations(updated_since=EXAMPLE_INSTANT))
    assert [p.items for p in pages] == [()]


def test_registration_by_str_number_is_the_whole_record(new_pact: PactFactory) -> None:
    record, _ = registrations()
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a request for a registration by STR number")
        .given("only these records exist", only_registrations())
        .given(TOKEN_STATE, TOKEN_PARAMS)
        .with_request("GET", f"/v1/registrations/{record['str_number']}")
        .with_headers(AUTH)
        .will_respond_with(200)
        .with_body(served(record), content_type=JSON)
    )
    with pact.serve() as server, kki_client(str(server.url)) as client:
        received = client.get_registration(record["str_number"])
    assert received["str_number"] == record["str_number"]
    assert received["certification"]["status"] == record["certification"]["status"]


def test_registration_by_unknown_str_number_is_not_found(new_pact: PactFactory) -> None:
    unknown = "QZ99990000000001"
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a request for a registration KKI does not hold")
        .given("record is absent", {**COLLECTION, "key": unknown})
        .given(TOKEN_STATE, TOKEN_PARAMS)
        .with_request("GET", f"/v1/registrations/{unknown}")
        .with_headers(AUTH)
        .will_respond_with(404)
    )
    with (
        pact.serve() as server,
        kki_client(str(server.url)) as client,
        pytest.raises(NotFound) as raised,
    ):
        client.get_registration(unknown)
    assert raised.value.operation == "getRegistration"


def test_lookup_by_nik_returns_the_persons_registrations(new_pact: PactFactory) -> None:
    record, _ = registrations()
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a look-up of a person's registrations by NIK")
        .given("only these records exist", only_registrations())
        .given(TOKEN_STATE, TOKEN_PARAMS)
        .with_request("POST", "/v1/registrations/lookup")
        .with_headers(AUTH)
        .with_body({"nik": record["nik"]}, content_type=JSON)
        .will_respond_with(200)
        .with_body({"data": [served(record)]}, content_type=JSON)
    )
    with pact.serve() as server, kki_client(str(server.url)) as client:
        received = client.lookup_by_nik(record["nik"])
    assert [item["str_number"] for item in received] == [record["str_number"]]


def test_lookup_by_nik_nobody_has_is_not_found(new_pact: PactFactory) -> None:
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a look-up by a NIK no registration carries")
        .given("no record has the NIK", {**COLLECTION, "nik": UNKNOWN_NIK})
        .given(TOKEN_STATE, TOKEN_PARAMS)
        .with_request("POST", "/v1/registrations/lookup")
        .with_headers(AUTH)
        .with_body({"nik": UNKNOWN_NIK}, content_type=JSON)
        .will_respond_with(404)
    )
    with (
        pact.serve() as server,
        kki_client(str(server.url)) as client,
        pytest.raises(NotFound) as raised,
    ):
        client.lookup_by_nik(UNKNOWN_NIK)
    assert raised.value.operation == "lookupRegistrationsByNik"


def test_refused_api_token_is_an_authentication_failure(new_pact: PactFactory) -> None:
    record, _ = registrations()
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a request with an API token KKI does not know")
        .with_request("GET", f"/v1/registrations/{record['str_number']}")
        .with_headers({"X-API-Key": "not-a-kki-token"})
        .will_respond_with(401)
    )
    with (
        pact.serve() as server,
        kki_client(str(server.url), "not-a-kki-token") as client,
        pytest.raises(AuthenticationFailed) as raised,
    ):
        client.get_registration(record["str_number"])
    assert raised.value.status == 401


def test_rate_limited_listing_carries_retry_after(new_pact: PactFactory) -> None:
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a request for registrations while rate limited")
        .given("requests are rate limited", {"route": "listRegistrations", "retry_after_s": 7})
        .given(TOKEN_STATE, TOKEN_PARAMS)
        .with_request("GET", "/v1/registrations")
        .with_headers(AUTH)
        .with_query_parameter("limit", "100")
        .will_respond_with(429)
        .with_header("Retry-After", "7")
    )
    with (
        pact.serve() as server,
        kki_client(str(server.url)) as client,
        pytest.raises(UpstreamRateLimited) as raised,
    ):
        next(client.iter_registrations())
    assert raised.value.retry_after_s == 7
