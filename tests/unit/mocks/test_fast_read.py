"""The stored-read shortcut answers exactly as connexion does, or leaves the request to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from mocks.core.app import create_asgi_app
from mocks.core.fast_read import StoredRead, StoredReadShortcut, page_routes, shortcut_routes
from mocks.core.runtime import MockRuntime, MockSettings
from mocks.kki.system import REGISTRATIONS, KkiSystem
from mocks.sisdmk.system import HEALTH_WORKERS, SisdmkSystem


def first_key(runtime: MockRuntime, collection: str) -> str:
    store = runtime.store(collection)
    return store.key_of(next(store.documents()))


def answer(client: TestClient, method: str, url: str, headers: dict[str, str]) -> Any:
    response = client.request(method, url, headers=headers)
    kept = sorted((k, v) for k, v in response.headers.items() if k not in ("date", "server"))
    return response.status_code, kept, response.content


@pytest.fixture(scope="module")
def kki() -> MockRuntime:
    return MockRuntime.build(KkiSystem(), MockSettings(size=8, seed=5))


@pytest.fixture(scope="module")
def sisdmk() -> MockRuntime:
    return MockRuntime.build(SisdmkSystem(), MockSettings(size=8, seed=5))


@pytest.fixture
def clients(request: pytest.FixtureRequest) -> Iterator[tuple[MockRuntime, TestClient, TestClient]]:
    runtime: MockRuntime = request.getfixturevalue(request.param)
    with (
        TestClient(create_asgi_app(runtime), raise_server_exceptions=False) as fast,
        TestClient(create_asgi_app(runtime, shortcut=False), raise_server_exceptions=False) as slow,
    ):
        yield runtime, fast, slow


def kki_requests(runtime: MockRuntime) -> list[tuple[str, str, dict[str, str]]]:
    key = first_key(runtime, REGISTRATIONS)
    full = {"X-API-Key": runtime.settings.credentials["api_token"]}
    url = f"/v1/registrations/{key}"
    return [
        ("GET", url, full),
        ("GET", url, {"X-API-Key": runtime.settings.credentials["readonly_token"]}),
        ("GET", url, {"X-API-Key": "not-a-token"}),
        ("GET", url, {}),
        ("GET", url, {"Authorization": "Bearer " + full["X-API-Key"]}),
        ("HEAD", url, full),
        ("GET", url + "?", full),
        ("GET", url + "?limit=5", full),
        ("GET", url + "/", full),
        ("GET", url + "/skp", full),
        ("GET", "/v1/registrations/QZ00000000000000", full),
        ("GET", "/v1/registrations/not-an-str", full),
        ("GET", "/v1/registrations/" + "A" * 51, full),
        ("GET", "/v1/registrations/" + key[:4] + "%41" + key[5:], full),
        ("GET", "/v1/registrations/lookup", full),
        ("DELETE", url, full),
        ("GET", url, {**full, "Content-Type": "multipart/form-data"}),
    ]


def sisdmk_requests(runtime: MockRuntime) -> list[tuple[str, str, dict[str, str]]]:
    key = first_key(runtime, HEALTH_WORKERS)
    token, _ = runtime.issue_token("sisdmk-dev-client", frozenset({"workforce:read"}))
    url = f"/v1/health-workers/{key}"
    return [
        ("GET", url, {"Authorization": f"Bearer {token}"}),
        ("GET", url, {"Authorization": f"bearer {token}"}),
        ("GET", url, {"Authorization": f"Bearer  {token}"}),
        ("GET", url, {"Authorization": f"Bearer {token}x"}),
        ("GET", url, {"Authorization": "Bearer"}),
        ("GET", url, {"Authorization": f"Basic {token}"}),
        ("GET", url, {}),
        ("GET", url + "?x=1", {"Authorization": f"Bearer {token}"}),
        ("GET", url.upper(), {"Authorization": f"Bearer {token}"}),
        ("GET", "/v1/health-workers/00000000-0000-4000-8000-000000000000", {}),
        (
            "GET",
            "/v1/health-workers/00000000-0000-4000-8000-000000000000",
            {"Authorization": f"Bearer {token}"},
        ),
        ("GET", url + "/employments", {"Authorization": f"Bearer {token}"}),
    ]


def page_requests(
    collection: str, headers: dict[str, str], filters: dict[str, str], cursor: str
) -> list[tuple[str, str, dict[str, str]]]:
    """A list operation's queries: those the shortcut answers and those it must leave alone."""
    (name, value), (other, other_value) = filters.items()
    queries = [
        "",
        "?limit=3",
        "?limit=500",
        "?limit=1&updated_since=2020-01-01T00:00:00Z",
        "?updated_since=2020-01-01T07:00:00.123456-07:00",
        f"?cursor={cursor}",
        f"?limit=2&cursor={cursor}&updated_since=2020-01-01T00:00:00Z",
        f"?{name}={value}",
        f"?{name}={value}&{other}={other_value}&limit=2",
        f"?{name}={value}&cursor={cursor}",  # another walk's cursor: 400
        "?cursor=WyJub3QiLCJpc3N1ZWQiXQ",  # not issued: 400
        "?limit=0",
        "?limit=501",
        "?limit=010",
        "?limit=+5",
        "?limit=1_0",
        "?limit=",
        "?limit",
        "?limit=abc",
        "?limit=3&limit=4",
        "?unknown=1",
        "?updated_since=2026-02-30T00:00:00Z",  # the pattern's, not the calendar's
        "?updated_since=2026-01-01T00:00:00",
        "?updated_since=2026-01-01T00:00:00%2B07:00",
        "?updated_since=2026-01-01T00:00:00+07:00",
        f"?{name}=not-a-value",
        f"?{name}={value}&{name}={value}",
        "?limit=%33",
        "?&",
        "?=3",
    ]
    return [("GET", f"/v1/{collection}{query}", headers) for query in queries]


def kki_page_requests(runtime: MockRuntime) -> list[tuple[str, str, dict[str, str]]]:
    token = {"X-API-Key": runtime.settings.credentials["api_token"]}
    cursor = TestClient(create_asgi_app(runtime, shortcut=False)).get(
        "/v1/registrations?limit=2", headers=token
    )
    document = runtime.store(REGISTRATIONS).get(first_key(runtime, REGISTRATIONS))
    assert document is not None
    filters = {"status": "AKTIF", "profession": str(document["profession"]).replace(" ", "%20")}
    requests = page_requests("registrations", token, filters, cursor.json()["page"]["next_cursor"])
    return [
        *requests,
        ("GET", "/v1/registrations?limit=2", {"X-API-Key": "not-a-token"}),
        ("GET", "/v1/registrations?limit=2", {}),
        ("HEAD", "/v1/registrations?limit=2", token),
        ("GET", "/v1/registrations/?limit=2", token),
        # connexion reads a form body even on a GET: a malformed one is its 400
        ("GET", "/v1/registrations?limit=2", {**token, "Content-Type": "multipart/form-data"}),
        ("GET", "/v1/registrations", {**token, "Content-Type": "application/json"}),
    ]


def sisdmk_page_requests(runtime: MockRuntime) -> list[tuple[str, str, dict[str, str]]]:
    token, _ = runtime.issue_token("sisdmk-dev-client", frozenset({"workforce:read"}))
    bearer = {"Authorization": f"Bearer {token}"}
    client = TestClient(create_asgi_app(runtime, shortcut=False))
    cursor = client.get("/v1/health-workers?limit=2", headers=bearer).json()["page"]
    facilities = client.get("/v1/facilities?limit=2", headers=bearer).json()
    document = runtime.store(HEALTH_WORKERS).get(first_key(runtime, HEALTH_WORKERS))
    assert document is not None
    filters = {"profession": "perawat", "facility_code": str(document["facility_code"])}
    return [
        *page_requests("health-workers", bearer, filters, cursor["next_cursor"]),
        ("GET", "/v1/facilities", bearer),
        ("GET", "/v1/facilities?limit=1", bearer),
        ("GET", f"/v1/facilities?cursor={facilities['page']['next_cursor']}", bearer),
        ("GET", "/v1/facilities?profession=perawat", bearer),
        ("GET", "/v1/health-workers?limit=2", {"Authorization": f"Basic {token}"}),
        ("GET", "/v1/health-workers?limit=2", {"Authorization": f"Bearer {token}x"}),
        ("GET", "/v1/health-workers?limit=2", {}),
        ("GET", "/v1/facilities?limit=1", {**bearer, "Content-Type": "multipart/form-data"}),
    ]


@pytest.mark.parametrize("clients", ["kki", "sisdmk"], indirect=True)
def test_every_page_is_connexions(clients: tuple[MockRuntime, TestClient, TestClient]) -> None:
    runtime, fast, slow = clients
    requests = (kki_page_requests if runtime.system.name == "kki" else sisdmk_page_requests)(
        runtime
    )
    statuses = set()
    for method, url, headers in requests:
        expected = answer(slow, method, url, headers)
        assert answer(fast, method, url, headers) == expected, url
        statuses.add(expected[0])
    assert statuses >= {200, 400, 401}, statuses


@pytest.mark.parametrize("clients", ["kki", "sisdmk"], indirect=True)
def test_every_answer_is_connexions(clients: tuple[MockRuntime, TestClient, TestClient]) -> None:
    runtime, fast, slow = clients
    requests = (kki_requests if runtime.system.name == "kki" else sisdmk_requests)(runtime)
    for method, url, headers in requests:
        assert answer(fast, method, url, headers) == answer(slow, method, url, headers), url
    method, url, headers = requests[0]
    assert answer(fast, method, url, headers)[0] == 200


def test_a_page_is_answered_without_connexion_and_a_doubtful_query_never(
    kki: MockRuntime,
) -> None:
    spy = Spy()
    api = kki.system.public_handlers(kki)
    pages = page_routes(kki.public_spec, api.stored_pages())  # type: ignore[attr-defined]
    token = {"X-API-Key": kki.settings.credentials["api_token"]}
    client = TestClient(shortcut_over(kki, spy, pages=pages))
    first = client.get("/v1/registrations?limit=3", headers=token)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert len(first.json()["data"]) == 3
    cursor = first.json()["page"]["next_cursor"]
    second = client.get(f"/v1/registrations?limit=3&cursor={cursor}", headers=token)
    assert second.status_code == 200
    assert client.get("/v1/registrations?status=AKTIF", headers=token).status_code == 200
    assert spy.paths == []
    for query in ("limit=+3", "limit=3&limit=3", "x=1", "cursor=WyJub3QiXQ", "limit=0"):
        assert client.get(f"/v1/registrations?{query}", headers=token).status_code == 599, query
    assert client.get("/v1/registrations", headers={"X-API-Key": "wrong"}).status_code == 599
    assert len(spy.paths) == 6


def routes_of(runtime: MockRuntime, spec: dict[str, Any] | None = None) -> list[Any]:
    api = runtime.system.public_handlers(runtime)
    reads: dict[str, StoredRead] = api.stored_reads()  # type: ignore[attr-defined]
    return shortcut_routes(spec if spec is not None else runtime.public_spec, reads)


class Spy:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def shortcut_over(
    runtime: MockRuntime,
    inner: ASGIApp,
    spec: dict[str, Any] | None = None,
    pages: list[Any] | None = None,
) -> ASGIApp:
    shortcut = StoredReadShortcut(inner, routes_of(runtime, spec), pages)

    async def with_runtime(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["mock"] = runtime
        await shortcut(scope, receive, send)

    return with_runtime


def test_the_happy_read_never_reaches_connexion_and_the_rest_always_does(
    kki: MockRuntime,
) -> None:
    spy = Spy()
    key = first_key(kki, REGISTRATIONS)
    token = kki.settings.credentials["api_token"]
    client = TestClient(shortcut_over(kki, spy))  # no `with`: no lifespan scope
    ok = client.get(f"/v1/registrations/{key}", headers={"X-API-Key": token})
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/json"
    assert ok.json()["str_number"] == key
    assert spy.paths == []
    client.get(f"/v1/registrations/{key}", headers={"X-API-Key": "wrong"})
    client.get("/v1/registrations/QZ00000000000000", headers={"X-API-Key": token})
    client.get(f"/v1/registrations/{key}/skp", headers={"X-API-Key": token})
    assert len(spy.paths) == 3


def test_a_changed_record_is_served_changed() -> None:
    runtime = MockRuntime.build(KkiSystem(), MockSettings(size=8, seed=5))
    key = first_key(runtime, REGISTRATIONS)
    headers = {"X-API-Key": runtime.settings.credentials["api_token"]}
    url = f"/v1/registrations/{key}"
    with (
        TestClient(create_asgi_app(runtime)) as fast,
        TestClient(create_asgi_app(runtime, shortcut=False)) as slow,
    ):
        before = fast.get(url, headers=headers).json()
        doc = runtime.store(REGISTRATIONS).get(key)
        assert doc is not None
        runtime.replace_record(REGISTRATIONS, key, {**doc, "kompetensi": "Ners Baru"})
        after = fast.get(url, headers=headers)
        assert after.json()["kompetensi"] == "Ners Baru" != before["kompetensi"]
        assert after.content == slow.get(url, headers=headers).content


def test_a_literal_path_beside_the_key_is_its_own_route_whatever_the_schema_allows(
    kki: MockRuntime,
) -> None:
    """A concrete path wins over `{key}` in OpenAPI: a literal sibling segment that the key's
    schema would accept (here: a stored record's key, declared as a path of its own) is never
    answered as a stored read."""
    spy = Spy()
    key = first_key(kki, REGISTRATIONS)
    token = kki.settings.credentials["api_token"]
    spec = dict(kki.public_spec)
    spec["paths"] = {**spec["paths"], f"/v1/registrations/{key}": {"get": {"responses": {}}}}
    (route,) = routes_of(kki, spec)
    assert key in route.reserved

    client = TestClient(shortcut_over(kki, spy, spec))
    assert client.get(f"/v1/registrations/{key}", headers={"X-API-Key": token}).status_code == 599
    assert spy.paths == [f"/v1/registrations/{key}"]
