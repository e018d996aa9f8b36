"""`hf-adapter keys reindex` and the start refusal as operators meet them: real processes, a
SIGKILL in the middle of a re-index, the audit trail verified afterwards, no NIK in the output.
The runs after the kill (resume, verify, the second run) are about the data the kill left and
run in this process (`adapter.cli.main`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapter.store.models import HealthWorker
from tests.integration.adapter.keys.store import (
    NEW_BLIND_INDEX_KEY,
    WORKERS,
    Store,
    settings_env,
)
from tests.integration.adapter.sync.support import python_path
from tests.support.adapter_cli import hf_adapter_in_process
from tests.support.databases import BLIND_INDEX_KEY

pytestmark = pytest.mark.integration

HF_ADAPTER = Path(sys.executable).parent / "hf-adapter"


def _environment(store: Store, *, previous: bool) -> dict[str, str]:
    url = store.engine.url.render_as_string(hide_password=False)
    return {
        "PATH": "/usr/bin:/bin",
        **python_path(),
        **settings_env(url, NEW_BLIND_INDEX_KEY, BLIND_INDEX_KEY if previous else None),
    }


def _hf_adapter(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    assert HF_ADAPTER.exists(), "hf-adapter is not installed; run `make bootstrap`"
    return subprocess.run(
        [str(HF_ADAPTER), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _under_new_key(store: Store) -> int:
    with store.engine.connect() as connection:
        counted = connection.execute(
            select(func.count())
            .select_from(HealthWorker)
            .where(HealthWorker.nik_bidx_kid == NEW_BLIND_INDEX_KEY.kid)
        ).scalar_one()
    return int(counted)


@pytest.mark.parametrize(
    "command",
    [
        ("lookup", "--str", "QN00000000000001"),
        ("sync", "--system", "kki"),
        ("schedule", "--once"),
        ("worker",),
        ("serve", "--dev", "--bind", "127.0.0.1:0"),
    ],
    ids=lambda command: command[0],
)
def test_services_refuse_to_start_with_one_line_when_stored_digests_use_unknown_key(
    store: Store, command: tuple[str, ...]
) -> None:
    result = _hf_adapter(*command, env=_environment(store, previous=False), timeout=60)

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("hf-adapter: error: stored NIK digests are under")
    assert "'bidx-1'" in result.stderr
    assert "BLIND_INDEX_PREVIOUS_KEY" in result.stderr
    assert "hf-adapter keys reindex" in result.stderr


def test_reindex_killed_midway_resumes_then_trail_verifies_and_no_nik_is_shown(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _environment(store, previous=True)
    process = subprocess.Popen(
        [str(HF_ADAPTER), "keys", "reindex", "--batch-size", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _under_new_key(store) == 0 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        killed_out, killed_err = process.communicate()
    assert process.returncode == -signal.SIGKILL
    partial = _under_new_key(store)
    assert 0 < partial < WORKERS

    # The killed run is a process; the runs after it are about the data it left, in this process.
    resumed = hf_adapter_in_process(
        monkeypatch, capsys, env, "keys", "reindex", "--batch-size", "50"
    )

    assert resumed.returncode == 0, resumed.stderr
    assert "health_workers" in resumed.stdout
    assert "identity_findings" in resumed.stdout
    assert f"{WORKERS - partial} rows in" in resumed.stdout
    assert "BLIND_INDEX_PREVIOUS_KEY can be removed" in resumed.stdout
    assert _under_new_key(store) == WORKERS
    # With the previous key removed, the trail (a batch cut by the kill left no entry) verifies
    # and a second run has nothing to do.
    without_previous = _environment(store, previous=False)
    verified = hf_adapter_in_process(monkeypatch, capsys, without_previous, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "audit trail intact" in verified.stdout
    again = hf_adapter_in_process(monkeypatch, capsys, without_previous, "keys", "reindex")
    assert again.returncode == 0, again.stderr
    assert "0 rows in 0 batches" in again.stdout
    assert f"every digest is under key {NEW_BLIND_INDEX_KEY.kid!r}" in again.stdout
    assert "BLIND_INDEX_PREVIOUS_KEY" not in again.stdout  # never set: nothing to remove
    shown = "".join(
        (killed_out, killed_err, resumed.stdout, resumed.stderr, verified.stdout, again.stdout)
    )
    digits = {doc["nik"] for doc in store.workers}
    assert [nik for nik in digits if nik in shown] == []
