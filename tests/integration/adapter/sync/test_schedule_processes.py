"""`hf-adapter schedule --once` in two processes at once: each daily sync runs exactly once."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.models import SyncRun
from tests.integration.adapter.sync.support import Mock, adapter_environment, running_mock, store
from tests.integration.adapter.sync.test_sync_cli_crash import HF_ADAPTER
from tests.support.databases import BACKENDS

pytestmark = pytest.mark.integration

SIZE = 300


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=SIZE, seed=31)


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=SIZE, seed=31)


@pytest.fixture
def sessions(empty_database_url: URL) -> Iterator[sessionmaker[Session]]:
    with store(empty_database_url) as factory:
        yield factory


def _schedule_once(environment: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(HF_ADAPTER), "schedule", "--once"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_two_schedulers_run_each_due_sync_once_and_a_third_finds_nothing_due(
    sisdmk: Mock, kki: Mock, empty_database_url: URL, sessions: sessionmaker[Session]
) -> None:
    # The three runs within one Jakarta day: the third must find today's runs done, and past
    # midnight a slot of a minute ago would be tomorrow's. Close to midnight, wait for it.
    now = dt.datetime.now(ZoneInfo("Asia/Jakarta"))
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), now.tzinfo)
    if midnight - now < dt.timedelta(minutes=3):
        time.sleep((midnight - now).total_seconds() + 1)
    # Slots a minute ago in Jakarta time: both systems are due now.
    jakarta = dt.datetime.now(ZoneInfo("Asia/Jakarta")) - dt.timedelta(minutes=1)
    if jakarta.date() != (jakarta + dt.timedelta(minutes=1)).date():
        jakarta += dt.timedelta(minutes=1)  # at midnight, a slot of 00:00 today
    slot = f"{jakarta:%H:%M}"
    environment = {
        **adapter_environment(
            empty_database_url.render_as_string(hide_password=False), kki.url, sisdmk.url
        ),
        "SYNC_SCHEDULE": f"sisdmk={slot},kki={slot}",
        "SYNC_TIMEZONE": "Asia/Jakarta",
        "COLUMNS": "200",
    }
    first, second = _schedule_once(environment), _schedule_once(environment)
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs

    with sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.started_at)).all()
    assert sorted(run.system for run in runs) == ["kki", "sisdmk"], "one run per system"
    assert {run.status for run in runs} == {"succeeded"}
    assert {run.fetched for run in runs if run.system == "sisdmk"} == {SIZE}
    tables = "\n".join(out for out, _ in outputs)
    assert "scheduled syncs" in tables

    third = subprocess.run(
        [str(HF_ADAPTER), "schedule", "--once"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert third.returncode == 0, third.stderr
    assert "not due: done for today" in third.stdout
    with sessions() as session:
        assert len(session.scalars(select(SyncRun)).all()) == 2


def test_a_bad_schedule_is_refused_with_what_to_write(
    kki: Mock, sisdmk: Mock, empty_database_url: URL
) -> None:
    environment = {
        **adapter_environment(
            empty_database_url.render_as_string(hide_password=False), kki.url, sisdmk.url
        ),
        "SYNC_SCHEDULE": "sisdmk=25:00",
    }
    refused = subprocess.run(
        [str(HF_ADAPTER), "schedule", "--once"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "SYNC_SCHEDULE" in refused.stderr
    assert "'25:00' is not a time of day (HH:MM)" in refused.stderr
