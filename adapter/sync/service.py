"""Batch sync of one system into the store: full or incremental, page by page, resumable.

Each page is upserted through the repositories and committed in ONE transaction together with
the checkpoint (the page's ``next_cursor`` and the newest ``updated_at`` seen), so a crash loses
at most the page in flight and the next run resumes right after the last committed page.
Records the store refuses are quarantined (encrypted, with a reason that names no value) and
do not stop the run. Every run leaves a ``sync_runs`` row with its counts and outcome.

Merge rules live in the repositories: SISDMK is authoritative for identity, employment and
education; KKI for registration, certification and training; where both speak of the same
person and disagree, an identity finding is recorded. This module counts the findings a run
opened.

No web framework here: the CLI and the scheduler call `sync_system`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from adapter.apply import (
    SOURCES,
    Origin,
    RecordRefused,
    SourceKind,
    apply_documents,
    created_meanwhile,
)
from adapter.audit import SYSTEM_SYNC, Actor, record_audit
from adapter.clients.errors import UpstreamError
from adapter.clients.http import MAX_PAGE_SIZE, Page
from adapter.clients.kki import KkiClient
from adapter.clients.sisdmk import SisdmkClient
from adapter.clock import Clock, utc_now
from adapter.errors import AdapterError
from adapter.observability.sync_metrics import RECORD_OUTCOMES, SyncMetrics
from adapter.observability.tracing import start_span
from adapter.sdmk_integration_manager import (
    ConnectionDisabled,
    breaker_state_of,
    connection_state,
    record_failure,
    record_success,
)
from adapter.store.crypto import encrypt_fields
from adapter.store.database import unusable_database
from adapter.store.locks import HeldLock, LockLost, exclusive
from adapter.store.models import (
    SYSTEMS,
    QuarantinedRecord,
    SyncCheckpoint,
    SyncRun,
)
from adapter.store.repositories import HealthWorkerRepository, UpsertResult
from adapter.sync.requests import take_request

log = logging.getLogger("adapter.sync")

System = Literal["kki", "sisdmk"]
PAGE_SIZE: Final = MAX_PAGE_SIZE
# Deadlock detected, serialization failure: a race with another writer, not the page's fault.
RACE_SQLSTATES: Final = frozenset({"40P01", "40001"})
_ABANDONED: Final = (
    "abandoned: the process ended without finishing this run (crash or kill); "
    "a later run resumed from its last committed page"
)


class SyncInterrupted(AdapterError):
    """The operator stopped the run (Ctrl-C, or SIGTERM at the console): what its committed
    pages wrote stays, and the next run resumes after them."""

    default_reason = "interrupted"

    def __init__(self) -> None:
        super().__init__("the run was interrupted (Ctrl-C or SIGTERM)")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM at the console) during a run, raised once the run is recorded as
    failed ("interrupted"); `result` is the run's account, for a summary."""

    def __init__(self, result: SyncRunResult) -> None:
        super().__init__("the sync run was interrupted")
        self.result = result


class NoLongerWanted(AdapterError):
    """Checked under the sync lock, the run's reason had gone (another process ran it)."""

    default_reason = "no_longer_wanted"

    def __init__(self, system: str) -> None:
        super().__init__(f"the {system} sync is no longer due: another process has just run it")


@dataclass
class SyncCounts:
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    # Identity findings the run's pages opened (not another writer's meanwhile).
    findings: int = 0

    def add(self, other: SyncCounts) -> None:
        self.fetched += other.fetched
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.findings += other.findings


@dataclass(frozen=True)
class SyncProgress:
    """Sent to the `progress` callback after each committed page."""

    system: str
    pages: int
    counts: SyncCounts
    elapsed_s: float


@dataclass(frozen=True)
class SyncRunResult:
    """What one run did. `error` is set (and `status` is ``failed``) when it stopped early."""

    run_id: uuid.UUID
    system: str
    mode: str
    status: str
    counts: SyncCounts
    findings: int
    pages: int
    duration_s: float
    resumed: bool
    error: str | None = None
    # The exception class that ended the run (e.g. ``UpstreamUnavailable``), for the caller's
    # advice on what to do next.
    error_type: str | None = None
    error_reason: str | None = None
    quarantined_ids: tuple[str, ...] = field(default=())

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def records_per_s(self) -> float:
        return self.counts.fetched / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class _Source:
    kind: SourceKind
    pages: Callable[[dt.datetime | None, str | None], Iterator[Page]]


def sync_system(
    system: str,
    *,
    session_factory: sessionmaker[Session],
    client: KkiClient | SisdmkClient,
    repository_factory: Callable[[Session], HealthWorkerRepository],
    full: bool = False,
    progress: Callable[[SyncProgress], None] | None = None,
    page_size: int = PAGE_SIZE,
    metrics: SyncMetrics | None = None,
    clock: Clock = utc_now,
    run_id: uuid.UUID | None = None,
    still_wanted: Callable[[], bool] | None = None,
    read_ahead: bool = True,
    started_by: Actor | None = None,
) -> SyncRunResult:
    """Sync every record of `system` changed since the checkpoint (all of them with `full`).

    `client` is a `KkiClient` for ``kki`` and a `SisdmkClient` for ``sisdmk``. Quarantined
    records keep their payload encrypted with the repository's cipher, and a keyed digest.
    The result says whether the run succeeded; failures are recorded, not raised. Two runs
    of one system never overlap, whatever process starts them: the second raises `LockHeld`.
    A disabled connection raises `ConnectionDisabled`. A run that cannot reach the system
    marks its connection degraded (the scheduler retries at its ``next_attempt_at``); `clock`
    dates the run and that retry, so a scheduler passes its own. With `run_id`, the run is
    the one requested through the API under that id (`adapter.sync.requests`): it keeps the
    id and who requested it, or `RunNotRequested` is raised when another process took it.
    `still_wanted` is asked once the lock is held (a scheduler's "is it still due?": the run
    another scheduler just finished makes it false); false raises `NoLongerWanted`. With
    `read_ahead` (the default) the next page is fetched while the current one is written;
    without it, each page is requested only after the one before has been committed.
    `started_by` (an operator at the console) is named by a `sync.start` audit entry in the
    transaction that creates the run, as an API request's caller is (`requested_by` stays the
    API's: the contract keeps it null for console runs).
    """
    if system not in SYSTEMS:
        raise ValueError(f"system must be one of {', '.join(SYSTEMS)}")
    engine = session_factory.kw.get("bind")
    if engine is None:
        raise ValueError("session_factory must be bound to an engine")
    with exclusive(engine, f"sync-{system}") as lock, start_span(f"sync {system}"):
        if still_wanted is not None and not still_wanted():
            raise NoLongerWanted(system)
        return _locked_sync(
            lock,
            system,
            session_factory,
            client,
            repository_factory,
            full=full,
            progress=progress,
            page_size=page_size,
            metrics=metrics if metrics is not None else SyncMetrics.for_registry(),
            clock=clock,
            run_id=run_id,
            read_ahead=read_ahead,
            started_by=started_by,
        )


def _locked_sync(
    lock: HeldLock,
    system: str,
    session_factory: sessionmaker[Session],
    client: KkiClient | SisdmkClient,
    repository_factory: Callable[[Session], HealthWorkerRepository],
    *,
    full: bool,
    progress: Callable[[SyncProgress], None] | None,
    page_size: int,
    metrics: SyncMetrics,
    clock: Clock,
    run_id: uuid.UUID | None,
    read_ahead: bool,
    started_by: Actor | None = None,
) -> SyncRunResult:
    source = _source(system, client, page_size)
    started = time.monotonic()
    started_at = clock()

    with session_factory() as session, session.begin():
        if not connection_state(session, system).enabled:
            raise ConnectionDisabled(system)
        # A run still marked running was ended without a chance to say so (killed, crashed),
        # or lost the lock with its connection and may still be writing: marked first, its
        # pages stop committing (`_record_counts`), and one committing now is waited for, so
        # the checkpoint read next is past it.
        session.execute(
            update(SyncRun)
            .where(SyncRun.system == system, SyncRun.status == "running")
            .values(status="failed", finished_at=started_at, error=_ABANDONED)
        )
        checkpoint = session.get(SyncCheckpoint, system)
        updated_since = None if full or checkpoint is None else checkpoint.updated_since
        cursor = None if full or checkpoint is None else checkpoint.cursor
        mode = "full" if full or checkpoint is None else "incremental"
        resumed = cursor is not None
        request = None if run_id is None else take_request(session, system, run_id)
        run = SyncRun(
            id=uuid.uuid4() if run_id is None else run_id,
            system=system,
            mode=mode,
            started_at=started_at,
            status="running",
            requested_at=None if request is None else request.requested_at,
            requested_by=None if request is None else request.requested_by,
        )
        session.add(run)
        if started_by is not None:
            session.flush()
            record_audit(
                session,
                started_by,
                "sync.start",
                "sync_run",
                resource_id=str(run.id),
                detail={"system": system, "full": full},
            )
    run_id = run.id
    log.info(
        "sync started",
        extra={"system": system, "mode": mode, "run_id": str(run_id), "resumed": resumed},
    )

    counts = SyncCounts()
    pages = 0
    quarantined: list[str] = []
    high_water = updated_since
    error: BaseException | None = None
    try:
        walk = source.pages(updated_since, cursor)
        for page in _read_ahead(walk) if read_ahead else walk:
            fetched_at = clock()
            page_counts, bad = _store_page_racing(
                lock,
                session_factory,
                repository_factory,
                source,
                system,
                page,
                fetched_at,
                run_id,
                high_water,
                counts,
                clock,
            )
            counts.add(page_counts)
            quarantined.extend(bad)
            high_water = _newest(page, high_water, not_after=fetched_at)
            pages += 1
            if progress is not None:
                progress(SyncProgress(system, pages, counts, time.monotonic() - started))
    except KeyboardInterrupt:
        # Recorded as a failed run, as any other end: the run is not left "running" (it was,
        # with a traceback and no summary), and its committed pages stand.
        error = SyncInterrupted()
        log.warning("sync interrupted", extra={"system": system, "run_id": str(run_id)})
    except Exception as exc:  # noqa: BLE001 - recorded on the run and returned, never lost
        error = exc
        where = {} if isinstance(exc, AdapterError | SQLAlchemyError) else {"where": _frames(exc)}
        log.warning(
            "sync failed",
            extra={"system": system, "run_id": str(run_id), "error": _describe(exc), **where},
        )

    findings = _finish(session_factory, system, client, run_id, counts, error, clock)
    status = "failed" if error is not None else "succeeded"
    duration = time.monotonic() - started
    _observe(metrics, system, mode, status, counts, findings, duration)
    try:
        with session_factory() as session:
            metrics.set_connection_status(system, connection_state(session, system).status)
    except SQLAlchemyError as exc:  # the database went away too: the run's result still stands
        log.warning("could not read %s's connection status: %s", system, _describe(exc))
    result = SyncRunResult(
        run_id=run_id,
        system=system,
        mode=mode,
        status=status,
        counts=counts,
        findings=findings,
        pages=pages,
        duration_s=duration,
        resumed=resumed,
        error=None if error is None else _describe(error),
        error_type=None if error is None else type(error).__name__,
        error_reason=_reason(error, session_factory),
        quarantined_ids=tuple(quarantined),
    )
    if isinstance(error, SyncInterrupted):
        # Recorded; the interrupt goes on to the caller (the console prints the run's summary
        # from it, `make demo` stops as on any Ctrl-C).
        raise RunInterrupted(result)
    return result


# -- one page -----------------------------------------------------------------------------


def _store_page(
    lock: HeldLock,
    session_factory: sessionmaker[Session],
    repository_factory: Callable[[Session], HealthWorkerRepository],
    source: _Source,
    system: str,
    page: Page,
    fetched_at: dt.datetime,
    run_id: uuid.UUID,
    high_water: dt.datetime | None,
    totals: SyncCounts,
    clock: Clock,
) -> tuple[SyncCounts, list[str]]:
    """Apply one page and commit it with the checkpoint; the page's counts and rejected ids.

    `apply_documents` writes the page (stored rows loaded and locked up front, one flush, one
    audit entry); a document older than its stored row is counted unchanged, not written.
    Records the contract refused arrive in `page.rejected` and go straight to quarantine.
    A record the store refuses rolls the page back; the page is replayed without it (a failed
    flush leaves the session unusable, and savepoints are unreliable on SQLite's driver),
    flushing after every record when the culprit is not yet known, and the record goes to
    quarantine in the same transaction.
    """
    rejected: dict[int, str] = {}
    collided: set[int] = set()  # records refused once for a key another writer created
    careful = False
    origin = Origin(SYSTEM_SYNC, "sync.write", {"run_id": str(run_id)})
    while True:
        kept = [index for index in range(len(page.items)) if index not in rejected]
        ids = [source.kind.source_id(page.items[i]) for i in rejected]
        ids += [source.kind.source_id(item.item) for item in page.rejected]
        with session_factory() as session:  # closing rolls back whatever was not committed
            repository = repository_factory(session)
            try:
                applied = apply_documents(
                    session,
                    repository,
                    system,
                    [page.items[index] for index in kept],
                    fetched_at=fetched_at,
                    origin=origin,
                    quarantined_ids=ids,
                    flush_each=careful,
                )
            except RecordRefused as refused:
                session.rollback()
                if refused.index is not None:
                    index = kept[refused.index]
                    if created_meanwhile(refused.cause) and index not in collided:
                        # The webhook worker created this record's person meanwhile: the page
                        # again reads and updates it. A second time it is the record's own.
                        collided.add(index)
                        continue
                    rejected[index] = _record_reason(refused.cause)
                elif careful:  # every record flushed alone, yet the page fails: not a record
                    raise refused.cause from None
                careful = True  # some record of the page broke a constraint: find it
                continue
            for index, reason in rejected.items():
                _quarantine(
                    session,
                    repository,
                    system,
                    source.kind,
                    page.items[index],
                    reason,
                    run_id,
                    fetched_at,
                )
            for item in page.rejected:
                _quarantine(
                    session,
                    repository,
                    system,
                    source.kind,
                    item.item,
                    f"contract_violation: {item.reason}",
                    run_id,
                    fetched_at,
                )
            counts = SyncCounts(
                fetched=page.received,
                created=applied.count(UpsertResult.CREATED),
                updated=applied.count(UpsertResult.UPDATED),
                # Superseded too: the store already held a newer version (the worker was quicker).
                unchanged=applied.count(UpsertResult.UNCHANGED, UpsertResult.SUPERSEDED),
                rejected=len(ids),
                findings=repository.findings_opened,
            )
            _advance(
                session,
                system,
                page,
                run_id,
                _newest(page, high_water, not_after=fetched_at),
                clock(),
            )
            if not _record_counts(session, run_id, totals, counts):
                # The fence: a run that took the lock since marked this one abandoned (in its
                # first transaction, before reading the checkpoint), so this page is not
                # written after its start, even when the lock went between `verify` and here.
                raise LockLost(lock.name)
            # Last, just before the commit: a run whose lock went with its connection stops
            # here rather than write beside a run that took the lock since.
            lock.verify()
            session.commit()
            return counts, ids


def _store_page_racing(*args: Any) -> tuple[SyncCounts, list[str]]:
    """`_store_page`, once more at once after a deadlock or serialization failure: another
    writer (the webhook worker, the other system's sync) created the same new people in another
    order. Nothing of the page was written (its session rolled back), and by now the other
    writer has committed, so the page reads those rows and updates them."""
    try:
        return _store_page(*args)
    except OperationalError as exc:
        state = getattr(exc.orig, "sqlstate", None)
        if state not in RACE_SQLSTATES:
            raise
        log.info("a page met another writer (%s); writing it again at once", state)
        return _store_page(*args)


def _quarantine(
    session: Session,
    repository: HealthWorkerRepository,
    system: str,
    source: SourceKind,
    doc: Any,
    reason: str,
    run_id: uuid.UUID,
    received_at: dt.datetime,
) -> None:
    row_id = uuid.uuid4()
    doc = doc if isinstance(doc, Mapping) else {"_": doc}  # a record that is not even an object
    clear = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    payload = encrypt_fields(
        repository.cipher, QuarantinedRecord.__tablename__, row_id, {"payload": clear}
    )["payload"]
    key = doc.get(source.key)
    session.add(
        QuarantinedRecord(
            id=row_id,
            system=system,
            resource=source.resource,
            source_id=None if key is None else str(key)[:64],
            reason=reason[:500],
            payload_hash=repository.payload_hash(doc),
            payload=payload,
            run_id=run_id,
            received_at=received_at,
        )
    )


def _advance(
    session: Session,
    system: str,
    page: Page,
    run_id: uuid.UUID,
    updated_since: dt.datetime | None,
    committed_at: dt.datetime,
) -> None:
    checkpoint = session.get(SyncCheckpoint, system)
    if checkpoint is None:
        checkpoint = SyncCheckpoint(system=system)
        session.add(checkpoint)
    checkpoint.updated_since = updated_since
    # None after the last page: the next run starts from `updated_since`, not mid-way.
    checkpoint.cursor = page.next_cursor
    checkpoint.run_id = run_id
    checkpoint.committed_at = committed_at


def _record_counts(
    session: Session, run_id: uuid.UUID, totals: SyncCounts, page: SyncCounts
) -> bool:
    """The run's counts with this page's; ``False`` when the run is no longer `running` (a run
    started since under the lock marked it abandoned). The row stays locked until the page
    commits, so such a run's start waits for this page and then reads its checkpoint."""
    written = session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.status == "running")
        .values(
            fetched=totals.fetched + page.fetched,
            created=totals.created + page.created,
            updated=totals.updated + page.updated,
            unchanged=totals.unchanged + page.unchanged,
            rejected=totals.rejected + page.rejected,
            # Every count, findings too: a run killed before `_finish` keeps what its committed
            # pages did (it showed findings 0).
            findings=totals.findings + page.findings,
        )
    )
    return cast(CursorResult[Any], written).rowcount == 1


def _finish(
    session_factory: sessionmaker[Session],
    system: str,
    client: KkiClient | SisdmkClient,
    run_id: uuid.UUID,
    counts: SyncCounts,
    error: BaseException | None,
    clock: Clock,
) -> int:
    """Close the run's row and update the connection; the identity findings the run opened
    (counted by its committed pages: the webhook worker's and the other system's sync's,
    opened meanwhile, are theirs)."""
    findings = counts.findings
    try:
        with session_factory() as session, session.begin():
            breaker = breaker_state_of(client)
            if error is None:
                record_success(session, system, breaker_state=breaker, clock=clock)
            elif isinstance(error, UpstreamError):
                record_failure(
                    session, system, _describe(error), breaker_state=breaker, clock=clock
                )
            session.execute(
                update(SyncRun)
                .where(SyncRun.id == run_id)
                .values(
                    status="failed" if error is not None else "succeeded",
                    finished_at=clock(),
                    fetched=counts.fetched,
                    created=counts.created,
                    updated=counts.updated,
                    unchanged=counts.unchanged,
                    rejected=counts.rejected,
                    findings=findings,
                    error=None if error is None else _describe(error)[:2000],
                )
            )
            return findings
    except SQLAlchemyError as exc:
        # The database went away too: the row stays "running" and the next run marks it.
        log.error("could not record the end of sync run %s: %s", run_id, _describe(exc))
        return 0


def _observe(
    metrics: SyncMetrics,
    system: str,
    mode: str,
    status: str,
    counts: SyncCounts,
    findings: int,
    duration_s: float,
) -> None:
    metrics.runs.labels(system, mode, status).inc()
    for outcome in RECORD_OUTCOMES:
        metrics.records.labels(system, outcome).inc(getattr(counts, outcome))
    metrics.findings.labels(system).inc(findings)
    metrics.duration.labels(system, status).observe(duration_s)
    if status == "succeeded":
        metrics.last_success.labels(system).set_to_current_time()


# -- sources ------------------------------------------------------------------------------


def _source(system: str, client: KkiClient | SisdmkClient, page_size: int) -> _Source:
    if system == "kki":
        kki = cast(KkiClient, client)
        return _Source(
            SOURCES[system],
            lambda since, cursor: kki.iter_registrations(since, page_size, cursor),
        )
    sisdmk = cast(SisdmkClient, client)
    return _Source(
        SOURCES[system],
        lambda since, cursor: sisdmk.iter_health_workers(since, page_size, cursor),
    )


def _read_ahead(pages: Iterator[Page]) -> Iterator[Page]:
    """`pages`, each fetched (and contract-checked) on a helper thread while the one before is
    written: HTTP and the database's round trips overlap instead of taking turns.

    At most one page waits ahead, so memory stays that of a few pages. The source's error
    arrives after the pages before it, as without read-ahead. When the consumer stops early
    (its page failed), the helper ends after the fetch in flight; nothing it read is written,
    and the checkpoint names the first page not committed.
    """
    ahead: queue.Queue[tuple[Page | None, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: tuple[Page | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put((page, None)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((None, exc))
            return
        put((None, None))

    # The helper runs in a copy of this context: the trace the requests belong to is ours.
    context = contextvars.copy_context()
    helper = threading.Thread(target=context.run, args=(produce,), name="sync-read-ahead")
    helper.start()
    try:
        while True:
            page, error = ahead.get()
            if error is not None:
                raise error
            if page is None:
                return
            yield page
    finally:
        stop.set()
        helper.join()


# -- helpers ------------------------------------------------------------------------------


def _newest(
    page: Page, current: dt.datetime | None, *, not_after: dt.datetime
) -> dt.datetime | None:
    """The newest `updated_at` of `page` and `current`, but never later than `not_after` (the
    page's fetch time): one record stamped years ahead (a source's clock, or a hostile source)
    would otherwise move the checkpoint there, and every later run would ask for changes since
    then and get none. Capped, such a record is only fetched again by the next run."""
    newest = current
    # The records the contract refused count too: they are quarantined with the page, and a
    # checkpoint stopping short of them fetched and quarantined them again at every run.
    refused = [r.item for r in page.rejected if isinstance(r.item, Mapping)]
    for item in [*page.items, *refused]:
        raw = item.get("updated_at")
        if raw is None:
            continue
        try:
            stamp = dt.datetime.fromisoformat(str(raw))
        except ValueError:
            continue
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        stamp = min(stamp, not_after)
        if newest is None or stamp > newest:
            newest = stamp
    return newest


def _record_reason(exc: BaseException) -> str:
    """A reason slug and field names only: exception messages can quote the refused value."""
    if isinstance(exc, KeyError):
        return f"missing_field: {str(exc.args[0])[:64] if exc.args else '?'}"
    if isinstance(exc, AdapterError):
        return f"{exc.reason}: {type(exc).__name__}"
    if isinstance(exc, IntegrityError | DataError):
        return f"database_rejected: {type(exc.orig).__name__ if exc.orig else type(exc).__name__}"
    return f"invalid_value: {type(exc).__name__}"


def _reason(error: BaseException | None, session_factory: sessionmaker[Session]) -> str | None:
    """The reason slug of what ended a run; for a database error, whether the database could
    not be used at all (``database_right``: the role lacks a right; a missing table is
    ``database_not_migrated`` or ``database_damaged``, told apart through the engine's URL as
    for every other command)."""
    if isinstance(error, DBAPIError):
        engine = session_factory.kw.get("bind")
        unusable = unusable_database(error, None if engine is None else engine.url)
        return None if unusable is None else unusable.reason
    return getattr(error, "reason", None)


def _describe(exc: BaseException) -> str:
    """An operator's one-line account of an error, without personal data or secrets."""
    if isinstance(exc, AdapterError):
        return f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        text = str(orig if orig is not None else exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else 'no details'}"
    return f'{type(exc).__name__} (unexpected; the log\'s "sync failed" line says where)'


def _frames(exc: BaseException) -> str:
    """Where an unexpected error was raised: the traceback's files, lines and code, without
    the exception's message (which may quote a value) or any variable."""
    frames = traceback.extract_tb(exc.__traceback__)[-8:]
    return " <- ".join(
        f"{Path(frame.filename).name}:{frame.lineno} {frame.name}: {(frame.line or '').strip()}"
        for frame in reversed(frames)
    )[:2000]
