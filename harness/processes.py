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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

READY_POLL_S = 0.05
# The signals that stop the harness's commands (Ctrl-C, `kill`, a closed terminal).
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
        once the child is known here: the child is stopped, then the signal's handler runs
        (Ctrl-C's KeyboardInterrupt propagates from this call), so no child is left behind."""
        self._log = tempfile.NamedTemporaryFile(prefix=f"hf-{self.name}-", suffix=".log")  # noqa: SIM115
        with _stopping_signals_held() as held:
            self.process = subprocess.Popen(  # noqa: S603 - argv built by this module
                list(self.argv),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,  # our Ctrl-C reaches only us; we stop children ourselves
            )
        if held:
            try:
                signal.raise_signal(held[0])  # the handler the caller set runs now
            except BaseException:
                self.close()
                raise
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
        # Imported here: the harness's other users need none of the adapter's clients.
        from adapter.clients.http import tls_verification

        with httpx.Client(timeout=2.0, verify=tls_verification(verify)) as client:
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


@contextmanager
def _stopping_signals_held() -> Iterator[list[int]]:
    """Hold back the stopping signals that arrive inside the block; yields those held.

    `subprocess.Popen` forks, then waits for the child's `exec`. A handler that raises there
    (SIGINT's KeyboardInterrupt, or the demo's SIGTERM handler) unwinds out of Popen with the
    child running and its pid lost, so nothing would ever stop it. Blocking the signals with
    `pthread_sigmask` is no cure: the child would inherit the mask and ignore SIGTERM.
    Only the main thread runs signal handlers, so elsewhere nothing needs holding.
    """
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = {
        signum: handler
        for signum in STOPPING_SIGNALS
        # None: a handler set outside Python, which cannot be put back once replaced.
        if (handler := signal.getsignal(signum)) is not None
    }
    for signum in previous:
        signal.signal(signum, lambda signum, _frame: held.append(signum))
    try:
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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


def hf_mock(
    system: str,
    *,
    port: int | None = None,
    size: int = 1000,
    seed: int = 42,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[ManagedProcess, str]:
    """A started (not yet ready) `hf-mock` process and its base URL."""
    process, url = mock_process(system, port=port, size=size, seed=seed, extra=extra, env=env)
    return process.start(), url


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
