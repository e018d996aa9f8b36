"""`hf-adapter keys reindex`: recompute the stored blind-index digests under BLIND_INDEX_KEY.

Runs beside the service (which finds rows under either key while BLIND_INDEX_PREVIOUS_KEY is
set), in batches with progress on standard error and a summary table; SIGINT or SIGTERM stops
it after the current batch, and a run stopped or killed resumes where it stopped.
"""

from __future__ import annotations

import signal
import sys
import uuid
from types import FrameType
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from adapter.audit import command_line_operator
from adapter.cli.consoles import table_console
from adapter.composition import build_services
from adapter.settings import load_settings
from adapter.store import database
from adapter.store.reindex import BatchDone, ReindexReport, count_stale, reindex_blind_index

EXIT_OK: Final = 0
EXIT_PROBLEM: Final = 1


def run(*, batch_size: int) -> int:
    # The whole configuration is validated first: bad or missing keys stop here, exit 2. The
    # stored key ids are not checked: recomputing digests under another key is this command's job.
    services = build_services(load_settings(), check_keys=False)
    stop_requested: list[int] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)

    try:
        database.require_migrated(services.engine)
        database.check(services.engine)
        stale = count_stale(services.engine, services.blind_index)
        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
            with Progress(*columns, console=Console(stderr=True)) as bar:
                tasks = {name: bar.add_task(name, total=count) for name, count in stale.items()}

                def show(batch: BatchDone) -> None:
                    bar.update(tasks[batch.table], completed=batch.done, total=batch.total)

                report = reindex_blind_index(
                    services.engine,
                    services.sessions,
                    services.cipher,
                    services.blind_index,
                    actor=command_line_operator(),
                    batch_size=batch_size,
                    progress=show,
                    stop=lambda: bool(stop_requested),
                )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        services.close()
    return _summary(report, previous_key_set=len(services.blind_index.kids) > 1)


def _summary(report: ReindexReport, *, previous_key_set: bool) -> int:
    table = Table(title=f"blind-index digests under key {report.kid!r}")
    table.add_column("table")
    table.add_column("recomputed", justify="right")
    table.add_column("withdrawn", justify="right")
    table.add_column("conflicts", justify="right")
    table.add_column("undecryptable", justify="right")
    table.add_column("remaining", justify="right")
    for name, done in report.tables.items():
        table.add_row(
            name,
            str(done.rows),
            str(done.withdrawn),
            str(len(done.conflicts)),
            str(done.undecryptable_count),
            str(done.remaining),
        )
    console = table_console()
    console.print(table)
    console.print(
        f"{report.rows} rows in {report.batches} batches, {report.elapsed_s:.1f} s "
        f"({report.rows_per_second:.0f} rows/s)"
    )
    if report.interrupted:
        _error(f"interrupted; {report.remaining} rows left, run `hf-adapter keys reindex` again")
        return EXIT_PROBLEM
    if report.conflicts:
        _error(
            f"{len(report.conflicts)} worker(s) have the same NIK as another row already under "
            f"the new key (two rows for one person, stored while the old key was missing): "
            f"{_ids(report.conflicts)}; they stay under the old key, keep "
            "BLIND_INDEX_PREVIOUS_KEY set"
        )
        return EXIT_PROBLEM
    if report.undecryptable_count:
        shown = _ids(report.undecryptable)
        if report.undecryptable_count > len(report.undecryptable):
            shown = f"{shown} (of {report.undecryptable_count})"
        _error(
            f"{report.undecryptable_count} row(s) hold a value that does not decrypt: {shown}; "
            "they stay under the old key, keep BLIND_INDEX_PREVIOUS_KEY set. Most or all rows: "
            "an ENCRYPTION_KEYS secret is wrong (check it against the key that wrote them). A "
            "few: those values are damaged or moved between rows; restore them from a backup "
            "or let their source send them again. Then run `hf-adapter keys reindex` again"
        )
        return EXIT_PROBLEM
    if report.remaining:
        _error(
            f"{report.remaining} rows were locked by other transactions or written under the old "
            "key meanwhile (a process still without the new key?); run `hf-adapter keys reindex` "
            "again"
        )
        return EXIT_PROBLEM
    finished = f"every digest is under key {report.kid!r}"
    if previous_key_set:
        finished += "; BLIND_INDEX_PREVIOUS_KEY can be removed (then restart the services)"
    console.print(finished)
    return EXIT_OK


def _ids(rows: list[uuid.UUID]) -> str:
    """The first ten row ids, and how many more."""
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    return ", ".join(str(row) for row in rows[:10]) + more


def _error(message: str) -> None:
    print(f"hf-adapter: error: {message}", file=sys.stderr)
