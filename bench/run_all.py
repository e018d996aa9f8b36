"""`make bench`: every benchmark in one invocation, one report against the throughput goals.

Runs bench_mocks.py, bench_sync.py, bench_webhooks.py, bench_api.py, bench_keycloak.py,
bench_mock_filters.py and bench_startup.py one after the other (each measures its figures
against its own baseline in the same run: Prism, `COPY`, a bare endpoint in the same gunicorn,
the unfiltered page), then writes reports/bench.json (every script's own
report, its exit status, the load average before and after each, the machine) and
reports/bench.md (the goals of docs/benchmarks.md "Goals", each with its figure and baseline, the
date and the load averages). Run it on a machine with nothing else running: the load average is
in the report so a reader can tell. Ctrl-C stops the running benchmark and still writes the
report of those that finished.

    .venv/bin/python bench/run_all.py [--only sync webhooks] [--quick]

`--quick` runs smaller sizes and shorter load runs (a check that everything works, not figures to
publish; the report says so). Its reports go to reports/bench-quick/, so the last full run's
stay where they are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    report: str
    full: tuple[str, ...]
    quick: tuple[str, ...]


BENCHMARKS = (
    Benchmark(
        "mocks",
        "bench_mocks.py",
        "bench-mocks.json",
        full=("--size", "100000"),
        quick=("--size", "10000", "--duration", "4"),
    ),
    Benchmark(
        "sync",
        "bench_sync.py",
        "bench-sync.json",
        full=("--systems", "sisdmk", "kki", "--sizes", "10000", "100000", "--updates"),
        quick=("--systems", "sisdmk", "kki", "--sizes", "1000", "--updates"),
    ),
    Benchmark(
        "webhooks",
        "bench_webhooks.py",
        "bench-webhooks.json",
        full=(),
        quick=(
            "--duration",
            "4",
            "--lag-seconds",
            "5",
            "--storm-events",
            "500",
            "--fault-events",
            "200",
        ),
    ),
    Benchmark("api", "bench_api.py", "bench-api.json", full=(), quick=("--duration", "4")),
    Benchmark(
        "keycloak",
        "bench_keycloak.py",
        "bench-keycloak.json",
        full=("--runs", "3"),
        quick=("--runs", "1"),
    ),
    Benchmark(
        "mock-filters",
        "bench_mock_filters.py",
        "bench-mock-filters.json",
        full=("--size", "100000"),
        quick=("--size", "10000"),
    ),
    Benchmark(
        "startup",
        "bench_startup.py",
        "bench-startup.json",
        full=("--runs", "8"),
        quick=("--runs", "2"),
    ),
)
# No benchmark takes this long on 2 cores; one that does is stuck.
TIMEOUT_S = 3 * 3600


@dataclass(frozen=True)
class Row:
    path: str
    figure: str
    baseline: str
    goal: str
    met: bool | None  # None: not measured in this run, or not judged (the row says why)


def run(names: Sequence[str], *, quick: bool, console: Console, out: Path) -> dict[str, Any]:
    """Each benchmark in turn; a Ctrl-C ends the loop with what has finished."""
    runs: dict[str, Any] = {}
    for bench in BENCHMARKS:
        if names and bench.name not in names:
            continue
        report = REPORTS / bench.report
        kept = report.with_suffix(".last-full.json")
        if quick and report.exists():
            report.replace(kept)  # the quick run's figures must not pass for a full run's
        report.unlink(missing_ok=True)
        argv = [sys.executable, str(ROOT / "bench" / bench.script)]
        argv += bench.quick if quick else bench.full
        console.rule(f"[bold]{bench.name}[/] — {' '.join(argv[1:])}")
        load_before = os.getloadavg()
        started = time.monotonic()
        try:
            status: int | str = subprocess.run(
                argv, cwd=ROOT, check=False, timeout=TIMEOUT_S
            ).returncode
        except subprocess.TimeoutExpired:
            status = f"stopped after {TIMEOUT_S} s"
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted during {bench.name}[/]: reporting what finished")
            break
        finally:
            if quick and report.exists():
                report.replace(out / bench.report)
            if quick and kept.exists():
                kept.replace(report)
        runs[bench.name] = {
            "command": argv[1:],
            "exit_status": status,
            "seconds": round(time.monotonic() - started, 1),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "report": _read(out / bench.report if quick else report),
        }
        if status != 0:
            console.print(f"[red]{bench.name} ended: {status}[/] (its report, if any, is kept)")
    return runs


def rows(runs: dict[str, Any]) -> list[Row]:
    """The goal table, in the order of docs/benchmarks.md; a report of an unexpected shape is
    a row saying so, never a crash that loses the others."""
    table: list[Row] = []
    extractors: tuple[tuple[str, Callable[[dict[str, Any]], list[Row]]], ...] = (
        ("sync", _sync_rows),
        ("webhooks", _webhook_rows),
        ("api", _api_rows),
        ("mocks", _mock_rows),
        ("keycloak", _keycloak_rows),
        ("mock-filters", _mock_filter_rows),
        ("startup", _startup_rows),
    )
    for name, extract in extractors:
        try:
            table.extend(extract(runs))
        except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
            table.append(Row(f"{name}: report unreadable ({exc!r})", "—", "—", "—", None))
    return table


def _report(runs: dict[str, Any], name: str) -> Any:
    """The script's report, also when it exited non-zero (a fault run that lost events still
    writes its figures: they are the point)."""
    entry = runs.get(name)
    return None if entry is None else entry["report"]


def _ratio_met(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _fmt(value: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def _sync_rows(runs: dict[str, Any]) -> list[Row]:
    report = _report(runs, "sync")
    if not report:
        return [Row("full sync into PostgreSQL", "—", "—", "≥ 0.5x COPY and ≥ 5,000 rec/s", None)]
    out = []
    by_key = {(r["system"], r["size"]): r for r in report}
    for system in ("sisdmk", "kki"):
        sizes = sorted(size for s, size in by_key if s == system)
        if not sizes:
            continue
        first = by_key[(system, sizes[0])]
        rate, copy, ratio = (
            first["sync_records_per_s"],
            first["copy_records_per_s"],
            first["ratio"],
        )
        out.append(
            Row(
                f"full sync, {system.upper()}, N={sizes[0]:,}",
                f"{rate:,.0f} rec/s",
                f"COPY {copy:,.0f} rec/s → {ratio:.3f}x",
                "≥ 0.5x COPY and ≥ 5,000 rec/s",
                ratio >= 0.5 and rate >= 5000,
            )
        )
        if first.get("update_records_per_s") is not None:
            update_ratio = first["update_ratio"]
            out.append(
                Row(
                    f"full sync when every record changed, {system.upper()}, N={sizes[0]:,}",
                    f"{first['update_records_per_s']:,.0f} rec/s",
                    f"COPY {copy:,.0f} rec/s → {update_ratio:.3f}x",
                    "≥ 0.25x COPY",
                    update_ratio >= 0.25,
                )
            )
        if len(sizes) > 1:
            last = by_key[(system, sizes[-1])]
            growth = last["peak_rss_mib"] / first["peak_rss_mib"]
            out.append(
                Row(
                    f"sync peak RSS, {system.upper()}, N={sizes[-1]:,} / N={sizes[0]:,}",
                    f"{last['peak_rss_mib']:,.0f} / {first['peak_rss_mib']:,.0f} MiB",
                    f"→ {growth:.2f}",
                    "≤ 1.2",
                    growth <= 1.2,
                )
            )
    return out


def _webhook_rows(runs: dict[str, Any]) -> list[Row]:
    report = _report(runs, "webhooks")
    if not report:
        return [Row("webhook accepted durably", "—", "—", "≥ 0.5x bare, p99 ≤ 50 ms", None)]
    out = []
    throughput = report.get("throughput", {})
    durable, bare = throughput.get("durable"), throughput.get("bare")
    if durable and bare:
        ratio = durable["requests_per_s"] / bare["requests_per_s"]
        baseline, judged = _baseline(bare, ratio, durable)
        out.append(
            Row(
                "webhook accepted durably (signature, inbox, confirmed publish)",
                f"{durable['requests_per_s']:,.0f} req/s, p99 {durable['p99_ms']:,.0f} ms",
                baseline,
                "≥ 0.5x bare; p99 ≤ 50 ms",
                (ratio >= 0.5 and durable["p99_ms"] <= 50) if judged else None,
            )
        )
    lag = report.get("lag")
    if isinstance(lag, dict):
        rate = lag["rate_per_s"]
        out.append(
            Row(
                f"webhook → store lag at {rate} events/s (achieved {lag['achieved_rate_per_s']})",
                f"p50 {lag['p50_ms']:,.0f} ms, p95 {lag['p95_ms']:,.0f} ms, lost {lag['lost']}",
                "—",
                "p95 ≤ 500 ms at 200 events/s, nothing lost",
                rate >= 200 and lag["p95_ms"] <= 500 and lag["lost"] == 0,
            )
        )
    storm = report.get("storm")
    if isinstance(storm, dict):
        out.append(
            Row(
                f"events applied end to end, a storm of {storm['events']:,}",
                f"{storm['events_per_s']:,.0f} events/s, lost {storm['lost']}",
                "—",
                "≥ 400 events/s",
                storm["events_per_s"] >= 400 and storm["lost"] == 0,
            )
        )
    fault = report.get("fault_run")
    if isinstance(fault, dict) and "lost" in fault:
        out.append(
            Row(
                f"fault run, {fault['events']:,} events (worker killed, broker cut off)",
                f"lost {fault['lost']}, applied twice {fault['duplicated']}",
                "—",
                "0 / 0",
                fault["lost"] == 0 and fault["duplicated"] == 0,
            )
        )
    return out


def _api_rows(runs: dict[str, Any]) -> list[Row]:
    report = _report(runs, "api")
    if not report:
        return [Row("authenticated API read", "—", "—", "≥ 0.4x bare; p99 ≤ 30 ms", None)]
    read, bare = report["authenticated_read"], report["bare"]
    ratio = read["requests_per_s"] / bare["requests_per_s"]
    baseline, judged = _baseline(bare, ratio, read)
    return [
        Row(
            "authenticated GET /api/v1/health-workers/{id}",
            f"{read['requests_per_s']:,.0f} req/s, p99 {read['p99_ms']:,.0f} ms",
            baseline,
            "≥ 0.4x bare; p99 ≤ 30 ms",
            (ratio >= 0.4 and read["p99_ms"] <= 30) if judged else None,
        )
    ]


def _baseline(bare: dict[str, Any], ratio: float, measured: dict[str, Any]) -> tuple[str, bool]:
    """The baseline cell of a path measured against a bare endpoint, and whether to judge it:
    a run that one gunicorn worker served alone (`bench.gunicorn.served_evenly`) measured one
    core, not the server, so its ratio is shown, not judged."""
    baseline = f"bare {bare['requests_per_s']:,.0f} req/s → {ratio:.3f}x"
    judged = all(run.get("balanced", True) for run in (measured, bare))
    if not judged:
        baseline += " (a run served by one gunicorn worker: not judged)"
    return baseline, judged


def _keycloak_rows(runs: dict[str, Any]) -> list[Row]:
    report = _report(runs, "keycloak")
    if not report:
        return []
    return [
        Row(
            "Keycloak start as the tests start it (built, new database; median)",
            f"{report['median_built_new_database_start_s']:.1f} s, "
            f"{report['median_built_new_database_cpu_s']:.1f} CPU s",
            f"restart on the same database {report['median_restart_same_database_start_s']:.1f} s",
            "— (reported)",
            None,
        )
    ]


def _mock_filter_rows(runs: dict[str, Any]) -> list[Row]:
    report = _report(runs, "mock-filters")
    if not report:
        return []
    baseline = report["unfiltered_ms_per_page"]
    return [
        Row(
            f"mock filtered page of {report['limit']}, N={report['size']:,}: "
            f"{measured['filter']} ({measured['matches']:,} matches)",
            f"{measured['ms_per_page_in_use']:.2f} ms a page",
            f"unfiltered {baseline:.2f} ms → {measured['ms_per_page_in_use'] / baseline:.1f}x",
            "— (reported)",
            None,
        )
        for measured in report["filters"]
    ]


def _startup_rows(runs: dict[str, Any]) -> list[Row]:
    report = _report(runs, "startup")
    if not report:
        return []
    return [
        Row(
            f"process CPU: {command['command']} (median)",
            f"{command['median_after_cpu_s']:.2f} CPU s",
            f"imported with the collector running {command['median_before_cpu_s']:.2f} CPU s "
            f"→ {command['median_after_cpu_s'] / command['median_before_cpu_s']:.2f}x",
            "— (reported)",
            None,
        )
        for command in report["commands"]
    ]


def _mock_rows(runs: dict[str, Any]) -> list[Row]:
    report = _report(runs, "mocks")
    if not report:
        return [Row("mocks vs Prism", "—", "—", "≥ 1.5x Prism by id", None)]
    out = []
    loads = {(x["server"], x["system"], x["scenario"]): x for x in report["loads"]}
    for system in ("kki", "sisdmk"):
        for scenario, goal in (("GET by id", 1.5), ("page of 100", 0.5)):
            ours = loads.get(("hf-mock", system, scenario))
            prism = loads.get(("prism", system, scenario))
            if ours is None or prism is None:
                continue
            ratio = ours["requests_per_s"] / prism["requests_per_s"]
            out.append(
                Row(
                    f"mock {scenario}, {system.upper()}",
                    f"{ours['requests_per_s']:,.0f} req/s",
                    f"Prism {prism['requests_per_s']:,.0f} req/s → {ratio:.2f}x",
                    f"≥ {goal}x Prism",
                    ratio >= goal,
                )
            )
    for startup in report["startups"]:
        if startup["cache"] != "filled":
            continue
        kib = startup["rss_kib_per_record"]
        out.append(
            Row(
                f"mock start-up and memory, {startup['system'].upper()}, N={startup['size']:,}",
                f"{startup['startup_s']:.1f} s, {kib:.2f} KiB/record",
                "—",
                "≤ 5 s; ≤ 2.5 KiB/record",
                startup["startup_s"] <= 5 and kib <= 2.5,
            )
        )
    return out


def markdown(runs: dict[str, Any], table: list[Row], *, quick: bool, when: dt.datetime) -> str:
    lines = [
        f"# Benchmarks — {when:%Y-%m-%d %H:%M} UTC"
        + (" (quick: not figures to publish)" if quick else ""),
        "",
        f"Machine: {os.cpu_count()} cores, {_memory_gib():.0f} GiB, Python "
        f"{platform.python_version()}, {platform.platform()}.",
        "",
        "| benchmark | seconds | load average before | after | exit |",
        "|---|---|---|---|---|",
    ]
    for name, entry in runs.items():
        before = ", ".join(f"{x:.2f}" for x in entry["load_average_before"])
        after = ", ".join(f"{x:.2f}" for x in entry["load_average_after"])
        lines.append(
            f"| {name} | {entry['seconds']:,.0f} | {before} | {after} | {entry['exit_status']} |"
        )
    lines += [
        "",
        "| path | measured | its baseline in the same run | goal | met |",
        "|---|---|---|---|---|",
    ]
    for row in table:
        met = "—" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.path} | {row.figure} | {row.baseline} | {row.goal} | {met} |")
    return "\n".join(lines) + "\n"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def print_table(console: Console, table: list[Row]) -> None:
    shown = Table(title="throughput goals")
    for column in ("path", "measured", "baseline (same run)", "goal", "met"):
        shown.add_column(column)
    colour: dict[bool | None, Callable[[], str]] = {
        True: lambda: "[green]yes[/]",
        False: lambda: "[red]no[/]",
        None: lambda: "—",
    }
    for row in table:
        shown.add_row(row.path, row.figure, row.baseline, row.goal, colour[row.met]())
    console.print(shown)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[bench.name for bench in BENCHMARKS],
        default=[],
        help="run only these benchmarks",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs")
    args = parser.parse_args(argv)
    console = Console()
    when = dt.datetime.now(dt.UTC)
    out = REPORTS / "bench-quick" if args.quick else REPORTS
    out.mkdir(parents=True, exist_ok=True)
    runs = run(args.only, quick=args.quick, console=console, out=out)
    table = rows(runs)
    (out / "bench.json").write_text(
        json.dumps(
            {
                "at": when.isoformat(timespec="seconds"),
                "quick": args.quick,
                "cores": os.cpu_count(),
                "runs": runs,
                "goals": [row.__dict__ for row in table],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    (out / "bench.md").write_text(
        markdown(runs, table, quick=args.quick, when=when), encoding="utf-8"
    )
    print_table(console, table)
    console.print(f"report: {out / 'bench.md'} and {out / 'bench.json'}")
    failed = [name for name, entry in runs.items() if entry["exit_status"] != 0]
    if failed:
        console.print(f"[red]failed:[/] {', '.join(failed)} — see its output above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
