"""The canonical health-workforce model (docs/architecture.md) as typed SQLAlchemy tables.

Personal columns are `EncryptedToken`: they hold only ``v1.<kid>.<...>`` field tokens, encrypted by
the repositories with the row's id bound in; the column type refuses anything else.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from adapter.merge.documents import IDENTITY_FIELDS
from adapter.merge.rules import RULES, Rule
from adapter.store.crypto import TOKEN_VERSION

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SYSTEMS: Final = ("kki", "sisdmk")
GENDERS: Final = ("male", "female")
CITIZENSHIPS: Final = ("WNI", "WNA")
STR_STATUSES: Final = ("AKTIF", "NONAKTIF_SEMENTARA", "DICABUT", "KEDALUWARSA")
REGISTRATION_TYPES: Final = ("reguler", "sementara", "bersyarat")
SIP_STATUSES: Final = ("BERLAKU", "TIDAK_BERLAKU")
SKP_ADEQUACIES: Final = ("CUKUP", "TIDAK_CUKUP")
SKP_DOMAINS: Final = ("pembelajaran", "pelayanan", "pengabdian")
TRAINING_SOURCES: Final = ("PLATARAN_SEHAT", "OTHER")
EDUCATION_LEVELS: Final = ("D3", "D4", "S1", "PROFESI", "SP", "SUBSP", "S2", "S3")
END_REASONS: Final = ("MUTASI", "PENSIUN", "RESIGN", "MENINGGAL", "KONTRAK_HABIS")
SYNC_MODES: Final = ("full", "incremental")
SYNC_STATUSES: Final = ("running", "succeeded", "failed")
CONNECTION_STATUSES: Final = ("unknown", "healthy", "degraded", "down")
BREAKER_STATES: Final = ("closed", "open", "half_open")

_TOKEN = re.compile(rf"{TOKEN_VERSION}\.[a-z0-9-]{{1,32}}\.[A-Za-z0-9_-]+")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass an aware one (e.g. datetime.now(UTC))")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class EncryptedToken(TypeDecorator[str]):
    """TEXT that only accepts field tokens: a clear value written by mistake fails the flush."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is not None and not _TOKEN.fullmatch(value):
            # The message must not repeat the value: it may be the personal data itself.
            raise ValueError("an encrypted column was given something that is not a field token")
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: Any = {
        dt.datetime: UtcDateTime(),
        dt.date: Date(),
        uuid.UUID: Uuid(),
        Decimal: Numeric(10, 2),
    }


def _in(column: str, values: tuple[str, ...]) -> str:
    allowed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({allowed})"


def _one_of(column: str, values: tuple[str, ...], *, nullable: bool = False) -> CheckConstraint:
    condition = _in(column, values)
    if nullable:
        condition = f"{column} IS NULL OR {condition}"
    return CheckConstraint(condition, name=column)


class Timestamps:
    """When the adapter created and last changed the row (not the source's times)."""

    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class Provenance:
    """Where a sourced row came from: which system, which record, which version, and when."""

    source_system: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(64))
    source_version: Mapped[int]
    fetched_at: Mapped[dt.datetime]
    # Keyed (HMAC) digest of the source document, so equal payloads are found without keeping them.
    payload_hash: Mapped[str] = mapped_column(String(64))


class HealthWorker(Provenance, Timestamps, Base):
    """One person, matched across KKI and SISDMK on NIK; SISDMK is authoritative for identity."""

    __tablename__ = "health_workers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    nik_bidx: Mapped[str] = mapped_column(String(64), unique=True)
    nik_bidx_kid: Mapped[str] = mapped_column(String(32))
    nik: Mapped[str] = mapped_column(EncryptedToken)
    full_name: Mapped[str] = mapped_column(EncryptedToken)
    gelar_depan: Mapped[str | None] = mapped_column(EncryptedToken)
    gelar_belakang: Mapped[str | None] = mapped_column(EncryptedToken)
    birth_date: Mapped[str] = mapped_column(EncryptedToken)
    birth_place: Mapped[str | None] = mapped_column(EncryptedToken)
    # The address line with district and village (JSON); province and regency stay clear below.
    address: Mapped[str | None] = mapped_column(EncryptedToken)
    phone: Mapped[str | None] = mapped_column(EncryptedToken)
    email: Mapped[str | None] = mapped_column(EncryptedToken)
    ihs_number: Mapped[str | None] = mapped_column(EncryptedToken)
    nip: Mapped[str | None] = mapped_column(EncryptedToken)
    gender: Mapped[str] = mapped_column(String(6))
    citizenship: Mapped[str] = mapped_column(String(3))
    profession: Mapped[str] = mapped_column(String(64), index=True)
    tenaga_group: Mapped[str] = mapped_column(String(64))
    province_code: Mapped[str | None] = mapped_column(String(2))
    regency_code: Mapped[str | None] = mapped_column(String(4), index=True)
    facility_code: Mapped[str | None] = mapped_column(String(7), index=True)
    is_active: Mapped[bool] = mapped_column(server_default=true())
    sisdmk_worker_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    # Which system the identity columns come from: "kki" until SISDMK knows the person.
    identity_source: Mapped[str] = mapped_column(String(16))
    # Read-only collections of one worker, in order, for ORM reads (`WorkforceDirectory.worker`
    # reads the same rows without them, in one statement); never loaded lazily, never written
    # through.
    employments: Mapped[list[Employment]] = relationship(
        viewonly=True, lazy="raise", order_by="Employment.tmt_start"
    )
    educations: Mapped[list[Education]] = relationship(
        viewonly=True, lazy="raise", order_by="Education.graduation_year"
    )
    registrations: Mapped[list[Registration]] = relationship(
        viewonly=True, lazy="raise", order_by="Registration.str_number"
    )

    __table_args__ = (
        _one_of("gender", GENDERS),
        _one_of("citizenship", CITIZENSHIPS),
        _one_of("identity_source", SYSTEMS),
        _one_of("source_system", SYSTEMS),
        Index(None, "updated_at", "id"),
        # The blind-index keys in use (read at start) and a re-index's stale rows, by seeks.
        Index(None, "nik_bidx_kid", "id"),
    )


class Registration(Provenance, Timestamps, Base):
    """An STR as KKI knows it, with KKI's (encrypted) spelling of the holder's identity."""

    __tablename__ = "registrations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    worker_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("health_workers.id", ondelete="CASCADE"), index=True
    )
    # Never loaded by the code; tells the unit of work to insert the worker first.
    _worker: Mapped[HealthWorker] = relationship(lazy="raise")
    # Read-only, loaded with the worker (`WorkforceDirectory.worker`).
    sips: Mapped[list[PracticeLicense]] = relationship(
        viewonly=True, lazy="raise", order_by="PracticeLicense.sip_seq"
    )
    skp: Mapped[CpdSummary | None] = relationship(viewonly=True, lazy="raise")
    trainings: Mapped[list[Training]] = relationship(
        viewonly=True, lazy="raise", order_by="Training.completed_at"
    )
    str_number: Mapped[str] = mapped_column(String(50), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[dt.datetime]
    valid_until: Mapped[dt.date | None]  # None: an STR for life (UU 17/2023)
    validated: Mapped[bool]
    registration_type: Mapped[str] = mapped_column(String(16))
    profession: Mapped[str] = mapped_column(String(64), index=True)
    tenaga_group: Mapped[str] = mapped_column(String(64))
    kompetensi: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[dt.date]
    kki_full_name: Mapped[str] = mapped_column(EncryptedToken)
    kki_gelar_depan: Mapped[str | None] = mapped_column(EncryptedToken)
    kki_gelar_belakang: Mapped[str | None] = mapped_column(EncryptedToken)
    kki_birth_date: Mapped[str] = mapped_column(EncryptedToken)
    kki_gender: Mapped[str] = mapped_column(String(6))

    __table_args__ = (
        _one_of("status", STR_STATUSES),
        _one_of("registration_type", REGISTRATION_TYPES),
        _one_of("kki_gender", GENDERS),
        _one_of("source_system", SYSTEMS),
        Index(None, "updated_at", "id"),
        Index(None, "status"),
    )


class PracticeLicense(Provenance, Base):
    """A SIP (per practice location), as listed on KKI's registration."""

    __tablename__ = "practice_licenses"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    registration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("registrations.id", ondelete="CASCADE")
    )
    # Never loaded by the code; tells the unit of work to insert the registration first.
    _registration: Mapped[Registration] = relationship(lazy="raise")
    sip_number: Mapped[str] = mapped_column(String(100))
    sip_seq: Mapped[int]
    issuer_regency_code: Mapped[str] = mapped_column(String(4))
    # The facility's natural key, not a foreign key: a sync may see the SIP before the facility.
    facility_code: Mapped[str] = mapped_column(String(7), index=True)
    issued_at: Mapped[dt.date]
    valid_until: Mapped[dt.date]
    status: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        UniqueConstraint("registration_id", "sip_seq"),
        CheckConstraint("sip_seq BETWEEN 1 AND 3", name="sip_seq"),
        _one_of("status", SIP_STATUSES),
        Index(None, "valid_until"),
    )


class CpdSummary(Provenance, Base):
    """The SKP position of one registration for its current five-year period."""

    __tablename__ = "cpd_summaries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    registration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("registrations.id", ondelete="CASCADE"), unique=True
    )
    # Never loaded by the code; tells the unit of work to insert the registration first.
    _registration: Mapped[Registration] = relationship(lazy="raise")
    period_start: Mapped[dt.date]
    period_end: Mapped[dt.date]
    required_total: Mapped[int]
    earned_total: Mapped[Decimal]
    pembelajaran: Mapped[Decimal]
    pelayanan: Mapped[Decimal]
    pengabdian: Mapped[Decimal]
    adequacy: Mapped[str] = mapped_column(String(16))
    as_of: Mapped[dt.date]

    __table_args__ = (_one_of("adequacy", SKP_ADEQUACIES),)


class Training(Provenance, Base):
    """A completed training (Plataran Sehat or other) credited to a registration."""

    __tablename__ = "trainings"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    registration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("registrations.id", ondelete="CASCADE"), index=True
    )
    # Never loaded by the code; tells the unit of work to insert the registration first.
    _registration: Mapped[Registration] = relationship(lazy="raise")
    course_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    provider: Mapped[str] = mapped_column(String(200))
    jpl: Mapped[int]
    skp_value: Mapped[Decimal]
    domain: Mapped[str] = mapped_column(String(16))
    completed_at: Mapped[dt.date]
    certificate_no: Mapped[str] = mapped_column(String(100))

    __table_args__ = (_one_of("source", TRAINING_SOURCES), _one_of("domain", SKP_DOMAINS))


class Employment(Provenance, Base):
    """A worker's post at a facility, current or past, as SISDMK records it."""

    __tablename__ = "employments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    worker_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("health_workers.id", ondelete="CASCADE"), index=True
    )
    # Never loaded by the code; tells the unit of work to insert the worker first.
    _worker: Mapped[HealthWorker] = relationship(lazy="raise")
    facility_code: Mapped[str] = mapped_column(String(7), index=True)
    facility_name: Mapped[str | None] = mapped_column(String(200))
    unit_code: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(200))
    jabatan: Mapped[str] = mapped_column(String(200))
    jenis_sdmk_id: Mapped[int]
    employment_status: Mapped[str] = mapped_column(String(40))
    nip: Mapped[str | None] = mapped_column(EncryptedToken)
    tmt_start: Mapped[dt.date]
    end_date: Mapped[dt.date | None]
    end_reason: Mapped[str | None] = mapped_column(String(16))
    is_current: Mapped[bool]

    __table_args__ = (_one_of("end_reason", END_REASONS, nullable=True),)


class Education(Provenance, Base):
    """A completed education, as SISDMK records it."""

    __tablename__ = "educations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    worker_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("health_workers.id", ondelete="CASCADE"), index=True
    )
    # Never loaded by the code; tells the unit of work to insert the worker first.
    _worker: Mapped[HealthWorker] = relationship(lazy="raise")
    level: Mapped[str] = mapped_column(String(8))
    program: Mapped[str] = mapped_column(String(200))
    institution: Mapped[str] = mapped_column(String(200))
    graduation_year: Mapped[int]
    ijazah_no: Mapped[str] = mapped_column(EncryptedToken)

    __table_args__ = (_one_of("level", EDUCATION_LEVELS),)


class Facility(Provenance, Timestamps, Base):
    """A health facility (fasyankes) from SISDMK's register; no personal data."""

    __tablename__ = "facilities"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(7), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    org_type: Mapped[str] = mapped_column(String(3))
    rs_class: Mapped[str | None] = mapped_column(String(1))
    bpjs_code: Mapped[str | None] = mapped_column(String(8))
    satusehat_org_id: Mapped[str] = mapped_column(String(9))
    ownership: Mapped[str] = mapped_column(String(32))
    province_code: Mapped[str] = mapped_column(String(2))
    province_name: Mapped[str] = mapped_column(String(100))
    regency_code: Mapped[str] = mapped_column(String(4), index=True)
    regency_name: Mapped[str] = mapped_column(String(100))
    district_code: Mapped[str] = mapped_column(String(6))
    village_code: Mapped[str] = mapped_column(String(10))

    __table_args__ = (
        _one_of("rs_class", ("A", "B", "C", "D"), nullable=True),
        Index(None, "updated_at", "id"),
    )


class IdentityFinding(Base):
    """Something wrong with a person's records, both kept as the sources sent them, neither shown.

    `rule` says what: ``identity_mismatch`` (KKI and SISDMK disagree on one identity `field`;
    only keyed digests of the two values are stored, ``None`` when a source has no value) or a
    domain rule the record `source_system`/`source_id` breaks at `field` (an STR's or SIP's
    term, a NIK against the birth date or sex; see `adapter.merge.rules`). Resolved when a
    later version of the records no longer shows it.
    """

    __tablename__ = "identity_findings"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(32))
    worker_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("health_workers.id", ondelete="CASCADE"), index=True
    )
    # Never loaded by the code; tells the unit of work to insert the worker first.
    _worker: Mapped[HealthWorker] = relationship(lazy="raise")
    # None for a rule a SISDMK worker record breaks.
    registration_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("registrations.id", ondelete="CASCADE"), index=True
    )
    # Never loaded by the code; tells the unit of work to insert the registration first.
    _registration: Mapped[Registration] = relationship(lazy="raise")
    # The record that breaks a domain rule: a KKI STR number or a SISDMK worker id.
    source_system: Mapped[str | None] = mapped_column(String(16))
    source_id: Mapped[str | None] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(32))
    kki_digest: Mapped[str | None] = mapped_column(String(64))
    sisdmk_digest: Mapped[str | None] = mapped_column(String(64))
    digest_kid: Mapped[str | None] = mapped_column(String(32))
    detected_at: Mapped[dt.datetime]
    resolved_at: Mapped[dt.datetime | None]

    __table_args__ = (
        _one_of("rule", RULES),
        _one_of("source_system", SYSTEMS, nullable=True),
        CheckConstraint(
            f"rule <> '{Rule.IDENTITY_MISMATCH}' OR {_in('field', IDENTITY_FIELDS)}",
            name="field",
        ),
        Index(None, "resolved_at"),
        # As on health_workers: the blind-index keys in use, and a re-index's stale findings.
        Index(None, "digest_kid", "id"),
    )


class BlindIndexKey(Base):
    """A blind-index key id the adapter has run with, and a check value of its key
    (`BlindIndex.check_values`): a key id is never reused for another key, or the digests
    stored under it would stop matching. Never the key itself."""

    __tablename__ = "blind_index_keys"

    kid: Mapped[str] = mapped_column(String(32), primary_key=True)
    check_value: Mapped[str] = mapped_column(String(64))
    first_used_at: Mapped[dt.datetime]


class SyncRun(Base):
    """One batch sync of one system, with what it did."""

    __tablename__ = "sync_runs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    system: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    fetched: Mapped[int] = mapped_column(server_default="0")
    created: Mapped[int] = mapped_column(server_default="0")
    updated: Mapped[int] = mapped_column(server_default="0")
    unchanged: Mapped[int] = mapped_column(server_default="0")
    rejected: Mapped[int] = mapped_column(server_default="0")
    # Findings (identity mismatches, broken domain rules) opened while this run ran.
    findings: Mapped[int] = mapped_column(server_default="0")
    # What went wrong, for operators; never personal data or a secret.
    error: Mapped[str | None] = mapped_column(Text)
    # Set on a run requested through the API: when, and by whom (the token's subject id).
    requested_at: Mapped[dt.datetime | None]
    requested_by: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        _one_of("system", SYSTEMS),
        _one_of("mode", SYNC_MODES),
        _one_of("status", SYNC_STATUSES),
        Index(None, "system", "started_at"),
    )


class SyncRequest(Base):
    """A sync run asked for through the API that the scheduler has not started yet.

    The system is the key: one request waits per system at most. The scheduler deletes the
    row in the transaction that creates the run's `SyncRun` (with the same id, `run_id`).
    """

    __tablename__ = "sync_requests"

    system: Mapped[str] = mapped_column(String(16), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    full: Mapped[bool]
    requested_at: Mapped[dt.datetime]
    # The access token's subject: an id, never a name.
    requested_by: Mapped[str] = mapped_column(String(255))

    __table_args__ = (_one_of("system", SYSTEMS),)


class SyncCheckpoint(Base):
    """Where the next incremental sync of a system starts; committed with each page."""

    __tablename__ = "sync_checkpoints"

    system: Mapped[str] = mapped_column(String(16), primary_key=True)
    updated_since: Mapped[dt.datetime | None]
    # The source's opaque page cursor within a run, so a crashed run resumes mid-way.
    cursor: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="SET NULL")
    )
    committed_at: Mapped[dt.datetime]

    __table_args__ = (_one_of("system", SYSTEMS),)


class Connection(Base):
    """The state of the adapter's link to one external system, as the last calls saw it.

    ``degraded``: the last sync or look-up could not reach the system (down, breaker open,
    5xx after retries) and the adapter serves its stored copy; ``next_attempt_at`` says when the
    scheduler tries again. ``down``: that has happened `DOWN_AFTER` times in a row.
    """

    __tablename__ = "connections"

    system: Mapped[str] = mapped_column(String(16), primary_key=True)
    enabled: Mapped[bool] = mapped_column(server_default=true())
    status: Mapped[str] = mapped_column(String(16), server_default="unknown")
    breaker_state: Mapped[str] = mapped_column(String(16), server_default="closed")
    last_success_at: Mapped[dt.datetime | None]
    last_failure_at: Mapped[dt.datetime | None]
    # The last failure in an operator's words; never personal data or a secret.
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(server_default="0")
    error_count: Mapped[int] = mapped_column(server_default="0")
    next_attempt_at: Mapped[dt.datetime | None]
    changed_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        _one_of("system", SYSTEMS),
        _one_of("status", CONNECTION_STATUSES),
        _one_of("breaker_state", BREAKER_STATES),
    )


class QuarantinedRecord(Base):
    """A source record the adapter refused (invalid, conflicting); kept only encrypted."""

    __tablename__ = "quarantine"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    system: Mapped[str] = mapped_column(String(16))
    resource: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str | None] = mapped_column(String(64))
    # A reason slug and field names only: validation messages can quote the bad value.
    reason: Mapped[str] = mapped_column(String(500))
    payload_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str | None] = mapped_column(EncryptedToken)
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="SET NULL"), index=True
    )
    received_at: Mapped[dt.datetime]
    resolved_at: Mapped[dt.datetime | None]

    __table_args__ = (_one_of("system", SYSTEMS), Index(None, "system", "received_at"))


WEBHOOK_EVENT_STATES: Final = ("pending", "done", "failed", "purged")


class WebhookEvent(Base):
    """The inbox: one row per webhook received, keyed by (source, webhook-id), and its fate.

    Only ids, the event type and times are kept, never the body: the envelope's ``nik_hash``
    stays out of the store. ``published_at`` is the transactional outbox (NULL: the broker has
    not confirmed it yet, the relay publishes it); ``available_at`` is when the event may be
    handed to a worker next (after a retry delay, or a lease on the embedded queue).
    """

    __tablename__ = "webhook_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    webhook_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    # The source's id of the resource to fetch: an STR number, a worker id or a facility code.
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_version: Mapped[int]
    occurred_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    traceparent: Mapped[str | None] = mapped_column(String(55))
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    published_at: Mapped[dt.datetime | None]
    available_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    # Failed attempts to apply (retries spent), and hand-overs to a worker (crash detection).
    attempts: Mapped[int] = mapped_column(server_default="0")
    deliveries: Mapped[int] = mapped_column(server_default="0")
    # Times the event changed the store: 1 when done, never more (the tests count on it).
    applied_count: Mapped[int] = mapped_column(server_default="0")
    # A reason slug and the error class/message of the last failure; never personal data.
    last_error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(32))
    processed_at: Mapped[dt.datetime | None]
    replays: Mapped[int] = mapped_column(server_default="0")
    purge_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("source", "webhook_id"),
        _one_of("source", SYSTEMS),
        _one_of("state", WEBHOOK_EVENT_STATES),
        Index(None, "state", "available_at"),
        Index(None, "published_at", "state"),
    )


AUDIT_OUTCOMES: Final = ("success", "denied", "error")
AUDIT_ACTOR_KINDS: Final = ("user", "service", "system")
AUDIT_GENESIS: Final = "0" * 64


class AuditEvent(Base):
    """One entry of the append-only audit trail, written pending and sealed into the chain.

    Who (the token's subject and client, or the adapter itself), what (action, resource,
    the personal fields touched), when, the outcome and the trace id. Never a value of a
    personal field. An entry is inserted with its writer's next number (`writer_id`,
    `writer_n`) and `entry_mac`, an HMAC of its content under the audit key, and no place in the
    chain; the sealer later gives it `chain_seq`, `prev_hash` and `hash`, once. Triggers refuse
    any other UPDATE, DELETE and TRUNCATE; the MACs and the writers' numbers show any change
    made around them (`hf-adapter audit verify`).
    """

    __tablename__ = "audit_events"

    # The entry's number, taken when it is inserted (an identity GENERATED ALWAYS on PostgreSQL,
    # without a lock; a rolled-back insert leaves a gap). Its place in the chain is `chain_seq`.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    at: Mapped[dt.datetime]
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_subject: Mapped[str | None] = mapped_column(String(255))
    actor_client: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(128))
    # JSON list of the personal fields read or written (names only).
    fields: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    trace_id: Mapped[str | None] = mapped_column(String(32))
    # JSON object of ids and counts (never personal values).
    detail: Mapped[str | None] = mapped_column(Text)
    # Who wrote it (one process thread: `audit_writers`) and that writer's count of entries,
    # 1, 2, 3 ... without a gap; NULL only for entries written before migration 0009.
    writer_id: Mapped[uuid.UUID | None]
    writer_n: Mapped[int | None] = mapped_column(BigInteger)
    # HMAC-SHA256 under the AUDIT_KEYS key `key_id` of the content, writer and number.
    entry_mac: Mapped[str | None] = mapped_column(String(64))
    # Set by the sealer, once: the place in the chain, the hash of the entry before, and this
    # entry's chain hash (HMAC of `entry_mac`, place and predecessor). NULL while pending.
    # Before 0009 `hash` was HMAC-SHA256 of the content and `prev_hash`; plain SHA-256 when
    # `key_id` is NULL (entries written before migration 0007).
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        _one_of("outcome", AUDIT_OUTCOMES),
        _one_of("actor_kind", AUDIT_ACTOR_KINDS),
        Index(None, "at"),
        Index(None, "actor_subject", "at"),
        Index(None, "resource_type", "resource_id"),
        UniqueConstraint("writer_id", "writer_n"),
        # What the sealer reads: the pending entries, in order.
        Index(
            "ix_audit_events_pending",
            "seq",
            postgresql_where=text("chain_seq IS NULL"),
            sqlite_where=text("chain_seq IS NULL"),
        ),
    )


class AuditWriter(Base):
    """One writer of the audit trail (a thread of a process) and how many entries it has
    appended: appending counts here (a row lock on this writer's row only), so a deleted entry
    leaves a gap in its writer's numbers. Triggers let `n` only grow by one and refuse DELETE."""

    __tablename__ = "audit_writers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class AuditChainHead(Base):
    """The newest sealed entry of the audit chain (one row): sealing locks it, so entries are
    chained one at a time, and a cut-off tail does not go unnoticed. Only the database moves it
    (a trigger on each seal); `changed_at` is what the sealer locks it with."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[dt.datetime | None]

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)
