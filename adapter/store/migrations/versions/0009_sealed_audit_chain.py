"""Sealed audit chain: entries are inserted pending, without the chain head's lock, and sealed
into the chain afterwards.

Each new entry carries its writer (``audit_writers``: one per process thread) and that writer's
next number, and ``entry_mac``, an HMAC of its content under the audit key; it is inserted with
no place in the chain. The sealer later sets ``chain_seq``, ``prev_hash`` and ``hash`` (the only
UPDATE the database allows, once per entry, following the head), and the head follows it.
``seq`` becomes an identity on PostgreSQL (taken without a lock); the chain's order is
``chain_seq``. Entries already there keep their hashes: their ``chain_seq`` is their ``seq``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = "audit_events is append-only: entries are never updated or deleted"
_PENDING = "audit entries enter the trail pending: only the sealer chains them"
_SIGNED = "audit entry without a key id or MAC: entries are signed with AUDIT_KEYS"
_WRITER = "audit entry does not carry its writer''s next number"
# An entry's content and identity: what a seal leaves as it was.
_CONTENT = (
    "seq",
    "id",
    "at",
    "actor_kind",
    "actor_subject",
    "actor_client",
    "action",
    "resource_type",
    "resource_id",
    "fields",
    "outcome",
    "trace_id",
    "detail",
    "writer_id",
    "writer_n",
    "entry_mac",
    "key_id",
)
_SQLITE_OLD_TRIGGERS = (
    "audit_events_no_update",
    "audit_events_no_delete",
    "audit_events_chain_check",
    "audit_events_chain_next",
    "audit_events_chain",
    "audit_chain_head_follows",
)


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP TRIGGER audit_events_chain ON audit_events")
        op.execute("DROP FUNCTION audit_events_chain()")
    else:
        for trigger in _SQLITE_OLD_TRIGGERS:
            op.execute(f"DROP TRIGGER {trigger}")
    op.create_table(
        "audit_writers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_writers")),
    )
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.add_column(sa.Column("writer_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("writer_n", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("entry_mac", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=True)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_events_chain_seq"), ["chain_seq"])
        batch_op.create_unique_constraint(
            batch_op.f("uq_audit_events_writer_id_writer_n"), ["writer_id", "writer_n"]
        )
    op.execute("UPDATE audit_events SET chain_seq = seq")
    op.create_index(
        "ix_audit_events_pending",
        "audit_events",
        ["seq"],
        postgresql_where=sa.text("chain_seq IS NULL"),
        sqlite_where=sa.text("chain_seq IS NULL"),
    )
    if postgresql:
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def _upgrade_postgresql() -> None:
    # ALWAYS: nobody inserts a `seq` of their choosing (the owner only with OVERRIDING SYSTEM
    # VALUE); `seq` still means nothing for verification.
    op.execute("ALTER TABLE audit_events ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY")
    op.execute(
        "SELECT setval(pg_get_serial_sequence('audit_events', 'seq'), "
        "coalesce(max(seq), 0) + 1, false) FROM audit_events"
    )
    # As in 0007: the functions that read or move the head and the writers run as the tables'
    # owner with the search_path pinned to their schema (pg_temp last), so a temporary table
    # cannot stand in for either.
    schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    definer = f"SECURITY DEFINER SET search_path = {schema}, pg_temp"
    new_content = ", ".join(f"NEW.{column}" for column in _CONTENT)
    old_content = ", ".join(f"OLD.{column}" for column in _CONTENT)
    op.execute(
        f"""
        CREATE FUNCTION audit_events_enter() RETURNS trigger LANGUAGE plpgsql {definer} AS $$
        BEGIN
            IF NEW.chain_seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL
            THEN
                RAISE EXCEPTION '{_PENDING}';
            END IF;
            IF NEW.key_id IS NULL OR NEW.entry_mac IS NULL THEN
                RAISE EXCEPTION '{_SIGNED}';
            END IF;
            IF NEW.writer_id IS NULL OR NEW.writer_n IS DISTINCT FROM (
                SELECT n FROM audit_writers WHERE id = NEW.writer_id
            ) THEN
                RAISE EXCEPTION '{_WRITER}';
            END IF;
            RETURN NEW;
        END $$
        """  # noqa: S608 - the schema name comes from quote_ident(current_schema())
    )
    op.execute(
        f"""
        CREATE FUNCTION audit_events_seal_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.chain_seq IS NOT NULL OR NEW.chain_seq IS NULL OR NEW.prev_hash IS NULL
                OR NEW.hash IS NULL OR ({new_content}) IS DISTINCT FROM ({old_content})
            THEN
                RAISE EXCEPTION '{_APPEND_ONLY}';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION audit_events_seal() RETURNS trigger LANGUAGE plpgsql {definer} AS $$
        DECLARE
            head_seq bigint;
            head_hash varchar(64);
        BEGIN
            SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_head WHERE id = 1
                FOR UPDATE;
            IF NEW.chain_seq IS DISTINCT FROM head_seq + 1
                OR NEW.prev_hash IS DISTINCT FROM head_hash
            THEN
                RAISE EXCEPTION 'audit entry % does not follow the chain head (entry %)',
                    NEW.chain_seq, head_seq;
            END IF;
            UPDATE audit_chain_head SET seq = NEW.chain_seq, hash = NEW.hash WHERE id = 1;
            RETURN NULL;
        END $$
        """  # noqa: S608 - the schema name comes from quote_ident(current_schema())
    )
    for function in ("audit_events_enter", "audit_events_seal"):
        op.execute(f"REVOKE ALL ON FUNCTION {function}() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER audit_events_enter BEFORE INSERT ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_enter()"
    )
    op.execute(
        "CREATE TRIGGER audit_events_seal_only BEFORE UPDATE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_seal_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_events_seal AFTER UPDATE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_seal()"
    )
    op.execute(
        "CREATE TRIGGER audit_events_append_only BEFORE DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION audit_chain_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'audit_chain_head is never deleted';
            END IF;
            IF (NEW.id, NEW.seq, NEW.hash) IS DISTINCT FROM (OLD.id, OLD.seq, OLD.hash) AND (
                NEW.id IS DISTINCT FROM OLD.id
                OR NOT EXISTS (
                    SELECT 1 FROM audit_events WHERE chain_seq = NEW.seq AND hash = NEW.hash
                )
                OR EXISTS (SELECT 1 FROM audit_events WHERE chain_seq > NEW.seq)
            ) THEN
                RAISE EXCEPTION 'audit_chain_head is moved only by sealing an audit entry';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION audit_writers_count() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'audit_writers rows are never deleted';
            END IF;
            IF TG_OP = 'INSERT' AND NEW.n IS DISTINCT FROM 1
                OR TG_OP = 'UPDATE' AND (NEW.id, NEW.n) IS DISTINCT FROM (OLD.id, OLD.n + 1)
            THEN
                RAISE EXCEPTION 'an audit writer''s count starts at 1 and grows by one';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_writers_count BEFORE INSERT OR UPDATE OR DELETE ON audit_writers "
        "FOR EACH ROW EXECUTE FUNCTION audit_writers_count()"
    )
    op.execute(
        "CREATE TRIGGER audit_writers_no_truncate BEFORE TRUNCATE ON audit_writers "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate()"
    )


def _upgrade_sqlite() -> None:
    changed = " OR ".join(f"NEW.{column} IS NOT OLD.{column}" for column in _CONTENT)
    for statement in (
        f"""
        CREATE TRIGGER audit_events_enter_pending BEFORE INSERT ON audit_events
        WHEN NEW.chain_seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL
        BEGIN SELECT RAISE(ABORT, '{_PENDING}'); END
        """,
        f"""
        CREATE TRIGGER audit_events_chain_check BEFORE INSERT ON audit_events
        WHEN NEW.key_id IS NULL OR NEW.entry_mac IS NULL
        BEGIN SELECT RAISE(ABORT, '{_SIGNED}'); END
        """,
        f"""
        CREATE TRIGGER audit_events_writer_next BEFORE INSERT ON audit_events
        WHEN NEW.writer_id IS NULL
            OR NEW.writer_n IS NOT (SELECT n FROM audit_writers WHERE id = NEW.writer_id)
        BEGIN SELECT RAISE(ABORT, '{_WRITER}'); END
        """,  # noqa: S608 - constants of this module
        f"""
        CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        WHEN OLD.chain_seq IS NOT NULL OR NEW.chain_seq IS NULL OR NEW.prev_hash IS NULL
            OR NEW.hash IS NULL OR {changed}
        BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END
        """,
        """
        CREATE TRIGGER audit_events_chain_next BEFORE UPDATE ON audit_events
        WHEN OLD.chain_seq IS NULL AND (
            NEW.chain_seq IS NOT (SELECT seq + 1 FROM audit_chain_head WHERE id = 1)
            OR NEW.prev_hash IS NOT (SELECT hash FROM audit_chain_head WHERE id = 1))
        BEGIN SELECT RAISE(ABORT, 'audit entry does not follow the chain head'); END
        """,
        """
        CREATE TRIGGER audit_events_chain AFTER UPDATE OF chain_seq ON audit_events
        BEGIN UPDATE audit_chain_head SET seq = NEW.chain_seq, hash = NEW.hash WHERE id = 1; END
        """,
        f"""
        CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END
        """,
        """
        CREATE TRIGGER audit_chain_head_follows BEFORE UPDATE OF id, seq, hash ON audit_chain_head
        WHEN NEW.id IS NOT OLD.id
            OR ((NEW.seq IS NOT OLD.seq OR NEW.hash IS NOT OLD.hash) AND (
                NEW.seq IS NOT (SELECT max(chain_seq) FROM audit_events)
                OR NEW.hash IS NOT (SELECT hash FROM audit_events WHERE chain_seq = NEW.seq)))
        BEGIN SELECT RAISE(ABORT, 'audit_chain_head is moved only by sealing an audit entry'); END
        """,
        """
        CREATE TRIGGER audit_writers_start BEFORE INSERT ON audit_writers WHEN NEW.n IS NOT 1
        BEGIN SELECT RAISE(ABORT, 'an audit writer''s count starts at 1 and grows by one'); END
        """,
        """
        CREATE TRIGGER audit_writers_count BEFORE UPDATE ON audit_writers
        WHEN NEW.id IS NOT OLD.id OR NEW.n IS NOT OLD.n + 1
        BEGIN SELECT RAISE(ABORT, 'an audit writer''s count starts at 1 and grows by one'); END
        """,
        """
        CREATE TRIGGER audit_writers_no_delete BEFORE DELETE ON audit_writers
        BEGIN SELECT RAISE(ABORT, 'audit_writers rows are never deleted'); END
        """,
    ):
        op.execute(statement)


def downgrade() -> None:
    """Back to 0008's chain; refused once an entry has been written pending (0008's code could
    neither chain nor verify it)."""
    bind = op.get_bind()
    written = bind.execute(
        sa.text("SELECT count(*) FROM audit_events WHERE writer_id IS NOT NULL")
    ).scalar_one()
    if written:
        raise RuntimeError(
            f"{written} audit entries were written by the sealed chain (revision 0009); "
            "revision 0008 cannot verify them: restore a backup from before the upgrade instead"
        )
    postgresql = op.get_context().dialect.name == "postgresql"
    if postgresql:
        for trigger in ("audit_events_enter", "audit_events_seal_only", "audit_events_seal"):
            op.execute(f"DROP TRIGGER {trigger} ON audit_events")
            op.execute(f"DROP FUNCTION {trigger}()")
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP TRIGGER audit_writers_no_truncate ON audit_writers")
        op.execute("DROP TRIGGER audit_writers_count ON audit_writers")
        op.execute("DROP FUNCTION audit_writers_count()")
        op.execute("ALTER TABLE audit_events ALTER COLUMN seq DROP IDENTITY")
    else:
        for trigger in (
            "audit_events_enter_pending",
            "audit_events_chain_check",
            "audit_events_writer_next",
            "audit_events_no_update",
            "audit_events_chain_next",
            "audit_events_chain",
            "audit_events_no_delete",
            "audit_chain_head_follows",
            "audit_writers_start",
            "audit_writers_count",
            "audit_writers_no_delete",
        ):
            op.execute(f"DROP TRIGGER {trigger}")
    op.drop_index("ix_audit_events_pending", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_events_writer_id_writer_n"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_audit_events_chain_seq"), type_="unique")
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("chain_seq")
        batch_op.drop_column("entry_mac")
        batch_op.drop_column("writer_n")
        batch_op.drop_column("writer_id")
    op.drop_table("audit_writers")
    # 0004's append-only triggers and 0007's chain, as those revisions made them.
    keyed = importlib.import_module("adapter.store.migrations.versions.0007_keyed_audit_chain")
    if postgresql:
        for table in ("audit_events", "audit_chain_head"):
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION audit_no_truncate()")
        op.execute("DROP TRIGGER audit_chain_head_guard ON audit_chain_head")
        op.execute("DROP FUNCTION audit_chain_head_guard()")
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
        keyed._upgrade_postgresql()
    else:
        op.execute("DROP TRIGGER audit_chain_head_no_delete")
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )
        keyed._upgrade_sqlite()
