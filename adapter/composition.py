"""The composition root: the adapter's services, built once from `Settings`.

Every entry point — the gunicorn app (`adapter.server`), ``hf-adapter worker``, ``schedule``,
``sync``, ``lookup``, ``events``, ``audit``, and the demo — builds one `Services` from its
settings and takes what it needs from it, so settings → engine → cipher → blind index →
repository → clients → sync / look-up / event processing / API services are wired here and
nowhere else. Building them reads which blind-index keys the stored digests are under, and
refuses a store with digests under a key not configured; nothing else is connected until it
is used; `close` releases what was opened.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import cached_property
from types import TracebackType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapter.api.services import ApiServices
from adapter.audit.actors import Actor
from adapter.audit.seal import Sealer
from adapter.clients import (
    ONE_QUICK_RETRY,
    ClientMetrics,
    HttpKkiClient,
    HttpSisdmkClient,
    client_from_settings,
)
from adapter.clock import Clock, utc_now
from adapter.lookup import RegistryLookup
from adapter.observability.event_metrics import EventMetrics
from adapter.observability.sync_metrics import SealerMetrics, SyncMetrics
from adapter.queue.alerts import DeadLetterAlerts
from adapter.queue.messages import EventPublisher
from adapter.queue.processor import EventProcessor
from adapter.queue.retry import RetrySchedule
from adapter.queue.wiring import publisher_from
from adapter.settings import Settings
from adapter.store import database
from adapter.store.crypto import BlindIndex, FieldCipher, KeyRing
from adapter.store.privileges import check_runtime_rights
from adapter.store.reindex import check_stored_keys
from adapter.store.repositories import HealthWorkerRepository
from adapter.sync.service import SyncProgress, SyncRunResult, sync_system
from adapter.webhooks.event_admin import WebhookEventAdmin
from adapter.webhooks.receiver import WebhookReceiver


class Services:
    """What the adapter is made of, for one process. Build with `build_services`."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        publisher: EventPublisher | None = None,
        clock: Clock = utc_now,
        pool_size: int = database.PG_POOL_SIZE,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._engine = engine
        self._pool_size = pool_size
        self._owns_engine = engine is None
        self._publisher = publisher
        self._owns_publisher = publisher is None
        self._closers: list[Callable[[], None]] = []

    # -- the store --------------------------------------------------------------------------

    @cached_property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = database.create_engine_from_settings(
                self.settings, pool_size=self._pool_size
            )
        return self._engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions that carry the audit keys, so whatever they write can be audited."""
        return database.session_factory(self.engine, audit_keys=self.audit_keys)

    @cached_property
    def audit_keys(self) -> KeyRing:
        return self.settings.audit_key_ring()

    @cached_property
    def cipher(self) -> FieldCipher:
        return self.settings.field_cipher()

    @cached_property
    def blind_index(self) -> BlindIndex:
        return self.settings.blind_index()

    def check_blind_index_keys(self) -> None:
        """`BlindIndexKeyError` when stored digests are under a blind-index key not configured
        (their look-ups would miss, and the next upsert would store the person twice)."""
        check_stored_keys(self.engine, self.blind_index)

    def repository(self, session: Session) -> HealthWorkerRepository:
        """The repository of health workers in `session` (it never commits)."""
        return HealthWorkerRepository(session, self.cipher, self.blind_index)

    # -- the sources ------------------------------------------------------------------------

    def client(
        self, system: str, *, metrics: ClientMetrics | None = None
    ) -> HttpKkiClient | HttpSisdmkClient:
        """A new HTTP client of `system`; the caller closes it (it is a context manager)."""
        return client_from_settings(system, self.settings, metrics=metrics)

    def kki_client(self, **overrides: Any) -> HttpKkiClient:
        """A new KKI client; `overrides` (policy, breaker …) for a caller with its own needs."""
        return HttpKkiClient.from_settings(self.settings, **overrides)

    def sisdmk_client(self, **overrides: Any) -> HttpSisdmkClient:
        return HttpSisdmkClient.from_settings(self.settings, **overrides)

    @cached_property
    def kki(self) -> HttpKkiClient:
        """The process's KKI client for look-ups (closed by `close`): one quick retry, and a
        Retry-After of more than 2 s ends the call, since a look-up KKI cannot answer now is
        served from the store (stale) instead of holding a request thread for minutes."""
        client = self.kki_client(policy=ONE_QUICK_RETRY)
        self._closers.append(client.close)
        return client

    # -- jobs -------------------------------------------------------------------------------

    def sync(
        self,
        system: str,
        *,
        full: bool = False,
        progress: Callable[[SyncProgress], None] | None = None,
        page_size: int | None = None,
        metrics: SyncMetrics | None = None,
        client_metrics: ClientMetrics | None = None,
        clock: Clock | None = None,
        run_id: uuid.UUID | None = None,
        still_wanted: Callable[[], bool] | None = None,
        started_by: Actor | None = None,
    ) -> SyncRunResult:
        """One batch sync of `system` (see `sync_system`), with a client opened for it;
        `run_id` adopts a run requested through the API, `started_by` names the operator who
        started it at the console. The run's and the client's metrics go to the default
        registry unless `metrics` and `client_metrics` are given."""
        extra: dict[str, Any] = {} if page_size is None else {"page_size": page_size}
        with self.client(system, metrics=client_metrics) as client:
            return sync_system(
                system,
                session_factory=self.sessions,
                client=client,
                repository_factory=self.repository,
                full=full,
                progress=progress,
                metrics=metrics,
                clock=clock if clock is not None else self.clock,
                run_id=run_id,
                still_wanted=still_wanted,
                started_by=started_by,
                **extra,
            )

    @cached_property
    def lookup(self) -> RegistryLookup:
        """Live KKI look-ups with the stored fallback, through the process's KKI client."""
        return RegistryLookup(
            self.kki, self.sessions, self.repository, self.blind_index, clock=self.clock
        )

    @cached_property
    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            self._publisher = publisher_from(self.settings)
        return self._publisher

    def event_processor(
        self,
        *,
        kki: HttpKkiClient,
        sisdmk: HttpSisdmkClient,
        metrics: EventMetrics,
        alerts: DeadLetterAlerts,
    ) -> EventProcessor:
        """The worker's processor; its clients carry the worker's own retry policy."""
        return EventProcessor(
            sessions=self.sessions,
            kki=kki,
            sisdmk=sisdmk,
            repository_factory=self.repository,
            schedule=RetrySchedule(
                self.settings.event_retry_delays(), self.settings.event_max_attempts
            ),
            delivery_limit=self.settings.broker_delivery_limit,
            metrics=metrics,
            alerts=alerts,
            batch_limit=self.settings.event_apply_batch,
        )

    @cached_property
    def api(self) -> ApiServices:
        """What the API's views call (one per app)."""
        return ApiServices(
            engine=self.engine,
            sessions=self.sessions,
            cipher=self.cipher,
            blind_index=self.blind_index,
            lookup=self.lookup,
            publisher=self.publisher,
            clock=self.clock,
        )

    def webhook_receiver(self, metrics: EventMetrics) -> WebhookReceiver:
        receiver = WebhookReceiver(
            settings=self.settings,
            sessions=self.sessions,
            publisher=self.publisher,
            metrics=metrics,
        )
        # Before the publisher closes: what is queued is committed and published first.
        self._closers.append(receiver.close)
        return receiver

    def event_admin(self, metrics: EventMetrics) -> WebhookEventAdmin:
        """List, show, replay and purge webhook events (the CLI's and the API's)."""
        return WebhookEventAdmin(
            sessions=self.sessions, publisher=self.publisher, metrics=metrics, clock=self.clock
        )

    def start_sealer(self) -> Sealer:
        """Seal the audit trail's pending entries in a thread of this process until `close`
        (`serve`'s workers, `worker`, `schedule`); one sealer at a time seals."""
        sealer = Sealer(self.sessions, lag=SealerMetrics.for_registry().lag).start()
        self._closers.append(sealer.stop)
        return sealer

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the clients and the publisher opened here, and the engine if made here."""
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        if self._owns_publisher and self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        if self._owns_engine and self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> Services:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def build_services(
    settings: Settings,
    *,
    engine: Engine | None = None,
    publisher: EventPublisher | None = None,
    clock: Clock = utc_now,
    check_keys: bool = True,
    check_temporary: bool = False,
    pool_size: int = database.PG_POOL_SIZE,
) -> Services:
    """The adapter's services for `settings`; `engine` and `publisher` when the caller has
    them already (a test's database, the app's publisher), else made from the settings, the
    engine with a pool of `pool_size` PostgreSQL connections.

    With `check_temporary` (the commands that write sync pages, and a worker whose batches
    may be as large), `MissingRightError` first if the role may not create the temporary
    tables such a page's merge needs (PostgreSQL). Unless `check_keys` is false (commands
    that never use the blind index: the re-index itself, the encryption-key rotation, the
    audit trail's), the stored digests' key ids are checked then: `BlindIndexKeyError` if one
    is not configured.
    """
    services = Services(
        settings, engine=engine, publisher=publisher, clock=clock, pool_size=pool_size
    )
    try:
        if check_temporary:
            check_runtime_rights(services.engine)  # read-only: before the key check records
        if check_keys:
            services.check_blind_index_keys()
    except BaseException:
        services.close()
        raise
    return services
