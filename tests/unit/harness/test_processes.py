"""ManagedProcess.start and the stopping signals: no child is left running behind a Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import STOPPING_SIGNALS, ManagedProcess

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


SET_HANDLER = signal.signal  # as imported: a test may patch `signal.signal`
Handler = Callable[[int, Any], None] | signal.Handlers


def handlers_now() -> dict[int, Any]:
    return {signum: signal.getsignal(signum) for signum in STOPPING_SIGNALS}


@pytest.fixture
def handler() -> Iterator[Callable[..., None]]:
    """`handler(function, *signums)` sets the handler of the signals named (SIGTERM if none)
    for the test; every stopping signal's handler before the test is put back after it."""
    before = handlers_now()

    def set_handler(function: Handler, *signums: int) -> None:
        for signum in signums or (signal.SIGTERM,):
            SET_HANDLER(signum, function)

    yield set_handler
    for signum, previous in before.items():
        SET_HANDLER(signum, previous)


@pytest.fixture(autouse=True)
def nothing_left_blocked() -> Iterator[None]:
    """After every test the stopping signals reach this process again (a mask left behind
    would also be inherited by every child started later, which would ignore SIGTERM)."""
    yield
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert not blocked & set(STOPPING_SIGNALS), blocked


@pytest.fixture
def delivered() -> list[int]:
    """The signals the patched Popen below delivers (SIGTERM unless a test says otherwise)."""
    return [signal.SIGTERM]


@pytest.fixture
def signalled_popen(
    monkeypatch: pytest.MonkeyPatch, delivered: list[int]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Popen that delivers signals to this process after the fork, before it returns: the
    moment a real `kill` can land in, while Popen waits for the child's exec."""
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen_then_signalled(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child = real_popen(*args, **kwargs)
        started.append(child)
        for signum in delivered:
            signal.raise_signal(signum)
        return child

    monkeypatch.setattr(subprocess, "Popen", popen_then_signalled)
    yield started
    for child in started:  # a failing test leaves no sleeper behind
        if child.poll() is None:
            child.kill()
            child.wait()


def test_the_tests_run_on_the_main_thread() -> None:
    # The tests below deliver signals; Python runs handlers only on the main thread.
    assert threading.current_thread() is threading.main_thread()


def test_an_interrupt_while_the_child_starts_stops_the_child_then_propagates(
    handler: Callable[..., None],
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
    handler: Callable[..., None],
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
    handler: Callable[..., None],
) -> None:
    handler(interrupt)
    before = handlers_now()
    process = ManagedProcess("sleeper", SLEEPER).start()
    try:
        assert handlers_now() == before
    finally:
        process.close()


@pytest.mark.parametrize("delivered", [[signal.SIGTERM, signal.SIGHUP]])
def test_two_signals_held_both_reach_their_handlers(
    handler: Callable[..., None],
    signalled_popen: list[subprocess.Popen[bytes]],
) -> None:
    seen: list[int] = []
    handler(lambda signum, _frame: seen.append(signum), signal.SIGTERM, signal.SIGHUP)
    process = ManagedProcess("sleeper", SLEEPER).start()
    try:
        assert sorted(seen) == sorted([signal.SIGTERM, signal.SIGHUP])
    finally:
        process.close()


@pytest.mark.parametrize("delivered", [[signal.SIGTERM, signal.SIGINT]])
def test_two_raising_handlers_cannot_cut_the_childs_stop_short(
    handler: Callable[..., None],
    signalled_popen: list[subprocess.Popen[bytes]],
) -> None:
    """The first handler's exception propagates; the second handler runs while the child is
    being stopped would have cut the stop short, so it runs with the signals blocked."""
    handler(interrupt, signal.SIGTERM, signal.SIGINT)
    before = handlers_now()
    with pytest.raises(KeyboardInterrupt):
        ManagedProcess("sleeper", SLEEPER).start()
    assert handlers_now() == before
    [child] = signalled_popen
    assert child.poll() == -signal.SIGTERM  # stopped, not left to the fixture's kill


@pytest.mark.parametrize("delivered", [[]])
def test_a_signal_while_the_handlers_are_put_back_is_delivered_after_all_are_back(
    handler: Callable[..., None],
    signalled_popen: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `kill` landing between two handlers' restores waits until all are back: none is
    left recording into a list nobody reads, and the child is stopped as for any other."""
    handler(interrupt, signal.SIGTERM, signal.SIGINT)
    before = handlers_now()
    injected: list[bool] = []

    def signal_then_interrupted(signum: int, handler: Any) -> Any:
        previous = SET_HANDLER(signum, handler)
        if signum == signal.SIGINT and handler is interrupt and not injected:  # put back
            injected.append(True)
            # SIGINT's own handler is back, SIGTERM's and SIGHUP's not yet.
            signal.raise_signal(signal.SIGINT)
        return previous

    monkeypatch.setattr(signal, "signal", signal_then_interrupted)
    process = ManagedProcess("sleeper", SLEEPER)
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGINT"):
            process.start()
    finally:
        monkeypatch.undo()
    after = handlers_now()
    assert injected
    assert after == before
    [child] = signalled_popen
    assert child.poll() == -signal.SIGTERM  # stopped before the interrupt propagated


def test_an_ignored_signal_stays_ignored_for_the_child(handler: Callable[..., None]) -> None:
    handler(signal.SIG_IGN, signal.SIGHUP)
    process = ManagedProcess("sleeper", SLEEPER).start()
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
        ignored = int(
            next(line for line in status.splitlines() if line.startswith("SigIgn:"))[7:], 16
        )
        assert ignored & (1 << (signal.SIGHUP - 1))
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        process.close()


def test_a_signal_whose_default_ends_the_process_stops_the_child_first(tmp_path: Path) -> None:
    """SIGTERM at its default action (no handler): the harness dies of it, the child too."""
    script = tmp_path / "start.py"
    script.write_text(
        "import signal, subprocess, sys\n"
        "from harness.processes import ManagedProcess\n"
        "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
        "real = subprocess.Popen\n"
        "def popen(*args, **kwargs):\n"
        "    child = real(*args, **kwargs)\n"
        "    print(child.pid, flush=True)\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "    return child\n"
        "subprocess.Popen = popen\n"
        f"ManagedProcess('sleeper', {SLEEPER!r}).start()\n"
        "print('survived', flush=True)\n",
        encoding="utf-8",
    )
    ran = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    assert ran.returncode == -signal.SIGTERM, ran.stderr
    [pid] = ran.stdout.split()
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped before SIGTERM's default


def test_start_off_the_main_thread_leaves_the_handlers_alone() -> None:
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
    # Off the main thread, signal.signal raises ValueError: the handlers were left alone.
    assert isinstance(process, ManagedProcess), process
    try:
        assert process.is_running()
    finally:
        process.close()
