"""`hf-adapter sync --system kki|sisdmk [--full]`: wiring, a progress bar and a summary.

The progress bar goes to stderr, the summary table to stdout. Exit 0 when the run succeeded,
1 when it failed (the message says what to do next), 2 when it could not start.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Final

from prometheus_client import CollectorRegistry, write_to_textfile
from rich.console import Console
from rich.progress import (
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from adapter.audit import command_line_operator
from adapter.cli.consoles import table_console
from adapter.clients import ClientMetrics
from adapter.composition import build_services
from adapter.observability.sync_metrics import SyncMetrics
from adapter.settings import load_settings
from adapter.sync.service import PAGE_SIZE, RunInterrupted, SyncProgress, SyncRunResult

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1

_UNAVAILABLE: Final = frozenset({"UpstreamUnavailable", "CircuitOpen", "UpstreamRateLimited"})
_CREDENTIALS: Final = {
    "kki": "KKI_API_TOKEN",
    "sisdmk": "SISDMK_CLIENT_ID and SISDMK_CLIENT_SECRET",
}


class RateColumn(ProgressColumn):
    """Records per second over the run so far."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f} records/s", style="progress.data.speed")


def run(
    system: str, *, full: bool, page_size: int = PAGE_SIZE, metrics_file: Path | None = None
) -> int:
    services = build_services(load_settings(), check_temporary=True)
    # The run's metrics in a registry of their own, not the default one with the process's
    # (process_*, python_*): node_exporter's textfile collector serves every file beside its
    # own series, and those would clash with its own and with the other system's file.
    registry = CollectorRegistry()
    sync_metrics = SyncMetrics.for_registry(registry)
    sync_metrics.start_at_zero([system])  # this system's only: the collector merges the files
    client_metrics = ClientMetrics.for_registry(registry)
    stderr = Console(stderr=True)
    # SIGTERM at the console ends the run as Ctrl-C does: recorded as interrupted, summarised.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn(f"sync {system}"),
            TextColumn("{task.completed:,.0f} records, page {task.fields[pages]}"),
            RateColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
        ) as bar:
            task = bar.add_task(system, total=None, pages=0)

            def on_page(progress: SyncProgress) -> None:
                bar.update(task, completed=progress.counts.fetched, pages=progress.pages)

            try:
                result = services.sync(
                    system,
                    full=full,
                    progress=on_page,
                    page_size=page_size,
                    metrics=sync_metrics,
                    client_metrics=client_metrics,
                    started_by=command_line_operator(),
                )
            except RunInterrupted as interrupted:  # recorded as failed
                result = interrupted.result
    finally:
        signal.signal(signal.SIGTERM, previous)
        services.close()

    table_console().print(summary_table(result))
    if metrics_file is not None:
        # For node_exporter's textfile collector: a one-shot CLI run has no /metrics to scrape.
        # What the run did, not what is true now: the file is served unchanged until the next
        # run, so a connection's status and a breaker's state (a live process's, and the
        # scheduler's at every poll) would page on an outage long over.
        registry.unregister(sync_metrics.connection_status)
        registry.unregister(client_metrics.breaker_state)
        write_to_textfile(str(metrics_file), registry)
    if result.succeeded:
        return EXIT_OK
    print(f"hf-adapter: sync {system} failed: {result.error}", file=sys.stderr)
    print(f"hf-adapter: next step: {next_step(result)}", file=sys.stderr)
    return EXIT_FAILED


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def summary_table(result: SyncRunResult) -> Table:
    resumed = ", resumed" if result.resumed else ""
    table = Table(title=f"sync {result.system} ({result.mode}{resumed}): {result.status}")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    counts = result.counts
    rows = (
        ("fetched", f"{counts.fetched:,}"),
        ("created", f"{counts.created:,}"),
        ("updated", f"{counts.updated:,}"),
        ("unchanged", f"{counts.unchanged:,}"),
        ("rejected (quarantined)", f"{counts.rejected:,}"),
        ("identity findings", f"{result.findings:,}"),
        ("pages", f"{result.pages:,}"),
        ("duration", f"{result.duration_s:.1f} s"),
        ("records/s", f"{result.records_per_s:,.0f}"),
        ("run id", str(result.run_id)),
    )
    for name, value in rows:
        table.add_row(name, value)
    return table


def next_step(result: SyncRunResult) -> str:
    """What an operator should do about a failed run."""
    if result.pages:
        resume = (
            f"the next run resumes from page {result.pages + 1} "
            f"(after the {result.pages} page(s) this run committed)"
        )
    else:
        resume = "the next run starts from the same checkpoint (this run committed no page)"
    kind = result.error_type or ""
    if result.error_reason == "database_right":
        return (
            "the database role of DATABASE_URL lacks a right on the adapter's tables: as the "
            "tables' owner run `hf-adapter db grant --role ROLE --apply` (docs/operations.md, "
            f"Database roles), then rerun; {resume}"
        )
    if result.error_reason == "database_not_migrated":
        return f"run `hf-adapter db upgrade`, then rerun; {resume}"
    if result.error_reason == "database_damaged":
        return (
            "the database is at the newest migration but lacks a table or column of the "
            "adapter's: its schema is damaged (`hf-adapter db upgrade` cannot repair it); "
            "`hf-adapter db check` lists what differs, restore the database from a backup "
            f"(docs/operations.md, Backups), then rerun; {resume}"
        )
    if kind in _UNAVAILABLE:
        return f"{result.system} is unavailable; retry later; {resume}"
    if kind == "AuthenticationFailed":
        return f"check {_CREDENTIALS.get(result.system, 'the credentials')}, then rerun; {resume}"
    if kind == "ContractViolation":
        return (
            f"{result.system} answered outside its contract; report it to its operators with "
            f"the time of this run; {resume}"
        )
    if kind == "SyncInterrupted":
        return f"run the same command again; {resume}"
    if kind in {"OperationalError", "InterfaceError", "DatabaseUnavailableError"}:
        return f"check the database (DATABASE_URL) and rerun; {resume}"
    return f"see the log for details and rerun; if it fails again run with --full; {resume}"
