"""Queue tests: real mocks, a real database per xdist worker, real RabbitMQ (unique prefixes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.processes import start_mock
from tests.integration.adapter.conftest import (
    blind_index,
    cipher,
    empty_database_url,
    postgres_server,
)
from tests.integration.adapter_sync.support import Mock
from tests.integration.webhooks.support import FAST_WEBHOOKS, broker_url

__all__ = ["blind_index", "cipher", "empty_database_url", "postgres_server"]

# Few people, so a storm touches the same records again and again (effects count by event id).
MOCK_SIZE = 40


def _mock(system: str) -> Iterator[Mock]:
    process, url = start_mock(system, size=MOCK_SIZE, seed=11, extra=FAST_WEBHOOKS)
    mock = Mock(url)
    try:
        yield mock
    finally:
        mock.close()
        process.close()


@pytest.fixture(scope="module")
def kki_mock() -> Iterator[Mock]:
    yield from _mock("kki")


@pytest.fixture(scope="module")
def sisdmk_mock() -> Iterator[Mock]:
    yield from _mock("sisdmk")


@pytest.fixture
def mocks(kki_mock: Mock, sisdmk_mock: Mock) -> Iterator[tuple[Mock, Mock]]:
    """Both mocks, back to the seeded data set with no subscriptions or faults after the test."""
    try:
        yield kki_mock, sisdmk_mock
    finally:
        for mock in (kki_mock, sisdmk_mock):
            mock.admin.post(
                "/reset", json={"faults": True, "subscriptions": True, "deliveries": True}
            ).raise_for_status()


@pytest.fixture(scope="session")
def broker() -> str:
    return broker_url()
