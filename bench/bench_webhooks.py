"""Benchmark the webhook path of `hf-adapter serve` (gunicorn, gthread) with its real durability.

1. Accepted webhooks/s and p99 latency of ``POST /webhooks/kki`` (signature, schema, inbox insert
   in PostgreSQL, confirmed publish to RabbitMQ), against a bare endpoint in the SAME gunicorn
   server that only reads the body and answers 202, in the same invocation (ratio). Load from
   `wrk` replaying pre-signed requests, each with its own webhook id.
2. Webhook-to-database lag p50/p95/p99 at a steady load: the real KKI/SISDMK mocks emit events
   at a fixed rate; `hf-adapter worker` applies them; lag = commit time - the event's occurred_at.
3. Events applied end to end per second: a storm of events emitted at once (mock -> webhook ->
   worker -> store), from the first event's occurred_at to the last one's commit.
4. A fault run: a storm with the worker SIGKILLed mid-way and RabbitMQ cut off (TCP fault proxy)
   for a while; events lost and applied twice, which must be 0 and 0.

Needs PostgreSQL and RabbitMQ as the tests do. Writes reports/bench-webhooks.json.

    .venv/bin/python bench/bench_webhooks.py [--duration 10] [--connections 16] [--rate 200]
        [--parts throughput,lag,storm,fault]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from adapter.webhooks.signature import sign  # noqa: E402
from bench.gunicorn import gunicorn_argv, py_spy, served_evenly, split_text  # noqa: E402
from bench.processes import backends, cpu_seconds, process_tree  # noqa: E402
from harness import services  # noqa: E402
from harness.processes import ManagedProcess, free_port, start_mock  # noqa: E402
from tests.integration.adapter.queue.tcp_proxy import TcpFaultProxy  # noqa: E402
from tests.integration.adapter.sync.support import Mock  # noqa: E402
from tests.integration.adapter.webhooks.support import (  # noqa: E402
    FAST_WEBHOOKS,
    Adapter,
    delete_topology,
    emit,
    migrated_engine,
    stack_environment,
    subscribe,
    unique_prefix,
)

ADMIN_URL = services.database_url()
BROKER_URL = services.broker_url()
REPORT = ROOT / "reports" / "bench-webhooks.json"
PRESIGNED = 60_000
PARTS = ("throughput", "lag", "storm", "fault")


def bench_app() -> Flask:
    """The adapter's app plus a bare endpoint, for gunicorn: `bench.bench_webhooks:bench_app()`."""
    from flask import request

    from adapter.app import create_app
    from adapter.settings import load_settings

    app = create_app(load_settings())

    def bare() -> tuple[Response, int]:
        request.get_data()
        return Response('{"status":"accepted"}', mimetype="application/json"), 202

    app.add_url_rule("/bench/bare", "bench_bare", bare, methods=["POST"])
    return app


def lua_script(path: Path, secret: str, count: int) -> None:
    """A wrk script cycling through `count` pre-signed requests with distinct webhook ids."""
    moment = int(time.time())
    lines = ["local requests = {}"]
    for index in range(count):
        event_id = str(uuid.uuid4())
        body = json.dumps(
            {
                "event_id": event_id,
                "type": "registration.corrected",
                "occurred_at": "2026-02-01T09:30:00.000000Z",
                "source": "kki",
                "subject": {"nik_hash": "0" * 64, "str_number": f"QZ{index:014d}"},
                "data": {"str_number": f"QZ{index:014d}", "version": 2, "status": "AKTIF"},
                "version": "1",
            },
            separators=(",", ":"),
        )
        signature = sign(secret, event_id, moment, body.encode())
        lines.append(
            f"requests[{index + 1}] = {{{json.dumps(event_id)}, {json.dumps(signature)}, "
            f"{json.dumps(body)}}}"
        )
    lines += [
        f"local timestamp = {json.dumps(str(moment))}",
        "local n = 0",
        "request = function()",
        f"  n = n % {count} + 1",
        "  local r = requests[n]",
        '  return wrk.format("POST", nil, {["content-type"] = "application/json",',
        '    ["webhook-id"] = r[1], ["webhook-timestamp"] = timestamp,',
        '    ["webhook-signature"] = r[2]}, r[3])',
        "end",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    # One wrk thread: each thread has its own Lua state, so two would replay the same ids.
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url]
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


def measured_cpu(run: Any, groups: dict[str, list[int]]) -> tuple[Any, dict[str, float]]:
    """`run()`'s result and the CPU seconds each group of processes spent during it."""
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    result = run()
    return result, {name: cpu_seconds(pids) - before[name] for name, pids in groups.items()}


def new_database() -> str:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hf_bench_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        services.drop_database(connection, str(make_url(url).database))
    admin.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def lags_ms(adapter: Adapter) -> list[float]:
    return [
        (event.processed_at - event.occurred_at).total_seconds() * 1000
        for event in adapter.events()
        if event.processed_at is not None
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--rate", type=int, default=200, help="events/s in the lag run")
    parser.add_argument("--lag-seconds", type=int, default=15)
    parser.add_argument("--storm-events", type=int, default=3000)
    parser.add_argument("--fault-events", type=int, default=1000)
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument(
        "--broker-prefetch",
        type=int,
        help="BROKER_PREFETCH of the worker (default: the adapter's, 16); keep it at least "
        "--worker-concurrency, or the worker never holds more messages than it",
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="threads per gunicorn process (throughput part)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="throughput part: sample the gunicorn workers with py-spy during the durable run, "
        "idle threads included (collapsed stacks, to this file)",
    )
    parser.add_argument(
        "--profile-gil",
        type=Path,
        help="the same, but only the thread holding the GIL in each sample (--gil)",
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    args = parser.parse_args()
    parts = [part for part in args.parts.split(",") if part]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if "throughput" in parts and not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    console = Console()
    report: dict[str, Any] = {
        "connections": args.connections,
        "gunicorn_workers": args.workers,
        "gunicorn_threads": args.threads,
        "worker_concurrency": args.worker_concurrency,
        "broker_prefetch": args.broker_prefetch,
        "load_average_at_start": os.getloadavg()[0],
    }
    kki_process, kki_url = start_mock("kki", size=200, seed=5, extra=FAST_WEBHOOKS)
    sisdmk_process, sisdmk_url = start_mock("sisdmk", size=200, seed=5, extra=FAST_WEBHOOKS)
    kki, sisdmk = Mock(kki_url), Mock(sisdmk_url)
    try:
        if "throughput" in parts:
            report["throughput"] = throughput(kki, sisdmk, args, console)
        if "lag" in parts:
            report["lag"] = steady_lag(kki, sisdmk, args)
        if "storm" in parts:
            report["storm"] = storm(kki, sisdmk, args)
        if "fault" in parts:
            report["fault_run"] = fault_run(kki, sisdmk, args)
    finally:
        kki.close()
        sisdmk.close()
        kki_process.close()
        sisdmk_process.close()
    report["load_average_at_end"] = os.getloadavg()[0]

    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = Table(
        title=f"webhooks under gunicorn ({args.workers} gthread workers x {args.threads} threads, "
        f"wrk {args.connections} connections; worker --concurrency {args.worker_concurrency}"
        + ("" if args.broker_prefetch is None else f", BROKER_PREFETCH {args.broker_prefetch}")
        + ")"
    )
    for column in ("measure", "value"):
        table.add_column(column)
    for name, value in summary_rows(report):
        table.add_row(name, value)
    console.print(table)
    console.print(f"wrote {REPORT.relative_to(ROOT)}")
    fault = report.get("fault_run")
    return 0 if fault is None or (fault["lost"] == 0 and fault["duplicated"] == 0) else 1


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        (
            "load average (1 min) at start / end",
            f"{report['load_average_at_start']:.1f} / {report['load_average_at_end']:.1f}",
        )
    ]
    if throughput := report.get("throughput"):
        bare, durable = throughput["bare"], throughput["durable"]
        rows += [
            (
                "bare endpoint",
                f"{bare['requests_per_s']:,.0f} req/s, p50 {bare['p50_ms']:.1f} ms, "
                f"p99 {bare['p99_ms']:.1f} ms, {split_text(bare)}",
            ),
            (
                "durable path (verify + inbox + confirmed publish)",
                f"{durable['requests_per_s']:,.0f} req/s, p50 {durable['p50_ms']:.1f} ms, "
                f"p99 {durable['p99_ms']:.1f} ms, non-2xx {durable['non_2xx']:.0f}, "
                f"{split_text(durable)}",
            ),
            ("ratio durable / bare", f"{throughput['ratio']:.2f}"),
            (
                "CPU ms per request, bare / durable",
                f"{cpu_text(bare['cpu_ms_per_request'])} / "
                f"{cpu_text(durable['cpu_ms_per_request'])}",
            ),
            (
                "stored / left unpublished after the run",
                f"{throughput['stored']:,} / {throughput['left_unpublished']:,}",
            ),
        ]
    if lag := report.get("lag"):
        rows.append(
            (
                f"lag at {lag['rate_per_s']} events/s (webhook -> store)",
                f"p50 {lag['p50_ms']:,.0f} ms, p95 {lag['p95_ms']:,.0f} ms, "
                f"p99 {lag['p99_ms']:,.0f} ms, max {lag['max_ms']:,.0f} ms "
                f"({lag['events']} events, {lag['lost']} lost); p95 of the mock's delivery "
                f"{lag['delivery_p95_ms']:,.0f} ms, of the adapter {lag['adapter_p95_ms']:,.0f} ms "
                f"(received to published {lag['publish_p95_ms']:,.0f} ms)",
            )
        )
    if storm_run := report.get("storm"):
        rows.append(
            (
                f"storm of {storm_run['events']:,} events (mock -> worker -> store)",
                f"{storm_run['events_per_s']:,.0f} events/s applied, "
                f"lag p95 {storm_run['p95_ms']:,.0f} ms, {storm_run['lost']} lost",
            )
        )
    if fault := report.get("fault_run"):
        rows += [
            ("fault run: events", f"{fault['events']:,}"),
            ("fault run: lost / applied twice", f"{fault['lost']} / {fault['duplicated']}"),
        ]
    return rows


def cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())


def throughput(
    kki: Mock, sisdmk: Mock, args: argparse.Namespace, console: Console
) -> dict[str, Any]:
    """The durable path vs a bare endpoint in the same gunicorn server."""
    database = new_database()
    prefix = unique_prefix()
    environment = stack_environment(database, kki.url, sisdmk.url, broker=BROKER_URL, prefix=prefix)
    environment["WEBHOOK_TIMESTAMP_TOLERANCE_S"] = "3600"
    engine = migrated_engine(database)
    port = free_port()
    server = ManagedProcess(
        "bench-serve",
        gunicorn_argv(
            "bench.bench_webhooks:bench_app()",
            workers=args.workers,
            port=port,
            threads=args.threads,
        ),
        env=environment,
    ).start()
    try:
        server.wait_http(f"http://127.0.0.1:{port}/healthz")
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "webhooks.lua"
            console.print(f"pre-signing {PRESIGNED:,} webhooks …")
            lua_script(script, environment["KKI_WEBHOOK_SECRET"], PRESIGNED)
            base = f"http://127.0.0.1:{port}"
            groups = {"gunicorn": process_tree(server.pid), "postgresql": backends(database)}
            # The bare run again while one gunicorn worker served it alone; the durable one
            # cannot be run again (wrk would replay the same webhooks: duplicates), so it is
            # only marked.
            served_bare = served_evenly(
                server.pid,
                lambda: measured_cpu(
                    lambda: wrk(f"{base}/bench/bare", script, args.duration, args.connections),
                    groups,
                ),
            )
            bare, bare_cpu = served_bare.result
            groups["postgresql"] = backends(database)
            spies = [
                py_spy(server.pid, out, args.duration, gil=gil)
                for out, gil in ((args.profile, False), (args.profile_gil, True))
                if out is not None
            ]
            served_durable = served_evenly(
                server.pid,
                lambda: measured_cpu(
                    lambda: wrk(f"{base}/webhooks/kki", script, args.duration, args.connections),
                    groups,
                ),
                attempts=1,
            )
            durable, durable_cpu = served_durable.result
            for spy in spies:
                spy.wait(timeout=60)
        # The receiver publishes after answering: give its last batch a moment.
        time.sleep(2)
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM webhook_events")).scalar()
            unpublished = connection.execute(
                text("SELECT count(*) FROM webhook_events WHERE published_at IS NULL")
            ).scalar()
    finally:
        server.close()
        engine.dispose()
        delete_topology(BROKER_URL, prefix)
        drop_database(database)
    bare = served_bare.figures(bare)
    durable = served_durable.figures(durable)
    bare["cpu_ms_per_request"] = cpu_per_request(bare, bare_cpu, args.duration)
    durable["cpu_ms_per_request"] = cpu_per_request(durable, durable_cpu, args.duration)
    return {
        "bare": bare,
        "durable": durable,
        "ratio": durable["requests_per_s"] / bare["requests_per_s"],
        "stored": stored,
        "left_unpublished": unpublished,
    }


def started_adapter(
    kki: Mock, sisdmk: Mock, database: str, broker: str, prefix: str, prefetch: int | None
) -> Adapter:
    environment = stack_environment(database, kki.url, sisdmk.url, broker=broker, prefix=prefix)
    if prefetch is not None:
        environment["BROKER_PREFETCH"] = str(prefetch)
    adapter = Adapter(environment, migrated_engine(database))
    adapter.serve(workers=2)
    subscribe(kki, "kki", f"{adapter.url}/webhooks/kki", environment["KKI_WEBHOOK_SECRET"])
    subscribe(
        sisdmk, "sisdmk", f"{adapter.url}/webhooks/sisdmk", environment["SISDMK_WEBHOOK_SECRET"]
    )
    return adapter


def reset(*mocks: Mock) -> None:
    for mock in mocks:
        mock.admin.post("/reset", json={"faults": True, "subscriptions": True, "deliveries": True})


def cpu_per_request(
    result: dict[str, Any], cpu: dict[str, float], duration: int
) -> dict[str, float]:
    requests = result["requests_per_s"] * duration
    return {name: round(1000 * seconds / requests, 3) for name, seconds in cpu.items()}


def lag_figures(adapter: Adapter) -> dict[str, float]:
    """Lag percentiles, and the p95 of its two legs: the mock's delivery (occurred_at to the
    inbox's received_at) and the adapter's (received_at to the worker's commit)."""
    events = [event for event in adapter.events() if event.processed_at is not None]
    lags = lags_ms(adapter)

    def p95_ms(spans: list[float]) -> float:
        return percentile(spans, 0.95)

    return {
        "p50_ms": percentile(lags, 0.5),
        "p95_ms": percentile(lags, 0.95),
        "p99_ms": percentile(lags, 0.99),
        "max_ms": max(lags),
        "delivery_p95_ms": p95_ms(
            [(e.received_at - e.occurred_at).total_seconds() * 1000 for e in events]
        ),
        "publish_p95_ms": p95_ms(
            [(e.published_at - e.received_at).total_seconds() * 1000 for e in events]  # type: ignore[operator]
        ),
        "adapter_p95_ms": p95_ms(
            [(e.processed_at - e.received_at).total_seconds() * 1000 for e in events]  # type: ignore[operator]
        ),
    }


def steady_lag(kki: Mock, sisdmk: Mock, args: argparse.Namespace) -> dict[str, Any]:
    """Events at `args.rate` per second (a burst every 100 ms, half KKI, half SISDMK)."""
    database, prefix = new_database(), unique_prefix()
    adapter = started_adapter(kki, sisdmk, database, BROKER_URL, prefix, args.broker_prefetch)
    try:
        adapter.start_worker(concurrency=args.worker_concurrency)
        time.sleep(2)
        expected: set[str] = set()
        ticks = args.lag_seconds * 10
        per_tick = args.rate / 10
        start = time.monotonic()
        owed = 0.0
        for tick in range(ticks):
            owed += per_tick
            count, owed = int(owed), owed - int(owed)
            kki_count = count // 2 + (tick % 2) * (count % 2)
            for mock, kind, n in (
                (kki, "registration.corrected", kki_count),
                (sisdmk, "worker.updated", count - kki_count),
            ):
                if n:
                    expected |= {e["event_id"] for e in emit(mock, kind, count=n)["events"]}
            time.sleep(max(0.0, start + (tick + 1) / 10 - time.monotonic()))
        emitting_s = time.monotonic() - start
        adapter.wait_for(
            lambda: adapter.counts().get("done", 0) >= len(expected),
            what="lag events",
            timeout_s=120,
        )
        done = {event.webhook_id for event in adapter.events() if event.state == "done"}
        figures = lag_figures(adapter)
    finally:
        adapter.close()
        delete_topology(BROKER_URL, prefix)
        drop_database(database)
        reset(kki, sisdmk)
    return {
        "rate_per_s": args.rate,
        "achieved_rate_per_s": round(len(expected) / emitting_s, 1),
        "events": len(expected),
        "lost": len(expected - done),
        **figures,
    }


def storm(kki: Mock, sisdmk: Mock, args: argparse.Namespace) -> dict[str, Any]:
    """`args.storm_events` emitted at once; applied events/s from the first occurred_at to the
    last commit."""
    database, prefix = new_database(), unique_prefix()
    adapter = started_adapter(kki, sisdmk, database, BROKER_URL, prefix, args.broker_prefetch)
    try:
        adapter.start_worker(concurrency=args.worker_concurrency)
        time.sleep(2)
        half = args.storm_events // 2
        emitted = emit(kki, "registration.corrected", count=half)["events"]
        emitted += emit(sisdmk, "worker.updated", count=args.storm_events - half)["events"]
        expected = {event["event_id"] for event in emitted}
        adapter.wait_for(
            lambda: adapter.counts().get("done", 0) >= len(expected),
            what="storm events",
            timeout_s=120,
        )
        events = adapter.events()
        done = {event.webhook_id for event in events if event.state == "done"}
        first = min(event.occurred_at for event in events)
        last = max(event.processed_at for event in events if event.processed_at is not None)
        figures = lag_figures(adapter)
    finally:
        adapter.close()
        delete_topology(BROKER_URL, prefix)
        drop_database(database)
        reset(kki, sisdmk)
    return {
        "events": len(expected),
        "lost": len(expected - done),
        "seconds": (last - first).total_seconds(),
        "events_per_s": len(done) / (last - first).total_seconds(),
        **figures,
    }


def fault_run(kki: Mock, sisdmk: Mock, args: argparse.Namespace) -> dict[str, Any]:
    database, prefix = new_database(), unique_prefix()
    proxy = TcpFaultProxy(("127.0.0.1", 5672))
    broker = BROKER_URL.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
    adapter = started_adapter(kki, sisdmk, database, broker, prefix, args.broker_prefetch)
    try:
        worker = adapter.start_worker(concurrency=args.worker_concurrency)
        emitted = emit(kki, "skp.credited", count=args.fault_events // 2)["events"]
        adapter.wait_for(
            lambda: adapter.counts().get("done", 0) >= args.fault_events // 10, what="a tenth"
        )
        worker.signal(signal.SIGKILL)
        proxy.down()
        emitted += emit(
            sisdmk, "employment.changed", count=args.fault_events - args.fault_events // 2
        )["events"]
        time.sleep(3)
        proxy.up()
        adapter.start_worker(concurrency=args.worker_concurrency)
        expected = {event["event_id"] for event in emitted}
        adapter.wait_for(
            lambda: adapter.counts().get("done", 0) >= len(expected),
            what="fault run",
            timeout_s=600,
        )
        events = adapter.events()
        done = {event.webhook_id for event in events if event.state == "done"}
        duplicated = sum(1 for event in events if event.applied_count > 1)
    finally:
        adapter.close()
        proxy.close()
        delete_topology(BROKER_URL, prefix)
        drop_database(database)
        reset(kki, sisdmk)
    return {"events": len(expected), "lost": len(expected - done), "duplicated": duplicated}


if __name__ == "__main__":
    sys.exit(main())
