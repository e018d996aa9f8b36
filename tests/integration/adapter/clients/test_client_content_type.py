"""Answers whose Content-Type is not the contract's are refused: real `hf-mock` processes behind
a real HTTP proxy that relabels their JSON."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from adapter.clients import (
    ClientMetrics,
    ContractViolation,
    HttpKkiClient,
    HttpSisdmkClient,
    RetryPolicy,
    Timeouts,
)
from harness.processes import start_mock
from tests.support.breaking_proxy import Breakage, BreakingProxy, Relabelled

pytestmark = pytest.mark.integration

KKI_TOKEN = "kki-dev-token"
SISDMK_ID, SISDMK_SECRET = "sisdmk-dev-client", "sisdmk-dev-secret"
FAST = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02)
TIMEOUTS = Timeouts(connect_s=1.0, read_s=5.0)


@pytest.fixture(scope="module")
def kki() -> Iterator[BreakingProxy]:
    process, url = start_mock("kki", size=20, seed=5)
    proxy = BreakingProxy(url)
    try:
        yield proxy
    finally:
        proxy.close()
        process.close()


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[BreakingProxy]:
    process, url = start_mock("sisdmk", size=20, seed=5)
    proxy = BreakingProxy(url)
    try:
        yield proxy
    finally:
        proxy.close()
        process.close()


@pytest.fixture
def kki_client(kki: BreakingProxy) -> Iterator[HttpKkiClient]:
    kki.breakage = Breakage()
    metrics = ClientMetrics.for_registry(CollectorRegistry())
    with HttpKkiClient(
        kki.url, KKI_TOKEN, timeouts=TIMEOUTS, policy=FAST, metrics=metrics
    ) as client:
        yield client
    kki.breakage = Breakage()


@pytest.fixture
def sisdmk_client(sisdmk: BreakingProxy) -> Iterator[HttpSisdmkClient]:
    sisdmk.breakage = Breakage()
    metrics = ClientMetrics.for_registry(CollectorRegistry())
    with HttpSisdmkClient(
        sisdmk.url, SISDMK_ID, SISDMK_SECRET, timeouts=TIMEOUTS, policy=FAST, metrics=metrics
    ) as client:
        yield client
    sisdmk.breakage = Breakage()


def _first_str(client: HttpKkiClient) -> str:
    return str(next(iter(client.iter_registrations(page_size=1))).items[0]["str_number"])


def test_the_proxy_alone_changes_nothing_the_client_minds(kki_client: HttpKkiClient) -> None:
    str_number = _first_str(kki_client)
    assert kki_client.get_registration(str_number)["str_number"] == str_number


@pytest.mark.parametrize("content_type", ["text/plain", "text/html; charset=utf-8"])
def test_a_registration_read_labelled_otherwise_is_a_contract_violation(
    kki: BreakingProxy, kki_client: HttpKkiClient, content_type: str
) -> None:
    str_number = _first_str(kki_client)
    kki.breakage = breakage = Relabelled(r"/v1/registrations/[^/]+", content_type)

    with pytest.raises(ContractViolation, match="the contract documents application/json") as info:
        kki_client.get_registration(str_number)

    assert breakage.relabelled == 1  # the JSON was there, only its label was wrong
    assert content_type.split(";")[0] in str(info.value)
    assert (info.value.system, info.value.operation) == ("KKI", "getRegistration")


def test_a_list_page_labelled_otherwise_fails_the_page(
    kki: BreakingProxy, kki_client: HttpKkiClient
) -> None:
    kki.breakage = Relabelled(r"/v1/registrations", "text/plain")

    with pytest.raises(ContractViolation, match="Content-Type text/plain") as info:
        list(kki_client.iter_registrations(page_size=5))

    assert info.value.operation == "listRegistrations"


def test_a_sisdmk_read_labelled_otherwise_is_a_contract_violation(
    sisdmk: BreakingProxy, sisdmk_client: HttpSisdmkClient
) -> None:
    worker_id = str(
        next(iter(sisdmk_client.iter_health_workers(page_size=1))).items[0]["worker_id"]
    )
    assert sisdmk_client.get_health_worker(worker_id)["worker_id"] == worker_id
    sisdmk.breakage = Relabelled(r"/v1/health-workers/[^/]+", "text/plain")

    with pytest.raises(ContractViolation, match="Content-Type text/plain") as info:
        sisdmk_client.get_health_worker(worker_id)

    assert (info.value.system, info.value.operation) == ("SISDMK", "getHealthWorker")
