"""Start a server command as a child process, wait until its TCP port accepts connections, and
always stop it again; a start that fails raises with the process's output."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

POLL_S = 0.05


class ServerStartError(RuntimeError):
    """The process exited or its port never accepted a connection; the message has its output."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_accepts(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


class ServerProcess:
    """A child process whose stdout and stderr go to a file (a pipe could fill up and block)."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        *,
        host: str = "127.0.0.1",
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.host = host
        self.port = port
        fd, log_name = tempfile.mkstemp(prefix="server-", suffix=".log")
        self._log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env={**os.environ, **(env or {})},
            )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def output(self) -> str:
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:  # after stop()
            return ""

    def wait_for_port(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not port_accepts(self.host, self.port):
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"{self.argv} exited with status {self.process.returncode} before "
                    f"{self.host}:{self.port} accepted connections. Output:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.argv} did not accept connections on {self.host}:{self.port} within "
                    f"{timeout_s:.0f} s. Output:\n{self.output()}"
                )
            time.sleep(POLL_S)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        self._log_path.unlink(missing_ok=True)


@contextmanager
def running_server(
    argv: Sequence[str],
    port: int,
    *,
    host: str = "127.0.0.1",
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> Iterator[ServerProcess]:
    """A started server whose port accepts connections; stopped on exit, whatever happened."""
    server = ServerProcess(argv, port, host=host, cwd=cwd, env=env)
    try:
        server.wait_for_port(timeout_s)
        yield server
    finally:
        server.stop()
