"""Key-rotation tests use the store tests' real databases (PostgreSQL and a SQLite file)."""

from __future__ import annotations

from tests.integration.adapter.conftest import blind_index, postgres_server

__all__ = ["blind_index", "postgres_server"]
