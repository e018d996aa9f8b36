"""Real mock processes for the integration tests, one pair per test session (and xdist worker).

Tests that change state reset through the admin API first (the `kki`/`sisdmk` fixtures do).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from adapter.clients.http import tls_context
from harness.processes import start_mock
from tests.support.mock_servers import FAST_WEBHOOKS, KKI_TOKEN, SEED, SIZE, Mock, sisdmk_token


def _mock(system: str, extra: list[str] | None = None) -> Iterator[Mock]:
    process, url = start_mock(system, size=SIZE, seed=SEED, extra=[*FAST_WEBHOOKS, *(extra or [])])
    mock = Mock(process, url)
    try:
        yield mock
    finally:
        mock.close()


@pytest.fixture(scope="session")
def kki_process() -> Iterator[Mock]:
    yield from _mock("kki")


@pytest.fixture(scope="session")
def sisdmk_process() -> Iterator[Mock]:
    yield from _mock("sisdmk")


@pytest.fixture
def kki_mock(kki_process: Mock) -> Mock:
    """The session's KKI mock, reset to the seeded data with no faults or subscriptions."""
    kki_process.reset()
    return kki_process


@pytest.fixture
def sisdmk_mock(sisdmk_process: Mock) -> Mock:
    """The session's SISDMK mock, reset to the seeded data with no faults or subscriptions."""
    sisdmk_process.reset()
    return sisdmk_process


@pytest.fixture
def kki(kki_mock: Mock) -> Iterator[httpx.Client]:
    """A client with KKI's full token, against a mock reset to the seeded data."""
    with httpx.Client(
        base_url=kki_mock.url,
        headers={"X-API-Key": KKI_TOKEN},
        timeout=10,
        verify=tls_context(None),
    ) as client:
        yield client


@pytest.fixture
def sisdmk(sisdmk_mock: Mock) -> Iterator[httpx.Client]:
    """A client with a fresh SISDMK bearer token, against a mock reset to the seeded data."""
    token = sisdmk_token(sisdmk_mock.url)
    with httpx.Client(
        base_url=sisdmk_mock.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        verify=tls_context(None),
    ) as client:
        yield client
