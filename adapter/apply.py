"""`apply_documents`: the one function that writes source documents into the store.

Every change to a health worker — a batch sync page, a live look-up's answer, a webhook event
the worker fetched — goes through `apply_documents`, in the caller's transaction:

1. the connection to the source must be enabled (`ConnectionDisabled` otherwise), checked in
   the same transaction as the write, so an operator's "disable" stops all three doors;
2. each document is upserted by the repository (locked reads, versions never go backwards,
   identity reconciled, personal fields encrypted);
3. the writes are flushed, so a record the database refuses is known before anything else;
4. one audit entry names the actor (the sync run, the look-up's caller, the webhook event),
   the personal fields written and the ids of the records, with the current trace id.

The caller commits. How each entry point reaches the source, and what it does with a refused
record (quarantine, dead letter, an error to the caller), stays with the entry point.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from adapter.audit import Actor, record_audit
from adapter.errors import AdapterError, ConfigurationError, KeyNotFoundError
from adapter.sdmk_integration_manager import ConnectionDisabled, connection_state
from adapter.store.personal_fields import (
    REGISTRATION_PERSONAL_FIELDS,
    SISDMK_RECORD_PERSONAL_FIELDS,
)
from adapter.store.repositories import HealthWorkerRepository, UpsertResult

# Errors that condemn one record, not the whole batch: bad or missing fields, a value the
# database or an encrypted column refuses, an identity conflict.
RECORD_ERRORS: Final = (AdapterError, KeyError, ValueError, TypeError, IntegrityError, DataError)
# Adapter errors that say the adapter's settings cannot serve, not that a document is refused:
# a key missing from ENCRYPTION_KEYS (retired too early), a setting missing. They fail the page
# (the sync stops, says why and resumes there once fixed) or the event (tried again), and
# quarantine nothing: every record whose stored rows are under a retired key would otherwise
# go. A stored value that does not decrypt (damaged, or moved between rows) is not among them:
# no setting brings it back, so its record is quarantined and the run goes on.
NOT_A_RECORD: Final = (KeyNotFoundError, ConfigurationError)
WRITTEN: Final = (UpsertResult.CREATED, UpsertResult.UPDATED)
# PostgreSQL's unique_violation. It is reported only once the other inserter has committed (an
# insert waits for an uncommitted one), so a new transaction sees that row.
_UNIQUE_VIOLATION: Final = "23505"


def created_meanwhile(exc: BaseException) -> bool:
    """Whether `exc` is a unique key another transaction inserted and committed after this one
    read: the same new person (or record) written by two writers at once — the batch sync and
    the webhook worker, or two events. A new transaction reads that row and updates it."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == _UNIQUE_VIOLATION


@dataclass(frozen=True)
class SourceKind:
    """How one system's documents are keyed and written."""

    system: str
    resource: str
    key: str
    personal_fields: tuple[str, ...]
    prefetch: Callable[[HealthWorkerRepository, Sequence[Mapping[str, Any]]], None]
    upsert: Callable[[HealthWorkerRepository, Mapping[str, Any], dt.datetime], UpsertResult]

    def source_id(self, doc: Any) -> str:
        """The document's key as the audit trail and the quarantine name it (``?`` if none)."""
        key = doc.get(self.key) if isinstance(doc, Mapping) else None
        return str(key)[:64] if key is not None else "?"


SOURCES: Final[Mapping[str, SourceKind]] = {
    "kki": SourceKind(
        system="kki",
        resource="registrations",
        key="str_number",
        personal_fields=REGISTRATION_PERSONAL_FIELDS,
        prefetch=lambda repository, docs: repository.prefetch_kki(docs),
        upsert=lambda repository, doc, at: repository.upsert_registration_from_kki(
            doc, fetched_at=at
        ),
    ),
    "sisdmk": SourceKind(
        system="sisdmk",
        resource="health-workers",
        key="worker_id",
        personal_fields=SISDMK_RECORD_PERSONAL_FIELDS,
        prefetch=lambda repository, docs: repository.prefetch_sisdmk(docs),
        upsert=lambda repository, doc, at: repository.upsert_from_sisdmk(doc, fetched_at=at),
    ),
}


@dataclass(frozen=True)
class Origin:
    """Who brings the documents, as the audit entry records it.

    `action` is ``sync.write``, ``lookup.refresh`` or ``event.apply``; `detail` holds ids
    only (the run id, the event id), never personal values.
    """

    actor: Actor
    action: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Applied:
    """What `apply_documents` did, one result per document, in order."""

    results: tuple[UpsertResult, ...]
    written_ids: tuple[str, ...]

    def count(self, *results: UpsertResult) -> int:
        return sum(1 for result in self.results if result in results)


class RecordRefused(AdapterError):
    """A document the store refuses; `index` is its position, None when the flush of the whole
    batch failed and the culprit is not known (apply again with ``flush_each=True``)."""

    default_reason = "record_refused"

    def __init__(self, index: int | None, cause: BaseException) -> None:
        super().__init__(f"record refused: {type(cause).__name__}")
        self.index = index
        self.cause = cause


def apply_documents(
    session: Session,
    repository: HealthWorkerRepository,
    system: str,
    documents: Sequence[Mapping[str, Any]],
    *,
    fetched_at: dt.datetime,
    origin: Origin,
    quarantined_ids: Sequence[str] = (),
    flush_each: bool = False,
) -> Applied:
    """Write `documents` of `system` in `session`'s transaction, with one audit entry.

    Raises `ConnectionDisabled` (nothing written) when the connection is off, and
    `RecordRefused` when a document cannot be stored; the session must then be rolled back.
    `quarantined_ids` are the records the caller set aside in the same transaction: the audit
    entry lists them with the written ones. No entry is appended when nothing was written or
    quarantined (every document unchanged or superseded).
    """
    source = SOURCES[system]
    if not connection_state(session, system).enabled:
        raise ConnectionDisabled(system)
    removed_before = len(repository.workers_removed)
    source.prefetch(repository, documents)
    results: list[UpsertResult] = []
    for index, doc in enumerate(documents):
        try:
            results.append(source.upsert(repository, doc, fetched_at))
            if flush_each:
                repository.write_staged(last=False)
                session.flush()
        except NOT_A_RECORD:
            raise
        except RECORD_ERRORS as exc:
            raise RecordRefused(index, exc) from exc
    try:
        repository.write_staged()
        session.flush()
    except NOT_A_RECORD:
        raise
    except RECORD_ERRORS as exc:
        raise RecordRefused(None, exc) from exc
    written = tuple(
        source.source_id(doc)
        for doc, result in zip(documents, results, strict=True)
        if result in WRITTEN
    )
    removed = [str(worker_id) for worker_id in repository.workers_removed[removed_before:]]
    if written or quarantined_ids:
        detail: dict[str, Any] = {
            **origin.detail,
            "created": results.count(UpsertResult.CREATED),
            "updated": results.count(UpsertResult.UPDATED),
            "quarantined": len(quarantined_ids),
            "written_ids": list(written),
            "quarantined_ids": list(quarantined_ids),
        }
        if removed:
            # Workers only KKI knew, deleted when their last registration moved away.
            detail["removed_worker_ids"] = removed
        record_audit(
            session,
            origin.actor,
            origin.action,
            f"{system}:{source.resource}",
            fields=source.personal_fields,
            detail=detail,
        )
    return Applied(tuple(results), written)
