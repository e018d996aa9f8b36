"""What the API's views call: each read of personal data or admin action with its audit entry.

Every method opens one transaction, does its read or write and appends the audit entry in it,
so both commit together. Actors come from the access token (subject and client), never from
the request body. No web framework here.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from adapter.api import listings
from adapter.clients import HttpKkiClient, HttpSisdmkClient
from adapter.clock import Clock, utc_now
from adapter.errors import AdapterError
from adapter.observability.audit import Actor, record_audit
from adapter.queue.messages import EventPublisher
from adapter.sdmk_integration_manager import ConnectionState, list_connections, set_enabled
from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.locks import LockHeld
from adapter.store.models import SyncRun
from adapter.store.personal_fields import PERSON_IDENTITY_FIELDS
from adapter.store.repositories import HealthWorkerRepository, RegistrationRecord
from adapter.sync.lookup import LookupAnswer, RegistryLookup
from adapter.sync.service import sync_system
from adapter.workforce.directory import Page, WorkerFilter, WorkforceDirectory, mask_name

# The personal fields of a worker summary (in clear or masked), as the audit trail names them.
SUMMARY_FIELDS: Final = PERSON_IDENTITY_FIELDS
WORKER_RESOURCE: Final = "health_worker"
# How long POST /sync-runs waits for the background run to show up before answering.
SYNC_START_TIMEOUT_S: Final = 15.0
_POLL_S: Final = 0.02


class SyncDidNotStart(AdapterError):
    default_reason = "sync_not_started"


@dataclass(frozen=True)
class Caller:
    """Who calls, from the validated access token, and whether they may see personal data."""

    subject: str
    client_id: str
    pii: bool

    @property
    def actor(self) -> Actor:
        # A client-credentials token speaks for a service account, anything else for a person.
        service = self.subject == self.client_id or self.subject.startswith("service-account-")
        return Actor("service" if service else "user", self.subject, self.client_id)


@dataclass(frozen=True)
class LookupResult:
    answer: LookupAnswer
    documents: list[dict[str, Any]]


SyncClientFactory = Callable[[str], HttpKkiClient | HttpSisdmkClient]


class ApiServices:
    """The store, the keys, the KKI look-up, the publisher and the sync starter of one app."""

    def __init__(
        self,
        *,
        engine: Engine,
        sessions: sessionmaker[Session],
        cipher: FieldCipher,
        blind_index: BlindIndex,
        lookup: RegistryLookup,
        publisher: EventPublisher,
        sync_client: SyncClientFactory,
        clock: Clock = utc_now,
    ) -> None:
        self._clock = clock
        self._engine = engine
        self._sessions = sessions
        self._cipher = cipher
        self._blind_index = blind_index
        self._lookup = lookup
        self._publisher = publisher
        self._sync_client = sync_client

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
                "healthworker.list",
                WORKER_RESOURCE,
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
                "healthworker.search_by_nik",
                WORKER_RESOURCE,
                resource_id=None if found is None else found["id"],
                fields=("nik", *(SUMMARY_FIELDS if found else ())),
                detail={"masked": not caller.pii, "found": found is not None},
            )
        return [] if found is None else [found]

    def worker(self, caller: Caller, worker_id: uuid.UUID) -> dict[str, Any]:
        with self._sessions.begin() as session:
            document = self._directory(session).worker(worker_id, clear=caller.pii)
            record_audit(
                session,
                caller.actor,
                "healthworker.read",
                WORKER_RESOURCE,
                resource_id=str(worker_id),
                fields=SUMMARY_FIELDS,
                detail={"masked": not caller.pii},
            )
        return document

    def findings(
        self, *, cursor: str | None, limit: int, open_only: bool, rule: str | None = None
    ) -> Page:
        with self._sessions() as session:
            return self._directory(session).findings(
                cursor=cursor, limit=limit, open_only=open_only, rule=rule
            )

    def lookup(self, caller: Caller, *, str_number: str | None, nik: str | None) -> LookupResult:
        """Live at KKI, else the stored copy; the caller's read is audited once answered."""
        if str_number is not None:
            answer = self._lookup.by_str(str_number, actor=caller.actor, decrypt=True)
        elif nik is not None:
            answer = self._lookup.by_nik(nik, actor=caller.actor, decrypt=True)
        else:
            raise ValueError("give str_number or nik")
        documents = [_registration(r, clear=caller.pii) for r in answer.registrations]
        with self._sessions.begin() as session:
            record_audit(
                session,
                caller.actor,
                "registration.lookup",
                "kki:registrations",
                resource_id=str_number,
                fields=("nik",) if nik is not None else ("full_name",),
                detail={
                    "by": "str_number" if str_number is not None else "nik",
                    "live": answer.live,
                    "masked": not caller.pii,
                    "worker_ids": sorted({d["worker_id"] for d in documents}),
                },
            )
        return LookupResult(answer, documents)

    # -- sync runs --------------------------------------------------------------------------

    def sync_runs(self, *, system: str | None, cursor: str | None, limit: int) -> Page:
        with self._sessions() as session:
            return listings.sync_runs(session, system=system, cursor=cursor, limit=limit)

    def sync_run(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        with self._sessions() as session:
            return listings.sync_run(session, run_id)

    def start_sync(self, caller: Caller, system: str, *, full: bool) -> dict[str, Any]:
        """Start a run in a background thread; its document once its row exists.

        `LockHeld` when a run of `system` is already going (here or in another process),
        `ConnectionDisabled` when the connection is off; both are audited as refused.
        """
        started_after = _latest_run_start(self._sessions, system)
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                with self._sync_client(system) as client:
                    outcome["result"] = sync_system(
                        system,
                        session_factory=self._sessions,
                        client=client,
                        repository_factory=lambda session: HealthWorkerRepository(
                            session, self._cipher, self._blind_index
                        ),
                        full=full,
                    )
            except AdapterError as error:  # LockHeld, ConnectionDisabled: the answer says so
                outcome["error"] = error
            finally:  # anything else ends the thread, and threading's excepthook logs it
                done.set()

        threading.Thread(target=run, name=f"api-sync-{system}", daemon=True).start()
        deadline = time.monotonic() + SYNC_START_TIMEOUT_S
        document: dict[str, Any] | None = None
        while document is None and time.monotonic() < deadline:
            finished = done.wait(_POLL_S)
            if "error" in outcome:
                self._audit_sync(caller, system, full, outcome="denied", run_id=None)
                raise outcome["error"]
            document = _run_started_after(self._sessions, system, started_after)
            if finished and document is None:
                break
        if document is None:
            raise SyncDidNotStart(f"the {system} sync did not start; see the log")
        self._audit_sync(caller, system, full, outcome="success", run_id=document["id"])
        return document

    def _audit_sync(
        self, caller: Caller, system: str, full: bool, *, outcome: str, run_id: str | None
    ) -> None:
        with self._sessions.begin() as session:
            record_audit(
                session,
                caller.actor,
                "sync.start",
                "sync_run",
                resource_id=run_id,
                outcome=outcome,
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

    def audit_events(self, where: listings.AuditFilter, *, cursor: str | None, limit: int) -> Page:
        with self._sessions() as session:
            return listings.audit_events(session, where, cursor=cursor, limit=limit)

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
        "holder_name": name if clear else mask_name(name),
        "masked": not clear,
        "source_version": record.source_version,
        "fetched_at": listings.iso(record.fetched_at),
    }


def _latest_run_start(sessions: sessionmaker[Session], system: str) -> Any:
    with sessions() as session:
        return session.scalar(
            select(SyncRun.started_at)
            .where(SyncRun.system == system)
            .order_by(SyncRun.started_at.desc())
            .limit(1)
        )


def _run_started_after(
    sessions: sessionmaker[Session], system: str, after: Any
) -> dict[str, Any] | None:
    query = select(SyncRun).where(SyncRun.system == system)
    if after is not None:
        query = query.where(SyncRun.started_at > after)
    with sessions() as session:
        row = session.scalars(query.order_by(SyncRun.started_at.desc()).limit(1)).first()
        return None if row is None else listings.sync_run_document(row)


__all__ = ["ApiServices", "Caller", "LockHeld"]
