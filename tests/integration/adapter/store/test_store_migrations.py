"""Alembic migrations of the adapter's store, from empty to head and back, on both backends."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import URL, make_url

from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.database import (
    SchemaDriftError,
    check,
    create_engine_from_url,
    downgrade,
    session_factory,
    upgrade,
)
from adapter.store.models import Base, IdentityFinding
from adapter.store.repositories import HealthWorkerRepository
from tests.support import databases
from tests.support.databases import PostgresServer, migrate
from tests.support.documents import kki_registration, sisdmk_worker

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


def _no_migrations(*args: object, **kwargs: object) -> None:
    raise AssertionError("migrate ran the migrations instead of copying the template")


def test_the_tests_migrate_gives_what_upgrade_gives_and_keeps_a_stored_database(
    empty_database_url: URL,
    cipher: FieldCipher,
    blind_index: BlindIndex,
    postgres_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store tests' `migrate` copies a template the migrations built (here, the template
    is built before, so the copy runs no migration): the copy is at head and matches the
    models; given a database with tables it upgrades it, keeping its rows."""
    other = (
        postgres_server.create_database()
        if empty_database_url.get_backend_name() == "postgresql"
        else make_url(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    )
    template = create_engine_from_url(other)
    try:
        migrate(template)  # builds the worker's template if this is its first migrate
    finally:
        template.dispose()
    engine = create_engine_from_url(empty_database_url)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(databases, "upgrade", _no_migrations)
            migrate(engine)
        check(engine)
        with session_factory(engine).begin() as session:
            HealthWorkerRepository(session, cipher, blind_index).upsert_from_sisdmk(
                sisdmk_worker(), fetched_at=dt.datetime.now(dt.UTC)
            )

        migrate(engine)

        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM health_workers")).scalar() == 1
            assert connection.execute(text("SELECT system FROM connections")).scalars().all()
    finally:
        engine.dispose()
    check(empty_database_url)


def test_identity_findings_stay_identity_mismatches_down_and_up_across_rule_findings(
    empty_database_url: URL, cipher: FieldCipher, blind_index: BlindIndex
) -> None:
    """0006 gave findings a rule: going back drops the rule findings and keeps the others,
    which are identity mismatches again when it is applied once more."""
    upgrade(empty_database_url)
    engine = create_engine_from_url(empty_database_url)
    try:
        worker = sisdmk_worker()
        doc = kki_registration(worker, full_name="Nama Lain Sintetis", birth_date="1985-03-21")
        with session_factory(engine).begin() as session:
            repository = HealthWorkerRepository(session, cipher, blind_index)
            repository.upsert_from_sisdmk(worker, fetched_at=dt.datetime.now(dt.UTC))
            repository.upsert_registration_from_kki(doc, fetched_at=dt.datetime.now(dt.UTC))

        def findings() -> list[tuple[str, str]]:
            with session_factory(engine)() as session:
                rows = session.execute(select(IdentityFinding.rule, IdentityFinding.field))
                return sorted((rule, field) for rule, field in rows)

        assert findings() == [
            ("identity_mismatch", "birth_date"),
            ("identity_mismatch", "full_name"),
            ("nik_birth_date", "birth_date"),
        ]

        downgrade(engine, "0005")
        with engine.connect() as connection:
            kept = connection.execute(text("SELECT field FROM identity_findings")).scalars()
            assert sorted(kept) == ["birth_date", "full_name"]
        upgrade(engine)

        check(engine)
        assert findings() == [
            ("identity_mismatch", "birth_date"),
            ("identity_mismatch", "full_name"),
        ]
    finally:
        engine.dispose()
