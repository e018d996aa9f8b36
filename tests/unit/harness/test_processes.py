"""ManagedProcess.start and the stopping signals: no child is left running behind a Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.processes import STOPPING_SIGNALS, ManagedProcess

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@pytest.fixture
def handler() -> Iterator[Callable[[Callable[[int, Any], None]], None]]:
    """Set SIGTERM's handler for the test; the one before is put back after it."""
    previous = signal.getsignal(signal.SIGTERM)

    def set_handler(function: Callable[[int, Any], None]) -> None:
        signal.signal(signal.SIGTERM, function)

    yield set_handler
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def signalled_popen(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Popen that delivers SIGTERM to this process after the fork, before it returns: the
    moment a real `kill` can land in, while Popen waits for the child's exec."""
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen_then_signalled(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child = real_popen(*args, **kwargs)
        started.append(child)
        signal.raise_signal(signal.SIGTERM)
        return child

    monkeypatch.setattr(subprocess, "Popen", popen_then_signalled)
    return started


def test_the_tests_run_on_the_main_thread() -> None:
    # The tests below deliver signals; Python runs handlers only on the main thread.
    assert threading.current_thread() is threading.main_thread()


def test_an_interrupt_while_the_child_starts_stops_the_child_then_propagates(
    handler: Callable[[Callable[[int, Any], None]], None],
    signalled_popen: list[subprocess.Popen[bytes]],
) -> None:
    handler(interrupt)
    process = ManagedProcess("sleeper", SLEEPER)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        process.start()
    [child] = signalled_popen
    assert child.poll() == -signal.SIGTERM  # stopped and reaped, not left running
    assert process.process is child


def test_a_handler_that_returns_runs_once_and_the_child_keeps_running(
    handler: Callable[[Callable[[int, Any], None]], None],
    signalled_popen: list[subprocess.Popen[bytes]],
) -> None:
    seen: list[int] = []
    handler(lambda signum, _frame: seen.append(signum))
    process = ManagedProcess("sleeper", SLEEPER).start()
    try:
        assert seen == [signal.SIGTERM]
        assert process.is_running()
    finally:
        process.close()
    assert not process.is_running()


def test_start_puts_every_handler_back(
    handler: Callable[[Callable[[int, Any], None]], None],
) -> None:
    handler(interrupt)
    before = {signum: signal.getsignal(signum) for signum in STOPPING_SIGNALS}
    process = ManagedProcess("sleeper", SLEEPER).start()
    try:
        assert {signum: signal.getsignal(signum) for signum in STOPPING_SIGNALS} == before
    finally:
        process.close()


def test_start_off_the_main_thread_leaves_the_handlers_alone() -> None:
    before = {signum: signal.getsignal(signum) for signum in STOPPING_SIGNALS}
    outcome: list[ManagedProcess | BaseException] = []

    def start() -> None:
        try:
            outcome.append(ManagedProcess("sleeper", SLEEPER).start())
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    [process] = outcome
    assert isinstance(process, ManagedProcess), process
    try:
        assert process.is_running()
        assert {signum: signal.getsignal(signum) for signum in STOPPING_SIGNALS} == before
    finally:
        process.close()
