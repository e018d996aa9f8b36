"""The image's processes need no writable root filesystem: each long-running service of
docker-compose.test.yml (both mocks, `db upgrade`, serve with two gunicorn workers, the worker,
the scheduler running both daily syncs) runs here as its compose command and environment say,
in a mount namespace where / is read-only and the service's tmpfs mounts are fresh tmpfs, as
`read_only: true` and `tmpfs:` give it in a container. Only the addresses change: this machine's
PostgreSQL, RabbitMQ and free ports instead of the compose network's."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapter.clients.http import tls_context
from adapter.settings import Settings
from harness.processes import ManagedProcess, free_port
from tests.integration.adapter.webhooks.support import delete_topology, unique_prefix
from tests.support.databases import PostgresServer
from tests.support.deploy import ROOT, command, environment, final_stage, services

pytestmark = pytest.mark.integration

WAIT_S = 120.0
READ_ONLY_FAILURES = ("Read-only file system", "EROFS")


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage that is about writing (no bytecode, HOME)."""
    env: dict[str, str] = {}
    for instruction in final_stage():
        if instruction.cmd == "ENV":
            env.update(zip(instruction.value[::2], instruction.value[1::2], strict=True))
    return {name: env[name] for name in ("PYTHONDONTWRITEBYTECODE", "HOME")}


def read_only_root(service: str) -> list[str]:
    """A prefix that runs a command with / read-only and the service's tmpfs mounts fresh."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed: apt-get install util-linux", pytrace=False)
    mounts = " && ".join(_tmpfs(path) for path in services()[service]["tmpfs"])
    script = f'{mounts} && mount -o remount,bind,ro / && exec "$@"'
    probe = subprocess.run(
        [
            *["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "probe"],
            *["sh", "-c", "! touch /read-only-probe 2>/dev/null"],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(
            "cannot make a read-only mount namespace (needs root, or CAP_SYS_ADMIN): "
            f"{probe.stderr.strip()}",
            pytrace=False,
        )
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, service]


def _tmpfs(path: str) -> str:
    """Mount a fresh tmpfs on `path`. The code and the interpreter the test runs stay visible
    (read-only) when they lie below it, as a checkout under /tmp does: the image has them at
    /app and /usr/local, which no tmpfs covers. /mnt holds the covered tree meanwhile."""
    kept = sorted(
        {
            place
            for place in (ROOT.resolve(), Path(sys.prefix).resolve(), Path(sys.base_prefix))
            if place.resolve().is_relative_to(path)
        }
    )
    if not kept:
        return f"mkdir -p {path} && mount -t tmpfs -o size=64m tmpfs {path}"
    steps = [f"mount --rbind {path} /mnt", f"mount -t tmpfs -o size=64m tmpfs {path}"]
    for place in kept:
        source = Path("/mnt") / place.resolve().relative_to(path)
        steps.append(
            f"mkdir -p {place} && mount --rbind {source} {place} && "
            f"mount -o remount,bind,ro {place}"
        )
    return " && ".join(steps)


def replace(argv: Sequence[str], option: str, value: str) -> list[str]:
    changed = list(argv)
    changed[changed.index(option) + 1] = value
    return changed


def python(argv: Sequence[str]) -> list[str]:
    """The compose command, run with this interpreter (the image's console scripts)."""
    program, *rest = argv
    module = {"hf-adapter": "adapter", "hf-mock": "mocks"}[program]
    return [sys.executable, "-m", module, *rest]


def metric_samples(url: str, name: str, **labels: str) -> list[float]:
    """The values of `name`'s samples holding `labels` (others may differ), [] when unreachable."""
    try:
        exposition = httpx.get(url, timeout=5, verify=tls_context(None)).text
    except httpx.TransportError:
        return []
    return [
        float(sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def wait_for_metric(process: ManagedProcess, url: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples with `labels`, once it is 1 or more."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert process.is_running(), process.output()
        total = sum(metric_samples(url, name, **labels))
        if total >= 1:
            return total
        time.sleep(0.5)
    raise AssertionError(f"{url} never showed {name}{labels} at 1 or more:\n{process.output()}")


@pytest.fixture
def started() -> Iterator[list[ManagedProcess]]:
    processes: list[ManagedProcess] = []
    try:
        yield processes
    finally:
        for process in reversed(processes):
            process.close()


def test_every_service_of_the_image_runs_on_a_read_only_root(
    postgres_server: PostgresServer, broker: str, started: list[ManagedProcess]
) -> None:
    def start(service: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess(
            service, [*read_only_root(service), *python(argv)], env=env, cwd=ROOT
        ).start()
        started.append(process)
        return process

    mock_urls = {}
    for service in ("kki-mock", "sisdmk-mock"):
        port = free_port()
        argv = replace(replace(command(service), "--host", "127.0.0.1"), "--port", str(port))
        argv = replace(argv, "--size", "50")
        mock = start(service, argv, image_environment())
        mock_urls[service] = f"http://127.0.0.1:{port}"
        mock.wait_http(f"{mock_urls[service]}/__admin/health")

    prefix = unique_prefix()
    local = {
        **image_environment(),
        "DATABASE_URL": postgres_server.create_database().render_as_string(hide_password=False),
        "BROKER_URL": broker,
        "BROKER_QUEUE_PREFIX": prefix,
        "KKI_BASE_URL": mock_urls["kki-mock"],
        "SISDMK_BASE_URL": mock_urls["sisdmk-mock"],
        # Nobody listens there: nothing here needs the SSO.
        "OIDC_ISSUER": f"http://127.0.0.1:{free_port()}"
        + urlsplit(environment("adapter")["OIDC_ISSUER"]).path,
        # Both daily syncs due now, so the scheduler runs them at once.
        "SYNC_SCHEDULE": "sisdmk=00:00,kki=00:00",
        "SCHEDULE_POLL_S": "1",
    }
    try:
        migrate = start("migrate", command("migrate"), {**environment("migrate"), **local})
        assert migrate.process is not None
        assert migrate.process.wait(timeout=WAIT_S) == 0, migrate.output()

        public, ops = free_port(), free_port()
        serve_env = {**environment("adapter"), **local, "OPS_BIND": f"127.0.0.1:{ops}"}
        assert serve_env["PROMETHEUS_MULTIPROC_DIR"] in services()["adapter"]["tmpfs"]
        serve = start(
            "adapter", replace(command("adapter"), "--bind", f"127.0.0.1:{public}"), serve_env
        )
        serve.wait_http(f"http://127.0.0.1:{public}/healthz", timeout_s=WAIT_S)
        serve.wait_http(f"http://127.0.0.1:{ops}/metrics", timeout_s=WAIT_S)

        worker_port, schedule_port = free_port(), free_port()
        worker_argv = replace(command("worker"), "--metrics-port", str(worker_port))
        worker_argv = replace(worker_argv, "--metrics-host", "127.0.0.1")
        worker = start("worker", worker_argv, {**environment("worker"), **local})
        worker.wait_http(f"http://127.0.0.1:{worker_port}/metrics", timeout_s=WAIT_S)

        schedule_argv = replace(command("scheduler"), "--metrics-port", str(schedule_port))
        schedule_argv = replace(schedule_argv, "--metrics-host", "127.0.0.1")
        scheduler = start("scheduler", schedule_argv, {**environment("scheduler"), **local})
        url = f"http://127.0.0.1:{schedule_port}/metrics"
        for system in ("sisdmk", "kki"):
            runs = wait_for_metric(
                scheduler, url, "hf_sync_runs_total", system=system, status="succeeded"
            )
            assert runs >= 1, system
            # Failures exposed at 0 from the start (an alert's increase() misses a series'
            # first count), and in both modes.
            assert metric_samples(url, "hf_sync_runs_total", system=system, status="failed") == [
                0.0,
                0.0,
            ]

        for process in started:
            if process.name != "migrate":
                assert process.is_running(), process.output()
    finally:
        for process in reversed(started):
            process.stop()
        delete_topology(broker, prefix, Settings.model_fields["event_retry_delays_s"].default)
    for process in started:
        output = process.output(tail=200_000)
        for failure in READ_ONLY_FAILURES:
            assert failure not in output, f"{process.name} wrote outside its tmpfs:\n{output}"
