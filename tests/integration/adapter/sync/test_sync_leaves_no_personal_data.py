"""After real `hf-adapter sync` processes (success, quarantine, failure) at DEBUG level, neither
their logs nor a raw `pg_dump` nor the metrics file holds a known NIK, name, phone or e-mail."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.integration.adapter.sync.support import Mock, adapter_environment, running_mock
from tests.integration.adapter.sync.test_sync_cli_crash import HF_ADAPTER
from tests.support.databases import PostgresServer

pytestmark = pytest.mark.integration

SIZE = 150


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=SIZE, seed=23)


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=SIZE, seed=23)


def _run(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HF_ADAPTER), *args],
        env={**environment, "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_sync_logs_dump_and_metrics_hold_no_personal_data(
    sisdmk: Mock, kki: Mock, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    pg_dump = shutil.which("pg_dump")
    assert pg_dump is not None, "pg_dump is not installed (apt-get install postgresql-client)"
    url: URL = postgres_server.create_database()
    environment = adapter_environment(
        url.render_as_string(hide_password=False), kki.url, sisdmk.url
    )
    workers = sisdmk.records("health-workers")
    registrations = kki.records("registrations")
    metrics_file = tmp_path / "sync.prom"
    outputs: list[str] = []

    assert _run(environment, "db", "upgrade").returncode == 0
    for system in ("sisdmk", "kki"):
        done = _run(environment, "sync", "--system", system, "--metrics-file", str(metrics_file))
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    # A worker that takes another's NIK is quarantined: the refusal is logged and stored.
    sisdmk.patch("health-workers", workers[5]["worker_id"], {"nik": workers[6]["nik"]})
    quarantined = _run(environment, "sync", "--system", "sisdmk")
    assert quarantined.returncode == 0, quarantined.stderr
    assert "rejected (quarantined)" in quarantined.stdout
    outputs += [quarantined.stdout, quarantined.stderr]
    # A run that fails (KKI answers garbage) logs its error.
    kki.fault({"route": "listRegistrations", "kind": "malformed"})
    failed = _run(environment, "sync", "--system", "kki", "--full")
    assert failed.returncode == 1
    assert "ContractViolation" in failed.stderr
    outputs += [failed.stdout, failed.stderr]
    kki.reset()
    sisdmk.reset()

    log_lines = [line for text in outputs for line in text.splitlines() if line.startswith("{")]
    assert log_lines, "the syncs logged structured lines"
    for line in log_lines:
        json.loads(line)  # every structured line is one JSON object
    dump = subprocess.run(
        [
            pg_dump,
            "--data-only",
            "--no-owner",
            "--dbname",
            url.set(drivername="postgresql").render_as_string(hide_password=False),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "quarantine" in dump
    everything = {
        "logs": "\n".join(outputs),
        "pg_dump": dump,
        "metrics": metrics_file.read_text(encoding="utf-8"),
    }
    known = [
        value
        for person in [*workers, *registrations]
        for value in (person["nik"], person["full_name"], person.get("phone"), person.get("email"))
        # Shorter values (a one-word name like "Ina") turn up inside base64 ciphertext by chance.
        if value and len(value) >= 8
    ]
    assert len(known) > 3 * SIZE
    for where, text in everything.items():
        leaked = [value for value in known if value in text]
        assert not leaked, f"{len(leaked)} known personal values in the {where}"
