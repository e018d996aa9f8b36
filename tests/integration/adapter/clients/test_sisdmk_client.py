"""The SISDMK client against real `hf-mock sisdmk` processes: envelope, paging, token cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from adapter.clients import (
    ClientMetrics,
    HttpSisdmkClient,
    NotFound,
    RetryPolicy,
    Timeouts,
    UpstreamRateLimited,
    UpstreamRejected,
)
from harness.processes import ManagedProcess, start_mock

pytestmark = pytest.mark.integration

SIZE = 50
CLIENT_ID, CLIENT_SECRET = "sisdmk-dev-client", "sisdmk-dev-secret"
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.05, max_delay_s=0.2, max_retry_after_s=2)
EXTRA = ["--webhook-base-delay-ms", "100"]


class Exchanges:
    """An httpx event hook recording the path and status of every answer the client got."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def __call__(self, response: httpx.Response) -> None:
        self.seen.append((response.request.url.path, response.status_code))

    def count(self, path: str, status: int | None = None) -> int:
        return sum(1 for p, s in self.seen if p == path and (status is None or s == status))


def _mock_url(extra: list[str]) -> Iterator[str]:
    process: ManagedProcess
    process, url = start_mock("sisdmk", size=SIZE, extra=[*EXTRA, *extra])
    try:
        yield url
    finally:
        process.close()


@pytest.fixture(scope="module")
def sisdmk_url() -> Iterator[str]:
    yield from _mock_url([])


@pytest.fixture(scope="module")
def short_token_url() -> Iterator[str]:
    # Seconds enough to issue a token and use it once on a busy machine, then see it expire.
    yield from _mock_url(["--token-ttl", "3"])


def make_client(url: str, exchanges: Exchanges, **options: Any) -> HttpSisdmkClient:
    return HttpSisdmkClient(
        url,
        CLIENT_ID,
        CLIENT_SECRET,
        timeouts=Timeouts(connect_s=0.5, read_s=2.0),
        policy=FAST,
        metrics=ClientMetrics.for_registry(CollectorRegistry()),
        event_hooks={"response": [exchanges]},
        **options,
    )


def test_page_walk_unwraps_the_envelope_and_returns_every_worker_once(sisdmk_url: str) -> None:
    with make_client(sisdmk_url, Exchanges()) as client:
        workers = [w for page in client.iter_health_workers(page_size=9) for w in page.items]
        assert len(workers) == SIZE
        assert len({w["worker_id"] for w in workers}) == SIZE
        one = client.get_health_worker(workers[0]["worker_id"])
        assert one["worker_id"] == workers[0]["worker_id"]
        assert client.lookup_by_nik(one["nik"])["worker_id"] == one["worker_id"]
        facilities = [f for page in client.iter_facilities(page_size=500) for f in page.items]
        assert facilities
        assert len({f["code"] for f in facilities}) == len(facilities)


def test_unknown_worker_is_not_found_and_bad_input_is_rejected(sisdmk_url: str) -> None:
    with make_client(sisdmk_url, Exchanges()) as client:
        with pytest.raises(NotFound):
            client.get_health_worker("00000000-0000-4000-8000-000000000000")
        with pytest.raises(UpstreamRejected) as info:
            client.lookup_by_nik("123")
        assert info.value.status == 400


def test_one_token_serves_many_calls(sisdmk_url: str) -> None:
    exchanges = Exchanges()
    with make_client(sisdmk_url, exchanges) as client:
        first = next(iter(client.iter_health_workers(page_size=5)))
        for worker in first.items:
            client.get_health_worker(worker["worker_id"])
    assert exchanges.count("/oauth2/v1/accesstoken") == 1
    assert len(exchanges.seen) == 7


def test_rate_limit_on_every_attempt_is_upstream_rate_limited(sisdmk_url: str) -> None:
    admin = httpx.Client(base_url=f"{sisdmk_url}/__admin", timeout=5)
    admin.post("/reset", json={"faults": True}).raise_for_status()
    rule = {"route": "listFacilities", "kind": "error", "status": 429, "retry_after_s": 5}
    admin.post("/faults", json=rule).raise_for_status()
    try:
        with make_client(sisdmk_url, Exchanges()) as client, pytest.raises(UpstreamRateLimited):
            list(client.iter_facilities())
    finally:
        admin.post("/reset", json={"faults": True}).raise_for_status()
        admin.close()


def test_expired_token_is_refreshed_once_on_401(short_token_url: str) -> None:
    exchanges = Exchanges()
    # A clock that never moves: our cache keeps the token while the mock expires it after 3 s.
    with make_client(short_token_url, exchanges, clock=lambda: 0.0) as client:
        worker = next(iter(client.iter_health_workers(page_size=1))).items[0]
        time.sleep(3.2)
        assert client.get_health_worker(worker["worker_id"])["worker_id"] == worker["worker_id"]
    path = f"/v1/health-workers/{worker['worker_id']}"
    assert exchanges.count(path, 401) == 1
    assert exchanges.count(path, 200) == 1
    assert exchanges.count("/oauth2/v1/accesstoken") == 2
