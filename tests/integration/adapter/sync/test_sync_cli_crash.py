"""`hf-adapter sync` as a real process: SIGKILL mid-run, rerun, same state as a clean run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.models import Education, Employment, HealthWorker, SyncCheckpoint, SyncRun
from tests.integration.adapter.sync.support import (
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


Found = TypeVar("Found")


def _once_running(
    process: subprocess.Popen[str],
    sessions: sessionmaker[Session],
    probe: Callable[[Session], Found | None],
) -> Found | None:
    """What `probe` finds in the store while the sync still runs (None after 30 s)."""
    deadline = time.monotonic() + 30
    found: Found | None = None
    while found is None and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with sessions() as session:
            found = probe(session)
        time.sleep(0.02)
    return found


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
        # Seconds of pages left after the first commit: the kill comes before the end, however busy.
        sisdmk.fault({"route": "listHealthWorkers", "kind": "latency", "latency_ms": 500})
        process = _sync(database_url, sisdmk)
        try:
            committed = _once_running(
                process, sessions, lambda session: session.get(SyncCheckpoint, "sisdmk")
            )
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


def _rows(sessions: sessionmaker[Session]) -> tuple[set[tuple[str, str]], set[str], set[str]]:
    """Every worker's (SISDMK id, payload hash) and the ids of every employment and education."""
    with sessions() as session:
        workers = {
            (str(w.sisdmk_worker_id), w.payload_hash) for w in session.scalars(select(HealthWorker))
        }
        employments = {str(i) for i in session.scalars(select(Employment.id))}
        educations = {str(i) for i in session.scalars(select(Education.id))}
    return workers, employments, educations


def _wait_for_lock_wait(sessions: sessionmaker[Session], pid: int, statement: str) -> None:
    """Until another backend waits for a lock in `statement` (the sync's page, mid-merge)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sessions() as session:
            waiting = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid <> :me"
                    " AND wait_event_type = 'Lock' AND query LIKE :statement"
                ),
                {"me": pid, "statement": f"{statement}%"},
            )
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError(f"no backend waited in {statement!r}")


def _backends(sessions: sessionmaker[Session]) -> set[int]:
    with sessions() as session:
        return set(
            session.scalars(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        )


def _wait_until_gone(sessions: sessionmaker[Session], ours: set[int]) -> None:
    """Until every backend but `ours` has ended: the killed sync's noticed, locks released."""
    deadline = time.monotonic() + 60
    while _backends(sessions) - ours:
        assert time.monotonic() < deadline, "the killed sync's backends did not end"
        time.sleep(0.05)


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_sync_killed_inside_a_page_merge_leaves_the_page_unwritten_and_the_rerun_clean(
    sisdmk: Mock,
    empty_database_url: URL,
    tmp_path: Path,
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    """A page is merged in set-based steps (the workers' UPDATE, then each child table's
    DELETE and INSERT). The test holds a lock on `educations`, so the first page of an update
    run stops after its workers and employments are written and before its educations; the
    process is SIGKILLed there. Nothing of that page may remain, and a rerun reaches the state
    of a clean run."""
    sisdmk.reset()
    database_url = empty_database_url.render_as_string(hide_password=False)
    with store(empty_database_url) as sessions:
        first = _sync(database_url, sisdmk, "--full")
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        with sessions.begin() as session:  # every record changed: the next run rewrites all
            session.execute(text("UPDATE health_workers SET payload_hash = 'stale'"))
        before = _rows(sessions)

        holder = sessions()
        holder.execute(text("LOCK TABLE educations IN SHARE ROW EXCLUSIVE MODE"))
        me = int(holder.scalar(text("SELECT pg_backend_pid()")) or 0)
        ours = _backends(sessions)
        process = _sync(database_url, sisdmk, "--full")
        try:
            _wait_for_lock_wait(sessions, me, "DELETE FROM educations")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            holder.rollback()
            holder.close()
            if process.poll() is None:
                process.kill()
            process.communicate()
        assert process.returncode == -signal.SIGKILL
        _wait_until_gone(sessions, ours)
        assert _rows(sessions) == before, "a page killed mid-merge left part of itself"

        rerun = _sync(database_url, sisdmk, "--full")
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        resumed = _state(sessions)

    clean_url = make_url(f"sqlite:///{tmp_path / 'clean' / 'adapter.sqlite3'}")
    with store(clean_url) as clean:
        assert run_sync("sisdmk", sisdmk, clean, cipher, blind_index, full=True).succeeded
        clean_state = _state(clean)
    assert resumed == clean_state
    assert len(resumed[0]) == SIZE


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)
def test_an_interrupted_sync_is_recorded_failed_summarised_and_resumed_by_the_next(
    sisdmk: Mock, empty_database_url: URL, signum: int
) -> None:
    """Ctrl-C (or SIGTERM) at the console: exit 1 with the summary and what to do, and the run
    recorded failed ("interrupted"), not left "running" with a traceback."""
    sisdmk.reset()
    database_url = empty_database_url.render_as_string(hide_password=False)
    with store(empty_database_url) as sessions:
        # Slow pages: the signal comes while a page is awaited.
        sisdmk.fault({"route": "listHealthWorkers", "kind": "latency", "latency_ms": 400})
        process = _sync(database_url, sisdmk)
        try:
            running = _once_running(
                process,
                sessions,
                lambda session: session.scalar(select(SyncRun).where(SyncRun.status == "running")),
            )
            assert running is not None, "the run never started"
            process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            sisdmk.reset()
        assert process.returncode == 1, stderr
        assert "Traceback" not in stderr
        assert "sync sisdmk" in stdout  # the summary table
        assert "interrupted" in stderr
        assert "run the same command again" in stderr
        with sessions() as session:
            (run,) = session.scalars(select(SyncRun)).all()
        assert run.status == "failed"
        assert "interrupted" in (run.error or "")
