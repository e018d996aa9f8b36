"""Audit seals checked once per statement on PostgreSQL: the sealer seals a batch in one
``UPDATE``, and one statement-level trigger checks the batch against the chain head and moves
the head once.

Until 0009 the trigger ran for each sealed entry (lock the head, compare, move it, and the
head's own guard looking up the entry), and the sealer sent one ``UPDATE`` per entry: about
0.5 ms of the database's CPU per entry, which every audited read and write pays.
The check is the same: the entries sealed by one statement, in the order of their place
(``chain_seq``), must each follow the one before, the first one the head; otherwise the whole
statement is refused. An ``UPDATE`` of one entry (an older sealer's) is checked as before.
SQLite keeps its row triggers (it has no statement-level ones); its sealer updates entry by
entry.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_NEXT = "audit entry % does not follow the chain head (entry %)"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER audit_events_seal ON audit_events")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION audit_events_seal() RETURNS trigger LANGUAGE plpgsql
        {_definer()} AS $$
        DECLARE
            head_seq bigint;
            head_hash varchar(64);
            entry record;
            moved boolean := false;
        BEGIN
            SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_head WHERE id = 1
                FOR UPDATE;
            FOR entry IN SELECT chain_seq, prev_hash, hash FROM sealed ORDER BY chain_seq LOOP
                IF entry.chain_seq IS DISTINCT FROM head_seq + 1
                    OR entry.prev_hash IS DISTINCT FROM head_hash
                THEN
                    RAISE EXCEPTION '{_NOT_NEXT}', entry.chain_seq, head_seq;
                END IF;
                head_seq := entry.chain_seq;
                head_hash := entry.hash;
                moved := true;
            END LOOP;
            IF moved THEN
                UPDATE audit_chain_head SET seq = head_seq, hash = head_hash WHERE id = 1;
            END IF;
            RETURN NULL;
        END $$
        """  # noqa: S608 - the schema name comes from quote_ident(current_schema())
    )
    op.execute(
        "CREATE TRIGGER audit_events_seal AFTER UPDATE ON audit_events "
        "REFERENCING NEW TABLE AS sealed "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_seal()"
    )


def downgrade() -> None:
    """Back to 0009's trigger, for each entry (0009's sealer updates entry by entry)."""
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER audit_events_seal ON audit_events")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION audit_events_seal() RETURNS trigger LANGUAGE plpgsql
        {_definer()} AS $$
        DECLARE
            head_seq bigint;
            head_hash varchar(64);
        BEGIN
            SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_head WHERE id = 1
                FOR UPDATE;
            IF NEW.chain_seq IS DISTINCT FROM head_seq + 1
                OR NEW.prev_hash IS DISTINCT FROM head_hash
            THEN
                RAISE EXCEPTION '{_NOT_NEXT}', NEW.chain_seq, head_seq;
            END IF;
            UPDATE audit_chain_head SET seq = NEW.chain_seq, hash = NEW.hash WHERE id = 1;
            RETURN NULL;
        END $$
        """  # noqa: S608 - the schema name comes from quote_ident(current_schema())
    )
    op.execute(
        "CREATE TRIGGER audit_events_seal AFTER UPDATE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_seal()"
    )


def _definer() -> str:
    """As in 0007 and 0009: the function runs as the tables' owner with the search_path pinned
    to their schema (pg_temp last), so a temporary table cannot stand in for the head."""
    schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    return f"SECURITY DEFINER SET search_path = {schema}, pg_temp"
