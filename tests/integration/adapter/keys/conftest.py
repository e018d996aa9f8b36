"""Key-rotation tests use the store tests' real databases (PostgreSQL and a SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.store.crypto import BlindIndex
from tests.integration.adapter.keys.store import Store, filled_copy
from tests.support.databases import PostgresServer


@pytest.fixture(params=["postgresql", "sqlite"])
def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_server: PostgresServer,
    blind_index: BlindIndex,
) -> Iterator[Store]:
    filled = filled_copy(request.param, tmp_path, postgres_server, blind_index)
    try:
        yield filled
    finally:
        filled.engine.dispose()
