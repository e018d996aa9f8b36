"""Alembic migrations of the adapter's store, from empty to head and back, on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from adapter.store.database import (
    SchemaDriftError,
    check,
    create_engine_from_url,
    downgrade,
    upgrade,
)
from adapter.store.models import Base

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("empty_database_url", ["postgresql", "sqlite"], indirect=True),
]


def _tables(url: URL) -> set[str]:
    engine = create_engine_from_url(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_from_empty(empty_database_url: URL) -> None:
    upgrade(empty_database_url)

    assert _tables(empty_database_url) == {*Base.metadata.tables, "alembic_version"}


def test_check_passes_after_upgrade(empty_database_url: URL) -> None:
    upgrade(empty_database_url)

    check(empty_database_url)


def test_check_fails_when_database_is_not_upgraded(empty_database_url: URL) -> None:
    with pytest.raises(SchemaDriftError, match="hf-adapter db upgrade"):
        check(empty_database_url)


def test_check_reports_drift_when_schema_differs_from_models(empty_database_url: URL) -> None:
    upgrade(empty_database_url)
    engine = create_engine_from_url(empty_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_health_workers_profession"))
    finally:
        engine.dispose()

    with pytest.raises(SchemaDriftError) as raised:
        check(empty_database_url)

    assert any("ix_health_workers_profession" in diff for diff in raised.value.differences)


def test_downgrade_to_base_removes_every_table(empty_database_url: URL) -> None:
    upgrade(empty_database_url)

    downgrade(empty_database_url, "base")

    assert _tables(empty_database_url) <= {"alembic_version"}


def test_upgrade_is_a_no_op_when_repeated(empty_database_url: URL) -> None:
    upgrade(empty_database_url)

    upgrade(empty_database_url)

    check(empty_database_url)
