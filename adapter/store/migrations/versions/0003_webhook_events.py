"""The webhook inbox (and transactional outbox): one row per event received from KKI or SISDMK.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("resource_version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("traceparent", sa.String(length=55), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "available_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("deliveries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("applied_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replays", sa.Integer(), server_default="0", nullable=False),
        sa.Column("purge_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("source IN ('kki', 'sisdmk')", name=op.f("ck_webhook_events_source")),
        sa.CheckConstraint(
            "state IN ('pending', 'done', 'failed', 'purged')", name=op.f("ck_webhook_events_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint(
            "source", "webhook_id", name=op.f("uq_webhook_events_source_webhook_id")
        ),
    )
    op.create_index(
        op.f("ix_webhook_events_state_available_at"),
        "webhook_events",
        ["state", "available_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_webhook_events_published_at_state"),
        "webhook_events",
        ["published_at", "state"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_events_published_at_state"), table_name="webhook_events")
    op.drop_index(op.f("ix_webhook_events_state_available_at"), table_name="webhook_events")
    op.drop_table("webhook_events")
