"""The KKI client against a real `hf-mock kki` process, with faults injected through /__admin."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from adapter.clients import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    ClientMetrics,
    ContractViolation,
    HttpKkiClient,
    NotFound,
    RetryPolicy,
    Timeouts,
    UpstreamUnavailable,
)
from adapter.errors import AdapterError
from harness.processes import ManagedProcess, start_mock
from tests.support.mock_servers import KEEPALIVE

pytestmark = pytest.mark.integration

SIZE = 50
TOKEN = "kki-dev-token"
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.05, max_delay_s=0.2, max_retry_after_s=2)
# Seconds for a mock on this machine, however busy; the tests of a slow answer use SHORT.
TIMEOUTS = Timeouts(connect_s=5, read_s=5)
SHORT = Timeouts(connect_s=0.5, read_s=0.5)


class KkiMock:
    def __init__(self, process: ManagedProcess, url: str) -> None:
        self.process = process
        self.url = url
        self.admin = httpx.Client(base_url=f"{url}/__admin", timeout=5, limits=KEEPALIVE)

    def fault(self, **rule: Any) -> None:
        self.admin.post("/faults", json=rule).raise_for_status()


@pytest.fixture(scope="module")
def kki_process() -> Iterator[KkiMock]:
    process, url = start_mock("kki", size=SIZE, extra=["--webhook-base-delay-ms", "100"])
    mock = KkiMock(process, url)
    try:
        yield mock
    finally:
        mock.admin.close()
        process.close()


@pytest.fixture
def mock(kki_process: KkiMock) -> KkiMock:
    kki_process.admin.post("/reset", json={"faults": True}).raise_for_status()
    return kki_process


def make_client(
    mock: KkiMock,
    *,
    policy: RetryPolicy = FAST,
    breaker: CircuitBreaker | None = None,
    timeouts: Timeouts = TIMEOUTS,
) -> tuple[HttpKkiClient, CollectorRegistry]:
    registry = CollectorRegistry()
    client = HttpKkiClient(
        mock.url,
        TOKEN,
        timeouts=timeouts,
        policy=policy,
        breaker=breaker,
        metrics=ClientMetrics.for_registry(registry),
    )
    return client, registry


@pytest.fixture
def client(mock: KkiMock) -> Iterator[HttpKkiClient]:
    kki, _ = make_client(mock)
    with kki:
        yield kki


@pytest.fixture
def str_number(client: HttpKkiClient) -> str:
    first = next(iter(client.iter_registrations(page_size=1)))
    return str(first.items[0]["str_number"])


def test_full_page_walk_returns_every_record_once(client: HttpKkiClient, mock: KkiMock) -> None:
    pages = list(client.iter_registrations(page_size=7))
    keys = [item["str_number"] for page in pages for item in page.items]
    expected = mock.admin.get("/records/registrations", params={"limit": 500}).json()
    assert len(keys) == len(set(keys))
    assert set(keys) == {record["str_number"] for record in expected["data"]}
    assert pages[-1].next_cursor is None
    assert all(page.next_cursor == after.cursor for page, after in itertools.pairwise(pages))


def test_incremental_walk_sees_only_later_records(client: HttpKkiClient) -> None:
    everything = [item for page in client.iter_registrations(page_size=50) for item in page.items]
    newest = everything[-2]["updated_at"]
    later = [i for p in client.iter_registrations(updated_since=newest) for i in p.items]
    assert [item["str_number"] for item in later] == [everything[-1]["str_number"]]


def test_lookup_and_not_found(client: HttpKkiClient, str_number: str) -> None:
    registration = client.get_registration(str_number)
    assert any(r["str_number"] == str_number for r in client.lookup_by_nik(registration["nik"]))
    with pytest.raises(NotFound):
        client.get_registration("ZZ99999999999999")


def test_burst_of_server_errors_is_survived_by_retries(mock: KkiMock, str_number: str) -> None:
    client, registry = make_client(mock)
    mock.fault(route="getRegistration", kind="error", status=503, retry_after_s=0, times=2)
    assert client.get_registration(str_number)["str_number"] == str_number
    retries = registry.get_sample_value(
        "hf_external_call_retries_total",
        {"system": "kki", "operation": "getRegistration", "cause": "server_error"},
    )
    assert retries == 2


def test_rate_limit_retry_after_is_honoured(mock: KkiMock, str_number: str) -> None:
    client, _ = make_client(mock)
    client.get_registration(str_number)
    # One 429 for the next call, whenever it comes (a rate window could pass on a busy machine).
    mock.fault(route="getRegistration", kind="error", status=429, retry_after_s=1, times=1)
    started = time.monotonic()
    client.get_registration(str_number)  # 429 with Retry-After: 1, then success
    assert time.monotonic() - started >= 1.0


def test_latency_beyond_the_read_timeout_is_upstream_unavailable(
    mock: KkiMock, str_number: str
) -> None:
    client, _ = make_client(
        mock, policy=RetryPolicy(max_attempts=2, base_delay_s=0.05), timeouts=SHORT
    )
    mock.fault(route="getRegistration", kind="latency", latency_ms=1500)
    with pytest.raises(UpstreamUnavailable, match="timed out"):
        client.get_registration(str_number)


def test_server_that_never_answers_is_upstream_unavailable(mock: KkiMock, str_number: str) -> None:
    client, _ = make_client(mock, policy=RetryPolicy(max_attempts=1), timeouts=SHORT)
    mock.fault(route="getRegistration", kind="timeout", timeout_ms=1000)
    with pytest.raises(UpstreamUnavailable):
        client.get_registration(str_number)


def test_malformed_body_is_a_contract_violation(mock: KkiMock, str_number: str) -> None:
    client, _ = make_client(mock)
    mock.fault(route="getRegistration", kind="malformed", times=1)
    with pytest.raises(ContractViolation, match="not valid JSON"):
        client.get_registration(str_number)


def test_truncated_body_is_retried(mock: KkiMock, str_number: str) -> None:
    client, _ = make_client(mock)
    mock.fault(route="getRegistration", kind="truncated", times=1)
    assert client.get_registration(str_number)["str_number"] == str_number


def test_always_truncated_body_is_upstream_unavailable(mock: KkiMock) -> None:
    client, _ = make_client(mock)
    mock.fault(route="listRegistrations", kind="truncated")
    with pytest.raises(UpstreamUnavailable, match="mid-answer") as info:
        list(client.iter_registrations())
    assert isinstance(info.value, AdapterError)


def test_breaker_opens_when_down_and_closes_when_back(mock: KkiMock, str_number: str) -> None:
    # Seconds between the breaker opening and its trial, so the call refused while it is open
    # comes in time on a busy machine; the outage outlasts the open period.
    breaker = CircuitBreaker("KKI", failure_threshold=2, reset_timeout_s=3.0)
    client, registry = make_client(mock, policy=RetryPolicy(max_attempts=1), breaker=breaker)
    mock.fault(route="getRegistration", kind="down", duration_ms=4000, times=1)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable) as info:
            client.get_registration(str_number)
        assert not isinstance(info.value, CircuitOpen)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        client.get_registration(str_number)
    gauge = registry.get_sample_value("hf_circuit_breaker_state", {"system": "kki"})
    assert gauge == BreakerState.OPEN.value
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the admin API is down too while the mock is
        try:
            mock.admin.get("/health").raise_for_status()
            break
        except httpx.TransportError:
            time.sleep(0.1)
    while breaker.state is BreakerState.OPEN:
        time.sleep(0.05)
    assert breaker.state is BreakerState.HALF_OPEN
    assert client.get_registration(str_number)["str_number"] == str_number
    assert breaker.state is BreakerState.CLOSED
