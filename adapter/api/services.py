"""What the API's views call: each read of personal data or admin action with its audit entry.

Every method opens one transaction, does its read or write and appends the audit entry in it,
so both commit together; one worker in full on PostgreSQL instead reads in one statement and
appends in one more, both autocommitted, the entry committed before the document is returned
(`ApiServices.worker`). Actors come from the access token (subject and client), never from
the request body. No web framework here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from adapter.api import listings
from adapter.audit import (
    Actor,
    SealingBlocked,
    nik_reference,
    pending_count,
    record_audit,
    record_audit_alone,
    seal_all,
)
from adapter.clock import Clock, utc_now
from adapter.lookup import LOOKUP_ACTION, LOOKUP_RESOURCE, LookupAnswer, RegistryLookup
from adapter.queue.messages import EventPublisher
from adapter.sdmk_integration_manager import (
    ConnectionDisabled,
    ConnectionState,
    list_connections,
    set_enabled,
)
from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.personal_fields import PERSON_IDENTITY_FIELDS
from adapter.store.repositories import RegistrationRecord
from adapter.sync.requests import SyncInProgress, request_run, waiting_request
from adapter.workforce.directory import (
    Page,
    WorkerFilter,
    WorkerNotFound,
    WorkforceDirectory,
    withhold,
)

log = logging.getLogger("adapter.api")

# The personal fields of a worker summary (in clear or masked), as the audit trail names them.
SUMMARY_FIELDS: Final = PERSON_IDENTITY_FIELDS
WORKER_RESOURCE: Final = "health_worker"
# Batches of pending audit entries the audit listing seals before it lists (1,000 each): a
# request never waits on a backlog or on sustained appends; the sealer threads seal the rest.
LISTING_SEAL_BATCHES: Final = 2


@dataclass(frozen=True)
class Read:
    """A read of personal data as the audit trail names it: its action and resource type."""

    action: str
    resource_type: str


WORKER_LIST: Final = Read("healthworker.list", WORKER_RESOURCE)
WORKER_BY_NIK: Final = Read("healthworker.search_by_nik", WORKER_RESOURCE)
WORKER_DETAIL: Final = Read("healthworker.read", WORKER_RESOURCE)
FINDING_LIST: Final = Read("finding.list", "identity_finding")
REGISTRATION_LOOKUP: Final = Read(LOOKUP_ACTION, LOOKUP_RESOURCE)


@dataclass(frozen=True)
class Caller:
    """Who calls (`Actor.from_principal` of the validated access token) and whether they may
    see personal data."""

    actor: Actor
    pii: bool

    @property
    def subject(self) -> str:
        return self.actor.subject or ""

    @property
    def client_id(self) -> str:
        return self.actor.client or ""


@dataclass(frozen=True)
class LookupResult:
    answer: LookupAnswer
    documents: list[dict[str, Any]]


class ApiServices:
    """The store, the keys, the KKI look-up and the publisher of one app."""

    def __init__(
        self,
        *,
        engine: Engine,
        sessions: sessionmaker[Session],
        cipher: FieldCipher,
        blind_index: BlindIndex,
        lookup: RegistryLookup,
        publisher: EventPublisher,
        clock: Clock = utc_now,
    ) -> None:
        self._clock = clock
        self._engine = engine
        self._sessions = sessions
        self._cipher = cipher
        self._blind_index = blind_index
        self._lookup = lookup
        self._publisher = publisher

    # -- health workers ---------------------------------------------------------------------

    def search_workers(
        self, caller: Caller, where: WorkerFilter, *, cursor: str | None, limit: int
    ) -> Page:
        with self._sessions.begin() as session:
            page = self._directory(session).search(
                where, cursor=cursor, limit=limit, clear=caller.pii
            )
            record_audit(
                session,
                caller.actor,
                WORKER_LIST.action,
                WORKER_LIST.resource_type,
                fields=SUMMARY_FIELDS if page.items else (),
                detail={
                    "masked": not caller.pii,
                    "count": len(page.items),
                    "worker_ids": [item["id"] for item in page.items],
                },
            )
        return page

    def find_worker_by_nik(self, caller: Caller, nik: str) -> list[dict[str, Any]]:
        with self._sessions.begin() as session:
            found = self._directory(session).find_by_nik(nik, clear=caller.pii)
            record_audit(
                session,
                caller.actor,
                WORKER_BY_NIK.action,
                WORKER_BY_NIK.resource_type,
                resource_id=None if found is None else found["id"],
                fields=("nik", *(SUMMARY_FIELDS if found else ())),
                detail={
                    "masked": not caller.pii,
                    "found": found is not None,
                    **nik_reference(self._blind_index, nik),
                },
            )
        return [] if found is None else [found]

    def worker(self, caller: Caller, worker_id: uuid.UUID) -> dict[str, Any]:
        """One worker in full; `WorkerNotFound` (audited as a read that found nothing).

        On PostgreSQL in two round trips, in autocommit: the read is one statement (its own
        snapshot), the audit entry one more that commits as it returns (`record_audit_alone`),
        before the document is handed back; no BEGIN, no COMMIT. When the entry cannot be
        appended in one statement (rare: see `record_audit_alone`) it is appended in a
        transaction, still before the document is handed back.
        """
        if self._engine.dialect.name == "postgresql":
            return self._worker_in_autocommit(caller, worker_id)
        try:
            with self._sessions.begin() as session:
                document = self._directory(session).worker(worker_id, clear=caller.pii)
                self._audit_worker_read(session, caller, worker_id, found=True)
        except WorkerNotFound:
            with self._sessions.begin() as session:
                self._audit_worker_read(session, caller, worker_id, found=False)
            raise
        return document

    def _worker_in_autocommit(self, caller: Caller, worker_id: uuid.UUID) -> dict[str, Any]:
        document: dict[str, Any] | None = None
        with self._sessions() as session:
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            with contextlib.suppress(WorkerNotFound):
                document = self._directory(session).worker(worker_id, clear=caller.pii)
            found = document is not None
            appended = record_audit_alone(
                session, caller.actor, **self._worker_read(caller, worker_id, found=found)
            )
        if appended is None:
            with self._sessions.begin() as session:
                self._audit_worker_read(session, caller, worker_id, found=found)
        if document is None:
            raise WorkerNotFound(f"no health worker {worker_id}")
        return document

    def _audit_worker_read(
        self, session: Session, caller: Caller, worker_id: uuid.UUID, *, found: bool
    ) -> None:
        record_audit(session, caller.actor, **self._worker_read(caller, worker_id, found=found))

    @staticmethod
    def _worker_read(caller: Caller, worker_id: uuid.UUID, *, found: bool) -> dict[str, Any]:
        """The audit entry of a read of one worker, but its actor."""
        return {
            "action": WORKER_DETAIL.action,
            "resource_type": WORKER_DETAIL.resource_type,
            "resource_id": str(worker_id),
            "fields": SUMMARY_FIELDS if found else (),
            "detail": {"masked": not caller.pii, "found": found},
        }

    def findings(
        self,
        caller: Caller,
        *,
        cursor: str | None,
        limit: int,
        open_only: bool,
        rule: str | None = None,
    ) -> Page:
        """Findings about workers (no personal values, but about persons): audited like a list."""
        with self._sessions.begin() as session:
            page = self._directory(session).findings(
                cursor=cursor, limit=limit, open_only=open_only, rule=rule
            )
            record_audit(
                session,
                caller.actor,
                FINDING_LIST.action,
                FINDING_LIST.resource_type,
                detail={
                    "count": len(page.items),
                    "worker_ids": sorted({item["worker_id"] for item in page.items}),
                },
            )
        return page

    def lookup(self, caller: Caller, *, str_number: str | None, nik: str | None) -> LookupResult:
        """Live at KKI, else the stored copy; `RegistryLookup` audits the caller's read,
        whatever comes of it."""
        if str_number is not None:
            answer = self._lookup.by_str(
                str_number, actor=caller.actor, decrypt=True, masked=not caller.pii
            )
        elif nik is not None:
            answer = self._lookup.by_nik(
                nik, actor=caller.actor, decrypt=True, masked=not caller.pii
            )
        else:
            raise ValueError("give str_number or nik")
        documents = [_registration(r, clear=caller.pii) for r in answer.registrations]
        return LookupResult(answer, documents)

    def refused(self, actor: Actor, read: Read, detail: Mapping[str, Any]) -> None:
        """The audit entry of a read refused before it began (a scope missing, a rate limit)."""
        with self._sessions.begin() as session:
            record_audit(
                session, actor, read.action, read.resource_type, outcome="denied", detail=detail
            )

    # -- sync runs --------------------------------------------------------------------------

    def sync_runs(self, *, system: str | None, cursor: str | None, limit: int) -> Page:
        with self._sessions() as session:
            return listings.sync_runs(session, system=system, cursor=cursor, limit=limit)

    def sync_run(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        with self._sessions() as session:
            return listings.sync_run(session, run_id)

    def start_sync(self, caller: Caller, system: str, *, full: bool) -> dict[str, Any]:
        """Record a requested run of `system` for the scheduler; the run's document.

        `hf-adapter schedule` starts it within its poll interval, in its own process, so the
        run does not depend on this web worker. `SyncInProgress` when a run of `system` is
        already requested or running, `ConnectionDisabled` when the connection is off; both
        are audited as refused. The request and its audit entry commit together.
        """
        try:
            with self._sessions.begin() as session:
                request = request_run(
                    session,
                    self._engine,
                    system,
                    full=full,
                    requested_by=caller.subject,
                    now=self._clock(),
                )
                document = listings.sync_request_document(request)
                record_audit(
                    session,
                    caller.actor,
                    "sync.start",
                    "sync_run",
                    resource_id=document["id"],
                    detail={"system": system, "full": full},
                )
        except (SyncInProgress, ConnectionDisabled):
            self._audit_sync(caller, system, full)
            raise
        except IntegrityError:
            # Another request of `system` committed between the check and this insert.
            with self._sessions() as session:
                waiting = waiting_request(session, system)
            if waiting is None:
                raise
            self._audit_sync(caller, system, full)
            raise SyncInProgress(system, waiting.run_id, "requested") from None
        return document

    def _audit_sync(self, caller: Caller, system: str, full: bool) -> None:
        """The refused request's audit entry (nothing else was written)."""
        with self._sessions.begin() as session:
            record_audit(
                session,
                caller.actor,
                "sync.start",
                "sync_run",
                outcome="denied",
                detail={"system": system, "full": full},
            )

    # -- integrations -----------------------------------------------------------------------

    def integrations(self) -> list[dict[str, Any]]:
        with self._sessions.begin() as session:
            now = self._clock()
            return [integration_document(state, now) for state in list_connections(session)]

    def set_integration(self, caller: Caller, system: str, *, enabled: bool) -> dict[str, Any]:
        with self._sessions.begin() as session:
            state = set_enabled(session, system, enabled, clock=self._clock)
            record_audit(
                session,
                caller.actor,
                "integration.update",
                "integration",
                resource_id=system,
                detail={"enabled": enabled},
            )
            return integration_document(state, self._clock())

    def integration_logs(self, system: str, *, limit: int) -> dict[str, Any]:
        with self._sessions() as session:
            runs = listings.sync_runs(session, system=system, cursor=None, limit=limit)
            events = listings.webhook_events(
                session, state="failed", source=system, cursor=None, limit=limit
            )
        return {"system": system, "sync_runs": runs.items, "failed_events": events.items}

    # -- audit trail ------------------------------------------------------------------------

    def audit_events(
        self, where: listings.AuditFilter, *, cursor: str | None, limit: int
    ) -> tuple[Page, int]:
        """The sealed trail, in chain order, and how many committed entries are still pending
        (not listed). What is pending is sealed first, within a budget: never waiting for another
        sealer (it is sealing them), at most `LISTING_SEAL_BATCHES` batches."""
        try:
            seal_all(self._sessions, wait=False, max_batches=LISTING_SEAL_BATCHES)
        except SealingBlocked as exc:
            # What is sealed is still listed, the pending ones counted (X-Audit-Pending).
            log.warning("audit listing: %s", exc)
        except OperationalError as exc:
            # SQLite's "database is locked" (another writer past the busy timeout) says the
            # same, without PostgreSQL's lock_not_available.
            if self._engine.dialect.name != "sqlite":
                raise
            log.warning("audit listing: the trail was not sealed first (%s)", exc.orig)
        with self._sessions() as session:
            page = listings.audit_events(session, where, cursor=cursor, limit=limit)
            return page, pending_count(session)

    def _directory(self, session: Session) -> WorkforceDirectory:
        return WorkforceDirectory(session, self._cipher, self._blind_index, self._clock)


def integration_document(state: ConnectionState, now: dt.datetime) -> dict[str, Any]:
    return {
        "system": state.system,
        "enabled": state.enabled,
        "status": state.status,
        "breaker_state": state.breaker_state,
        "last_success_at": listings.iso(state.last_success_at),
        "last_failure_at": listings.iso(state.last_failure_at),
        "last_error": state.last_error,
        "lag_s": None if (lag := state.lag_s(now)) is None else round(lag, 3),
        "consecutive_failures": state.consecutive_failures,
        "error_count": state.error_count,
        "next_attempt_at": listings.iso(state.next_attempt_at),
    }


def _registration(record: RegistrationRecord, *, clear: bool) -> dict[str, Any]:
    name = record.kki_full_name
    return {
        "str_number": record.str_number,
        "worker_id": str(record.worker_id),
        "status": record.status,
        "status_reason": record.status_reason,
        "valid_until": None if record.valid_until is None else record.valid_until.isoformat(),
        "registration_type": record.registration_type,
        "profession": record.profession,
        "kompetensi": record.kompetensi,
        "issued_at": record.issued_at.isoformat(),
        "holder_name": name if clear else withhold(name),
        "masked": not clear,
        "source_version": record.source_version,
        "fetched_at": listings.iso(record.fetched_at),
    }


__all__ = ["ApiServices", "Caller", "SyncInProgress"]
