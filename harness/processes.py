"""Start the harness's servers as real processes and know when they are ready.

Used by the demo, the e2e tests and the benchmarks, so each starts mocks the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

READY_POLL_S = 0.05
# The signals that stop the harness's commands (Ctrl-C, `kill`, a closed terminal).
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def unwind_on_kill() -> None:
    """`kill` (SIGTERM) and a closed terminal (SIGHUP) raise `KeyboardInterrupt` in the main
    thread, as Ctrl-C does, so a command's `finally` blocks stop what it started: the mocks and
    servers run in sessions of their own and never get the terminal's signals."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


class ProcessFailed(RuntimeError):
    """A process exited or never became ready; the message carries the end of its output."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ManagedProcess:
    """A child process with its output captured to a file (never a pipe that can fill up)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        """Start the process. A stopping signal that arrives while it starts is acted on
        once the child is known here: the caller's handler runs then (Ctrl-C's
        KeyboardInterrupt propagates from this call, the child stopped first), so no child is
        left behind."""
        self._log = tempfile.NamedTemporaryFile(prefix=f"hf-{self.name}-", suffix=".log")  # noqa: SIM115
        with _StoppingSignalsHeld(on_stop=self.close):
            self.process = subprocess.Popen(  # noqa: S603 - argv built by this module
                list(self.argv),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,  # our Ctrl-C reaches only us; we stop children ourselves
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self, tail: int = 4000) -> str:
        if self._log is None:
            return ""
        with open(self._log.name, "rb") as fh:
            data = fh.read()
        return data[-tail:].decode("utf-8", "replace")

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_http(
        self, url: str, timeout_s: float = 60.0, *, verify: ssl.SSLContext | bool = True
    ) -> None:
        """Wait until `url` answers 2xx, failing fast if the process dies; `verify`: what an
        https `url` is verified with (a context trusting its CA)."""
        deadline = time.monotonic() + timeout_s
        last_error = "no answer yet"
        # One client for all the polls, with the process's shared TLS context: building a
        # context (even for plain http) costs ~40 ms of CPU, taken from the starting process.
        with httpx.Client(timeout=2.0, verify=shared_verify(verify)) as client:
            while time.monotonic() < deadline:
                if not self.is_running():
                    raise ProcessFailed(
                        f"{self.name} exited with status "
                        f"{self.process and self.process.returncode} "
                        f"before {url} answered. Its output:\n{self.output()}"
                    )
                try:
                    response = client.get(url)
                    if response.is_success:
                        return
                    last_error = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last_error = type(exc).__name__
                time.sleep(READY_POLL_S)
        self.stop()
        raise ProcessFailed(
            f"{self.name} did not answer {url} within {timeout_s:.0f} s ({last_error}). "
            f"Its output:\n{self.output()}"
        )

    def signal(self, signum: int) -> None:
        if self.is_running():
            os.killpg(self.pid, signum)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(timeout=timeout_s)
        return self.process.returncode

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None


class _StoppingSignalsHeld:
    """Hold back the stopping signals that arrive inside the block; deliver them on leaving it.

    `subprocess.Popen` forks, then waits for the child's `exec`. A handler that raises there
    (SIGINT's KeyboardInterrupt, or the demo's SIGTERM handler) unwinds out of Popen with the
    child running and its pid lost, so nothing would ever stop it. So inside the block the
    signals' handlers only record them. Blocking them instead (`pthread_sigmask`) is no cure
    there: the child would inherit the mask and ignore SIGTERM. The handlers are swapped with
    the signals blocked (no fork then), so none lands between two swaps, and on leaving the
    block the held signals are raised again, still blocked, then unblocked: the handlers put
    back run then, and if one raises, `on_stop` (the child's stop) runs, with the signals
    blocked again so a second one cannot cut it short, before the exception propagates.
    A signal whose handler was the default action (which ends this process) stops the child
    before it is delivered. Ignored signals stay ignored (the child inherits that), and only
    the main thread runs handlers, so elsewhere nothing is held.
    """

    def __init__(self, *, on_stop: Callable[[], None]) -> None:
        self._on_stop = on_stop
        self._previous: dict[int, Any] = {}
        self.held: list[int] = []
        if threading.current_thread() is threading.main_thread():
            self._previous = {
                signum: handler
                for signum in STOPPING_SIGNALS
                # None: set outside Python, cannot be put back; SIG_IGN: the child keeps it.
                if (handler := signal.getsignal(signum)) not in (None, signal.SIG_IGN)
            }

    def _record(self, signum: int, _frame: object) -> None:
        self.held.append(signum)

    def __enter__(self) -> _StoppingSignalsHeld:
        if self._previous:
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # as it is: changes nothing
            try:
                signal.pthread_sigmask(signal.SIG_BLOCK, self._previous)
                for signum in self._previous:
                    signal.signal(signum, self._record)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return self

    def __exit__(self, *_exc: object) -> None:
        if not self._previous:
            return
        signums = list(self._previous)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, signums)
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            for signum in dict.fromkeys(self.held):
                signal.raise_signal(signum)  # pending while blocked
            if any(not callable(self._previous[signum]) for signum in self.held):
                self._on_stop()  # the default action will end this process
        except BaseException:
            self._stop_blocked(signums, mask)
            raise
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # the handlers run here
        except BaseException:
            self._stop_blocked(signums, mask)
            raise

    def _stop_blocked(self, signums: list[int], mask: Iterable[int]) -> None:
        """Stop the child with the signals blocked, so a second signal (another held one, a
        second Ctrl-C) cannot cut the stop short; then put the mask back, which delivers
        whatever came meanwhile. The exception on its way propagates, unless a handler run by
        that last step raises one of its own, which then does."""
        for _ in range(len(STOPPING_SIGNALS) + 1):
            try:
                # Blocks, then runs handlers already due: each raising one is one retry.
                signal.pthread_sigmask(signal.SIG_BLOCK, signums)
                break
            except BaseException:  # noqa: BLE001, S112 - an exception is already on its way
                continue
        try:
            self._on_stop()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def mock_process(
    system: str,
    *,
    port: int | None = None,
    size: int = 1000,
    seed: int = 42,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[ManagedProcess, str]:
    """An `hf-mock` process, not yet started, and its base URL: a caller that must stop it
    whatever happens registers its `close` first, then starts it."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "mocks",
        system,
        "--port",
        str(port),
        "--size",
        str(size),
        "--seed",
        str(seed),
        "--quiet",
        *extra,
    ]
    return ManagedProcess(f"mock-{system}", argv, env=env or {}), f"http://127.0.0.1:{port}"


def start_mock(
    system: str,
    *,
    size: int = 1000,
    seed: int = 42,
    extra: Sequence[str] = (),
    timeout_s: float = 120.0,
) -> tuple[ManagedProcess, str]:
    """A ready `hf-mock` process and its base URL."""
    process, url = mock_process(system, size=size, seed=seed, extra=extra)
    try:
        process.start()
        process.wait_http(f"{url}/__admin/health", timeout_s=timeout_s)
    except BaseException:  # Ctrl-C while it starts too: the caller never gets it to stop
        process.close()
        raise
    return process, url


def shared_verify(verify: ssl.SSLContext | bool) -> ssl.SSLContext | bool:
    """`verify` for an httpx client, with ``True`` as the process's shared TLS context
    (`adapter.clients.http.tls_verification`): httpx would load the CA bundle (~40 ms of CPU)
    for every client. Imported here: the harness's other users need none of the adapter's
    clients."""
    from adapter.clients.http import tls_verification

    return tls_verification(verify)
