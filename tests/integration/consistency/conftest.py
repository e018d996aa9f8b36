"""Consistency tests: real mocks, serve, worker and sync processes, a PostgreSQL database each."""

from __future__ import annotations

from tests.integration.webhooks.conftest import (
    blind_index,
    broker,
    cipher,
    empty_database_url,
    postgres_server,
)

__all__ = ["blind_index", "broker", "cipher", "empty_database_url", "postgres_server"]
