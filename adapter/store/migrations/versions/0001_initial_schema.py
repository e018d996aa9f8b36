"""Initial schema: workers, registrations and their details, facilities, findings, sync state.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "facilities",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=7), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("org_type", sa.String(length=3), nullable=False),
        sa.Column("rs_class", sa.String(length=1), nullable=True),
        sa.Column("bpjs_code", sa.String(length=8), nullable=True),
        sa.Column("satusehat_org_id", sa.String(length=9), nullable=False),
        sa.Column("ownership", sa.String(length=32), nullable=False),
        sa.Column("province_code", sa.String(length=2), nullable=False),
        sa.Column("province_name", sa.String(length=100), nullable=False),
        sa.Column("regency_code", sa.String(length=4), nullable=False),
        sa.Column("regency_name", sa.String(length=100), nullable=False),
        sa.Column("district_code", sa.String(length=6), nullable=False),
        sa.Column("village_code", sa.String(length=10), nullable=False),
        sa.Column("source_system", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "rs_class IS NULL OR rs_class IN ('A', 'B', 'C', 'D')",
            name=op.f("ck_facilities_rs_class"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_facilities")),
        sa.UniqueConstraint("code", name=op.f("uq_facilities_code")),
    )
    op.create_index(
        op.f("ix_facilities_regency_code"), "facilities", ["regency_code"], unique=False
    )
    op.create_index(
        op.f("ix_facilities_updated_at_id"), "facilities", ["updated_at", "id"], unique=False
    )
    op.create_table(
        "health_workers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("nik_bidx", sa.String(length=64), nullable=False),
        sa.Column("nik_bidx_kid", sa.String(length=32), nullable=False),
        sa.Column("nik", sa.Text(), nullable=False),
        sa.Column("full_name", sa.Text(), nullable=False),
        sa.Column("gelar_depan", sa.Text(), nullable=True),
        sa.Column("gelar_belakang", sa.Text(), nullable=True),
        sa.Column("birth_date", sa.Text(), nullable=False),
        sa.Column("birth_place", sa.Text(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("ihs_number", sa.Text(), nullable=True),
        sa.Column("nip", sa.Text(), nullable=True),
        sa.Column("gender", sa.String(length=6), nullable=False),
        sa.Column("citizenship", sa.String(length=3), nullable=False),
        sa.Column("profession", sa.String(length=64), nullable=False),
        sa.Column("tenaga_group", sa.String(length=64), nullable=False),
        sa.Column("province_code", sa.String(length=2), nullable=True),
        sa.Column("regency_code", sa.String(length=4), nullable=True),
        sa.Column("facility_code", sa.String(length=7), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("sisdmk_worker_id", sa.Uuid(), nullable=True),
        sa.Column("identity_source", sa.String(length=16), nullable=False),
        sa.Column("source_system", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "citizenship IN ('WNI', 'WNA')", name=op.f("ck_health_workers_citizenship")
        ),
        sa.CheckConstraint("gender IN ('male', 'female')", name=op.f("ck_health_workers_gender")),
        sa.CheckConstraint(
            "identity_source IN ('kki', 'sisdmk')", name=op.f("ck_health_workers_identity_source")
        ),
        sa.CheckConstraint(
            "source_system IN ('kki', 'sisdmk')", name=op.f("ck_health_workers_source_system")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_workers")),
        sa.UniqueConstraint("nik_bidx", name=op.f("uq_health_workers_nik_bidx")),
        sa.UniqueConstraint("sisdmk_worker_id", name=op.f("uq_health_workers_sisdmk_worker_id")),
    )
    op.create_index(
        op.f("ix_health_workers_facility_code"), "health_workers", ["facility_code"], unique=False
    )
    op.create_index(
        op.f("ix_health_workers_profession"), "health_workers", ["profession"], unique=False
    )
    op.create_index(
        op.f("ix_health_workers_regency_code"), "health_workers", ["regency_code"], unique=False
    )
    op.create_index(
        op.f("ix_health_workers_updated_at_id"),
        "health_workers",
        ["updated_at", "id"],
        unique=False,
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fetched", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unchanged", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rejected", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("mode IN ('full', 'incremental')", name=op.f("ck_sync_runs_mode")),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name=op.f("ck_sync_runs_status")
        ),
        sa.CheckConstraint("system IN ('kki', 'sisdmk')", name=op.f("ck_sync_runs_system")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    op.create_index(
        op.f("ix_sync_runs_system_started_at"), "sync_runs", ["system", "started_at"], unique=False
    )
    op.create_table(
        "educations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("program", sa.String(length=200), nullable=False),
        sa.Column("institution", sa.String(length=200), nullable=False),
        sa.Column("graduation_year", sa.Integer(), nullable=False),
        sa.Column("ijazah_no", sa.Text(), nullable=False),
        sa.Column("source_system", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "level IN ('D3', 'D4', 'S1', 'PROFESI', 'SP', 'SUBSP', 'S2', 'S3')",
            name=op.f("ck_educations_level"),
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["health_workers.id"],
            name=op.f("fk_educations_worker_id_health_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_educations")),
    )
    op.create_index(op.f("ix_educations_worker_id"), "educations", ["worker_id"], unique=False)
    op.create_table(
        "employments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("facility_code", sa.String(length=7), nullable=False),
        sa.Column("facility_name", sa.String(length=200), nullable=True),
        sa.Column("unit_code", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=200), nullable=False),
        sa.Column("jabatan", sa.String(length=200), nullable=False),
        sa.Column("jenis_sdmk_id", sa.Integer(), nullable=False),
        sa.Column("employment_status", sa.String(length=40), nullable=False),
        sa.Column("nip", sa.Text(), nullable=True),
        sa.Column("tmt_start", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("source_system", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "end_reason IS NULL OR end_reason IN "
            "('MUTASI', 'PENSIUN', 'RESIGN', 'MENINGGAL', 'KONTRAK_HABIS')",
            name=op.f("ck_employments_end_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["health_workers.id"],
            name=op.f("fk_employments_worker_id_health_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_employments")),
    )
    op.create_index(
        op.f("ix_employments_facility_code"), "employments", ["facility_code"], unique=False
    )
    op.create_index(op.f("ix_employments_worker_id"), "employments", ["worker_id"], unique=False)
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("system IN ('kki', 'sisdmk')", name=op.f("ck_quarantine_system")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name=op.f("fk_quarantine_run_id_sync_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    op.create_index(op.f("ix_quarantine_run_id"), "quarantine", ["run_id"], unique=False)
    op.create_index(
        op.f("ix_quarantine_system_received_at"),
        "quarantine",
        ["system", "received_at"],
        unique=False,
    )
    op.create_table(
        "registrations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("str_number", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("validated", sa.Boolean(), nullable=False),
        sa.Column("registration_type", sa.String(length=16), nullable=False),
        sa.Column("profession", sa.String(length=64), nullable=False),
        sa.Column("tenaga_group", sa.String(length=64), nullable=False),
        sa.Column("kompetensi", sa.String(length=200), nullable=False),
        sa.Column("issued_at", sa.Date(), nullable=False),
        sa.Column("kki_full_name", sa.Text(), nullable=False),
        sa.Column("kki_gelar_depan", sa.Text(), nullable=True),
        sa.Column("kki_gelar_belakang", sa.Text(), nullable=True),
        sa.Column("kki_birth_date", sa.Text(), nullable=False),
        sa.Column("kki_gender", sa.String(length=6), nullable=False),
        sa.Column("source_system", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "kki_gender IN ('male', 'female')", name=op.f("ck_registrations_kki_gender")
        ),
        sa.CheckConstraint(
            "registration_type IN ('reguler', 'sementara', 'bersyarat')",
            name=op.f("ck_registrations_registration_type"),
        ),
        sa.CheckConstraint(
            "source_system IN ('kki', 'sisdmk')", name=op.f("ck_registrations_source_system")
        ),
        sa.CheckConstraint(
            "status IN ('AKTIF', 'NONAKTIF_SEMENTARA', 'DICABUT', 'KEDALUWARSA')",
            name=op.f("ck_registrations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["health_workers.id"],
            name=op.f("fk_registrations_worker_id_health_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint("str_number", name=op.f("uq_registrations_str_number")),
    )
    op.create_index(
        op.f("ix_registrations_profession"), "registrations", ["profession"], unique=False
    )
    op.create_index(op.f("ix_registrations_status"), "registrations", ["status"], unique=False)
    op.create_index(
        op.f("ix_registrations_updated_at_id"), "registrations", ["updated_at", "id"], unique=False
    )
    op.create_index(
        op.f("ix_registrations_worker_id"), "registrations", ["worker_id"], unique=False
    )
    op.create_table(
        "sync_checkpoints",
        sa.Column("system", sa.String(length=16), nullable=False),
        sa.Column("updated_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("system IN ('kki', 'sisdmk')", name=op.f("ck_sync_checkpoints_system")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name=op.f("fk_sync_checkpoints_run_id_sync_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("system", name=op.f("pk_sync_checkpoints")),
    )
    op.create_table(
        "cpd_summaries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("registration_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("required_total", sa.Integer(), nullable=False),
        sa.Column("earned_total", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("pembelajaran", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("pelayanan", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("pengabdian", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("adequacy", sa.String(length=16), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("source_system", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "adequacy IN ('CUKUP', 'TIDAK_CUKUP')", name=op.f("ck_cpd_summaries_adequacy")
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            name=op.f("fk_cpd_summaries_registration_id_registrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cpd_summaries")),
        sa.UniqueConstraint("registration_id", name=op.f("uq_cpd_summaries_registration_id")),
    )
    op.create_table(
        "identity_findings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("registration_id", sa.Uuid(), nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("kki_digest", sa.String(length=64), nullable=True),
        sa.Column("sisdmk_digest", sa.String(length=64), nullable=True),
        sa.Column("digest_kid", sa.String(length=32), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "field IN ('full_name', 'gelar_depan', 'gelar_belakang', 'birth_date', 'gender')",
            name=op.f("ck_identity_findings_field"),
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            name=op.f("fk_identity_findings_registration_id_registrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["health_workers.id"],
            name=op.f("fk_identity_findings_worker_id_health_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_findings")),
    )
    op.create_index(
        op.f("ix_identity_findings_registration_id"),
        "identity_findings",
        ["registration_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_identity_findings_resolved_at"), "identity_findings", ["resolved_at"], unique=False
    )
    op.create_index(
        op.f("ix_identity_findings_worker_id"), "identity_findings", ["worker_id"], unique=False
    )
    op.create_table(
        "practice_licenses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("registration_id", sa.Uuid(), nullable=False),
        sa.Column("sip_number", sa.String(length=100), nullable=False),
        sa.Column("sip_seq", sa.Integer(), nullable=False),
        sa.Column("issuer_regency_code", sa.String(length=4), nullable=False),
        sa.Column("facility_code", sa.String(length=7), nullable=False),
        sa.Column("issued_at", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source_system", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "status IN ('BERLAKU', 'TIDAK_BERLAKU')", name=op.f("ck_practice_licenses_status")
        ),
        sa.CheckConstraint("sip_seq BETWEEN 1 AND 3", name=op.f("ck_practice_licenses_sip_seq")),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            name=op.f("fk_practice_licenses_registration_id_registrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_practice_licenses")),
        sa.UniqueConstraint(
            "registration_id", "sip_seq", name=op.f("uq_practice_licenses_registration_id_sip_seq")
        ),
    )
    op.create_index(
        op.f("ix_practice_licenses_facility_code"),
        "practice_licenses",
        ["facility_code"],
        unique=False,
    )
    op.create_index(
        op.f("ix_practice_licenses_valid_until"), "practice_licenses", ["valid_until"], unique=False
    )
    op.create_table(
        "trainings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("registration_id", sa.Uuid(), nullable=False),
        sa.Column("course_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("provider", sa.String(length=200), nullable=False),
        sa.Column("jpl", sa.Integer(), nullable=False),
        sa.Column("skp_value", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("domain", sa.String(length=16), nullable=False),
        sa.Column("completed_at", sa.Date(), nullable=False),
        sa.Column("certificate_no", sa.String(length=100), nullable=False),
        sa.Column("source_system", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "domain IN ('pembelajaran', 'pelayanan', 'pengabdian')",
            name=op.f("ck_trainings_domain"),
        ),
        sa.CheckConstraint(
            "source IN ('PLATARAN_SEHAT', 'OTHER')", name=op.f("ck_trainings_source")
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            name=op.f("fk_trainings_registration_id_registrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trainings")),
    )
    op.create_index(
        op.f("ix_trainings_registration_id"), "trainings", ["registration_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_trainings_registration_id"), table_name="trainings")
    op.drop_table("trainings")
    op.drop_index(op.f("ix_practice_licenses_valid_until"), table_name="practice_licenses")
    op.drop_index(op.f("ix_practice_licenses_facility_code"), table_name="practice_licenses")
    op.drop_table("practice_licenses")
    op.drop_index(op.f("ix_identity_findings_worker_id"), table_name="identity_findings")
    op.drop_index(op.f("ix_identity_findings_resolved_at"), table_name="identity_findings")
    op.drop_index(op.f("ix_identity_findings_registration_id"), table_name="identity_findings")
    op.drop_table("identity_findings")
    op.drop_table("cpd_summaries")
    op.drop_table("sync_checkpoints")
    op.drop_index(op.f("ix_registrations_worker_id"), table_name="registrations")
    op.drop_index(op.f("ix_registrations_updated_at_id"), table_name="registrations")
    op.drop_index(op.f("ix_registrations_status"), table_name="registrations")
    op.drop_index(op.f("ix_registrations_profession"), table_name="registrations")
    op.drop_table("registrations")
    op.drop_index(op.f("ix_quarantine_system_received_at"), table_name="quarantine")
    op.drop_index(op.f("ix_quarantine_run_id"), table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_index(op.f("ix_employments_worker_id"), table_name="employments")
    op.drop_index(op.f("ix_employments_facility_code"), table_name="employments")
    op.drop_table("employments")
    op.drop_index(op.f("ix_educations_worker_id"), table_name="educations")
    op.drop_table("educations")
    op.drop_index(op.f("ix_sync_runs_system_started_at"), table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_index(op.f("ix_health_workers_updated_at_id"), table_name="health_workers")
    op.drop_index(op.f("ix_health_workers_regency_code"), table_name="health_workers")
    op.drop_index(op.f("ix_health_workers_profession"), table_name="health_workers")
    op.drop_index(op.f("ix_health_workers_facility_code"), table_name="health_workers")
    op.drop_table("health_workers")
    op.drop_index(op.f("ix_facilities_updated_at_id"), table_name="facilities")
    op.drop_index(op.f("ix_facilities_regency_code"), table_name="facilities")
    op.drop_table("facilities")
