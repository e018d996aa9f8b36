"""Consumer pact for SISDMK: the adapter's real `HttpSisdmkClient` against Pact's mock server.

The client asks for a token before its first call, so each test also declares that (shared)
token interaction; the call itself carries the token a provider state issues."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pact import Pact, match

from adapter.clients import AuthenticationFailed, NotFound, UpstreamRateLimited
from tests.contract.pact_support import (
    EXAMPLE_ACCESS_TOKEN,
    EXAMPLE_INSTANT,
    SISDMK_CLIENT_ID,
    SISDMK_CLIENT_SECRET,
    UNKNOWN_NIK,
    PactFactory,
    facilities,
    from_state,
    health_workers,
    page,
    served,
    sisdmk_client,
)

pytestmark = pytest.mark.contract

PROVIDER = "sisdmk"
WORKERS = {"collection": "health-workers"}
FACILITIES = {"collection": "facilities"}
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
TOKEN_PATH = "/oauth2/v1/accesstoken"
TOKEN_STATE = "an access token is issued"
EXAMPLE_CURSOR = "WyIyMDI2LTAxLTMxVDA4OjAwOjAwLjAwMDAwMFoiLCIwZjhlNmE1MiJd"


def token_form(secret: str) -> str:
    return f"client_id={SISDMK_CLIENT_ID}&client_secret={secret}"


def with_token(pact: Pact) -> Pact:
    """The token request the client makes before its first call."""
    (
        pact.upon_receiving("a request for an access token")
        .given("the client credentials are valid", {"client_id": SISDMK_CLIENT_ID})
        .with_request("POST", TOKEN_PATH)
        .with_query_parameter("grant_type", "client_credentials")
        .with_body(token_form(SISDMK_CLIENT_SECRET), content_type=FORM)
        .will_respond_with(200)
        .with_body(
            {
                "refresh_token_expires_in": match.like("0"),
                "api_product_list": match.like("[sisdmk-workforce, sisdmk-webhooks]"),
                "api_product_list_json": match.each_like("sisdmk-workforce"),
                "organization_name": match.like("kemkes-sisdmk-mock"),
                "developer.email": match.like("developer@example.id"),
                "token_type": match.like("BearerToken"),
                # The client relies on these two: epoch milliseconds and whole seconds, as text.
                "issued_at": match.regex("1769846400000", regex=r"^\d+$"),
                "client_id": SISDMK_CLIENT_ID,
                "access_token": match.like(EXAMPLE_ACCESS_TOKEN),
                "application_name": match.like("hf-mock-sisdmk-dev-client"),
                "scope": match.like(""),
                "expires_in": match.regex("14399", regex=r"^\d+$"),
                "refresh_count": match.like("0"),
                "status": match.like("approved"),
            },
            content_type=JSON,
        )
    )
    return pact


def bearer() -> Any:
    return from_state("Bearer ${access_token}", f"Bearer {EXAMPLE_ACCESS_TOKEN}")


def envelope(data: Any, **extra: Any) -> dict[str, Any]:
    """SISDMK's answer envelope: the client takes `data`; the status is a 2xx number."""
    return {"status": match.int(200), "message": match.like("OK"), "data": data, **extra}


def only(collection: dict[str, str], documents: list[dict[str, Any]]) -> dict[str, Any]:
    return {**collection, "documents": documents}


def listing(pact: Pact, description: str, path: str, *states: tuple[str, dict[str, Any]]) -> Any:
    interaction = pact.upon_receiving(description)
    for name, params in states:
        interaction = interaction.given(name, params)
    return (
        interaction.given(TOKEN_STATE)
        .with_request("GET", path)
        .with_header("Authorization", bearer())
    )


def test_token_and_first_page_of_health_workers_have_a_cursor_when_more_follow(
    new_pact: PactFactory,
) -> None:
    first, _ = health_workers()
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for the first page of health workers",
            "/v1/health-workers",
            ("only these records exist", only(WORKERS, health_workers())),
        )
        .with_query_parameter("limit", "1")
        .will_respond_with(200)
        .with_body(envelope([served(first)], page=page(1, more=True)), content_type=JSON)
    )
    with pact.serve() as server, sisdmk_client(str(server.url)) as client:
        received = next(client.iter_health_workers(page_size=1))
    assert [item["worker_id"] for item in received.items] == [first["worker_id"]]
    assert received.has_more


def test_page_of_health_workers_after_a_cursor_ends_the_listing(new_pact: PactFactory) -> None:
    _, last = health_workers()
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for the page of health workers after a cursor",
            "/v1/health-workers",
            ("only these records exist", only(WORKERS, health_workers())),
            ("records follow a cursor", {**WORKERS, "remaining": 1}),
        )
        .with_query_parameter("limit", "100")
        .with_query_parameter("cursor", from_state("${cursor}", EXAMPLE_CURSOR))
        .will_respond_with(200)
        .with_body(envelope([served(last)], page=page(100, more=False)), content_type=JSON)
    )
    with pact.serve() as server, sisdmk_client(str(server.url)) as client:
        pages = list(client.iter_health_workers(cursor=EXAMPLE_CURSOR))
    assert [[item["worker_id"] for item in p.items] for p in pages] == [[last["worker_id"]]]


def test_health_workers_updated_since_a_moment_are_only_the_changed_ones(
    new_pact: PactFactory,
) -> None:
    changed, _ = health_workers()
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for health workers updated since a moment",
            "/v1/health-workers",
            ("only these records exist", only(WORKERS, health_workers())),
            ("a record changed after a moment", {**WORKERS, "key": changed["worker_id"]}),
        )
        .with_query_parameter("limit", "100")
        .with_query_parameter("updated_since", from_state("${updated_since}", EXAMPLE_INSTANT))
        .will_respond_with(200)
        .with_body(
            envelope([served(changed, version=2)], page=page(100, more=False)),
            content_type=JSON,
        )
    )
    since = dt.datetime(2026, 1, 31, 8, tzinfo=dt.UTC)  # the client writes it as EXAMPLE_INSTANT
    with pact.serve() as server, sisdmk_client(str(server.url)) as client:
        pages = list(client.iter_health_workers(updated_since=since))
    assert [item["version"] for item in pages[0].items] == [2]


def test_health_workers_updated_since_the_newest_change_are_none(new_pact: PactFactory) -> None:
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for health workers updated since the newest change",
            "/v1/health-workers",
            ("only these records exist", only(WORKERS, health_workers())),
            ("nothing changed after the newest record", WORKERS),
        )
        .with_query_parameter("limit", "100")
        .with_query_parameter("updated_since", from_state("${updated_since}", EXAMPLE_INSTANT))
        .will_respond_with(200)
        .with_body(envelope([], page=page(100, more=False)), content_type=JSON)
    )
    with pact.serve() as server, sisdmk_client(str(server.url)) as client:
        pages = list(client.iter_health_workers(updated_since=EXAMPLE_INSTANT))
    assert [p.items for p in pages] == [()]


def test_health_worker_by_id_is_the_whole_record(new_pact: PactFactory) -> None:
    record, _ = health_workers()
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for a health worker by id",
            f"/v1/health-workers/{record['worker_id']}",
            ("only these records exist", only(WORKERS, health_workers())),
        )
        .will_respond_with(200)
        .with_body(envelope(served(record)), content_type=JSON)
    )
    with pact.serve() as server, sisdmk_client(str(server.url)) as client:
        received = client.get_health_worker(record["worker_id"])
    assert received["worker_id"] == record["worker_id"]


def test_health_worker_by_unknown_id_is_not_found(new_pact: PactFactory) -> None:
    unknown = "9d3f6c2a-1b4e-4f7a-8c5d-2e6f0a9b1c3d"
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for a health worker SISDMK does not hold",
            f"/v1/health-workers/{unknown}",
            ("record is absent", {**WORKERS, "key": unknown}),
        ).will_respond_with(404)
    )
    with (
        pact.serve() as server,
        sisdmk_client(str(server.url)) as client,
        pytest.raises(NotFound) as raised,
    ):
        client.get_health_worker(unknown)
    assert raised.value.operation == "getHealthWorker"


def test_lookup_by_nik_returns_the_health_worker(new_pact: PactFactory) -> None:
    record, _ = health_workers()
    pact = with_token(new_pact(PROVIDER))
    (
        pact.upon_receiving("a look-up of a health worker by NIK")
        .given("only these records exist", only(WORKERS, health_workers()))
        .given(TOKEN_STATE)
        .with_request("POST", "/v1/health-workers/lookup")
        .with_header("Authorization", bearer())
        .with_body({"nik": record["nik"]}, content_type=JSON)
        .will_respond_with(200)
        .with_body(envelope(served(record)), content_type=JSON)
    )
    with pact.serve() as server, sisdmk_client(str(server.url)) as client:
        received = client.lookup_by_nik(record["nik"])
    assert received["worker_id"] == record["worker_id"]


def test_lookup_by_nik_nobody_has_is_not_found(new_pact: PactFactory) -> None:
    pact = with_token(new_pact(PROVIDER))
    (
        pact.upon_receiving("a look-up by a NIK no health worker carries")
        .given("no record has the NIK", {**WORKERS, "nik": UNKNOWN_NIK})
        .given(TOKEN_STATE)
        .with_request("POST", "/v1/health-workers/lookup")
        .with_header("Authorization", bearer())
        .with_body({"nik": UNKNOWN_NIK}, content_type=JSON)
        .will_respond_with(404)
    )
    with (
        pact.serve() as server,
        sisdmk_client(str(server.url)) as client,
        pytest.raises(NotFound) as raised,
    ):
        client.lookup_by_nik(UNKNOWN_NIK)
    assert raised.value.operation == "lookupHealthWorkerByNik"


def test_first_page_of_facilities_has_a_cursor_when_more_follow(new_pact: PactFactory) -> None:
    first, _ = facilities()
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for the first page of facilities",
            "/v1/facilities",
            ("only these records exist", only(FACILITIES, facilities())),
        )
        .with_query_parameter("limit", "1")
        .will_respond_with(200)
        .with_body(envelope([served(first)], page=page(1, more=True)), content_type=JSON)
    )
    with pact.serve() as server, sisdmk_client(str(server.url)) as client:
        received = next(client.iter_facilities(page_size=1))
    assert [item["code"] for item in received.items] == [first["code"]]
    assert received.has_more


def test_page_of_facilities_after_a_cursor_ends_the_listing(new_pact: PactFactory) -> None:
    _, last = facilities()
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for the page of facilities after a cursor",
            "/v1/facilities",
            ("only these records exist", only(FACILITIES, facilities())),
            ("records follow a cursor", {**FACILITIES, "remaining": 1}),
        )
        .with_query_parameter("limit", "100")
        .with_query_parameter("cursor", from_state("${cursor}", EXAMPLE_CURSOR))
        .will_respond_with(200)
        .with_body(envelope([served(last)], page=page(100, more=False)), content_type=JSON)
    )
    with pact.serve() as server, sisdmk_client(str(server.url)) as client:
        pages = list(client.iter_facilities(cursor=EXAMPLE_CURSOR))
    assert [[item["code"] for item in p.items] for p in pages] == [[last["code"]]]


def test_facilities_updated_since_a_moment_are_only_the_changed_ones(
    new_pact: PactFactory,
) -> None:
    changed, _ = facilities()
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for facilities updated since a moment",
            "/v1/facilities",
            ("only these records exist", only(FACILITIES, facilities())),
            ("a record changed after a moment", {**FACILITIES, "key": changed["code"]}),
        )
        .with_query_parameter("limit", "100")
        .with_query_parameter("updated_since", from_state("${updated_since}", EXAMPLE_INSTANT))
        .will_respond_with(200)
        .with_body(
            envelope([served(changed, version=2)], page=page(100, more=False)),
            content_type=JSON,
        )
    )
    with pact.serve() as server, sisdmk_client(str(server.url)) as client:
        pages = list(client.iter_facilities(updated_since=EXAMPLE_INSTANT))
    assert [item["code"] for item in pages[0].items] == [changed["code"]]


def test_wrong_client_secret_is_an_authentication_failure_of_the_token_call(
    new_pact: PactFactory,
) -> None:
    pact = new_pact(PROVIDER)
    (
        pact.upon_receiving("a request for an access token with a wrong client secret")
        .with_request("POST", TOKEN_PATH)
        .with_query_parameter("grant_type", "client_credentials")
        .with_body(token_form("not-the-secret"), content_type=FORM)
        .will_respond_with(401)
    )
    with (
        pact.serve() as server,
        sisdmk_client(str(server.url), "not-the-secret") as client,
        pytest.raises(AuthenticationFailed) as raised,
    ):
        client.get_health_worker(health_workers()[0]["worker_id"])
    assert raised.value.operation == "issueAccessToken"


def test_refused_access_token_is_an_authentication_failure_after_one_new_token(
    new_pact: PactFactory,
) -> None:
    record, _ = health_workers()
    pact = with_token(new_pact(PROVIDER))
    (
        pact.upon_receiving("a request with an access token SISDMK does not accept")
        .with_request("GET", f"/v1/health-workers/{record['worker_id']}")
        .with_header("Authorization", f"Bearer {EXAMPLE_ACCESS_TOKEN}")
        .will_respond_with(401)
    )
    with (
        pact.serve() as server,
        sisdmk_client(str(server.url)) as client,
        pytest.raises(AuthenticationFailed) as raised,
    ):
        client.get_health_worker(record["worker_id"])
    assert raised.value.operation == "getHealthWorker"


def test_rate_limited_listing_carries_retry_after(new_pact: PactFactory) -> None:
    pact = with_token(new_pact(PROVIDER))
    (
        listing(
            pact,
            "a request for health workers while rate limited",
            "/v1/health-workers",
            ("requests are rate limited", {"route": "listHealthWorkers", "retry_after_s": 7}),
        )
        .with_query_parameter("limit", "100")
        .will_respond_with(429)
        .with_header("Retry-After", "7")
    )
    with (
        pact.serve() as server,
        sisdmk_client(str(server.url)) as client,
        pytest.raises(UpstreamRateLimited) as raised,
    ):
        next(client.iter_health_workers())
    assert raised.value.retry_after_s == 7
