"""Batch-sync tests: real mocks (`hf-mock` processes) and the store tests' real databases."""

from __future__ import annotations

from tests.integration.adapter.conftest import (
    blind_index,
    cipher,
    empty_database_url,
    postgres_server,
)

__all__ = ["blind_index", "cipher", "empty_database_url", "postgres_server"]
