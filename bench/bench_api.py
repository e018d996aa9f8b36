"""Benchmark the authenticated read `GET /api/v1/health-workers/{id}` under gunicorn (gthread).

Each request validates a real RS256 token from the test IdP (JWKS cached; the validated token
then by its hash), reads and decrypts one worker with registrations, SIPs, SKP and trainings, and
appends a pending audit entry in the same transaction; each gunicorn worker's sealer thread
chains the entries meanwhile, as `hf-adapter serve` does. It is measured against a bare
endpoint added to the SAME gunicorn server (`/bench/bare`: a fixed small JSON, no token, no
database), in the same invocation, with `wrk` cycling through every worker id. Writes
reports/bench-api.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask, Response
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from adapter.store.crypto import BlindIndex, FieldCipher, KeyRing  # noqa: E402
from adapter.store.database import session_factory  # noqa: E402
from bench.gunicorn import gunicorn_argv, py_spy, served_evenly, split_text  # noqa: E402
from harness import services  # noqa: E402
from harness.idp import IdpProcess  # noqa: E402
from harness.processes import ManagedProcess, free_port, start_mock  # noqa: E402
from tests.integration.adapter.sync.support import (  # noqa: E402
    Mock,
    adapter_environment,
    migrated,
    run_sync,
)
from tests.support.databases import (  # noqa: E402
    AUDIT_KEYS,
    BLIND_INDEX_KEY,
    ENCRYPTION_KEY,
)

ADMIN_URL = services.database_url()
REPORT = ROOT / "reports" / "bench-api.json"
READER = "hf-readonly"


def bench_app() -> Flask:
    """The adapter's app plus a bare endpoint, for gunicorn: `bench.bench_api:bench_app()`."""
    from adapter.app import create_app
    from adapter.server import serve_pool_size
    from adapter.settings import load_settings

    # The pool `hf-adapter serve` gives each process for its threads (`BENCH_THREADS`).
    pool_size = serve_pool_size(int(os.environ["BENCH_THREADS"]))
    app = create_app(load_settings(), seal=True, pool_size=pool_size)

    def bare() -> Response:
        return Response('{"status":"ok"}', mimetype="application/json")

    app.add_url_rule("/bench/bare", "bench_bare", bare, methods=["GET"])
    return app


def lua_script(path: Path, token: str, worker_ids: list[str]) -> None:
    """A wrk script cycling through every worker id, with the bearer token on each request."""
    ids = ",".join(f'"{worker_id}"' for worker_id in worker_ids)
    path.write_text(
        f"local ids = {{{ids}}}\n"
        "local i = 0\n"
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        "request = function()\n"
        "  i = i % #ids + 1\n"
        '  local target = wrk.path == "/bench/bare" and wrk.path\n'
        '    or ("/api/v1/health-workers/" .. ids[i])\n'
        '  return wrk.format("GET", target)\n'
        "end\n",
        encoding="utf-8",
    )


def measured(
    master: int, url: str, script: Path, duration: int, connections: int
) -> dict[str, Any]:
    """`wrk` against `url`, run again while one gunicorn worker served it alone
    (`bench.gunicorn.served_evenly`), with each worker's CPU seconds in the figures."""
    served = served_evenly(master, lambda: wrk(url, script, duration, connections))
    return served.figures(served.result)


def wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "requests_per_s": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--size", type=int, default=500, help="synthetic workers in the store")
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample the gunicorn workers with py-spy during the read run (collapsed stacks, "
        "idle threads included, to this file); the first read run, if it is run again",
    )
    parser.add_argument(
        "--profile-gil",
        type=Path,
        help="the same, but only the thread holding the GIL in each sample (--gil)",
    )
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn process")
    args = parser.parse_args()
    console = Console()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hf_bench_api_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database = make_url(ADMIN_URL).set(database=name)
    processes: list[ManagedProcess] = []
    idp = IdpProcess()
    try:
        idp.start()
        mocks: dict[str, Mock] = {}
        for system in ("sisdmk", "kki"):
            process, url = start_mock(system, size=args.size, seed=9)
            processes.append(process)
            mocks[system] = Mock(url)
        engine = migrated(database)
        cipher, blind_index = FieldCipher(KeyRing([ENCRYPTION_KEY])), BlindIndex(BLIND_INDEX_KEY)
        console.print(f"filling the store with {args.size} workers (sync from the mocks) …")
        for system in ("sisdmk", "kki"):
            result = run_sync(
                system,
                mocks[system],
                session_factory(engine, audit_keys=AUDIT_KEYS),
                cipher,
                blind_index,
            )
            assert result.succeeded, result.error
        with engine.connect() as connection:
            worker_ids = [
                str(r[0]) for r in connection.execute(text("SELECT id FROM health_workers"))
            ]
        environment = adapter_environment(
            database.render_as_string(hide_password=False), mocks["kki"].url, mocks["sisdmk"].url
        ) | {
            "OIDC_ISSUER": idp.issuer,
            "OIDC_AUDIENCE": "hf-adapter",
            "LOG_LEVEL": "WARNING",
            "BENCH_THREADS": str(args.threads),
        }
        port = free_port()
        server = ManagedProcess(
            "bench-serve",
            gunicorn_argv(
                "bench.bench_api:bench_app()",
                workers=args.workers,
                port=port,
                threads=args.threads,
            ),
            env=environment,
        ).start()
        processes.append(server)
        server.wait_http(f"http://127.0.0.1:{port}/healthz")
        token = idp.token(READER)
        base = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "api.lua"
            lua_script(script, token, worker_ids)
            # Warm up: each gunicorn worker fetches the JWKS once.
            wrk(f"{base}/api/v1/health-workers/x", script, 2, args.connections)
            with engine.connect() as connection:
                audit_before = connection.execute(
                    text("SELECT count(*) FROM audit_events")
                ).scalar()
            load_start = os.getloadavg()
            bare = measured(
                server.pid, f"{base}/bench/bare", script, args.duration, args.connections
            )
            spies = [
                py_spy(server.pid, out, args.duration, gil=gil)
                for out, gil in ((args.profile, False), (args.profile_gil, True))
                if out is not None
            ]
            read = measured(
                server.pid,
                f"{base}/api/v1/health-workers/x",
                script,
                args.duration,
                args.connections,
            )
            for spy in spies:
                spy.wait(timeout=60)
        with engine.connect() as connection:
            audit_after = connection.execute(text("SELECT count(*) FROM audit_events")).scalar()
            pending_after = connection.execute(
                text("SELECT count(*) FROM audit_events WHERE chain_seq IS NULL")
            ).scalar()
        engine.dispose()
    finally:
        for process in reversed(processes):
            process.close()
        idp.close()
        with admin.connect() as connection:
            services.drop_database(connection, name)
        admin.dispose()
    report: dict[str, Any] = {
        "load_average_1min": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "workers_in_store": len(worker_ids),
        "gunicorn_workers": args.workers,
        "gunicorn_threads": args.threads,
        "connections": args.connections,
        "duration_s": args.duration,
        "bare": bare,
        "authenticated_read": read,
        "ratio": read["requests_per_s"] / bare["requests_per_s"],
        # During every read run, those set aside as lopsided included.
        "read_runs": 1 + len(read["unbalanced_runs"]),
        "audit_entries_written": int(audit_after or 0) - int(audit_before or 0),
        # Left for the sealers when wrk stopped (they chain the rest within a turn or two).
        "audit_entries_pending_at_end": int(pending_after or 0),
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = Table(
        title=f"GET /api/v1/health-workers/{{id}} under gunicorn ({args.workers} gthread workers "
        f"x {args.threads} threads, wrk {args.connections} connections, {args.duration} s each)"
    )
    table.add_column("")
    table.add_column("", justify="right")
    for label, figures in (("bare endpoint", bare), ("authenticated read", read)):
        table.add_row(
            label,
            f"{figures['requests_per_s']:,.0f} req/s, p50 {figures['p50_ms']:.1f} ms, "
            f"p99 {figures['p99_ms']:.1f} ms, non-2xx {figures['non_2xx']:.0f}, "
            + split_text(figures),
        )
    table.add_row("ratio read / bare", f"{report['ratio']:.3f}")
    table.add_row(
        "load average (1 min) at the start, end",
        " → ".join(f"{x:.2f}" for x in report["load_average_1min"]),
    )
    runs = report["read_runs"]
    table.add_row(
        "audit entries written" + (f" (in {runs} read runs)" if runs > 1 else ""),
        f"{report['audit_entries_written']:,}",
    )
    pending = report["audit_entries_pending_at_end"]
    table.add_row("of which not sealed yet at the end", f"{pending:,}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
