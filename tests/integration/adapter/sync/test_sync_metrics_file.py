"""`hf-adapter sync --metrics-file` as node_exporter's textfile collector reads it: real sync
processes against the real mocks and PostgreSQL, one file per system in one folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import URL

from tests.integration.adapter.sync.support import Mock, adapter_environment, running_mock
from tests.integration.adapter.sync.test_sync_cli_crash import HF_ADAPTER
from tests.support.databases import PostgresServer

pytestmark = pytest.mark.integration

SIZE = 30
# The families docs/operations.md ("Batch sync", Metrics) says the file holds.
DOCUMENTED = {
    "hf_sync_runs",
    "hf_sync_records",
    "hf_sync_identity_findings",
    "hf_sync_duration_seconds",
    "hf_sync_last_success_timestamp_seconds",
    "hf_external_call_duration_seconds",
    "hf_external_calls",
    "hf_external_call_retries",
    "hf_external_call_retries_denied",
}
# States that are true now, not of the run: served unchanged until the next run, they kept
# HfConnectionDown paging after a recovery (the scheduler's and live processes' own).
LIVE_ONLY = {"hf_connection_status", "hf_circuit_breaker_state"}


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=SIZE, seed=31)


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=SIZE, seed=31)


def _run(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HF_ADAPTER), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_sync_metrics_files_hold_only_the_syncs_series_and_two_systems_never_clash(
    kki: Mock, sisdmk: Mock, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url: URL = postgres_server.create_database()
    environment = adapter_environment(
        url.render_as_string(hide_password=False), kki.url, sisdmk.url
    )
    assert _run(environment, "db", "upgrade").returncode == 0
    textfiles = tmp_path / "textfile"  # node_exporter's --collector.textfile.directory
    textfiles.mkdir()

    series: dict[str, set[tuple[str, frozenset[tuple[str, str]]]]] = {}
    for system in ("sisdmk", "kki"):
        metrics_file = textfiles / f"hf_sync_{system}.prom"
        done = _run(environment, "sync", "--system", system, "--metrics-file", str(metrics_file))
        assert done.returncode == 0, done.stderr

        families = list(text_string_to_metric_families(metrics_file.read_text(encoding="utf-8")))
        names = {family.name for family in families}
        foreign = sorted(name for name in names if not name.startswith("hf_"))
        assert foreign == [], f"the {system} file holds the process's own metrics"
        assert names >= DOCUMENTED, sorted(DOCUMENTED - names)
        assert not names & LIVE_ONLY, sorted(names & LIVE_ONLY)
        samples = [sample for family in families for sample in family.samples]
        assert {sample.labels.get("system") for sample in samples} == {system}
        # A failure before this run's end would be counted from 0, not hidden by being first.
        runs = {
            (s.labels["mode"], s.labels["status"]): s.value
            for s in samples
            if s.name == "hf_sync_runs_total"
        }
        assert runs[("full", "failed")] == runs[("incremental", "failed")] == 0
        series[system] = {(s.name, frozenset(s.labels.items())) for s in samples}

    # The collector refuses a series two files both hold ("collected before with the same name
    # and label values"): each file holds its own system's only.
    assert series["kki"].isdisjoint(series["sisdmk"])
