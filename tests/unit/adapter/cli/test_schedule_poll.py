"""`hf-adapter schedule`: a store it cannot read for a moment (PostgreSQL restarting) ends one
look, not the process; with `--once` it fails, so cron sees the exit status."""

from __future__ import annotations

import pytest
from rich.console import Console
from sqlalchemy.exc import OperationalError

from adapter.cli.schedule import poll
from adapter.sync.schedule import Outcome


class StoreGone:
    """A schedule whose store refuses connections, as during a database restart."""

    def __init__(self) -> None:
        self.looks = 0

    def run_requested(self) -> list[Outcome]:
        self.looks += 1
        raise OperationalError("SELECT", {}, Exception("the database system is starting up"))

    def run_due(self) -> list[Outcome]:
        raise AssertionError("not reached: the requested runs are read first")


class Nothing:
    def run_requested(self) -> list[Outcome]:
        return []

    def run_due(self) -> list[Outcome]:
        return []


def test_an_unreadable_store_ends_the_look_and_the_next_one_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = StoreGone()
    console = Console(quiet=True)
    assert poll(gone, console, once=False, poll_s=5) == []
    assert poll(gone, console, once=False, poll_s=5) == []
    assert gone.looks == 2
    assert "could not read the store (OperationalError); looking again in 5 s" in caplog.text
    assert poll(Nothing(), console, once=False, poll_s=5) == []


def test_with_once_an_unreadable_store_fails_the_command() -> None:
    with pytest.raises(OperationalError):
        poll(StoreGone(), Console(quiet=True), once=True, poll_s=5)
