"""The gunicorn command the benchmarks serve their app under: the adapter's own worker class
and threads (`hf-adapter serve`), plus the bench's bare endpoint in the same server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gunicorn_argv(app: str, *, workers: int, port: int, threads: int = 8) -> list[str]:
    """`app` as gunicorn names it, e.g. ``bench.bench_api:bench_app()``."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(ROOT),
        app,
    ]


def py_spy(pid: int, out: Path, duration: int, *, gil: bool = False) -> subprocess.Popen[bytes]:
    """py-spy sampling gunicorn's workers (children of `pid`) for `duration` seconds, as
    collapsed stacks: idle threads included (where threads wait), or with `gil` only the thread
    holding the GIL (what keeps the interpreter busy)."""
    argv = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid)]
    argv += ["--subprocesses", "--gil" if gil else "--idle", "--nonblocking"]
    argv += ["--format", "raw", "--duration", str(duration), "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)
