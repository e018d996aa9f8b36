"""`hf-adapter worker`: wiring, a live status line, and a summary table when it stops.

Runs until SIGTERM or SIGINT, then finishes the events in hand (each acked after its commit).
The status line goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Final

from rich.console import Console
from rich.live import Live
from rich.table import Table

from adapter.cli.consoles import table_console
from adapter.cli.realtime import start_metrics_server
from adapter.clients import ONE_QUICK_RETRY, CircuitBreaker
from adapter.clients.http import verify_from
from adapter.composition import build_services
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.alerts import DeadLetterAlerts
from adapter.queue.embedded import EmbeddedQueue
from adapter.queue.rabbit import RabbitConsumer, RabbitPublisher
from adapter.queue.wiring import topology_from
from adapter.queue.worker import OutboxRelay, Worker, WorkerStats
from adapter.settings import load_settings
from adapter.store import database
from adapter.store.bulk import merged_from_temporary_table

EXIT_OK: Final = 0
# The queue retries with its own backoff: one quick retry inside the call is enough, and a
# Retry-After longer than a couple of seconds goes back to the queue instead of holding a thread.
WORKER_CALL_POLICY: Final = ONE_QUICK_RETRY
STATUS_REFRESH_PER_S: Final = 2
POOL_BESIDE_THREADS: Final = 6


def run(*, concurrency: int, metrics_port: int | None, metrics_host: str = "127.0.0.1") -> int:
    settings = load_settings()
    if metrics_port is not None:  # first: a port taken stops it before any work
        start_metrics_server(metrics_port, metrics_host)
    # One connection per applying thread, plus the outbox relay's, the depth sampler's, the
    # audit sealer's, the event reader's and one committing thread's per source (KKI, SISDMK):
    # the default pool is smaller than a busy worker, and a checkout beyond the pool opens a new
    # PostgreSQL connection (a server process) and closes it again.
    engine = database.create_engine_from_settings(
        settings, pool_size=concurrency + POOL_BESIDE_THREADS
    )
    # A batch of N events updates at most N rows of a table: a temporary table only from 64.
    merges = merged_from_temporary_table(settings.event_apply_batch)
    services = build_services(settings, engine=engine, check_temporary=merges)
    database.require_migrated(services.engine)
    database.check(services.engine)
    services.start_sealer()
    sessions = services.sessions
    metrics = EventMetrics.for_registry()
    alert_url = settings.alert_webhook_url
    alerts = DeadLetterAlerts(
        None if alert_url is None else alert_url.get_secret_value(),
        metrics,
        verify=verify_from(settings.ca_bundle),
    )
    kki = services.kki_client(
        policy=WORKER_CALL_POLICY,
        breaker=CircuitBreaker("kki", reset_timeout_s=settings.event_breaker_reset_s),
    )
    sisdmk = services.sisdmk_client(
        policy=WORKER_CALL_POLICY,
        breaker=CircuitBreaker("sisdmk", reset_timeout_s=settings.event_breaker_reset_s),
    )
    processor = services.event_processor(kki=kki, sisdmk=sisdmk, metrics=metrics, alerts=alerts)
    stats = WorkerStats()
    worker = Worker(
        processor=processor,
        sessions=sessions,
        metrics=metrics,
        concurrency=concurrency,
        stats=stats,
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)

    broker = "embedded queue (the database)"
    if settings.broker_url is not None:
        broker = f"RabbitMQ, queues {settings.broker_queue_prefix}.*"
    stderr = Console(stderr=True)
    stderr.print(f"hf-adapter worker: {broker}, {concurrency} threads; Ctrl-C stops")
    if settings.broker_url is not None:
        short = prefetch_shortfall(concurrency, settings.broker_prefetch)
        if short is not None:
            stderr.print(f"hf-adapter worker: warning: {short}", markup=False)
    done = threading.Event()
    try:
        with Live(
            _status(stats), console=stderr, refresh_per_second=STATUS_REFRESH_PER_S, transient=True
        ) as live:
            ticker = threading.Thread(
                target=_tick, args=(live, stats, done), name="hf-status", daemon=True
            )
            ticker.start()
            if settings.broker_url is None:
                worker.run_embedded(EmbeddedQueue(sessions, lease_s=settings.event_lease_s))
            else:
                url = settings.broker_url.get_secret_value()
                topology = topology_from(settings)
                publisher = RabbitPublisher(url, topology)
                worker.run_rabbit(
                    RabbitConsumer(url, topology, prefetch=settings.broker_prefetch),
                    publisher,
                    topology,
                    OutboxRelay(
                        sessions,
                        publisher,
                        republish_after_s=settings.event_republish_after_s,
                        metrics=metrics,
                        stats=stats,
                    ),
                )
    finally:
        done.set()
        processor.close()
        alerts.close()
        kki.close()
        sisdmk.close()
        services.close()
        engine.dispose()
    table_console().print(summary_table(stats))
    return EXIT_OK


def prefetch_shortfall(concurrency: int, prefetch: int) -> str | None:
    """What a BROKER_PREFETCH under `concurrency` costs, and what to set, or None: RabbitMQ
    hands a worker no more unacked messages than its prefetch, so threads beyond it stay idle."""
    if prefetch >= concurrency:
        return None
    return (
        f"BROKER_PREFETCH is {prefetch}, under --concurrency {concurrency}: at most {prefetch} "
        f"events are applied at once; set BROKER_PREFETCH to {concurrency} or more"
    )


def _tick(live: Live, stats: WorkerStats, done: threading.Event) -> None:
    while not done.wait(1 / STATUS_REFRESH_PER_S):
        live.update(_status(stats))


def _status(stats: WorkerStats) -> str:
    return (
        f"applied {stats.applied:,}  retried {stats.retried:,}  dead-lettered "
        f"{stats.dead_lettered:,}  skipped {stats.skipped:,}  relayed {stats.relayed:,}  "
        f"({stats.elapsed_s:,.0f} s)"
    )


def summary_table(stats: WorkerStats) -> Table:
    table = Table(title="worker stopped")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rate = stats.applied / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
    rows = [
        ("applied", f"{stats.applied:,}"),
        *((f"  {outcome}", f"{count:,}") for outcome, count in sorted(stats.by_outcome.items())),
        ("retries scheduled", f"{stats.retried:,}"),
        ("dead-lettered", f"{stats.dead_lettered:,}"),
        ("skipped (duplicate deliveries)", f"{stats.skipped:,}"),
        ("relayed from the outbox", f"{stats.relayed:,}"),
        ("ran for", f"{stats.elapsed_s:,.1f} s"),
        ("events/s", f"{rate:,.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
