"""`hf-adapter schedule [--once]`: run the syncs requested through the API, and each system's
daily batch sync at its configured time.

Without `--once` it checks every SCHEDULE_POLL_S (5 s) until SIGINT/SIGTERM (a run in progress
finishes first). With `--once` it runs what is requested or due now and exits — for cron or a
Kubernetes CronJob. Either way it ends with a table of the runs it made.

With ``--metrics-port`` (not with ``--once``) it serves its Prometheus metrics: the syncs it
ran, and, refreshed every SCHEDULE_POLL_S on a thread of their own (so they stay current during
a long sync), when it last checked the store, how long each system's daily slot has waited
unstarted, and each system's last successful sync (read from the store, so right after a
restart and whichever process ran it). The alerts on them are in deploy/prometheus/alerts.yml.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Protocol

from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from adapter.cli.consoles import table_console
from adapter.cli.realtime import start_metrics_server
from adapter.clock import utc_now
from adapter.composition import build_services
from adapter.observability.sync_metrics import ScheduleMetrics, SyncMetrics
from adapter.settings import load_settings
from adapter.store.models import SYSTEMS
from adapter.sync.schedule import DailySchedule, Decision, Outcome
from adapter.sync.service import SyncRunResult

log = logging.getLogger("adapter.schedule")

EXIT_OK = 0
EXIT_FAILED = 1


def run(*, once: bool, metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> int:
    settings = load_settings()
    if metrics_port is not None:  # first: a port taken stops it before any work
        start_metrics_server(metrics_port, metrics_host)
        SyncMetrics.for_registry().start_at_zero(SYSTEMS)
    services = build_services(settings, check_temporary=True)
    services.start_sealer()
    clock = utc_now  # one clock for the schedule's decisions and the runs it starts

    def sync(
        system: str,
        *,
        full: bool = False,
        run_id: uuid.UUID | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> SyncRunResult:
        return services.sync(
            system, full=full, run_id=run_id, still_wanted=still_wanted, clock=clock
        )

    stop = threading.Event()
    schedule = DailySchedule(
        settings.daily_sync_times(),
        settings.sync_timezone,
        services.sessions,
        sync,
        clock,
        stopping=stop.is_set,
    )
    console = Console(stderr=True)
    outcomes: list[Outcome] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        times = ", ".join(
            f"{system} {when:%H:%M}" for system, when in settings.daily_sync_times().items()
        )
        console.print(f"schedule: {times} ({settings.sync_timezone})")
        if metrics_port is not None:
            # Its own thread: the gauges stay current while a long sync runs in this one.
            threading.Thread(
                target=_observe_until,
                args=(stop, schedule, settings.daily_sync_times(), settings.schedule_poll_s),
                name="schedule-metrics",
                daemon=True,
            ).start()
        while True:
            outcomes += poll(schedule, console, once=once, poll_s=settings.schedule_poll_s)
            if once or stop.wait(settings.schedule_poll_s):
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        services.close()
    table_console().print(
        summary(outcomes, [schedule.decide(s) for s in settings.daily_sync_times()])
    )
    failed = any(o.result is not None and not o.result.succeeded for o in outcomes)
    return EXIT_FAILED if failed else EXIT_OK


class Schedule(Protocol):
    def run_requested(self) -> list[Outcome]: ...

    def run_due(self) -> list[Outcome]: ...


def poll(schedule: Schedule, console: Console, *, once: bool, poll_s: float) -> list[Outcome]:
    """One look: the requested runs first (someone is waiting for them), then the due ones.

    A store that cannot be read (PostgreSQL restarting, failing over) ends the look, logged;
    a long-running scheduler looks again after `poll_s`, `--once` fails (cron sees the exit).
    """
    outcomes: list[Outcome] = []
    try:
        for due in (schedule.run_requested, schedule.run_due):
            for outcome in due():
                outcomes.append(outcome)
                console.print(_line(outcome))
    except SQLAlchemyError as exc:
        if once:
            raise
        log.warning(
            "scheduler could not read the store (%s); looking again in %.0f s",
            type(exc).__name__,
            poll_s,
        )
    return outcomes


def _observe_until(
    stop: threading.Event, schedule: DailySchedule, systems: Iterable[str], every_s: float
) -> None:
    """`observe` every `every_s` until `stop`; a failed round (the store unreachable) is logged
    and leaves the gauges as they were, so the poll timestamp ages and the alert fires."""
    while True:
        try:
            observe(schedule, systems)
        except SQLAlchemyError as exc:
            log.warning("scheduler metrics not updated: %s", type(exc).__name__)
        if stop.wait(every_s):
            return


def observe(schedule: DailySchedule, systems: Iterable[str]) -> None:
    """Set the scheduler's gauges (default registry) from the store, as of now."""
    metrics, sync_metrics = ScheduleMetrics.for_registry(), SyncMetrics.for_registry()
    for system in systems:
        metrics.overdue.labels(system).set(schedule.decide(system).overdue_s)
    for system, finished in schedule.last_successes().items():
        sync_metrics.last_success.labels(system).set(finished.timestamp())
    # The loop that starts requested runs may be held for hours by a long sync while this
    # thread's heartbeat stays fresh: how long a request has waited says so.
    oldest = schedule.oldest_request_at()
    waited = 0.0 if oldest is None else (schedule.now() - oldest).total_seconds()
    metrics.request_waiting.set(max(0.0, waited))
    for state in schedule.connections():
        # At every poll, whoever recorded it (a worker, a look-up, another scheduler): set only
        # at the end of this process's own runs, an outage after the day's sync went unseen
        # and a recovery another process saw paged on. A disabled connection has no status.
        sync_metrics.set_connection_status(state.system, state.status if state.enabled else "")
    metrics.polled.set_to_current_time()


def summary(outcomes: list[Outcome], decisions: list[Decision]) -> Table:
    table = Table(title=f"scheduled syncs: {len(outcomes)} run(s)")
    for column in ("system", "status", "fetched", "created", "updated", "rejected", "duration"):
        table.add_column(column, justify="right" if column not in ("system", "status") else "left")
    for outcome in outcomes:
        result = outcome.result
        if result is None:
            table.add_row(outcome.system, f"skipped: {outcome.skipped}", "", "", "", "", "")
            continue
        counts = result.counts
        table.add_row(
            outcome.system,
            result.status,
            f"{counts.fetched:,}",
            f"{counts.created:,}",
            f"{counts.updated:,}",
            f"{counts.rejected:,}",
            f"{result.duration_s:.1f} s",
        )
    if not outcomes:
        for decision in decisions:
            table.add_row(decision.system, f"not due: {decision.why}", *[""] * 5)
    return table


def _line(outcome: Outcome) -> str:
    if outcome.result is None:
        return f"{outcome.system}: skipped ({outcome.skipped})"
    result = outcome.result
    tail = "" if result.succeeded else f" — {result.error}"
    return f"{outcome.system}: {result.status}, {result.counts.fetched:,} records{tail}"
