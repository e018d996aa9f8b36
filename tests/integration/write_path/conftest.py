"""Write-path tests: the webhook tests' mocks and databases, RabbitMQ for PostgreSQL (the
embedded queue for SQLite), and the test IdP for the API's tokens."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from tests.integration.api.conftest import idp
from tests.integration.webhooks.conftest import (
    blind_index,
    broker,
    cipher,
    empty_database_url,
    kki_mock,
    mocks,
    postgres_server,
    sisdmk_mock,
)

__all__ = [
    "blind_index",
    "broker",
    "cipher",
    "empty_database_url",
    "idp",
    "kki_mock",
    "mocks",
    "postgres_server",
    "sisdmk_mock",
]


@pytest.fixture
def queue_broker(request: pytest.FixtureRequest, empty_database_url: URL) -> str | None:
    """RabbitMQ beside PostgreSQL, the embedded queue (no broker) beside SQLite, as deployed."""
    if empty_database_url.get_backend_name() == "postgresql":
        url: str = request.getfixturevalue("broker")
        return url
    return None
