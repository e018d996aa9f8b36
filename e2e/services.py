"""PostgreSQL and RabbitMQ of the e2e stack's own: a cluster made with initdb and a RabbitMQ
node with its own name, ports and folders, so restarting them never touches the shared servers
the other tests use (5432, 5672).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import psycopg

from harness.processes import ManagedProcess, ProcessFailed, free_port
from harness.services import amqp_connect_error, installed_server_versions

HOST: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 30.0
POLL_S: Final = 0.1
# PostgreSQL refuses to run as root; as root the cluster belongs to this account instead.
POSTGRES_ACCOUNT: Final = "postgres"
PG_SUPERUSER: Final = "hf_e2e"
DATABASE: Final = "hf_e2e"
# Debian's /usr/sbin/rabbitmq-server wrapper switches to the rabbitmq account and its files;
# the script it wraps runs a node as the caller, with the folders the environment names.
RABBITMQ_SCRIPTS: Final = (Path("/usr/lib/rabbitmq/bin/rabbitmq-server"),)


def _wait(
    ready: Callable[[], str | None], process: ManagedProcess, what: str, timeout_s: float
) -> None:
    """Poll `ready` (None: ready, else why not) until it is; fail early if `process` exits."""
    deadline = time.monotonic() + timeout_s
    why = ready()
    while why is not None:
        if not process.is_running():
            raise ProcessFailed(f"{what} exited while starting: {why}\n{process.output()}")
        if time.monotonic() > deadline:
            process.stop()
            raise ProcessFailed(
                f"{what} not ready within {timeout_s:.0f} s: {why}\n{process.output()}"
            )
        time.sleep(POLL_S)
        why = ready()


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder on a port of its own, trust auth on 127.0.0.1."""

    def __init__(self) -> None:
        versions = installed_server_versions()
        if not versions:
            raise ProcessFailed("no PostgreSQL server under /usr/lib/postgresql/*/bin")
        self.bin = Path("/usr/lib/postgresql") / versions[-1] / "bin"
        self.port = free_port()
        # Not under pytest's temporary folder: that is private to root, and as root the
        # cluster runs as the postgres account, which must reach its folder.
        self.folder = Path(tempfile.mkdtemp(prefix="hf-e2e-pg-"))
        self.data = self.folder / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam(POSTGRES_ACCOUNT)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", POSTGRES_ACCOUNT, "--"]
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{PG_SUPERUSER}@{HOST}:{self.port}/{DATABASE}"

    def _libpq(self, database: str) -> str:
        return f"postgresql://{PG_SUPERUSER}@{HOST}:{self.port}/{database}"

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            init = ManagedProcess(
                "e2e-initdb",
                [
                    *self._as,
                    str(self.bin / "initdb"),
                    "--pgdata",
                    str(self.data),
                    "--username",
                    PG_SUPERUSER,
                    "--auth",
                    "trust",
                    "--no-sync",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                ],
            ).start()
            assert init.process is not None
            if init.process.wait(timeout=START_TIMEOUT_S) != 0:
                raise ProcessFailed(f"initdb failed:\n{init.output()}")
            init.close()
        argv = [
            *self._as,
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.folder),
            "-c",
            f"listen_addresses={HOST}",
            # A test cluster: the OS crashing is not a case here, a killed server is.
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ]
        self._process = ManagedProcess(f"e2e-postgres-{self.port}", argv).start()
        _wait(self._connect_error, self._process, "PostgreSQL", START_TIMEOUT_S)
        with psycopg.connect(self._libpq("postgres"), autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if exists is None:
                connection.execute(f'CREATE DATABASE "{DATABASE}"')
        return self

    def _connect_error(self) -> str | None:
        try:
            with psycopg.connect(self._libpq("postgres"), connect_timeout=2):
                return None
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    def kill(self) -> None:
        """Stop at once, as a crash would: SIGQUIT is PostgreSQL's immediate shutdown (crash
        recovery at the next start)."""
        if self._process is not None and self._process.is_running():
            self._process.signal(signal.SIGQUIT)
            assert self._process.process is not None
            self._process.process.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> None:
        self.kill()
        self.start()

    def output(self) -> str:
        return self._process.output() if self._process else ""

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def rabbitmq_script() -> Path:
    for script in RABBITMQ_SCRIPTS:
        if script.is_file():
            return script
    found = shutil.which("rabbitmq-server")
    if found is None:
        raise ProcessFailed("rabbitmq-server is not installed (`make e2e` installs it)")
    return Path(found)


class PrivateRabbit:
    """A RabbitMQ node of its own: name, AMQP and distribution ports, folders, Erlang cookie
    (its own HOME) and no plugins (so no management listener to collide on 15672)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="hf-e2e-rabbitmq-"))
        self.node = f"hf-e2e-{self.port}@localhost"
        (self.folder / "enabled_plugins").write_text("[].\n", encoding="ascii")
        # guest may connect from 127.0.0.1 only (its default); nothing else to configure.
        (self.folder / "rabbitmq.conf").write_text("loopback_users.guest = true\n")
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port}//"

    def environment(self) -> dict[str, str]:
        return {
            "HOME": str(self.folder),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.folder / "rabbitmq.pid"),
        }

    def start(self) -> PrivateRabbit:
        self._process = ManagedProcess(
            f"e2e-rabbitmq-{self.port}", [str(rabbitmq_script())], env=self.environment()
        ).start()
        _wait(lambda: amqp_connect_error(self.url), self._process, "RabbitMQ", START_TIMEOUT_S)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(timeout_s=STOP_TIMEOUT_S)

    def restart(self) -> None:
        self.stop()
        self.start()

    def output(self) -> str:
        return self._process.output() if self._process else ""

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
        shutil.rmtree(self.folder, ignore_errors=True)
