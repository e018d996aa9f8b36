"""Findings of broken domain rules next to identity mismatches: a rule per finding, and the
source record that breaks it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IDENTITY_FIELDS = "field IN ('full_name', 'gelar_depan', 'gelar_belakang', 'birth_date', 'gender')"
_RULES = (
    "rule IN ('identity_mismatch', 'str_citizen_lifetime', 'str_foreigner_term', "
    "'sip_five_years', 'nik_birth_date', 'nik_sex')"
)


def upgrade() -> None:
    with op.batch_alter_table("identity_findings") as batch_op:
        # Every finding so far is an identity mismatch.
        batch_op.add_column(
            sa.Column(
                "rule", sa.String(length=32), server_default="identity_mismatch", nullable=False
            )
        )
        batch_op.add_column(sa.Column("source_system", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("source_id", sa.String(length=64), nullable=True))
        batch_op.alter_column("registration_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.alter_column("digest_kid", existing_type=sa.String(length=32), nullable=True)
        batch_op.drop_constraint(op.f("ck_identity_findings_field"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_identity_findings_field"), f"rule <> 'identity_mismatch' OR {_IDENTITY_FIELDS}"
        )
        batch_op.create_check_constraint(op.f("ck_identity_findings_rule"), _RULES)
        batch_op.create_check_constraint(
            op.f("ck_identity_findings_source_system"),
            "source_system IS NULL OR source_system IN ('kki', 'sisdmk')",
        )
    with op.batch_alter_table("identity_findings") as batch_op:
        # The default only filled the rows already there; the adapter names every rule.
        batch_op.alter_column(
            "rule", existing_type=sa.String(length=32), existing_nullable=False, server_default=None
        )


def downgrade() -> None:
    op.execute("DELETE FROM identity_findings WHERE rule <> 'identity_mismatch'")
    with op.batch_alter_table("identity_findings") as batch_op:
        batch_op.drop_constraint(op.f("ck_identity_findings_source_system"), type_="check")
        batch_op.drop_constraint(op.f("ck_identity_findings_rule"), type_="check")
        batch_op.drop_constraint(op.f("ck_identity_findings_field"), type_="check")
        batch_op.create_check_constraint(op.f("ck_identity_findings_field"), _IDENTITY_FIELDS)
        batch_op.alter_column("digest_kid", existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column("registration_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column("source_id")
        batch_op.drop_column("source_system")
        batch_op.drop_column("rule")
