"""The gunicorn command the benchmarks serve their app under: the adapter's own worker class
and threads (`hf-adapter serve`), plus the bench's bare endpoint in the same server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.processes import cpu_seconds, process_tree

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


# A wrk run in which one gunicorn worker did more than this share of the workers' CPU is run
# again (`served_evenly`), at most ATTEMPTS runs in all.
BUSIEST_SHARE = 0.75
ATTEMPTS = 3

Result = TypeVar("Result")


@dataclass(frozen=True)
class Served(Generic[Result]):
    """A run's result, the CPU seconds each gunicorn worker spent in it (busiest first), whether
    that was balanced, and the CPU splits of the lopsided runs set aside before it."""

    result: Result
    workers_cpu_s: list[float]
    balanced: bool
    unbalanced_runs: list[list[float]]

    def figures(self, wrk_figures: dict[str, Any]) -> dict[str, Any]:
        """`wrk_figures` with the split, the verdict and the runs set aside, for a report."""
        return wrk_figures | {
            "workers_cpu_s": self.workers_cpu_s,
            "balanced": self.balanced,
            "unbalanced_runs": self.unbalanced_runs,
        }


def workers_cpu_s(master: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each gunicorn worker (the master's children)."""
    return {pid: cpu_seconds([pid]) for pid in process_tree(master) if pid != master}


def served_evenly(
    master: int, run: Callable[[], Result], *, attempts: int = ATTEMPTS
) -> Served[Result]:
    """`run()` (a `wrk` run against the gunicorn server `master`) with each worker's CPU.

    wrk's keep-alive connections stay with the worker that accepted them; when one worker
    accepted (nearly) all of them the other idles, and the run measures one process, one core
    under the GIL, not the server. Such a run is repeated, up to `attempts` runs in all (1 for
    a run that cannot be repeated); the last one is returned marked unbalanced if none was."""
    set_aside: list[list[float]] = []
    while True:
        before = workers_cpu_s(master)
        result = run()
        after = workers_cpu_s(master)
        split = sorted((round(after[pid] - before.get(pid, 0.0), 1) for pid in after), reverse=True)
        even = balanced(split)
        if even or len(set_aside) + 1 >= attempts:
            return Served(result, split, even, set_aside)
        set_aside.append(split)


def balanced(split: list[float]) -> bool:
    """Whether no gunicorn worker did more than `BUSIEST_SHARE` of the workers' CPU (a lone
    worker is balanced)."""
    total = sum(split)
    return len(split) < 2 or total == 0 or max(split) <= BUSIEST_SHARE * total


def split_text(figures: dict[str, Any]) -> str:
    """The gunicorn workers' CPU seconds in a run, and whether one served it alone."""
    text = "workers' CPU " + " + ".join(f"{s:.1f}" for s in figures["workers_cpu_s"]) + " s"
    if not figures["balanced"]:
        text += " (one worker took most: unbalanced)"
    return text + "".join(
        f"; set aside, one worker took most: {' + '.join(f'{s:.1f}' for s in split)} s"
        for split in figures["unbalanced_runs"]
    )
