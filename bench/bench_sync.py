"""Benchmark a full `hf-adapter sync` into PostgreSQL against PostgreSQL `COPY` of the same rows.

For each system and size: start the mock with N people, sync everything into a fresh database
with the real command (HTTP, contract checks, encryption, upserts, one commit per page) and
record records/s and the sync process's peak RSS. Baseline, in the same invocation: the rows
that sync wrote (already encrypted) are copied out and `COPY`-ed into an empty database with the
same schema — the fastest way PostgreSQL takes those rows; the ratio is sync / COPY.

    .venv/bin/python bench/bench_sync.py [--sizes 10000 100000] [--systems sisdmk kki]

Writes reports/bench-sync.json. Needs PostgreSQL at 127.0.0.1:5432 (trust, database `test`).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import run_measured  # noqa: E402
from harness import services  # noqa: E402
from harness.processes import start_mock  # noqa: E402

HF_ADAPTER = Path(sys.executable).parent / "hf-adapter"
# Tables a sync writes, parents first (COPY honours the foreign keys).
TABLES = {
    "sisdmk": ("sync_runs", "health_workers", "employments", "educations"),
    "kki": (
        "sync_runs",
        "health_workers",
        "registrations",
        "practice_licenses",
        "cpd_summaries",
        "trainings",
        "identity_findings",
    ),
}


@dataclass
class Result:
    system: str
    size: int
    sync_s: float
    sync_records_per_s: float
    peak_rss_mib: float
    rows_written: int
    copy_s: float
    copy_records_per_s: float
    # The second full sync after every stored record was marked stale (all updates).
    update_s: float | None = None
    update_records_per_s: float | None = None
    update_peak_rss_mib: float | None = None
    # The runs' own durations (sync_runs.started_at → finished_at): without the process's
    # start-up (imports, the contracts compiled) and exit.
    run_s: float | None = None
    update_run_s: float | None = None
    # CPU seconds of the sync process (user + system), start-up included.
    cpu_s: float | None = None
    update_cpu_s: float | None = None

    @property
    def ratio(self) -> float:
        return self.sync_records_per_s / self.copy_records_per_s

    @property
    def update_ratio(self) -> float | None:
        if self.update_records_per_s is None:
            return None
        return self.update_records_per_s / self.copy_records_per_s


def key() -> str:
    return f"bench:{base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip('=')}"


def fresh_database(name: str) -> str:
    admin_url = make_url(services.database_url())
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        services.drop_database(connection, name)
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


def environment(database_url: str, system: str, mock_url: str) -> dict[str, str]:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "ALLOW_INSECURE_HTTP": "true",
        "OIDC_ISSUER": "http://127.0.0.1:8080/realms/healthforce",
        "OIDC_AUDIENCE": "hf-adapter",
        "KKI_BASE_URL": mock_url if system == "kki" else "http://127.0.0.1:9",
        "KKI_API_TOKEN": "kki-dev-token",
        "SISDMK_BASE_URL": mock_url if system == "sisdmk" else "http://127.0.0.1:9",
        "SISDMK_CLIENT_ID": "sisdmk-dev-client",
        "SISDMK_CLIENT_SECRET": "sisdmk-dev-secret",
        "KKI_WEBHOOK_SECRET": secret,
        "SISDMK_WEBHOOK_SECRET": secret,
        "ENCRYPTION_KEYS": key(),
        "BLIND_INDEX_KEY": key(),
        "AUDIT_KEYS": key(),
        "LOG_LEVEL": "WARNING",
    }


def run_sync(env: dict[str, str], system: str) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of one
    `hf-adapter sync --full` process. On a shared machine the CPU time moves less with the
    load than the wall time; PostgreSQL's and the mock's work is not in it."""
    # Not started from this process, whose COPY dumps of earlier runs would count in the
    # sync's peak memory (`run_measured`).
    run = run_measured([str(HF_ADAPTER), "sync", "--system", system, "--full"], env)
    if run.exit_code != 0:
        raise SystemExit(f"sync {system} failed:\n{run.stdout}")
    return run.wall_s, run.peak_rss_mib, run.cpu_s


def mark_stale(database_url: str, system: str) -> None:
    """Make every stored record a correction of itself: same version, another payload hash,
    so the next full sync rewrites each one (the merge, encryption and child rows again)."""
    table = "registrations" if system == "kki" else "health_workers"
    with psycopg.connect(database_url.replace("+psycopg", "")) as connection:
        connection.execute(f"UPDATE {table} SET payload_hash = 'stale'")  # noqa: S608 - fixed names


def copy_baseline(source: str, target: str, tables: tuple[str, ...]) -> tuple[float, int]:
    """Seconds to COPY the synced rows into an empty migrated database, and the row count."""
    dumps: dict[str, bytes] = {}
    with psycopg.connect(source.replace("+psycopg", "")) as connection:
        for table in tables:
            with connection.cursor().copy(f"COPY {table} TO STDOUT") as copy:
                dumps[table] = b"".join(bytes(chunk) for chunk in copy)
    rows = sum(dump.count(b"\n") for dump in dumps.values())
    with psycopg.connect(target.replace("+psycopg", "")) as connection:
        connection.execute("DELETE FROM connections")  # seeded by the migration; not copied
        started = time.perf_counter()
        with connection.transaction():
            for table in tables:
                with connection.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                    copy.write(dumps[table])
        elapsed = time.perf_counter() - started
    return elapsed, rows


def bench(system: str, size: int, console: Console, *, updates: bool) -> Result:
    console.print(f"[bold]{system} N={size:,}[/]: starting the mock…")
    process, url = start_mock(system, size=size, seed=42, timeout_s=600.0)
    update: tuple[float, float, float] | None = None
    try:
        synced = fresh_database(f"bench_sync_{system}_{size}")
        env = environment(synced, system, url)
        subprocess.run([str(HF_ADAPTER), "db", "upgrade"], env=env, check=True, capture_output=True)
        console.print(f"  syncing {size:,} records into PostgreSQL…")
        sync_s, rss, cpu_s = run_sync(env, system)
        if updates:
            mark_stale(synced, system)
            console.print(f"  syncing {size:,} changed records again (updates)…")
            update = run_sync(env, system)
    finally:
        process.close()
    with psycopg.connect(synced.replace("+psycopg", "")) as connection:
        fetched = connection.execute("SELECT max(fetched) FROM sync_runs").fetchone()
        runs = [
            float(seconds)
            for (seconds,) in connection.execute(
                "SELECT extract(epoch FROM finished_at - started_at) FROM sync_runs"
                " ORDER BY started_at"
            )
        ]
    records = int(fetched[0]) if fetched and fetched[0] is not None else size
    baseline = fresh_database(f"bench_copy_{system}_{size}")
    subprocess.run(
        [str(HF_ADAPTER), "db", "upgrade"],
        env=environment(baseline, system, "http://127.0.0.1:9"),
        check=True,
        capture_output=True,
    )
    console.print("  COPY baseline of the same rows…")
    copy_s, rows = copy_baseline(synced, baseline, TABLES[system])
    return Result(
        system=system,
        size=records,
        sync_s=sync_s,
        sync_records_per_s=records / sync_s,
        peak_rss_mib=rss,
        rows_written=rows,
        copy_s=copy_s,
        copy_records_per_s=records / copy_s,
        update_s=None if update is None else update[0],
        update_records_per_s=None if update is None else records / update[0],
        update_peak_rss_mib=None if update is None else update[1],
        run_s=runs[0] if runs else None,
        update_run_s=runs[1] if len(runs) > 1 else None,
        cpu_s=cpu_s,
        update_cpu_s=None if update is None else update[2],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--systems", nargs="+", choices=("sisdmk", "kki"), default=["sisdmk"])
    parser.add_argument(
        "--updates",
        action="store_true",
        help="then mark every stored record stale and time a second full sync (all updates)",
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    console.print(f"load average at the start: {os.getloadavg()}")
    results = [
        bench(system, size, console, updates=args.updates)
        for system in args.systems
        for size in args.sizes
    ]

    table = Table(title="full sync into PostgreSQL vs COPY of the same encrypted rows")
    for column in (
        "system",
        "records",
        "sync s",
        "sync rec/s",
        "COPY rec/s",
        "sync/COPY",
        "in-run rec/s",
        "peak RSS MiB",
        "CPU s",
        "update rec/s",
        "update/COPY",
        "update in-run rec/s",
        "update CPU s",
    ):
        table.add_column(column, justify="right")
    for result in results:
        table.add_row(
            result.system,
            f"{result.size:,}",
            f"{result.sync_s:,.1f}",
            f"{result.sync_records_per_s:,.0f}",
            f"{result.copy_records_per_s:,.0f}",
            f"{result.ratio:.3f}",
            "" if not result.run_s else f"{result.size / result.run_s:,.0f}",
            f"{result.peak_rss_mib:,.0f}",
            "" if result.cpu_s is None else f"{result.cpu_s:,.1f}",
            "" if result.update_records_per_s is None else f"{result.update_records_per_s:,.0f}",
            "" if result.update_ratio is None else f"{result.update_ratio:.3f}",
            "" if not result.update_run_s else f"{result.size / result.update_run_s:,.0f}",
            "" if result.update_cpu_s is None else f"{result.update_cpu_s:,.1f}",
        )
    Console(width=160).print(table)
    console.print(f"load average at the end: {os.getloadavg()}")
    for system in args.systems:
        mine = [r for r in results if r.system == system]
        if len(mine) >= 2:
            smallest, largest = min(mine, key=lambda r: r.size), max(mine, key=lambda r: r.size)
            Console().print(
                f"{system}: peak RSS at N={largest.size:,} / N={smallest.size:,} = "
                f"{largest.peak_rss_mib / smallest.peak_rss_mib:.2f}"
            )
    report = ROOT / "reports" / "bench-sync.json"
    report.parent.mkdir(exist_ok=True)
    report.write_text(
        json.dumps(
            [{**asdict(r), "ratio": r.ratio, "update_ratio": r.update_ratio} for r in results],
            indent=2,
        ),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
