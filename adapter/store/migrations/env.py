"""Alembic's entry point: migrations run on the connection `adapter.store.database` passes in,
or, when Alembic is run on its own, on ``DATABASE_URL`` from the adapter's settings."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from adapter.store.models import Base, EncryptedToken, UtcDateTime

config = context.config


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations spell the stored column types, so they never import the models.
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, EncryptedToken):
        return "sa.Text()"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        render_item=render_item,
        # SQLite alters a table by copying it; batch mode does that for ALTER-style operations.
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    # Imported here: only the stand-alone path needs the settings (and validates them all).
    from adapter.settings import load_settings
    from adapter.store.database import create_engine_from_settings

    engine = create_engine_from_settings(load_settings())
    try:
        with engine.connect() as own_connection:
            run_migrations(own_connection)
            own_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `hf-adapter db upgrade`")
main()
