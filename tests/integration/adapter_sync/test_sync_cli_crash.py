"""`hf-adapter sync` as a real process: SIGKILL mid-run, rerun, same state as a clean run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.models import Employment, HealthWorker, SyncCheckpoint, SyncRun
from tests.integration.adapter_sync.support import (
    Mock,
    adapter_environment,
    run_sync,
    running_mock,
    store,
)
from tests.support.databases import BACKENDS

pytestmark = pytest.mark.integration

HF_ADAPTER = Path(sys.executable).parent / "hf-adapter"
SIZE = 400
PAGE = 20


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=SIZE, seed=11)


def _state(sessions: sessionmaker[Session]) -> tuple[set[tuple[str, int, str]], int]:
    with sessions() as session:
        workers = {
            (str(w.sisdmk_worker_id), w.source_version, w.payload_hash)
            for w in session.scalars(select(HealthWorker))
        }
        employments = int(session.scalar(select(func.count()).select_from(Employment)) or 0)
    return workers, employments


def _sync(database_url: str, mock: Mock, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(HF_ADAPTER), "sync", "--system", "sisdmk", "--page-size", str(PAGE), *extra],
        env=adapter_environment(database_url, "http://127.0.0.1:9", mock.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_killed_sync_resumes_to_the_state_of_a_clean_run(
    sisdmk: Mock,
    empty_database_url: URL,
    tmp_path: Path,
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    sisdmk.reset()
    database_url = empty_database_url.render_as_string(hide_password=False)
    with store(empty_database_url) as sessions:
        sisdmk.fault({"route": "listHealthWorkers", "kind": "latency", "latency_ms": 50})
        process = _sync(database_url, sisdmk)
        try:
            deadline = time.monotonic() + 30
            committed = None
            while committed is None and time.monotonic() < deadline:
                assert process.poll() is None, process.communicate()
                with sessions() as session:
                    committed = session.get(SyncCheckpoint, "sisdmk")
                time.sleep(0.02)
            assert committed is not None
            assert committed.cursor is not None
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()
        assert process.returncode == -signal.SIGKILL
        partial = _state(sessions)[0]
        assert 0 < len(partial) < SIZE

        sisdmk.admin.delete("/faults").raise_for_status()
        rerun = _sync(database_url, sisdmk)
        out, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        assert "resumed" in out
        assert "succeeded" in out

        resumed_state = _state(sessions)
        with sessions() as session:
            runs = session.scalars(select(SyncRun).order_by(SyncRun.started_at)).all()
            assert [r.status for r in runs] == ["failed", "succeeded"]
            assert runs[0].error is not None
            assert runs[0].error.startswith("abandoned")
            assert runs[1].fetched == SIZE - len(partial) + runs[1].unchanged
            assert runs[1].created + runs[1].unchanged + runs[1].updated == runs[1].fetched

    clean_url = make_url(f"sqlite:///{tmp_path / 'clean' / 'adapter.sqlite3'}")
    with store(clean_url) as clean:
        assert run_sync("sisdmk", sisdmk, clean, cipher, blind_index).succeeded
        clean_state = _state(clean)
    assert resumed_state == clean_state
    assert len(resumed_state[0]) == SIZE
