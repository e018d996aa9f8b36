"""Queue tests: the webhook tests' fixtures (real mocks, a database per xdist worker, real
RabbitMQ with unique prefixes)."""

from __future__ import annotations

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
    "kki_mock",
    "mocks",
    "postgres_server",
    "sisdmk_mock",
]
