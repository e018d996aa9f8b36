"""Keyed audit chain: each entry's key id, a head only the database moves, no TRUNCATE.

Entries written before this migration keep their plain SHA-256 hash (``key_id`` NULL) and still
verify; the database refuses new entries without a key id or that do not follow the head, moves
the head itself when an entry is added, and refuses any other change of the head, deleting it,
and ``TRUNCATE`` of either table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("key_id", sa.String(length=32), nullable=True))
    if op.get_context().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def _upgrade_postgresql() -> None:
    # The chain trigger runs as the tables' owner (SECURITY DEFINER): the runtime role may not
    # change the head's number or hash itself. Its search_path is pinned to the tables' schema,
    # with pg_temp last, so a temporary table cannot stand in for the head.
    schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    op.execute(
        f"""
        CREATE FUNCTION audit_events_chain() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
        DECLARE
            head_seq bigint;
            head_hash varchar(64);
        BEGIN
            IF NEW.key_id IS NULL THEN
                RAISE EXCEPTION 'audit entry without a key id: entries are signed with AUDIT_KEYS';
            END IF;
            SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_head WHERE id = 1
                FOR UPDATE;
            IF NEW.seq IS DISTINCT FROM head_seq + 1 OR NEW.prev_hash IS DISTINCT FROM head_hash
            THEN
                RAISE EXCEPTION 'audit entry % does not follow the chain head (entry %)',
                    NEW.seq, head_seq;
            END IF;
            UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1;
            RETURN NULL;
        END $$
        """  # noqa: S608 - the schema name comes from quote_ident(current_schema())
    )
    op.execute("REVOKE ALL ON FUNCTION audit_events_chain() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER audit_events_chain AFTER INSERT ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_chain()"
    )
    op.execute(
        """
        CREATE FUNCTION audit_chain_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'audit_chain_head is never deleted';
            END IF;
            IF (NEW.id, NEW.seq, NEW.hash) IS DISTINCT FROM (OLD.id, OLD.seq, OLD.hash) AND (
                NEW.id IS DISTINCT FROM OLD.id
                OR NOT EXISTS (
                    SELECT 1 FROM audit_events WHERE seq = NEW.seq AND hash = NEW.hash
                )
                OR EXISTS (SELECT 1 FROM audit_events WHERE seq > NEW.seq)
            ) THEN
                RAISE EXCEPTION 'audit_chain_head is moved only by appending an audit entry';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_chain_head_guard BEFORE UPDATE OR DELETE ON audit_chain_head "
        "FOR EACH ROW EXECUTE FUNCTION audit_chain_head_guard()"
    )
    op.execute(
        """
        CREATE FUNCTION audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% belongs to the audit trail: it is never truncated', TG_TABLE_NAME;
        END $$
        """
    )
    for table in ("audit_events", "audit_chain_head"):
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate()"
        )


def _upgrade_sqlite() -> None:
    # SQLite has no TRUNCATE (a DELETE without WHERE fires the delete trigger) and no roles.
    op.execute(
        """
        CREATE TRIGGER audit_events_chain_check BEFORE INSERT ON audit_events
        WHEN NEW.key_id IS NULL BEGIN
            SELECT RAISE(ABORT, 'audit entry without a key id: entries are signed with AUDIT_KEYS');
        END
        """
    )
    op.execute(
        """
        CREATE TRIGGER audit_events_chain_next BEFORE INSERT ON audit_events
        WHEN NEW.seq IS NOT (SELECT seq + 1 FROM audit_chain_head WHERE id = 1)
            OR NEW.prev_hash IS NOT (SELECT hash FROM audit_chain_head WHERE id = 1)
        BEGIN SELECT RAISE(ABORT, 'audit entry does not follow the chain head'); END
        """
    )
    op.execute(
        """
        CREATE TRIGGER audit_events_chain AFTER INSERT ON audit_events
        BEGIN UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1; END
        """
    )
    op.execute(
        """
        CREATE TRIGGER audit_chain_head_follows BEFORE UPDATE OF id, seq, hash ON audit_chain_head
        WHEN NEW.id IS NOT OLD.id
            OR ((NEW.seq IS NOT OLD.seq OR NEW.hash IS NOT OLD.hash) AND (
                NEW.seq IS NOT (SELECT max(seq) FROM audit_events)
                OR NEW.hash IS NOT (SELECT hash FROM audit_events WHERE seq = NEW.seq)))
        BEGIN SELECT RAISE(ABORT, 'audit_chain_head is moved only by appending an audit entry'); END
        """
    )
    op.execute(
        """
        CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head
        BEGIN SELECT RAISE(ABORT, 'audit_chain_head is never deleted'); END
        """
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in ("audit_events", "audit_chain_head"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_no_truncate()")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_head_guard ON audit_chain_head")
        op.execute("DROP FUNCTION IF EXISTS audit_chain_head_guard()")
        op.execute("DROP TRIGGER IF EXISTS audit_events_chain ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_chain()")
    else:
        for trigger in (
            "audit_chain_head_no_delete",
            "audit_chain_head_follows",
            "audit_events_chain",
            "audit_events_chain_next",
            "audit_events_chain_check",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    # Entries signed since the upgrade no longer verify with the code of revision 0004.
    op.drop_column("audit_events", "key_id")
