"""Connection state per external system; identity findings counted on each sync run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    connections = op.create_table(
        "connections",
        sa.Column("system", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="unknown", nullable=False),
        sa.Column("breaker_state", sa.String(length=16), server_default="closed", nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "breaker_state IN ('closed', 'open', 'half_open')",
            name=op.f("ck_connections_breaker_state"),
        ),
        sa.CheckConstraint(
            "status IN ('unknown', 'healthy', 'degraded', 'down')",
            name=op.f("ck_connections_status"),
        ),
        sa.CheckConstraint("system IN ('kki', 'sisdmk')", name=op.f("ck_connections_system")),
        sa.PrimaryKeyConstraint("system", name=op.f("pk_connections")),
    )
    # One row per system from the start, so concurrent first users never race to create it.
    op.bulk_insert(connections, [{"system": "kki"}, {"system": "sisdmk"}])
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.add_column(sa.Column("findings", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.drop_column("findings")
    op.drop_table("connections")
