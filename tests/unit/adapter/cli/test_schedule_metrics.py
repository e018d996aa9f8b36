"""`hf-adapter schedule --metrics-port`: its gauges are refreshed on a thread of their own, so
they stay current while a long sync holds the scheduling loop (else HfSchedulerDown would page
during every long daily sync), and `--once` refuses a metrics port nobody could scrape."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from adapter.cli import main
from adapter.cli.schedule import _observe_until, observe
from adapter.sdmk_integration_manager import record_failure, record_success, set_enabled
from adapter.store.database import create_engine_from_url, session_factory
from adapter.sync.requests import request_run
from adapter.sync.schedule import DailySchedule
from tests.support.databases import migrate


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def polled() -> float | None:
    return REGISTRY.get_sample_value("hf_schedule_poll_timestamp_seconds")


def test_the_gauges_keep_moving_while_the_loop_is_busy(sessions: sessionmaker[Session]) -> None:
    def never(system: str, **kwargs: Any) -> Any:
        raise AssertionError("observing never runs a sync")

    schedule = DailySchedule({"kki": dt.time(1, 0)}, "Asia/Jakarta", sessions, never)
    stop = threading.Event()
    thread = threading.Thread(target=_observe_until, args=(stop, schedule, ["kki"], 0.02))
    thread.start()
    seen: set[float] = set()
    deadline = time.monotonic() + 30
    try:
        while len(seen) < 3:  # the main thread does nothing here, as during a long sync
            value = polled()
            if value is not None:
                seen.add(value)
            assert time.monotonic() < deadline, f"the poll gauge moved {len(seen)} time(s)"
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    # Nothing ever ran: the slot has been waiting (yesterday's, at the latest).
    assert (REGISTRY.get_sample_value("hf_schedule_overdue_seconds", {"system": "kki"}) or 0) > 0


def test_once_with_a_metrics_port_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "--once", "--metrics-port", "9103"]) == 2
    assert "--metrics-port needs a long-running scheduler" in capsys.readouterr().err


def status(system: str) -> dict[str, float | None]:
    return {
        name: REGISTRY.get_sample_value("hf_connection_status", {"system": system, "status": name})
        for name in ("healthy", "degraded", "down")
    }


def test_the_connection_status_is_read_from_the_store_at_every_poll(
    sessions: sessionmaker[Session],
) -> None:
    """Set only at the end of this process's own runs, the gauge missed an outage a worker
    recorded after the day's sync, and kept a recovery another process saw paging."""

    def never(system: str, **kwargs: Any) -> Any:
        raise AssertionError("observing never runs a sync")

    schedule = DailySchedule({"sisdmk": dt.time(1, 0)}, "Asia/Jakarta", sessions, never)
    with sessions.begin() as session:  # as a worker's failing calls would, three times
        for _ in range(3):
            record_failure(session, "sisdmk", "SISDMK: connection refused")
    observe(schedule, ["sisdmk"])
    down = status("sisdmk")
    with sessions.begin() as session:  # another process's call succeeds
        record_success(session, "sisdmk")
    observe(schedule, ["sisdmk"])
    recovered = status("sisdmk")
    with sessions.begin() as session:
        for _ in range(3):
            record_failure(session, "sisdmk", "SISDMK: connection refused")
        set_enabled(session, "sisdmk", enabled=False)
    observe(schedule, ["sisdmk"])
    disabled = status("sisdmk")

    assert down == {"healthy": 0.0, "degraded": 0.0, "down": 1.0}
    assert recovered == {"healthy": 1.0, "degraded": 0.0, "down": 0.0}
    assert disabled == {"healthy": 0.0, "degraded": 0.0, "down": 0.0}


def test_a_requested_run_waiting_shows_its_age_while_the_heartbeat_is_fresh(
    sessions: sessionmaker[Session],
) -> None:
    """The heartbeat comes from the metrics thread: a loop held by a long sync kept it fresh
    while a run requested through the API waited for hours, and nothing said so."""
    asked = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
    now = [asked]

    def never(system: str, **kwargs: Any) -> Any:
        raise AssertionError("observing never runs a sync")

    schedule = DailySchedule(
        {"kki": dt.time(1, 0)}, "Asia/Jakarta", sessions, never, clock=lambda: now[0]
    )
    engine = sessions.kw["bind"]
    observe(schedule, ["kki"])
    none_waiting = REGISTRY.get_sample_value("hf_sync_request_waiting_seconds")
    with sessions.begin() as session:
        request_run(session, engine, "kki", full=False, requested_by="ops", now=asked)
    now[0] = asked + dt.timedelta(minutes=45)
    observe(schedule, ["kki"])

    assert none_waiting == 0.0
    assert REGISTRY.get_sample_value("hf_sync_request_waiting_seconds") == 45 * 60
