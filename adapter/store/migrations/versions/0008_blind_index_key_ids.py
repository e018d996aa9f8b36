"""Blind-index keys: indexes on the stored key ids, so that the keys in use are read at start by
a few index seeks and a re-index after a key change walks only the rows still under another key;
and ``blind_index_keys``, a check value per key id, so that a new key given an old key's id is
refused at start.

The key ids themselves are there since 0001 (``health_workers.nik_bidx_kid``,
``identity_findings.digest_kid``); nothing is rewritten. The check values are recorded by the
first start after this migration (the migration does not have the keys).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blind_index_keys",
        sa.Column("kid", sa.String(length=32), nullable=False),
        sa.Column("check_value", sa.String(length=64), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_blind_index_keys")),
    )
    op.create_index(
        op.f("ix_health_workers_nik_bidx_kid_id"), "health_workers", ["nik_bidx_kid", "id"]
    )
    op.create_index(
        op.f("ix_identity_findings_digest_kid_id"), "identity_findings", ["digest_kid", "id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_identity_findings_digest_kid_id"), table_name="identity_findings")
    op.drop_index(op.f("ix_health_workers_nik_bidx_kid_id"), table_name="health_workers")
    op.drop_table("blind_index_keys")
