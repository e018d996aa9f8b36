"""The audit trail tests' store: a fresh, migrated database per test (the backend from the
test's ``empty_database_url`` parameter), its sessions carrying the tests' audit keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.database import create_engine_from_url, session_factory
from tests.support.databases import AUDIT_KEYS, migrate


@pytest.fixture
def engine(empty_database_url: URL) -> Iterator[Engine]:
    engine = create_engine_from_url(empty_database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine, audit_keys=AUDIT_KEYS)
