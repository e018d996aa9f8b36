"""PostgreSQL and RabbitMQ for the tests: use the ones named by TEST_DATABASE_URL and
TEST_BROKER_URL, else the ones answering on the default ports, else install (Debian packages,
as root) and start local ones without systemd; and promtool for the alert rules' tests (PROMTOOL,
else the PATH, else Debian's prometheus package). `python -m harness.services up` is idempotent;
`python -m harness.services bench-tools` installs wrk, the benchmarks' load generator."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.exc import ProgrammingError

from adapter.queue.rabbit import open_connection

HOST: Final = "127.0.0.1"
PG_PORT: Final = 5432
AMQP_PORT: Final = 5672
# A role of our own with a password, so the tests work whatever pg_hba.conf says about
# 127.0.0.1 (Debian's default asks for a password there); CREATEROLE for the least-privilege
# role tests.
PG_ROLE: Final = "hf_test"
PG_PASSWORD: Final = "hf_test"  # noqa: S105 - a local test server's role, not a secret


def default_database_url(port: int = PG_PORT) -> str:
    return f"postgresql+psycopg://{PG_ROLE}:{PG_PASSWORD}@{HOST}:{port}/postgres"


def default_broker_url(port: int = AMQP_PORT) -> str:
    return f"amqp://guest:guest@{HOST}:{port}//"


DATABASE_ENV: Final = "TEST_DATABASE_URL"
BROKER_ENV: Final = "TEST_BROKER_URL"
START_TIMEOUT_S: Final = 120.0
POLL_S: Final = 0.25
# PostgreSQL's SSLRequest: any PostgreSQL answers it with one byte, S or N.
_PG_SSL_REQUEST: Final = struct.pack("!ii", 8, 80877103)
_AMQP_HEADER: Final = b"AMQP\x00\x00\x09\x01"


class ServiceError(RuntimeError):
    """A service the tests need cannot be had; the message says what to do."""


def database_url() -> str:
    """The administrative PostgreSQL URL the tests use (its user may CREATE DATABASE)."""
    return os.environ.get(DATABASE_ENV) or default_database_url()


def broker_url() -> str:
    """The RabbitMQ URL the tests use (its user may declare queues and exchanges)."""
    return os.environ.get(BROKER_ENV) or default_broker_url()


# -- probes ---------------------------------------------------------------------------------


def speaks(host: str, port: int, hello: bytes, timeout_s: float = 2.0) -> bytes | None:
    """What a TCP server answers to `hello` (None: nothing listens; b"": it closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(hello)
            return sock.recv(16)
    except ConnectionRefusedError:
        return None
    except OSError:  # reset, timed out: something listens but does not answer like a server
        return b""


def is_postgres(answer: bytes | None) -> bool:
    return answer is not None and answer[:1] in (b"S", b"N")


def is_amqp(answer: bytes | None) -> bool:
    # A broker answers the protocol header with a method frame (type 1, channel 0), or with
    # its own header when it wants another protocol version.
    return answer is not None and (answer[:3] == b"\x01\x00\x00" or answer.startswith(b"AMQP"))


def drop_database(connection: Connection, name: str) -> None:
    """Drop database `name` (a test's or a benchmark's) if it is there, ending this user's
    sessions on it first; `connection` is in autocommit."""
    try:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except ProgrammingError:
        # FORCE refuses to end a backend of another role — an autovacuum worker busy on the
        # database after heavy writes is one. End ours, then a plain DROP, which stops
        # autovacuum on the database itself.
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND usename = current_user "
                "AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


def pg_connect_error(url: str) -> str | None:
    """None when `url` accepts a connection, else the server's or the driver's first line."""
    try:
        with psycopg.connect(_libpq(url), connect_timeout=5):
            return None
    except psycopg.Error as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def amqp_connect_error(url: str) -> str | None:
    try:
        with open_connection(url) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; all mean "cannot use it"
        return str(exc) or type(exc).__name__
    return None


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{location}"


# -- system commands ------------------------------------------------------------------------


def installed_server_versions() -> list[str]:
    """The PostgreSQL major versions whose server Debian's packages installed, oldest first."""
    binaries = Path("/usr/lib/postgresql").glob("*/bin/postgres")
    return sorted(
        (path.parts[-3] for path in binaries),
        key=lambda version: tuple(int(part) for part in version.split(".") if part.isdigit()),
    )


# Debian puts rabbitmq-server in /usr/sbin (not on a normal user's PATH); the script it wraps,
# which the e2e suite runs, in /usr/lib/rabbitmq/bin.
RABBITMQ_SERVER_PROGRAMS: Final = (
    Path("/usr/lib/rabbitmq/bin/rabbitmq-server"),
    Path("/usr/sbin/rabbitmq-server"),
)


def rabbitmq_server_installed(
    programs: Sequence[Path] = RABBITMQ_SERVER_PROGRAMS,
    which: Callable[[str], str | None] = shutil.which,
) -> bool:
    """Whether a RabbitMQ server program is installed, on the PATH or where Debian puts it."""
    return which("rabbitmq-server") is not None or any(path.is_file() for path in programs)


@dataclass
class System:
    """The machine's commands, behind one object so the decisions can be unit-tested."""

    run: Callable[[Sequence[str]], subprocess.CompletedProcess[str]]
    which: Callable[[str], str | None] = shutil.which
    is_root: Callable[[], bool] = lambda: os.geteuid() == 0
    say: Callable[[str], None] = lambda line: print(f"services: {line}", file=sys.stderr)
    pg_port: int = PG_PORT
    amqp_port: int = AMQP_PORT
    server_versions: Callable[[], list[str]] = installed_server_versions
    rabbitmq_installed: Callable[[], bool] = rabbitmq_server_installed

    @classmethod
    def real(cls) -> System:
        def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(  # noqa: S603 - fixed argv lists built in this module
                list(argv),
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                stdin=subprocess.DEVNULL,
            )

        return cls(run=run)

    def must(self, argv: Sequence[str], what: str) -> str:
        result = self.run(argv)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ServiceError(f"{what} failed ({' '.join(argv)}): {' | '.join(tail)}")
        return result.stdout

    def apt_install(
        self, packages: Sequence[str], purpose: str, variable: str | None, *, missing: str = ""
    ) -> None:
        """Install Debian `packages` for `purpose`; `missing` says what is wrong (default: not
        running), for the message when it cannot be done here; `variable` is the setting that
        names one instead, if there is one."""
        if not self.is_root() or self.which("apt-get") is None:
            why = "no apt-get" if self.which("apt-get") is None else "not root"
            if missing:
                instead = f", or set {variable} to it" if variable else ""
                raise ServiceError(
                    f"{purpose} {missing} and cannot be installed here ({why}): install "
                    f"{' '.join(packages)}{instead}"
                )
            raise ServiceError(
                f"{purpose} is not running and cannot be installed here ({why}): install "
                f"{' '.join(packages)} and start it, or set {variable} to a running one"
            )
        self.say(f"installing {' '.join(packages)} (Debian packages; a minute or two)")
        result = self.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages])
        if result.returncode != 0:  # a stale or missing package list: refresh it once
            self.must(["apt-get", "update", "-q"], "apt-get update")
            self.must(
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                f"installing {' '.join(packages)}",
            )


def wait_until(ready: Callable[[], str | None], what: str, timeout_s: float) -> None:
    """Poll `ready` (None = ready, else why not) until it is or the time is up."""
    deadline = time.monotonic() + timeout_s
    why = ready()
    while why is not None:
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not accept connections within {timeout_s:.0f} s: {why}")
        time.sleep(POLL_S)
        why = ready()


# -- PostgreSQL -----------------------------------------------------------------------------


def ensure_postgres(system: System, timeout_s: float = START_TIMEOUT_S) -> str:
    """A PostgreSQL the tests can use; its administrative URL (password hidden)."""
    given = os.environ.get(DATABASE_ENV)
    if given:
        error = pg_connect_error(given)
        if error is not None:
            raise ServiceError(
                f"{DATABASE_ENV}={_redact(given)} does not accept connections ({error}); "
                f"fix it, or unset it to use a local PostgreSQL"
            )
        return _redact(given)
    port, url = system.pg_port, default_database_url(system.pg_port)
    answer = speaks(HOST, port, _PG_SSL_REQUEST)
    if answer is not None and not is_postgres(answer):
        raise ServiceError(
            f"{HOST}:{port} is taken by something that is not PostgreSQL; stop it, or set "
            f"{DATABASE_ENV} to a PostgreSQL whose user may CREATE DATABASE"
        )
    if answer is None:
        _start_local_postgres(system, timeout_s)
    if pg_connect_error(url) is not None:
        _create_test_role(system)
        error = pg_connect_error(url)
        if error is not None:
            raise ServiceError(
                f"PostgreSQL on {HOST}:{port} refuses the test role {PG_ROLE} ({error}); "
                f"set {DATABASE_ENV} to a URL whose user may CREATE DATABASE"
            )
    return _redact(url)


def _clusters(system: System) -> list[tuple[str, str, str, str]]:
    """(version, name, port, status) of the Debian clusters on this machine."""
    if system.which("pg_lsclusters") is None:
        return []
    rows = system.must(["pg_lsclusters", "--no-header"], "listing PostgreSQL clusters")
    return [
        (fields[0], fields[1], fields[2], fields[3])
        for fields in (line.split() for line in rows.splitlines())
        if len(fields) >= 4
    ]


def _start_local_postgres(system: System, timeout_s: float) -> None:
    if not _clusters(system):
        if system.which("pg_ctlcluster") is None:
            system.apt_install(["postgresql"], "PostgreSQL", DATABASE_ENV)
        if not _clusters(system):  # installed without a cluster (e.g. create_main_cluster off)
            versions = system.server_versions()
            if not versions:
                raise ServiceError("PostgreSQL is installed but no server binary was found")
            system.must(
                ["pg_createcluster", "--port", str(system.pg_port), versions[-1], "main"],
                "pg_createcluster",
            )
    clusters = _clusters(system)
    if not clusters:
        raise ServiceError(
            "PostgreSQL is installed but has no cluster (pg_lsclusters lists none): create one "
            f"with `pg_createcluster VERSION main`, or set {DATABASE_ENV}"
        )
    on_port = [c for c in clusters if c[2] == str(system.pg_port)]
    if not on_port:
        listed = ", ".join(f"{v}/{n} on port {p}" for v, n, p, _ in clusters)
        raise ServiceError(
            f"no PostgreSQL cluster is set up for port {system.pg_port} ({listed}); start one "
            f"there, or set {DATABASE_ENV} to the one you use"
        )
    version, name, _, status = on_port[0]
    if status != "online":
        if not system.is_root():
            raise ServiceError(
                f"PostgreSQL cluster {version}/{name} is {status} and starting it needs root: "
                f"run `pg_ctlcluster {version} {name} start` as its owner, or set {DATABASE_ENV}"
            )
        system.say(f"starting PostgreSQL {version}/{name}")
        system.must(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"],
            f"starting PostgreSQL {version}/{name}",
        )
    wait_until(
        lambda: None if is_postgres(speaks(HOST, system.pg_port, _PG_SSL_REQUEST)) else "no answer",
        f"PostgreSQL on {HOST}:{system.pg_port}",
        timeout_s,
    )


def _create_test_role(system: System) -> None:
    if not system.is_root() or system.which("runuser") is None:
        raise ServiceError(
            f"PostgreSQL on {HOST}:{system.pg_port} has no usable role {PG_ROLE} and creating "
            f"one needs root; set {DATABASE_ENV} to a URL whose user may CREATE DATABASE"
        )
    system.say(f"creating the PostgreSQL role {PG_ROLE}")
    # Idempotent: the role is made to match, whatever an earlier run left.
    sql = (
        "DO $$ BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_ROLE}') THEN "
        f"CREATE ROLE {PG_ROLE}; END IF; "
        f"ALTER ROLE {PG_ROLE} WITH LOGIN CREATEDB CREATEROLE PASSWORD '{PG_PASSWORD}'; "
        "END $$;"
    )
    system.must(
        ["runuser", "-u", "postgres", "--", "psql", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
        f"creating the role {PG_ROLE}",
    )


# -- RabbitMQ -------------------------------------------------------------------------------


def ensure_rabbitmq(system: System, timeout_s: float = START_TIMEOUT_S) -> str:
    """A RabbitMQ the tests can use; its URL (password hidden)."""
    given = os.environ.get(BROKER_ENV)
    if given:
        error = amqp_connect_error(given)
        if error is not None:
            raise ServiceError(
                f"{BROKER_ENV}={_redact(given)} does not accept connections ({error}); "
                f"fix it, or unset it to use a local RabbitMQ"
            )
        return _redact(given)
    port, url = system.amqp_port, default_broker_url(system.amqp_port)
    answer = speaks(HOST, port, _AMQP_HEADER)
    if answer is not None and not is_amqp(answer):
        raise ServiceError(
            f"{HOST}:{port} is taken by something that is not RabbitMQ; stop it, or set "
            f"{BROKER_ENV} to a RabbitMQ whose user may declare queues"
        )
    if answer is None:
        if not system.rabbitmq_installed():
            system.apt_install(["rabbitmq-server"], "RabbitMQ", BROKER_ENV)
        if not system.is_root():
            raise ServiceError(
                f"RabbitMQ is not running and starting it needs root: run "
                f"`rabbitmq-server -detached` as its user, or set {BROKER_ENV}"
            )
        system.say("starting RabbitMQ (rabbitmq-server -detached)")
        system.must(["rabbitmq-server", "-detached"], "starting RabbitMQ")
        wait_until(lambda: amqp_connect_error(url), "RabbitMQ", timeout_s)
        return _redact(url)
    error = amqp_connect_error(url)  # a running broker answers at once: no waiting
    if error is not None:
        raise ServiceError(
            f"RabbitMQ on {HOST}:{port} refuses {_redact(url)} ({error}); set {BROKER_ENV} to "
            f"a URL whose user may declare queues"
        )
    return _redact(url)


PROMTOOL_ENV = "PROMTOOL"


def promtool_path() -> str | None:
    """Prometheus' rule checker: ``PROMTOOL`` if set, else ``promtool`` on the PATH."""
    return os.environ.get(PROMTOOL_ENV) or shutil.which("promtool")


def ensure_promtool(system: System) -> str:
    """promtool (the alert rules' tests need it): found, or installed with Debian's
    prometheus package (only its promtool is used: on a host run by systemd the package starts
    its server on :9090, all interfaces, so it is stopped and disabled at once)."""
    configured = os.environ.get(PROMTOOL_ENV)
    if configured:
        if not os.access(configured, os.X_OK):
            raise ServiceError(f"{PROMTOOL_ENV}={configured} is not an executable file")
        return configured
    found = system.which("promtool")
    if found is None:
        system.apt_install(["prometheus"], "promtool", PROMTOOL_ENV, missing="is not installed")
        if system.which("systemctl") is not None:  # no systemd running: it fails, harmless
            system.run(["systemctl", "disable", "--now", "prometheus"])
        found = system.which("promtool")
        if found is None:
            raise ServiceError(
                f"the prometheus package installed no promtool on the PATH; set {PROMTOOL_ENV}"
            )
    return found


def ensure_wrk(system: System) -> str:
    """wrk, the benchmarks' HTTP load generator (C, so the client is not what is measured):
    found on the PATH, or installed with Debian's wrk package."""
    found = system.which("wrk")
    if found is None:
        system.apt_install(
            ["wrk"], "wrk (the benchmarks' load generator)", None, missing="is not installed"
        )
        found = system.which("wrk")
        if found is None:
            raise ServiceError("the wrk package installed no wrk on the PATH")
    return found


def ensure_server_packages(system: System) -> str:
    """The PostgreSQL and RabbitMQ servers installed, not started: the e2e suite starts private
    ones of its own (e2e/services.py) and needs only their programs."""
    why = "the e2e suite (in `make test` too) starts private ones from, also when TEST_* are set,"
    if not installed_server_versions():
        system.apt_install(
            ["postgresql"], f"the PostgreSQL server {why}", None, missing="is not installed"
        )
    if not system.rabbitmq_installed():
        system.apt_install(
            ["rabbitmq-server"], f"the RabbitMQ server {why}", None, missing="is not installed"
        )
    return f"PostgreSQL {', '.join(installed_server_versions()) or '?'} and RabbitMQ installed"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.services",
        description="Make sure the PostgreSQL and RabbitMQ the tests need are running, and that "
        "promtool (the alert rules' tests) is installed.",
    )
    parser.add_argument(
        "command",
        choices=["up", "bench-tools", "packages"],
        help="up: start what is missing (idempotent); bench-tools: install wrk for `make "
        "bench`; packages: install the PostgreSQL and RabbitMQ servers without starting them "
        "(the e2e suite, in `make test` and `make e2e`, starts private ones from them)",
    )
    args = parser.parse_args(argv)
    system = System.real()
    try:
        if args.command == "bench-tools":
            summary = f"wrk {ensure_wrk(system)}"
        elif args.command == "packages":
            summary = ensure_server_packages(system)
        else:
            database = ensure_postgres(system)
            broker = ensure_rabbitmq(system)
            promtool = ensure_promtool(system)
            summary = f"PostgreSQL {database} | RabbitMQ {broker} | promtool {promtool}"
    except ServiceError as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 2
    system.say(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
