"""Sync runs requested through the API, waiting for the scheduler; who requested each run.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_requests",
        sa.Column("system", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.CheckConstraint("system IN ('kki', 'sisdmk')", name=op.f("ck_sync_requests_system")),
        sa.PrimaryKeyConstraint("system", name=op.f("pk_sync_requests")),
        sa.UniqueConstraint("run_id", name=op.f("uq_sync_requests_run_id")),
    )
    # New nullable columns: SQLite adds them in place (no copy of sync_runs).
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.add_column(sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("requested_by", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.drop_column("requested_by")
        batch_op.drop_column("requested_at")
    op.drop_table("sync_requests")
