"""The CPU a command's process costs to start, do a small job and exit, started the way the
project starts it (`python -m adapter` / `hf-adapter`, through `cli_startup`: modules imported
with the garbage collector paused, then frozen) against the same command started as before
(`from adapter.cli import main` with the collector running, nothing frozen), interleaved, in the
same invocation. The test suite starts about 700 such processes, so their start is most of its
CPU (docs/benchmarks.md, "The test command on a fresh machine").

CPU = user + system seconds of the process, from wait4. Run:
.venv/bin/python bench/bench_startup.py [--runs 8]  (writes reports/bench-startup.json)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.processes import free_port  # noqa: E402
from tests.integration.adapter.sync.support import adapter_environment  # noqa: E402

REPORT = ROOT / "reports" / "bench-startup.json"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Case:
    name: str
    package: str  # started as `python -m PACKAGE`
    module: str  # the module whose main() the command is
    args: tuple[str, ...]
    env: Mapping[str, str]
    ready_url: str | None = None  # a server: measured from start until ready, then SIGTERM


def before(case: Case) -> list[str]:
    """The command as it started before `cli_startup`: imported with the collector running."""
    code = f"import sys; from {case.module} import main; raise SystemExit(main())"
    return [sys.executable, "-c", code, *case.args]


def after(case: Case) -> list[str]:
    return [sys.executable, "-m", case.package, *case.args]


def cpu_seconds(argv: Sequence[str], case: Case) -> float:
    # stderr to a file: a pipe read only after wait4 would block a child that fills it.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            list(argv), stdout=subprocess.DEVNULL, stderr=errors, env={**os.environ, **case.env}
        )
        if case.ready_url is not None:
            _wait_ready(process, case.ready_url)
            process.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    code = process.returncode
    if case.ready_url is None and code != 0:
        raise SystemExit(f"{case.name}: {' '.join(argv)} exited {code}:\n{stderr[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def _wait_ready(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"{url}: the server exited with {process.returncode}")
            try:
                if client.get(url).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{url} did not answer within {READY_TIMEOUT_S:.0f} s")


def cases(scratch: Path) -> list[Case]:
    store = f"sqlite:///{scratch / 'store.sqlite3'}"
    environment = adapter_environment(store, "http://127.0.0.1:9", "http://127.0.0.1:9")
    subprocess.run(
        [sys.executable, "-m", "adapter", "db", "upgrade"],
        env={**os.environ, **environment},
        check=True,
        capture_output=True,
    )
    port = free_port()
    return [
        Case("hf-adapter --help", "adapter", "adapter.cli", ("--help",), {}),
        Case(
            "hf-adapter audit verify (SQLite)",
            "adapter",
            "adapter.cli",
            ("audit", "verify"),
            environment,
        ),
        Case("hf-mock --help", "mocks", "mocks.cli", ("--help",), {}),
        Case(
            "hf-mock kki, 1,000 people: start until ready, SIGTERM",
            "mocks",
            "mocks.cli",
            ("kki", "--port", str(port), "--size", "1000", "--quiet"),
            {},
            ready_url=f"http://127.0.0.1:{port}/__admin/health",
        ),
        Case("hf-conformance --help", "conformance", "conformance.cli", ("--help",), {}),
    ]


def measure(runs: int, console: Console) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hf-bench-startup-") as scratch:
        chosen = cases(Path(scratch))
        with console.status("") as status:
            for case in chosen:
                samples: dict[str, list[float]] = {"before": [], "after": []}
                ways: tuple[tuple[str, Callable[[Case], list[str]]], ...] = (
                    ("before", before),
                    ("after", after),
                )
                for run in range(runs):
                    # Alternate which goes first, so that neither always follows the other.
                    for label, argv in ways if run % 2 == 0 else ways[::-1]:
                        status.update(f"{case.name}: run {run + 1}/{runs}, {label}")
                        samples[label].append(cpu_seconds(argv(case), case))
                results.append(
                    {
                        "command": case.name,
                        "before_cpu_s": samples["before"],
                        "after_cpu_s": samples["after"],
                        "median_before_cpu_s": round(statistics.median(samples["before"]), 3),
                        "median_after_cpu_s": round(statistics.median(samples["after"]), 3),
                    }
                )
    return {"runs": runs, "cpus": os.cpu_count(), "commands": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="runs of each way (default 8)")
    args = parser.parse_args()
    console = Console()
    load_before = os.getloadavg()
    report = measure(args.runs, console)
    report["load_average_before"] = load_before
    report["load_average_after"] = os.getloadavg()
    table = Table(
        title=f"CPU seconds per process (median of {args.runs}; load average "
        f"{load_before[0]:.1f} → {report['load_average_after'][0]:.1f})"
    )
    table.add_column("command")
    table.add_column("before", justify="right")
    table.add_column("cli_startup", justify="right")
    table.add_column("after / before", justify="right")
    for row in report["commands"]:
        before_s, after_s = row["median_before_cpu_s"], row["median_after_cpu_s"]
        row["ratio"] = round(after_s / before_s, 3)
        table.add_row(row["command"], f"{before_s:.2f}", f"{after_s:.2f}", f"{row['ratio']:.2f}")
    console.print(table)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
