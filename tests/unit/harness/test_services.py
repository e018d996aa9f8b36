"""The test-services script's decisions: what it uses, installs and starts, and the one clear
line it ends with when it can't — with a fake machine (commands recorded, not run) and real
sockets standing in for servers that are not PostgreSQL or RabbitMQ."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness import services
from harness.processes import free_port
from harness.services import ServiceError, System


class FakeMachine:
    """Records commands; answers each by the first matching prefix in `answers`."""

    def __init__(self, answers: dict[str, tuple[int, str]] | None = None) -> None:
        self.answers = answers or {}
        self.commands: list[str] = []
        self.said: list[str] = []

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        line = " ".join(argv)
        self.commands.append(line)
        for prefix, (code, out) in self.answers.items():
            if line.startswith(prefix):
                return subprocess.CompletedProcess(argv, code, out, out)
        return subprocess.CompletedProcess(argv, 0, "", "")

    def system(
        self,
        *,
        root: bool,
        tools: set[str],
        pg_port: int,
        amqp_port: int,
        versions: tuple[str, ...] = (),
    ) -> System:
        return System(
            run=self.run,
            which=lambda name: f"/usr/bin/{name}" if name in tools else None,
            is_root=lambda: root,
            say=self.said.append,
            pg_port=pg_port,
            amqp_port=amqp_port,
            server_versions=lambda: list(versions),
            rabbitmq_installed=lambda: "rabbitmq-server" in tools,
        )


@pytest.fixture
def http_port() -> Iterator[int]:
    """A port where an HTTP server listens: something that is neither PostgreSQL nor AMQP."""

    class Quiet(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_service_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(services.DATABASE_ENV, raising=False)
    monkeypatch.delenv(services.BROKER_ENV, raising=False)


def test_a_port_taken_by_a_web_server_is_not_taken_for_postgres(http_port: int) -> None:
    machine = FakeMachine()
    system = machine.system(root=True, tools=set(), pg_port=http_port, amqp_port=1)
    with pytest.raises(ServiceError, match=rf"127.0.0.1:{http_port} is taken by .* not PostgreSQL"):
        services.ensure_postgres(system, timeout_s=2)
    assert machine.commands == [], "nothing installed or started"


def test_a_port_taken_by_a_web_server_is_not_taken_for_rabbitmq(http_port: int) -> None:
    machine = FakeMachine()
    system = machine.system(root=True, tools=set(), pg_port=1, amqp_port=http_port)
    with pytest.raises(ServiceError, match=rf"127.0.0.1:{http_port} is taken by .* not RabbitMQ"):
        services.ensure_rabbitmq(system, timeout_s=2)
    assert machine.commands == []


def test_a_silent_listener_is_not_taken_for_postgres() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        # Accepted by the kernel, never answered: the probe times out instead of hanging.
        assert services.speaks("127.0.0.1", port, b"\x00" * 8, timeout_s=0.3) == b""
        assert not services.is_postgres(b"")


def test_missing_postgres_is_installed_then_a_cluster_is_made_on_the_port() -> None:
    machine = FakeMachine({"pg_lsclusters": (0, "")})
    port = free_port()
    system = machine.system(
        root=True, tools={"apt-get"}, pg_port=port, amqp_port=1, versions=("13", "15")
    )
    # The fake pg_createcluster makes nothing: the script says so instead of starting nothing.
    with pytest.raises(ServiceError, match=r"installed but has no cluster"):
        services.ensure_postgres(system, timeout_s=0.5)
    assert machine.commands == [
        "apt-get install -y -q --no-install-recommends postgresql",
        f"pg_createcluster --port {port} 15 main",
    ]


def test_installed_postgres_without_a_server_binary_is_named() -> None:
    machine = FakeMachine({"pg_lsclusters": (0, "")})
    system = machine.system(root=True, tools={"pg_ctlcluster"}, pg_port=free_port(), amqp_port=1)
    with pytest.raises(ServiceError, match="no server binary was found"):
        services.ensure_postgres(system, timeout_s=0.5)


def test_a_cluster_on_another_port_is_named_not_waited_for() -> None:
    listing = "15 main 5433 down postgres /var/lib/x /var/log/y"
    machine = FakeMachine({"pg_lsclusters": (0, listing)})
    port = free_port()
    system = machine.system(
        root=True, tools={"pg_lsclusters", "pg_ctlcluster"}, pg_port=port, amqp_port=1
    )
    with pytest.raises(ServiceError) as failure:
        services.ensure_postgres(system, timeout_s=30)
    assert f"no PostgreSQL cluster is set up for port {port} (15/main on port 5433)" in str(
        failure.value
    )
    assert not any("start" in c for c in machine.commands)


def test_a_failed_apt_install_is_retried_after_an_update_then_named() -> None:
    machine = FakeMachine({"apt-get install": (100, "E: Unable to locate package postgresql")})
    system = machine.system(root=True, tools={"apt-get"}, pg_port=free_port(), amqp_port=1)
    with pytest.raises(ServiceError) as failure:
        services.ensure_postgres(system, timeout_s=0.5)
    assert [c.split()[1] for c in machine.commands] == ["install", "update", "install"]
    message = str(failure.value)
    assert message.startswith("installing postgresql failed")
    assert "Unable to locate package postgresql" in message


def test_without_root_it_says_what_to_install_or_set() -> None:
    machine = FakeMachine()
    system = machine.system(root=False, tools={"apt-get"}, pg_port=free_port(), amqp_port=1)
    with pytest.raises(ServiceError) as failure:
        services.ensure_postgres(system, timeout_s=0.5)
    assert str(failure.value) == (
        "PostgreSQL is not running and cannot be installed here (not root): install postgresql "
        "and start it, or set TEST_DATABASE_URL to a running one"
    )
    assert machine.commands == []


def test_without_apt_it_says_what_to_install_or_set_for_rabbitmq() -> None:
    machine = FakeMachine()
    system = machine.system(root=True, tools=set(), pg_port=1, amqp_port=free_port())
    with pytest.raises(ServiceError, match=r"\(no apt-get\): install rabbitmq-server .* "):
        services.ensure_rabbitmq(system, timeout_s=0.5)


def test_a_stopped_cluster_is_started_without_systemd() -> None:
    port = free_port()
    machine = FakeMachine({"pg_lsclusters": (0, f"15 main {port} down postgres /var/lib/x /y")})
    system = machine.system(
        root=True, tools={"pg_lsclusters", "pg_ctlcluster"}, pg_port=port, amqp_port=1
    )
    with pytest.raises(ServiceError, match="did not accept connections within 0 s"):
        services.ensure_postgres(system, timeout_s=0.3)
    assert "pg_ctlcluster --skip-systemctl-redirect 15 main start" in machine.commands


def _up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.services", "up"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_wrong_database_url_ends_with_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", services.DATABASE_ENV: f"postgresql://u:pw@127.0.0.1:{port}/x"}
    result = _up(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"services: TEST_DATABASE_URL=postgresql://u:***@127.0.0.1:{port}/x")
    assert "does not accept connections" in lines[0]
    assert "pw" not in lines[0].replace("postgresql", "")


def test_a_broker_that_refuses_the_connection_is_one_line_not_a_wait() -> None:
    # Something that answers the AMQP header like a broker, then closes: a running broker that
    # will not have us (another user, another vhost). It is said at once, nothing is started.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer_then_close() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    connection.recv(8)
                    connection.sendall(b"\x01\x00\x00\x00\x00\x00\x00")

        threading.Thread(target=answer_then_close, daemon=True).start()
        machine = FakeMachine()
        system = machine.system(root=True, tools={"rabbitmq-server"}, pg_port=1, amqp_port=port)
        with pytest.raises(ServiceError, match=rf"RabbitMQ on 127.0.0.1:{port} refuses"):
            services.ensure_rabbitmq(system, timeout_s=600)
        assert machine.commands == []


def _installs(
    machine: FakeMachine, *, package: str, program: str, extra: set[str] | None = None
) -> System:
    """A root machine with apt-get (and `extra` tools), where installing `package` puts
    `program` on the PATH."""
    tools = {"apt-get", *(extra or set())}

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if list(argv[:2]) == ["apt-get", "install"] and package in argv:
            tools.add(program)
        return machine.run(argv)

    return System(
        run=run,
        which=lambda name: f"/usr/bin/{name}" if name in tools else None,
        is_root=lambda: True,
        say=machine.said.append,
    )


def test_promtool_on_the_path_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(services.PROMTOOL_ENV, raising=False)
    machine = FakeMachine()
    system = machine.system(root=True, tools={"apt-get", "promtool"}, pg_port=1, amqp_port=1)
    assert services.ensure_promtool(system) == "/usr/bin/promtool"
    assert machine.commands == []


def test_missing_promtool_is_installed_from_the_prometheus_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(services.PROMTOOL_ENV, raising=False)
    machine = FakeMachine()
    system = _installs(machine, package="prometheus", program="promtool")
    assert services.ensure_promtool(system) == "/usr/bin/promtool"
    assert machine.commands == ["apt-get install -y -q --no-install-recommends prometheus"]


def test_the_prometheus_server_the_package_starts_under_systemd_is_stopped_and_disabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only promtool is used; Debian's package starts the server on :9090 on every interface.
    monkeypatch.delenv(services.PROMTOOL_ENV, raising=False)
    machine = FakeMachine()
    system = _installs(machine, package="prometheus", program="promtool", extra={"systemctl"})
    assert services.ensure_promtool(system) == "/usr/bin/promtool"
    assert machine.commands == [
        "apt-get install -y -q --no-install-recommends prometheus",
        "systemctl disable --now prometheus",
    ]


def test_without_root_it_says_to_install_promtool_or_set_promtool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(services.PROMTOOL_ENV, raising=False)
    machine = FakeMachine()
    system = machine.system(root=False, tools={"apt-get"}, pg_port=1, amqp_port=1)
    with pytest.raises(ServiceError) as failure:
        services.ensure_promtool(system)
    assert str(failure.value) == (
        "promtool is not installed and cannot be installed here (not root): install "
        "prometheus, or set PROMTOOL to it"
    )
    assert machine.commands == []


def test_a_promtool_setting_that_is_not_a_program_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(services.PROMTOOL_ENV, str(tmp_path / "promtool"))
    system = FakeMachine().system(root=True, tools={"promtool"}, pg_port=1, amqp_port=1)
    with pytest.raises(ServiceError, match=r"PROMTOOL=.* is not an executable file"):
        services.ensure_promtool(system)


def test_wrk_on_the_path_is_used_as_it_is() -> None:
    machine = FakeMachine()
    system = machine.system(root=True, tools={"apt-get", "wrk"}, pg_port=1, amqp_port=1)
    assert services.ensure_wrk(system) == "/usr/bin/wrk"
    assert machine.commands == []


def test_missing_wrk_is_installed_from_its_debian_package() -> None:
    machine = FakeMachine()
    system = _installs(machine, package="wrk", program="wrk")
    assert services.ensure_wrk(system) == "/usr/bin/wrk"
    assert machine.commands == ["apt-get install -y -q --no-install-recommends wrk"]


def test_without_root_it_says_to_install_wrk() -> None:
    machine = FakeMachine()
    system = machine.system(root=False, tools={"apt-get"}, pg_port=1, amqp_port=1)
    with pytest.raises(ServiceError) as failure:
        services.ensure_wrk(system)
    assert str(failure.value) == (
        "wrk (the benchmarks' load generator) is not installed and cannot be installed here "
        "(not root): install wrk"
    )
    assert machine.commands == []


@pytest.mark.parametrize("installed", [False, True])
def test_e2e_gets_both_servers_installed_and_none_started(
    monkeypatch: pytest.MonkeyPatch, installed: bool
) -> None:
    # `make e2e` needed the shared servers running (`make services`) though its suite starts
    # private ones: a user with the packages and no root could not run it.
    versions = ["15"] if installed else []
    monkeypatch.setattr(services, "installed_server_versions", lambda: versions)
    machine = FakeMachine()
    system = machine.system(
        root=True,
        tools={"apt-get", "rabbitmq-server"} if installed else {"apt-get"},
        pg_port=1,
        amqp_port=1,
    )
    services.ensure_server_packages(system)
    assert machine.commands == (
        []
        if installed
        else [
            "apt-get install -y -q --no-install-recommends postgresql",
            "apt-get install -y -q --no-install-recommends rabbitmq-server",
        ]
    )


def test_a_rabbitmq_server_off_the_path_counts_as_installed(tmp_path: Path) -> None:
    # Debian's /usr/sbin is not on a normal user's PATH: `which` alone said "not installed".
    program = tmp_path / "rabbitmq-server"
    assert not services.rabbitmq_server_installed((program,), which=lambda name: None)
    program.write_text("#!/bin/sh\n")
    assert services.rabbitmq_server_installed((program,), which=lambda name: None)
    assert services.rabbitmq_server_installed((), which=lambda name: f"/usr/bin/{name}")


def test_packages_missing_without_root_say_the_e2e_suite_needs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "installed_server_versions", lambda: [])
    machine = FakeMachine()
    system = machine.system(root=False, tools={"apt-get"}, pg_port=1, amqp_port=1)
    with pytest.raises(services.ServiceError) as refused:
        services.ensure_server_packages(system)
    message = str(refused.value)
    assert message.startswith("the PostgreSQL server the e2e suite (in `make test` too)")
    assert "also when TEST_* are set" in message
    assert message.endswith("(not root): install postgresql")
    assert machine.commands == []
