"""Every query of the Grafana dashboards and the alert rules names a metric the adapter really
exports: checked against the live ``/metrics`` of a real `hf-adapter serve`, `worker
--metrics-port` and `schedule --metrics-port`, and the file `audit verify --metrics-file` writes,
on PostgreSQL and RabbitMQ. Also: the scheduler's and the audit check's gauges carry the values
the alerts expect."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import URL

from adapter.clients.http import tls_context
from harness.processes import ManagedProcess, free_port
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import Adapter, adapter_stack
from tests.support.databases import PostgresServer

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
RULES = DEPLOY / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bhf_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b(hf_[a-z0-9_]+)\{([^}]*)\}")
SYSTEM_MATCHER = re.compile(r'\bsystem\s*=\s*"([^"]*)"')  # equality only, not =~ or !=
SYSTEMS = {"kki", "sisdmk"}  # as the store, the CLI and the API name them
# The samples each family type exposes (the text format names families without the suffix).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}
WAIT_S = 60.0


def sample_names(exposition: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every target of every panel of every dashboard."""
    queries = []
    for path in DASHBOARDS:
        document = json.loads(path.read_text(encoding="utf-8"))
        for panel in document["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{path.name}: {panel['title']}", target["expr"]))
    return queries


def rule_queries() -> list[tuple[str, str]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [
        (f"alerts.yml: {rule['alert']}", rule["expr"])
        for group in document["groups"]
        for rule in group["rules"]
    ]


def system_selectors(queries: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(where, sample name, system) for every `system="..."` matcher of the queries."""
    return [
        (where, name, system)
        for where, expr in queries
        for name, matchers in SELECTOR.findall(expr)
        for system in SYSTEM_MATCHER.findall(matchers)
    ]


def system_values(exposition: str) -> dict[str, set[str]]:
    """The values of the `system` label, by sample name."""
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if "system" in sample.labels:
                values.setdefault(sample.name, set()).add(sample.labels["system"])
    return values


def scrape(url: str) -> str:
    """The exposition at `url`, once it answers (a process that just started may not yet)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            response = httpx.get(url, timeout=5, verify=tls_context(None))
            if response.status_code == 200:
                return response.text
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {WAIT_S:.0f} s")
        time.sleep(0.2)


def gauge(exposition: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


def polled(exposition: str) -> bool:
    """Whether the scheduler's poll timestamp is exported and set."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "hf_schedule_poll_timestamp_seconds":
                return sample.value > 0
    return False


def start(adapter: Adapter, name: str, *args: str) -> ManagedProcess:
    argv = [sys.executable, "-m", "adapter", *args]
    process = ManagedProcess(name, argv, env=adapter.environment).start()
    adapter.workers.append(process)  # closed with the stack
    return process


@pytest.fixture
def stack(
    postgres_server: PostgresServer, broker: str, mocks: tuple[Mock, Mock]
) -> Iterator[Adapter]:
    kki, sisdmk = mocks
    database: URL = postgres_server.create_database()
    with adapter_stack(
        database,
        kki,
        sisdmk,
        broker=broker,
        # Due now (yesterday's slot never ran): the scheduler syncs both small mocks at once.
        extra_env={"SYNC_SCHEDULE": "sisdmk=00:00,kki=00:00", "SCHEDULE_POLL_S": "1"},
    ) as adapter:
        yield adapter


def test_every_dashboard_and_alert_query_names_an_exported_metric(
    stack: Adapter, tmp_path: Path
) -> None:
    worker_port, schedule_port = free_port(), free_port()
    start(stack, "worker", "worker", "--metrics-port", str(worker_port))
    scheduler = start(stack, "schedule", "schedule", "--metrics-port", str(schedule_port))
    audit_file = tmp_path / "hf_audit.prom"
    before_verify = time.time()
    code, output = stack.cli("audit", "verify", "--metrics-file", str(audit_file))
    assert code == 0, output

    serve_metrics = scrape(f"{stack.url}/metrics")
    worker_metrics = scrape(f"http://127.0.0.1:{worker_port}/metrics")
    # The scheduler's gauges appear once its metrics thread registers them (the endpoint answers
    # before), at 0, and are set at that thread's first look: wait for that look.
    deadline = time.monotonic() + WAIT_S
    while not polled(schedule_metrics := scrape(f"http://127.0.0.1:{schedule_port}/metrics")):
        assert time.monotonic() < deadline, scheduler.output()
        time.sleep(0.2)
    audit_metrics = audit_file.read_text(encoding="utf-8")

    exported = set().union(
        *(sample_names(text) for text in (serve_metrics, worker_metrics, schedule_metrics))
    )
    exported |= sample_names(audit_metrics)
    queries = dashboard_queries() + rule_queries()
    assert len(DASHBOARDS) == 4
    assert len(queries) > 50
    unknown = [
        f"{where}: {name}"
        for where, expr in queries
        for name in METRIC.findall(expr)
        if name not in exported
    ]
    assert unknown == [], "queries name metrics nothing exports"
    # One spelling per system, or `by (system)` splits it and a matcher misses half of it.
    for text in (serve_metrics, worker_metrics, schedule_metrics):
        assert set().union(*system_values(text).values()) <= SYSTEMS, system_values(text)
    dashboards_use = {name for _, expr in dashboard_queries() for name in METRIC.findall(expr)}
    assert {"hf_schedule_overdue_seconds", "hf_audit_chain_intact"} <= dashboards_use

    # What the alerts read: a scheduler that polled just now, an intact chain verified just now.
    now = time.time()
    assert now - gauge(schedule_metrics, "hf_schedule_poll_timestamp_seconds") < WAIT_S
    assert gauge(audit_metrics, "hf_audit_chain_intact") == 1.0
    verified = gauge(audit_metrics, "hf_audit_chain_verified_timestamp_seconds")
    assert before_verify - 1 <= verified <= now


def test_the_scheduler_reports_each_systems_last_success_after_it_syncs(stack: Adapter) -> None:
    port = free_port()
    scheduler = start(stack, "schedule", "schedule", "--metrics-port", str(port))
    deadline = time.monotonic() + 240
    while True:
        metrics = scrape(f"http://127.0.0.1:{port}/metrics")
        try:
            finished = {
                system: gauge(metrics, "hf_sync_last_success_timestamp_seconds", system=system)
                for system in ("kki", "sisdmk")
            }
            # Set from the store at the poll after the runs: both slots taken, none overdue.
            overdue = [
                gauge(metrics, "hf_schedule_overdue_seconds", system=system)
                for system in ("kki", "sisdmk")
            ]
            if overdue == [0.0, 0.0]:
                break
        except AssertionError:
            pass
        assert time.monotonic() < deadline, scheduler.output()
        time.sleep(0.5)
    assert all(time.time() - at < 300 for at in finished.values()), finished
    # After a sync of each system its calls are exported: every `system="..."` matcher of the
    # dashboards and alerts (the SSO dashboard's SISDMK token requests) finds its series.
    exported = system_values(metrics)
    assert set().union(*exported.values()) == SYSTEMS, exported
    selectors = system_selectors(dashboard_queries() + rule_queries())
    assert selectors, "no query selects a system"
    missing = [
        f"{where}: {name}{{system={system!r}}}"
        for where, name, system in selectors
        if system not in exported.get(name, set())
    ]
    assert missing == [], "queries select system label values nothing exports"


def test_a_broken_chain_is_written_as_zero_for_the_alert(stack: Adapter, tmp_path: Path) -> None:
    from sqlalchemy import text

    code, output = stack.cli("sync", "--system", "sisdmk")
    assert code == 0, output
    with stack.engine.begin() as connection:  # as the owner, around the triggers
        connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        connection.execute(text("UPDATE audit_events SET actor_subject = 'someone else'"))
        connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
    metrics_file = tmp_path / "hf_audit.prom"
    code, output = stack.cli("audit", "verify", "--metrics-file", str(metrics_file))
    assert code == 1, output
    exposition = metrics_file.read_text(encoding="utf-8")
    assert gauge(exposition, "hf_audit_chain_intact") == 0.0
    values: dict[str, Any] = {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert values["hf_audit_chain_entries"] == 0  # the first entry is already wrong
