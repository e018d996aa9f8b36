"""`ownership`: who owns the adapter's tables and functions in the current schema, whatever its
name's case (`db upgrade` and `db grant` read it before anything else)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from adapter.store.database import ownership
from tests.support.databases import PostgresServer

pytestmark = pytest.mark.integration


def test_ownership_finds_functions_in_a_schema_named_in_capitals(
    postgres_server: PostgresServer,
) -> None:
    # CAST(current_schema() AS regnamespace) folded "HF" to hf: "schema hf does not exist",
    # which `db upgrade` and `db grant` let out as a traceback.
    engine = create_engine(postgres_server.create_database())
    try:
        with engine.begin() as connection:
            connection.execute(text('CREATE SCHEMA "HF"'))
            connection.execute(text('SET LOCAL search_path TO "HF"'))
            connection.execute(text("CREATE TABLE audit_events (seq bigint)"))
            connection.execute(
                text(
                    "CREATE FUNCTION audit_events_seal() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RETURN NULL; END $$"
                )
            )
            found = ownership(connection, ["audit_events"], ["audit_events_seal"])
            role = connection.execute(text("SELECT CAST(current_user AS text)")).scalar_one()
    finally:
        engine.dispose()
    assert found.owners == {"audit_events": role, "audit_events_seal()": role}
    assert found.not_owned == {}
