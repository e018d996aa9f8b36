"""Provider verification: the committed pacts against the real mocks, as separate processes.

States are set through each mock's `POST /__admin/provider-states`; webhook messages are the
events the mocks really deliver. A mock that drifts from what the adapter expects fails here.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conformance.pacts import (
    MockEventSource,
    PactVerification,
    pact_file,
    pact_interactions,
    verify_pacts,
)
from harness.processes import ManagedProcess, start_mock
from tests.contract.pact_support import KKI_TOKEN, SISDMK_CLIENT_ID, SISDMK_CLIENT_SECRET
from tests.support.servers import free_port, running_server

pytestmark = [pytest.mark.contract, pytest.mark.integration]

SIZE = 50
FAST_WEBHOOKS = ["--webhook-base-delay-ms", "100", "--webhook-max-delay-ms", "2000"]


@dataclass(frozen=True)
class RunningMock:
    url: str

    @property
    def state_url(self) -> str:
        return f"{self.url}/__admin/provider-states"


def _running(system: str) -> Iterator[RunningMock]:
    process: ManagedProcess
    process, url = start_mock(system, size=SIZE, extra=FAST_WEBHOOKS)
    try:
        yield RunningMock(url)
    finally:
        process.close()


@pytest.fixture(scope="module")
def kki() -> Iterator[RunningMock]:
    yield from _running("kki")


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[RunningMock]:
    yield from _running("sisdmk")


def sisdmk_bearer(url: str) -> dict[str, str]:
    answer = httpx.post(
        f"{url}/oauth2/v1/accesstoken",
        params={"grant_type": "client_credentials"},
        data={"client_id": SISDMK_CLIENT_ID, "client_secret": SISDMK_CLIENT_SECRET},
        timeout=10,
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def every_interaction_passed(verification: PactVerification) -> None:
    expected = len(pact_interactions(verification.pact_file))
    assert verification.ok, verification.summary() + "\n" + verification.output
    assert len(verification.passed) == expected > 0, verification.summary()


def test_kki_mock_honours_the_adapters_pact(kki: RunningMock) -> None:
    every_interaction_passed(verify_pacts("kki", kki.url, state_url=kki.state_url))


def test_sisdmk_mock_honours_the_adapters_pact(sisdmk: RunningMock) -> None:
    every_interaction_passed(verify_pacts("sisdmk", sisdmk.url, state_url=sisdmk.state_url))


def test_kki_mock_sends_every_webhook_event_the_adapter_takes(kki: RunningMock) -> None:
    with MockEventSource(kki.url, {"X-API-Key": KKI_TOKEN}) as events:
        verification = verify_pacts(
            "kki-webhooks", kki.url, state_url=kki.state_url, messages=events
        )
    every_interaction_passed(verification)


def test_sisdmk_mock_sends_every_webhook_event_the_adapter_takes(sisdmk: RunningMock) -> None:
    with MockEventSource(sisdmk.url, sisdmk_bearer(sisdmk.url)) as events:
        verification = verify_pacts(
            "sisdmk-webhooks", sisdmk.url, state_url=sisdmk.state_url, messages=events
        )
    every_interaction_passed(verification)


def test_mock_that_drops_a_paging_field_fails_the_listing_interactions(
    kki: RunningMock,
) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "tests.contract.drifting_proxy", "--target", kki.url]
    with running_server([*argv, "--port", str(port), "--drop", "has_more"], port) as proxy:
        verification = verify_pacts("kki", proxy.url, state_url=kki.state_url)
    listings = {
        str(i["description"])
        for i in pact_interactions(pact_file("kki"))
        if i["request"]["path"] == "/v1/registrations" and i["response"]["status"] == 200
    }
    assert {r.description for r in verification.failed} == listings
    assert all("has_more" in r.detail for r in verification.failed), verification.summary()
    assert len(verification.passed) + len(listings) == len(verification.results)


def test_event_that_lost_its_version_fails_its_message_interaction(kki: RunningMock) -> None:
    def drifted(real: Callable[[str], bytes]) -> Callable[[str], bytes]:
        def produce(description: str) -> bytes:
            body = real(description)
            if "registration.revoked" in description:
                return body.replace(b'"version":', b'"revision":', 1)
            return body

        return produce

    with MockEventSource(kki.url, {"X-API-Key": KKI_TOKEN}) as events:
        verification = verify_pacts(
            "kki-webhooks", kki.url, state_url=kki.state_url, messages=drifted(events)
        )
    assert [r.description for r in verification.failed] == ["a registration.revoked webhook event"]
    assert "version" in verification.failed[0].detail


def test_without_a_state_url_only_stateless_interactions_run(kki: RunningMock) -> None:
    verification = verify_pacts("kki", kki.url, state_url=None)
    stateless = [i for i in pact_interactions(pact_file("kki")) if not i.get("providerStates")]
    assert [r.description for r in verification.passed] == [i["description"] for i in stateless]
    assert not verification.failed
    assert verification.skipped
    assert all("state-setup URL" in r.detail and r.states for r in verification.skipped)


def test_message_pact_without_an_event_source_is_skipped_with_the_reason(
    kki: RunningMock,
) -> None:
    verification = verify_pacts("kki-webhooks", kki.url, state_url=kki.state_url)
    assert not verification.passed
    assert not verification.failed
    assert {r.detail for r in verification.skipped} == {
        "no source of the provider's webhook events was given"
    }


def test_state_the_mock_does_not_know_fails_fast_with_the_mocks_reason(
    kki: RunningMock, tmp_path: Path
) -> None:
    document = json.loads(pact_file("kki").read_text(encoding="utf-8"))
    absent = "a request for a registration KKI does not hold"
    document["interactions"] = [i for i in document["interactions"] if i["description"] == absent]
    document["interactions"][0]["providerStates"][0]["name"] = "the moon is full"
    (tmp_path / pact_file("kki").name).write_text(json.dumps(document), encoding="utf-8")
    started = time.monotonic()
    verification = verify_pacts("kki", kki.url, state_url=kki.state_url, pact_dir=tmp_path)
    assert [r.description for r in verification.failed] == [absent]
    assert "unknown provider state 'the moon is full'" in verification.failed[0].detail
    assert time.monotonic() - started < 30, "a refused state must not be retried for minutes"
