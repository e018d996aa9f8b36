"""The real-time stack for the webhook and queue tests: RabbitMQ (a unique queue prefix per
test), a database, real `hf-mock` processes sending signed webhooks, and `hf-adapter serve` and
`hf-adapter worker` processes. A service the tests need that is missing fails them, clearly."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from kombu.connection import Connection
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import URL

from adapter.clients.http import tls_context
from adapter.queue.topology import QueueTopology
from adapter.store.database import create_engine_from_url
from adapter.store.models import WebhookEvent
from adapter.webhooks.signature import sign
from harness import services
from harness.processes import ManagedProcess, free_port
from tests.integration.adapter.sync.support import KKI_TOKEN, Mock, adapter_environment
from tests.support.databases import migrate

RABBIT_HINT = (
    "run `make services` (it installs and starts a local RabbitMQ), or point TEST_BROKER_URL "
    "at a RabbitMQ whose user may declare queues"
)
# Retries in tenths of seconds, so a failing source is retried several times within a test.
FAST_RETRIES = "0.2,0.4,0.8,1.6"
# The mocks retry their webhooks quickly too (a receiver briefly down is retried in ms).
FAST_WEBHOOKS = ["--webhook-base-delay-ms", "100", "--webhook-max-delay-ms", "1000"]
WAIT_S = 60.0
NIK_HASH = "0" * 64


def broker_url() -> str:
    url = services.broker_url()
    connection = Connection(url, connect_timeout=3)
    try:
        connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the same here
        pytest.fail(f"RabbitMQ is not reachable at {url} ({exc}); {RABBIT_HINT}", pytrace=False)
    finally:
        connection.release()
    return url


def unique_prefix() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"hf-test-{worker}-{secrets.token_hex(4)}"


def delete_topology(url: str, prefix: str, retry_delays: str = FAST_RETRIES) -> None:
    """Remove a test's queues and exchanges from the shared RabbitMQ."""
    topology = QueueTopology(prefix, 1, tuple(float(d) for d in retry_delays.split(",")))
    with Connection(url, connect_timeout=3) as connection:
        channel = connection.default_channel
        for queue in topology.all_queues:
            channel.queue_delete(queue.name)
        for exchange in (topology.events_exchange, topology.retry_exchange, topology.dead_exchange):
            channel.exchange_delete(exchange.name)


@contextmanager
def own_topology(url: str) -> Iterator[QueueTopology]:
    """A queue topology of the test's own (3 deliveries, retries after 0.2 and 0.4 s) on the
    shared RabbitMQ, removed afterwards."""
    prefix = unique_prefix()
    try:
        yield QueueTopology(prefix, 3, (0.2, 0.4))
    finally:
        delete_topology(url, prefix, "0.2,0.4")


def queued(url: str, topology: QueueTopology) -> int:
    """Messages waiting in `topology`'s events queue."""
    with Connection(url) as connection:
        declared = connection.default_channel.queue_declare(
            queue=topology.events_queue.name, passive=True
        )
    return int(declared.message_count)


def migrated_engine(url: URL | str) -> Engine:
    engine = create_engine_from_url(url)
    migrate(engine)
    return engine


class Adapter:
    """`hf-adapter serve` and workers against one database, broker and pair of mocks."""

    def __init__(self, environment: dict[str, str], engine: Engine) -> None:
        self.environment = environment
        self.engine = engine
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []

    def serve(self, *, workers: int = 1, threads: int = 8) -> None:
        argv = [
            sys.executable,
            "-m",
            "adapter",
            "serve",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
        ]
        self.server = ManagedProcess("adapter-serve", argv, env=self.environment).start()
        self.server.wait_http(f"{self.url}/healthz", timeout_s=60)

    def start_worker(self, *, concurrency: int = 4, extra: Sequence[str] = ()) -> ManagedProcess:
        argv = [
            sys.executable,
            "-m",
            "adapter",
            "worker",
            "--concurrency",
            str(concurrency),
            *extra,
        ]
        worker = ManagedProcess("adapter-worker", argv, env=self.environment).start()
        self.workers.append(worker)
        return worker

    def cli(self, *args: str) -> tuple[int, str]:
        import subprocess

        done = subprocess.run(
            [sys.executable, "-m", "adapter", *args],
            env={**os.environ, **self.environment},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(WebhookEvent.state, func.count()).group_by(WebhookEvent.state)
            ).all()
        return {state: int(count) for state, count in rows}

    def events(self) -> list[WebhookEvent]:
        from sqlalchemy.orm import Session

        with Session(self.engine) as session:
            return list(session.scalars(select(WebhookEvent)))

    def wait_for(
        self, condition: Callable[[], bool], *, what: str, timeout_s: float = WAIT_S
    ) -> None:
        """Wait until `condition`; fail when the inbox has not changed for `timeout_s`.

        A stall, not a slow machine, fails the test: while events keep moving the wait goes
        on (the tests never assert speed).
        """
        last = self.counts()
        deadline = time.monotonic() + timeout_s
        while not condition():
            now_counts = self.counts()
            if now_counts != last:
                last, deadline = now_counts, time.monotonic() + timeout_s
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {p.name}:\n{p.output(3000)}" for p in [self.server, *self.workers] if p
                )
                raise AssertionError(
                    f"no progress for {timeout_s:.0f} s waiting for {what}; counts {last}\n{logs}"
                )
            time.sleep(0.2)

    def close(self) -> None:
        processes = [*self.workers, *([self.server] if self.server is not None else [])]
        # All are told to stop first, so their graceful shutdowns overlap instead of adding up.
        for process in processes:
            with contextlib.suppress(ProcessLookupError):  # it ended since it was checked
                process.signal(signal.SIGTERM)
        # Every process is closed and the engine disposed even when one close fails.
        with contextlib.ExitStack() as closing:
            closing.callback(self.engine.dispose)
            for process in reversed(processes):
                closing.callback(process.close)


def stack_environment(
    database_url: str, kki: str, sisdmk: str, *, broker: str | None, prefix: str | None
) -> dict[str, str]:
    environment = adapter_environment(database_url, kki, sisdmk)
    environment.update(
        {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "EVENT_RETRY_DELAYS_S": FAST_RETRIES,
            "EVENT_MAX_ATTEMPTS": "4",
            # An open breaker lets its trial call through after 1 s, not 5: a source that
            # fails until the test lifts its fault is retried (or replayed) that much sooner.
            "EVENT_BREAKER_RESET_S": "1",
            "EVENT_LEASE_S": "5",
            "LOG_FORMAT": "console",
        }
    )
    if broker is not None:
        environment["BROKER_URL"] = broker
    if prefix is not None:
        environment["BROKER_QUEUE_PREFIX"] = prefix
    return environment


def subscribe(mock: Mock, system: str, url: str, secret: str) -> str:
    """Subscribe `url` to every event of the mock, signed with `secret`; the subscription id."""
    body = {"url": url, "secret": secret}
    if system == "kki":
        response = httpx.post(
            f"{mock.url}/v1/webhook-subscriptions",
            json=body,
            headers={"X-API-Key": KKI_TOKEN},
            timeout=10,
            verify=tls_context(None),
        )
        response.raise_for_status()
        return str(response.json()["id"])
    token = httpx.post(
        f"{mock.url}/oauth2/v1/accesstoken",
        params={"grant_type": "client_credentials"},
        data={"client_id": "sisdmk-dev-client", "client_secret": "sisdmk-dev-secret"},
        timeout=10,
        verify=tls_context(None),
    ).json()["access_token"]
    response = httpx.post(
        f"{mock.url}/v1/webhook-subscriptions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        verify=tls_context(None),
    )
    response.raise_for_status()
    return str(response.json()["data"]["id"])


def emit(mock: Mock, event_type: str, **body: Any) -> dict[str, Any]:
    response = mock.admin.post("/events", json={"type": event_type, **body})
    response.raise_for_status()
    emitted: dict[str, Any] = response.json()
    return emitted


def hang_fetches_after(mock: Mock, route: str, answered: int) -> None:
    """`mock` answers the first `answered` requests to `route` at once and every later one
    after 20 s (the adapter's client waits 30): a worker then stops with events in hand, at a
    point that does not depend on the machine's speed. Both rules go with the mock's reset."""
    mock.fault({"route": route, "kind": "latency", "latency_ms": 0, "times": answered})
    mock.fault({"route": route, "kind": "latency", "latency_ms": 20_000})


def deliveries(mock: Mock, **params: Any) -> list[dict[str, Any]]:
    """The newest 500 deliveries matching `params` (event_id, status, event_type)."""
    response = mock.admin.get("/deliveries", params={"limit": 500, **params})
    items: list[dict[str, Any]] = response.raise_for_status().json()["data"]
    return items


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@contextmanager
def adapter_stack(
    database_url: URL,
    kki: Mock,
    sisdmk: Mock,
    *,
    broker: str | None,
    extra_env: dict[str, str] | None = None,
    tmp_path: Path | None = None,
) -> Iterator[Adapter]:
    """A migrated database, `serve` started, subscriptions made; workers are the test's."""
    prefix = unique_prefix() if broker is not None else None
    environment = stack_environment(
        database_url.render_as_string(hide_password=False),
        kki.url,
        sisdmk.url,
        broker=broker,
        prefix=prefix,
    )
    environment.update(extra_env or {})
    adapter = Adapter(environment, migrated_engine(database_url))
    try:
        adapter.serve(workers=int(os.environ.get("HF_TEST_SERVE_WORKERS", "2")))
        subscribe(kki, "kki", f"{adapter.url}/webhooks/kki", environment["KKI_WEBHOOK_SECRET"])
        subscribe(
            sisdmk, "sisdmk", f"{adapter.url}/webhooks/sisdmk", environment["SISDMK_WEBHOOK_SECRET"]
        )
        yield adapter
    finally:
        adapter.close()
        if broker is not None and prefix is not None:
            delete_topology(broker, prefix)


def signed_correction(
    secret: str, registration: dict[str, Any], moment: int
) -> tuple[str, dict[str, str], bytes]:
    """A signed KKI `registration.corrected` webhook for `registration`, sent at `moment`:
    its webhook id, headers and body."""
    webhook_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "event_id": webhook_id,
            "type": "registration.corrected",
            "occurred_at": "2026-02-01T09:30:00.000000Z",
            "source": "kki",
            "subject": {"nik_hash": NIK_HASH, "str_number": registration["str_number"]},
            "data": {
                "str_number": registration["str_number"],
                "version": int(registration["version"]),
                "status": "AKTIF",
            },
            "version": "1",
        },
        separators=(",", ":"),
    ).encode()
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(moment),
        "webhook-signature": sign(secret, webhook_id, moment, body),
    }
    return webhook_id, headers, body
