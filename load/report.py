"""`python -m load.report RUN_DIR --database-url URL`: a Locust run as Markdown, JSON and a plot.

From Locust's ``--csv`` files (stats, full stats history, failures) come throughput, latency
percentiles and the error rate; from the database, compared with the event ids the locustfile
logged (``sent-*.jsonl``), come the events lost, applied twice, forged ones stored, the
webhook-to-store lag and the sync runs. Nothing here is assumed: every figure is counted.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from adapter.store.models import SyncRun, WebhookEvent
from load.messages import read_sent

CSV_PREFIX: Final = "locust"
MARKDOWN: Final = "report.md"
JSON_FILE: Final = "report.json"
PLOT: Final = "report.png"
COUNTS_FILE: Final = "database-counts.json"
PERCENTILES: Final = ("50%", "95%", "99%")
DEFAULT_TITLE: Final = "Locust run"
# Throughput over time is counted over this many seconds (a multiple of the 3 s at which
# Locust workers report to the master).
RATE_WINDOW_S: Final = 6.0


# -- the database -----------------------------------------------------------------------


def _utc(moment: dt.datetime) -> dt.datetime:
    """Stored times are UTC; a backend that drops the zone gives them back naive."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (`q` in 0..1) of `values`, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def count_from_database(engine: Engine, folder: Path, *, since: dt.datetime) -> dict[str, Any]:
    """Compare the ids the locustfile sent (``sent-*.jsonl`` in `folder`) with the inbox.

    lost: acknowledged (2xx) events the inbox does not hold; duplicated: events applied more
    than once, or held twice; forged_stored: events sent with a wrong signature that the inbox
    holds; not_applied: acknowledged events not ``done`` once the worker had drained the queue.
    """
    acknowledged: set[tuple[str, str]] = set()
    forged: set[tuple[str, str]] = set()
    sends: dict[str, int] = defaultdict(int)
    unanswered = 0
    forged_refused = 0
    for line in read_sent(folder):
        key, status, kind = (line["s"], line["id"]), int(line["st"]), line["k"]
        sends[kind] += 1
        if kind == "forged":
            forged.add(key)
            forged_refused += 400 <= status < 500
        elif 200 <= status < 300:
            acknowledged.add(key)
        elif status == 0 or status >= 500:
            unanswered += 1
    columns = (
        WebhookEvent.source,
        WebhookEvent.webhook_id,
        WebhookEvent.state,
        WebhookEvent.applied_count,
        WebhookEvent.occurred_at,
        WebhookEvent.received_at,
        WebhookEvent.processed_at,
    )
    held: dict[tuple[str, str], int] = defaultdict(int)
    states: dict[str, int] = defaultdict(int)
    applied_twice = 0
    lags_s: list[float] = []
    receive_lags_s: list[float] = []
    with engine.connect() as connection:
        for source, webhook_id, state, applied, occurred, received, processed in connection.execute(
            select(*columns)
        ):
            key = (source, webhook_id)
            held[key] += 1
            if key not in acknowledged:
                continue
            states[state] += 1
            applied_twice += applied > 1
            receive_lags_s.append((_utc(received) - _utc(occurred)).total_seconds())
            if processed is not None:
                lags_s.append((_utc(processed) - _utc(occurred)).total_seconds())
    with Session(engine) as session:
        runs = list(session.scalars(select(SyncRun).where(SyncRun.started_at >= _utc(since))))
    stored = acknowledged & held.keys()
    sync_runs = []
    for run in runs:
        seconds = (
            (_utc(run.finished_at) - _utc(run.started_at)).total_seconds()
            if run.finished_at
            else None
        )
        sync_runs.append(
            {
                "system": run.system,
                "mode": run.mode,
                "status": run.status,
                "fetched": run.fetched,
                "created": run.created,
                "updated": run.updated,
                "unchanged": run.unchanged,
                "rejected": run.rejected,
                "started_at": _utc(run.started_at).isoformat(),
                "duration_s": seconds,
                "records_per_s": run.fetched / seconds if seconds else None,
                "error": run.error,
            }
        )
    counts: dict[str, Any] = {
        "sent": dict(sends),
        "acknowledged_events": len(acknowledged),
        "unanswered_sends": unanswered,
        "forged_sent": len(forged),
        "forged_refused": forged_refused,
        "stored": len(stored),
        "lost": len(acknowledged - stored),
        "duplicated": applied_twice + sum(n - 1 for key, n in held.items() if key in stored),
        "forged_stored": len(forged & held.keys()),
        "states": dict(states),
        "not_applied": len(stored) - states.get("done", 0),
        "lag_s": _summary(lags_s),
        "receive_lag_s": _summary(receive_lags_s),
        "sync_runs": sync_runs,
    }
    (folder / COUNTS_FILE).write_text(json.dumps(counts, indent=2), encoding="utf-8")
    return counts


def _summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "events": len(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else None,
    }


# -- Locust's CSV files -------------------------------------------------------------------


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "N/A" before the first request
        return None


def read_stats(path: Path) -> list[dict[str, Any]]:
    """One row per request name, then the "Aggregated" row. Locust computes its percentiles
    from response times rounded to two significant figures (above 100 ms), so a percentile
    can exceed the exact maximum (2,100 against 2,070 ms): it is reported as that maximum."""
    rows = []
    with path.open(encoding="utf-8", newline="") as lines:
        for row in csv.DictReader(lines):
            top = _number(row["Max Response Time"])
            rows.append(
                {
                    "type": row["Type"],
                    "name": row["Name"],
                    "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "requests_per_s": float(row["Requests/s"]),
                    **{f"p{p[:-1]}_ms": _at_most(_number(row[p]), top) for p in PERCENTILES},
                    "max_ms": top,
                }
            )
    return rows


def _at_most(value: float | None, top: float | None) -> float | None:
    return value if value is None or top is None else min(value, top)


def read_history(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as lines:
        return list(csv.DictReader(lines))


def read_failures(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as lines:
        return [
            {"name": row["Name"], "error": row["Error"], "occurrences": int(row["Occurrences"])}
            for row in csv.DictReader(lines)
        ]


def read_exceptions(path: Path) -> list[dict[str, Any]]:
    """Errors raised inside the users' tasks (Locust counts them apart from failed requests):
    a task that cannot run sends nothing, and that is a failed load run, not a quiet one."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as lines:
        return [
            {"message": row["Message"][:300], "count": int(row["Count"])}
            for row in csv.DictReader(lines)
        ]


def group_of(name: str) -> str:
    """The plot's series a request name belongs to."""
    if name.startswith("POST /webhooks/"):
        return "webhooks"
    if name.startswith(("GET /api/v1/health-workers", "POST /api/v1/health-workers")):
        return "API reads"
    return "other (SSO, sync)"


def series(history: Iterable[dict[str, str]]) -> dict[str, Any]:
    """Series from the full stats history: throughput by group (the total counts' increase
    over `RATE_WINDOW_S`), and the aggregate's users and Locust's rolling p50/p95/p99."""
    start: float | None = None
    totals: dict[str, dict[float, int]] = defaultdict(lambda: defaultdict(int))
    aggregate: list[dict[str, Any]] = []
    for row in history:
        moment = float(row["Timestamp"])
        start = moment if start is None else start
        if row["Name"] == "Aggregated":
            aggregate.append(
                {
                    "t": moment - start,
                    "users": int(row["User Count"]),
                    "rps": _number(row["Requests/s"]),
                    "failures_per_s": _number(row["Failures/s"]),
                    **{f"p{p[:-1]}": _number(row[p]) for p in PERCENTILES},
                }
            )
        else:
            totals[group_of(row["Name"])][moment - start] += int(row["Total Request Count"])
    throughput: dict[str, list[tuple[float, float]]] = {}
    for group, counts in totals.items():
        moments = sorted(counts)
        points = []
        for moment in moments:
            # Over a window: distributed workers report their counts every 3 s, in steps.
            first = next(m for m in moments if m >= moment - RATE_WINDOW_S)
            if moment > first:
                points.append((moment, (counts[moment] - counts[first]) / (moment - first)))
        throughput[group] = points
    return {"aggregate": aggregate, "throughput": throughput}


# -- the report ---------------------------------------------------------------------------


def write_report(folder: Path, counts: dict[str, Any], *, title: str) -> dict[str, Any]:
    """report.md, report.json and report.png in `folder`; the JSON document."""
    stats = read_stats(folder / f"{CSV_PREFIX}_stats.csv")
    failures = read_failures(folder / f"{CSV_PREFIX}_failures.csv")
    exceptions = read_exceptions(folder / f"{CSV_PREFIX}_exceptions.csv")
    over_time = series(read_history(folder / f"{CSV_PREFIX}_stats_history.csv"))
    aggregated = next(row for row in stats if row["name"] == "Aggregated")
    duration = over_time["aggregate"][-1]["t"] if over_time["aggregate"] else 0.0
    webhook_rows = [row for row in stats if group_of(row["name"]) == "webhooks"]
    read_rows = [row for row in stats if group_of(row["name"]) == "API reads"]
    checks = {
        "nothing_sent": int(aggregated["requests"] == 0),
        "task_errors": sum(exception["count"] for exception in exceptions),
        "unexpected_failures": aggregated["failures"],
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
        "forged_stored": counts["forged_stored"],
        "not_applied": counts["not_applied"],
        "failed_sync_runs": sum(run["status"] != "succeeded" for run in counts["sync_runs"]),
    }
    document: dict[str, Any] = {
        "title": title,
        "duration_s": duration,
        "requests": aggregated["requests"],
        "requests_per_s": aggregated["requests_per_s"],
        "error_rate": aggregated["failures"] / aggregated["requests"]
        if aggregated["requests"]
        else 0.0,
        "webhooks_per_s": sum(row["requests_per_s"] for row in webhook_rows),
        "api_reads_per_s": sum(row["requests_per_s"] for row in read_rows),
        "stats": stats,
        "failures": failures,
        "exceptions": exceptions,
        "database": counts,
        "checks": checks,
        "verdict": "pass" if not any(checks.values()) else "fail",
        "series": over_time,
    }
    (folder / JSON_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")
    (folder / MARKDOWN).write_text(markdown(document), encoding="utf-8")
    plot(over_time, folder / PLOT, title=title)
    return document


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def markdown(document: dict[str, Any]) -> str:
    database = document["database"]
    lines = [
        f"# Load run — {document['verdict'].upper()}",
        "",
        document["title"],
        "",
        f"{document['requests']:,} requests in {document['duration_s']:.0f} s: "
        f"{document['requests_per_s']:,.1f} req/s overall, webhooks "
        f"{document['webhooks_per_s']:,.1f}/s, API reads {document['api_reads_per_s']:,.1f}/s, "
        f"error rate {document['error_rate']:.2%} (refused forgeries are expected answers, "
        "not errors).",
        "",
        "| request | count | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in document["stats"]:
        lines.append(
            f"| {row['name']} | {row['requests']:,} | {row['failures']:,} | "
            f"{row['requests_per_s']:,.1f} | {_ms(row['p50_ms'])} | {_ms(row['p95_ms'])} | "
            f"{_ms(row['p99_ms'])} | {_ms(row['max_ms'])} |"
        )
    lag, receive = database["lag_s"], database["receive_lag_s"]
    lines += [
        "",
        "## Events, counted from the database",
        "",
        "| | |",
        "|---|---:|",
        f"| events acknowledged (2xx) | {database['acknowledged_events']:,} |",
        f"| sends by kind | {', '.join(f'{k} {v:,}' for k, v in database['sent'].items())} |",
        f"| in the inbox | {database['stored']:,} |",
        f"| **lost** (acknowledged, not in the inbox) | **{database['lost']:,}** |",
        f"| **duplicated** (applied twice or held twice) | **{database['duplicated']:,}** |",
        f"| forged: sent / refused / stored | {database['forged_sent']:,} / "
        f"{database['forged_refused']:,} / {database['forged_stored']:,} |",
        f"| not applied after the drain | {database['not_applied']:,} "
        f"({', '.join(f'{k} {v:,}' for k, v in database['states'].items())}) |",
        f"| sends with no answer or a 5xx | {database['unanswered_sends']:,} |",
        f"| lag occurred → received, p50 / p95 / p99 s | {_s(receive['p50'])} / "
        f"{_s(receive['p95'])} / {_s(receive['p99'])} |",
        f"| lag occurred → committed in the store, p50 / p95 / p99 / max s | "
        f"{_s(lag['p50'])} / {_s(lag['p95'])} / {_s(lag['p99'])} / {_s(lag['max'])} |",
    ]
    if database["sync_runs"]:
        lines += [
            "",
            "## Sync runs during the load",
            "",
            "| system | mode | status | fetched | created | updated | seconds | records/s |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for run in database["sync_runs"]:
            lines.append(
                f"| {run['system']} | {run['mode']} | {run['status']} | {run['fetched']:,} | "
                f"{run['created']:,} | {run['updated']:,} | {_s(run['duration_s'])} | "
                f"{_s(run['records_per_s'])} |"
            )
    if document["failures"]:
        lines += ["", "## Failures", "", "| request | error | count |", "|---|---|---:|"]
        for failure in document["failures"]:
            lines.append(f"| {failure['name']} | {failure['error']} | {failure['occurrences']} |")
    if document["exceptions"]:
        lines += ["", "## Errors in the users' tasks", "", "| error | count |", "|---|---:|"]
        for exception in document["exceptions"]:
            message = " ".join(exception["message"].split()).replace("|", "\\|")
            lines.append(f"| {message} | {exception['count']} |")
    failed = [name for name, value in document["checks"].items() if value]
    lines += [
        "",
        "Checks: "
        + (", ".join(f"{name} = {document['checks'][name]}" for name in failed) or "all zero")
        + f". Plot: {PLOT}.",
        "",
    ]
    return "\n".join(lines)


def plot(over_time: dict[str, Any], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, (rate, latency, users) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for group, points in sorted(over_time["throughput"].items()):
        rate.plot([t for t, _ in points], [v for _, v in points], label=group)
    rate.set_ylabel("requests/s")
    rate.legend(loc="upper left")
    rate.set_title(title, fontsize=9)
    aggregate = over_time["aggregate"]
    seconds = [point["t"] for point in aggregate]
    for name in ("p50", "p95", "p99"):
        latency.plot(seconds, [point[name] for point in aggregate], label=name)
    latency.set_ylabel("latency ms (rolling)")
    latency.legend(loc="upper left")
    users.plot(seconds, [point["users"] for point in aggregate], label="users")
    users.plot(seconds, [point["failures_per_s"] for point in aggregate], label="failures/s")
    users.set_xlabel("seconds since start")
    users.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run's folder (Locust CSVs, sent-*.jsonl)")
    parser.add_argument("--database-url", help="count again from this store")
    parser.add_argument(
        "--since",
        help="sync runs started at or after (ISO time; default: the run's first Locust sample)",
    )
    parser.add_argument(
        "--title", help="the report's title (default: the one of the report already there)"
    )
    args = parser.parse_args(argv)
    problem = _not_a_run(args.run, counted=bool(args.database_url))
    if problem is not None:
        print(f"load.report: error: {problem}", file=sys.stderr)
        return 2
    title = args.title or _previous_title(args.run) or DEFAULT_TITLE
    if args.database_url:
        since = dt.datetime.fromisoformat(args.since) if args.since else run_started(args.run)
        engine = create_engine(args.database_url)
        try:
            counts = count_from_database(engine, args.run, since=_utc(since))
        finally:
            engine.dispose()
    else:
        counts = json.loads((args.run / COUNTS_FILE).read_text(encoding="utf-8"))
    document = write_report(args.run, counts, title=title)
    print((args.run / MARKDOWN).read_text(encoding="utf-8"))
    return 0 if document["verdict"] == "pass" else 1


def run_started(folder: Path) -> dt.datetime:
    """When the run's load began: its first Locust sample (the full history's Timestamp, in
    Unix seconds). Counting sync runs from then, not from the store's first run ever."""
    history = read_history(folder / f"{CSV_PREFIX}_stats_history.csv")
    stamps = [int(row["Timestamp"]) for row in history if row.get("Timestamp", "").isdigit()]
    if not stamps:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(min(stamps), dt.UTC)


def _not_a_run(folder: Path, *, counted: bool) -> str | None:
    """What keeps `folder` from being reported again, said for the user; None when nothing."""
    if not folder.is_dir():
        return f"{folder} is not a folder; give the folder of a run made by `python -m load.run`"
    needed = [f"{CSV_PREFIX}_stats.csv", f"{CSV_PREFIX}_stats_history.csv"]
    if not counted:
        needed.append(COUNTS_FILE)
    missing = [name for name in needed if not (folder / name).is_file()]
    if not missing:
        return None
    advice = (
        "; count from the store with --database-url URL"
        if missing == [COUNTS_FILE]
        else ": is it the folder of a run made by `python -m load.run`?"
    )
    return f"{folder} has no {', '.join(missing)}{advice}"


def _previous_title(folder: Path) -> str | None:
    try:
        title = json.loads((folder / JSON_FILE).read_text(encoding="utf-8")).get("title")
    except (OSError, ValueError, AttributeError):
        return None
    return title if isinstance(title, str) and title else None


if __name__ == "__main__":
    sys.exit(main())
