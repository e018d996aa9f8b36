"""Live look-up of STR registrations at KKI, served from the store when KKI cannot answer.

A live answer is stored through the same repository code as the batch sync and returned as
fresh. When KKI is unreachable (down, 5xx after retries, rate limited, breaker open) or its
connection is disabled, the stored copy is returned marked stale with its age, and the
connection is marked degraded. No stored copy either: the upstream error is raised.

Every look-up leaves one ``registration.lookup`` entry in the audit trail in the asker's name,
whatever came of it: found, found nothing, or KKI's error. A NIK is named by its blind-index
digest only.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.orm import Session, sessionmaker

from adapter.apply import Origin, RecordRefused, apply_documents
from adapter.audit import Actor, nik_reference, record_audit, str_reference
from adapter.clients.errors import NotFound, UpstreamError, UpstreamRateLimited, UpstreamUnavailable
from adapter.clients.kki import KkiClient
from adapter.clock import Clock, utc_now
from adapter.observability.sync_metrics import SyncMetrics
from adapter.sdmk_integration_manager import ConnectionDisabled, connection_state, record_outcome
from adapter.store.crypto import BlindIndex
from adapter.store.repositories import HealthWorkerRepository, RegistrationRecord

SYSTEM: Final = "kki"
# KKI could not answer: serve what we know. Other errors (a contract violation, 404, 401)
# are answers, and are raised.
UNREACHABLE: Final = (UpstreamUnavailable, UpstreamRateLimited)
LOOKUP_ACTION: Final = "registration.lookup"
LOOKUP_RESOURCE: Final = "kki:registrations"
# What a NIK looks like, and an old KKI STR number too: the two cannot be told apart.
_SIXTEEN_DIGITS: Final = re.compile(r"[0-9]{16}")


@dataclass(frozen=True)
class LookupAnswer:
    """Registrations found, and whether they come from KKI just now or from the store."""

    registrations: tuple[RegistrationRecord, ...]
    live: bool
    # Why the stored copy was served (the error's reason slug), None for a live answer.
    stale_reason: str | None = None

    @property
    def stale(self) -> bool:
        return not self.live

    @property
    def fetched_at(self) -> dt.datetime | None:
        """When the oldest of the registrations was fetched from KKI."""
        stamps = [registration.fetched_at for registration in self.registrations]
        return min(stamps) if stamps else None

    def age_s(self, now: dt.datetime | None = None) -> float | None:
        """Seconds since `fetched_at` (0 for a live answer)."""
        fetched = self.fetched_at
        if self.live or fetched is None:
            return 0.0 if self.live else None
        return ((now or dt.datetime.now(dt.UTC)) - fetched).total_seconds()


class RegistryLookup:
    """Look-ups by STR number or by NIK, live when KKI answers and from the store otherwise.

    A live answer is written through `apply_documents` in the name of `actor` (the API's
    caller, the CLI's operator), so the refresh of the store is audited as theirs; the look-up
    itself is audited once more as their read, whatever its outcome.
    """

    def __init__(
        self,
        client: KkiClient,
        session_factory: sessionmaker[Session],
        repository_factory: Callable[[Session], HealthWorkerRepository],
        blind_index: BlindIndex,
        metrics: SyncMetrics | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._client = client
        self._sessions = session_factory
        self._repositories = repository_factory
        self._blind_index = blind_index
        self._metrics = metrics if metrics is not None else SyncMetrics.for_registry()
        self._clock = clock

    def by_str(
        self, str_number: str, *, actor: Actor, decrypt: bool = False, masked: bool = True
    ) -> LookupAnswer:
        """The registration with this STR number; `NotFound` when KKI (or the store) has none.

        `masked`: whether the door withholds the holder's name from whoever asked (the audit
        entry says so); `decrypt` whether the records carry it in clear for the door to show.
        """
        return self._audited(
            lambda: self._lookup(
                lambda: [self._client.get_registration(str_number)],
                lambda repository: _one(repository.registration(str_number, decrypt=decrypt)),
                actor=actor,
                by="str_number",
                decrypt=decrypt,
            ),
            actor,
            resource_id=None,
            fields=(),
            detail={"by": "str_number", "masked": masked},
            decrypt=decrypt,
            asked=str_number,
        )

    def by_nik(
        self, nik: str, *, actor: Actor, decrypt: bool = False, masked: bool = True
    ) -> LookupAnswer:
        """Every registration KKI holds for this NIK (none is an empty answer, not an error)."""
        return self._audited(
            lambda: self._lookup(
                lambda: self._client.lookup_by_nik(nik),
                lambda repository: repository.registrations_of_nik(nik, decrypt=decrypt),
                actor=actor,
                by="nik",
                decrypt=decrypt,
            ),
            actor,
            resource_id=None,
            fields=("nik",),
            detail={"by": "nik", "masked": masked, **nik_reference(self._blind_index, nik)},
            decrypt=decrypt,
        )

    def _audited(
        self,
        look_up: Callable[[], LookupAnswer],
        actor: Actor,
        *,
        resource_id: str | None,
        fields: Iterable[str],
        detail: dict[str, Any],
        decrypt: bool,
        asked: str | None = None,
    ) -> LookupAnswer:
        """`look_up()`, and its one audit entry: found, nothing found, or why KKI gave no answer
        (the error is raised after its entry commits).

        `asked`: the STR number asked for. It is the entry's resource id only when a
        registration answered to it; otherwise the entry names it by its blind-index digest
        (`str_digest`), since what was typed may be a NIK (old KKI STR numbers are 16 digits
        too) and the trail must not keep one in clear.
        """
        if asked is not None:
            detail = detail | str_reference(self._blind_index, asked)
            if _SIXTEEN_DIGITS.fullmatch(asked):
                # NIK-shaped (an old KKI STR number is too): also under its NIK digest, so a
                # search of the trail for a person's NIK finds this look-up.
                detail = detail | nik_reference(self._blind_index, asked)
        try:
            answer = look_up()
        except NotFound as exc:
            self._audit(actor, resource_id, fields, detail | {"found": False, "reason": exc.reason})
            raise
        except (UpstreamError, RecordRefused) as exc:
            self._audit(actor, resource_id, fields, detail | {"reason": exc.reason}, "error")
            raise
        except Exception as exc:
            # Anything else (the store failing under it, a bug): the attempt is still on the
            # trail, named by its type only (a message could hold a value).
            self._audit(
                actor, resource_id, fields, detail | {"reason": type(exc).__name__}, "error"
            )
            raise
        found = bool(answer.registrations)
        if found and asked is not None:
            resource_id = asked  # a registration's STR number: it names the resource read
        self._audit(
            actor,
            resource_id,
            (*fields, "full_name") if found and decrypt else fields,
            detail
            | {
                "found": found,
                "live": answer.live,
                "stale_reason": answer.stale_reason,
                "worker_ids": sorted({str(r.worker_id) for r in answer.registrations}),
            },
        )
        return answer

    def _audit(
        self,
        actor: Actor,
        resource_id: str | None,
        fields: Iterable[str],
        detail: dict[str, Any],
        outcome: str = "success",
    ) -> None:
        with self._sessions.begin() as session:
            record_audit(
                session,
                actor,
                LOOKUP_ACTION,
                LOOKUP_RESOURCE,
                resource_id=resource_id,
                fields=fields,
                outcome=outcome,
                detail=detail,
            )

    def _lookup(
        self,
        fetch: Callable[[], list[dict[str, object]]],
        stored: Callable[[HealthWorkerRepository], list[RegistrationRecord]],
        *,
        actor: Actor,
        by: str,
        decrypt: bool,
    ) -> LookupAnswer:
        with self._sessions() as session:
            enabled = connection_state(session, SYSTEM).enabled
        if not enabled:
            return self._stale(stored, "connection_disabled", None)
        try:
            documents = fetch()
        except UpstreamError as exc:
            with self._sessions.begin() as session:
                record_outcome(session, SYSTEM, self._client, exc, clock=self._clock)
            if isinstance(exc, UNREACHABLE):
                return self._stale(stored, exc.reason, exc)
            if isinstance(exc, NotFound):
                self._metrics.lookups.labels(SYSTEM, "miss").inc()
            raise
        with self._sessions.begin() as session:
            repository = self._repositories(session)
            try:
                apply_documents(
                    session,
                    repository,
                    SYSTEM,
                    documents,
                    fetched_at=self._clock(),
                    origin=Origin(actor, "lookup.refresh", {"by": by}),
                )
            except ConnectionDisabled:
                session.rollback()  # disabled while KKI answered: nothing of it is kept
                return self._stale(stored, "connection_disabled", None)
            record_outcome(session, SYSTEM, self._client, clock=self._clock)
            records = [
                record
                for document in documents
                for record in [
                    repository.registration(str(document["str_number"]), decrypt=decrypt)
                ]
                if record is not None
            ]
        self._metrics.lookups.labels(SYSTEM, "live").inc()
        return LookupAnswer(tuple(records), live=True)

    def _stale(
        self,
        stored: Callable[[HealthWorkerRepository], list[RegistrationRecord]],
        reason: str,
        error: UpstreamError | None,
    ) -> LookupAnswer:
        with self._sessions() as session:
            records = stored(self._repositories(session))
        if not records:
            # Nothing to serve in place of KKI's answer: an empty list would read as "not
            # registered", which nobody could know while KKI is not asked.
            self._metrics.lookups.labels(SYSTEM, "miss").inc()
            why = "the connection is disabled" if error is None else f"unreachable ({error.reason})"
            raise UpstreamUnavailable(
                f"{why} and the store holds no copy to serve meanwhile",
                system=SYSTEM,
                operation="lookup" if error is None else error.operation,
                reason="connection_disabled" if error is None else None,
            ) from error
        self._metrics.lookups.labels(SYSTEM, "stale").inc()
        return LookupAnswer(tuple(records), live=False, stale_reason=reason)


def _one(record: RegistrationRecord | None) -> list[RegistrationRecord]:
    return [] if record is None else [record]
