"""The whole stack as real processes over HTTPS: both mocks, Keycloak with the realm export, a
PostgreSQL and a RabbitMQ of its own, `hf-adapter serve` under gunicorn, `worker` and
`schedule`, and an HTTPS sink for alerts and trace exports. Every server presents a
certificate of one throw-away CA; every client verifies it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx

from e2e.pki import CertificateAuthority, ServerCertificate
from e2e.services import PrivatePostgres, PrivateRabbit
from harness.keycloak import KeycloakServer, KeycloakTls
from harness.processes import ManagedProcess, free_port

T = TypeVar("T")

# Small mocks: every scenario's effect is visible, and a full sync takes seconds.
MOCK_SIZE: Final = 25
MOCK_SEED: Final = 7
KKI_TOKEN: Final = "kki-dev-token"
SISDMK_CLIENT: Final = ("sisdmk-dev-client", "sisdmk-dev-secret")
# The realm export's confidential clients (deploy/keycloak/healthforce-realm.json).
CLIENT_SECRETS: Final = {
    "healthforce-portal": "dev-only-portal-secret-change-me",
    "hf-ops": "dev-only-ops-secret-change-me",
    "hf-readonly": "dev-only-readonly-secret-change-me",
}
QUEUE_PREFIX: Final = "hf-e2e"
# The mocks retry a webhook for about half a minute (a restarted adapter, broker or database is
# back well within it); the worker retries an event for about 4 s before dead-lettering it.
MOCK_WEBHOOK_OPTIONS: Final = (
    "--webhook-base-delay-ms",
    "100",
    "--webhook-max-delay-ms",
    "5000",
    "--webhook-max-attempts",
    "20",
)
EVENT_RETRY_DELAYS: Final = "0.2,0.5,1,2"
EVENT_MAX_ATTEMPTS: Final = "4"
# A wait fails when nothing it watches has changed for this long (a stall, not a slow machine).
WAIT_S: Final = 60.0
POLL_S: Final = 0.2
# The realm's access tokens live 5 minutes; one is reused for a minute.
TOKEN_REUSE_S: Final = 60.0
# Keycloak's start (a fresh H2 database and the realm import) is ~30 s on a quiet 2-core
# machine; on a loaded one it was seen past the harness's 240 s.
KEYCLOAK_START_TIMEOUT_S: Final = 600.0
REPO: Final = Path(__file__).resolve().parents[1]


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def _webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def python_path() -> dict[str, str]:
    """This checkout first on the children's path (a worktree tests its own code)."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def eventually(check: Callable[[], T | None], *, what: str, timeout_s: float = WAIT_S) -> T:
    """Poll `check` until it returns something other than None; past `timeout_s`, fail saying
    what was awaited (the last value is in `what` when the caller formats it in)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout_s:.0f} s: {what}")
        time.sleep(POLL_S)


class RecordingSink:
    """An HTTPS server that keeps every POST: dead-letter alerts on /alerts, OTLP trace exports
    on /v1/traces. It answers 200 (an empty OTLP response is a valid one)."""

    def __init__(self, certificate: ServerCertificate) -> None:
        self.posts: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with sink._lock:
                    sink.posts.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate.certfile, certificate.keyfile)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for path, body in self.posts if path == "/alerts"]

    def traces_hold(self, *parts: bytes) -> bool:
        """Whether one OTLP export holds every one of `parts` (raw trace ids, span names)."""
        with self._lock:
            return any(
                path == "/v1/traces" and all(part in body for part in parts)
                for path, body in self.posts
            )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class MockServer:
    """A running `hf-mock` over HTTPS and a client of its admin API that verifies it."""

    system: str
    process: ManagedProcess
    url: str
    admin: httpx.Client

    def emit(self, event_type: str, **body: Any) -> list[dict[str, Any]]:
        """Touch records and send `event_type` events about them; the events (id, key)."""
        response = self.admin.post("/events", json={"type": event_type, **body})
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    def records(self, collection: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = self.admin.get(f"/records/{collection}", params=params).raise_for_status()
            items += page.json()["data"]
            cursor = page.json()["page"].get("next_cursor")
            if not cursor:
                return items

    def record(self, collection: str, key: str) -> dict[str, Any]:
        body: dict[str, Any] = (
            self.admin.get(f"/records/{collection}/{key}").raise_for_status().json()
        )
        return body

    def add_fault(self, rule: dict[str, Any]) -> str:
        return str(self.admin.post("/faults", json=rule).raise_for_status().json()["id"])

    def remove_fault(self, fault_id: str) -> None:
        self.admin.delete(f"/faults/{fault_id}").raise_for_status()

    def close(self) -> None:
        self.admin.close()
        self.process.close()


@dataclass
class Adapter:
    """`hf-adapter serve`, `worker` and `schedule` processes sharing one environment."""

    environment: dict[str, str]
    certificate: ServerCertificate
    ca_bundle: Path
    port: int = field(default_factory=free_port)
    server: ManagedProcess | None = None
    worker: ManagedProcess | None = None
    scheduler: ManagedProcess | None = None
    # Everything each process wrote, kept across restarts (a restart starts a new log).
    past_output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _process(self, name: str, *args: str) -> ManagedProcess:
        argv = [sys.executable, "-m", "adapter", *args]
        return ManagedProcess(f"e2e-{name}", argv, env=self.environment).start()

    def cli(self, *args: str) -> tuple[int, str]:
        return self.cli_with(self.environment, *args)

    def cli_with(self, environment: dict[str, str], *args: str) -> tuple[int, str]:
        """An `hf-adapter` command run to its end with `environment`: exit code, output."""
        done = subprocess.run(
            [sys.executable, "-m", "adapter", *args],
            env={**os.environ, **environment},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def start_server(self, *, workers: int = 2) -> None:
        self.server = self._process(
            "serve",
            "serve",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            "8",
            "--certfile",
            str(self.certificate.certfile),
            "--keyfile",
            str(self.certificate.keyfile),
        )
        self.server.wait_http(
            f"{self.url}/healthz",
            timeout_s=120,
            verify=ssl.create_default_context(cafile=self.ca_bundle),
        )

    def start_worker(self) -> None:
        self.worker = self._process("worker", "worker", "--concurrency", "4")

    def start_scheduler(self) -> None:
        self.scheduler = self._process("schedule", "schedule")

    def _retire(self, process: ManagedProcess | None) -> None:
        if process is not None:
            process.stop()
            self.past_output.append(process.output(10_000_000))
            process.close()

    def kill_worker(self) -> None:
        """SIGKILL: whatever the worker held is handed over again by the broker."""
        if self.worker is not None:
            self.worker.signal(signal.SIGKILL)
            self._retire(self.worker)

    def restart_server(self) -> None:
        self._retire(self.server)
        self.start_server()

    def output(self) -> str:
        """Every line the adapter's processes have written so far."""
        live = [p.output(10_000_000) for p in (self.server, self.worker, self.scheduler) if p]
        return "\n".join([*self.past_output, *live])

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}:\n{p.output(chars)}"
            for p in (self.server, self.worker, self.scheduler)
            if p is not None
        )

    def close(self) -> None:
        for process in (self.scheduler, self.worker, self.server):
            if process is not None:
                process.close()


class Stack:
    """Everything the scenarios talk to, started once per session (`Stack.up`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = CertificateAuthority.new(folder / "pki", "hf-e2e")
        # Another CA with the same name: what a client that trusts the wrong one holds.
        self.wrong_ca = CertificateAuthority.new(folder / "pki-wrong", "hf-e2e")
        # Keycloak first: it refuses (KeycloakUnavailable) before the private servers below
        # have made their folders, which `close` would never remove.
        self.keycloak = KeycloakServer(
            tls=KeycloakTls(
                *_pair(self.ca.issue("keycloak")),
                ca_bundle=self.ca.bundle,
            ),
            start_timeout_s=KEYCLOAK_START_TIMEOUT_S,
        )
        self.postgres = PrivatePostgres()
        self.rabbit = PrivateRabbit()
        self.sink = RecordingSink(self.ca.issue("sink"))
        self.mocks: dict[str, MockServer] = {}
        self.adapter: Adapter | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self.started_s = 0.0

    @property
    def verify(self) -> ssl.SSLContext:
        """What a client that trusts the stack's CA (and nothing else) verifies with."""
        return ssl.create_default_context(cafile=self.ca.bundle)

    @property
    def kki(self) -> MockServer:
        return self.mocks["kki"]

    @property
    def sisdmk(self) -> MockServer:
        return self.mocks["sisdmk"]

    def _start_mock(self, system: str) -> MockServer:
        certificate = self.ca.issue(f"mock-{system}")
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "mocks",
            system,
            "--port",
            str(port),
            "--size",
            str(MOCK_SIZE),
            "--seed",
            str(MOCK_SEED),
            "--quiet",
            "--certfile",
            str(certificate.certfile),
            "--keyfile",
            str(certificate.keyfile),
            "--webhook-ca-bundle",
            str(self.ca.bundle),
            *MOCK_WEBHOOK_OPTIONS,
        ]
        process = ManagedProcess(f"e2e-mock-{system}", argv, env=python_path()).start()
        url = f"https://127.0.0.1:{port}"
        process.wait_http(f"{url}/__admin/health", timeout_s=120, verify=self.verify)
        admin = httpx.Client(base_url=f"{url}/__admin", verify=self.verify, timeout=30)
        return MockServer(system, process, url, admin)

    def up(self) -> Stack:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=5) as pool:
            keycloak = pool.submit(self.keycloak.start)
            postgres = pool.submit(self.postgres.start)
            rabbit = pool.submit(self.rabbit.start)
            mocks = {"kki": pool.submit(self._start_mock, "kki")}
            mocks["sisdmk"] = pool.submit(self._start_mock, "sisdmk")
            try:
                postgres.result()
                rabbit.result()
                self.mocks = {system: started.result() for system, started in mocks.items()}
            except BaseException:
                # The mocks that did start are handed to `close`, which stops them: they run
                # in sessions of their own and would outlive the test run.
                self.mocks = {
                    system: started.result()
                    for system, started in mocks.items()
                    if started.exception() is None
                }
                raise
            self.adapter = Adapter(
                self._adapter_environment(), self.ca.issue("adapter"), self.ca.bundle
            )
            code, output = self.adapter.cli("db", "upgrade")
            if code != 0:
                raise RuntimeError(f"hf-adapter db upgrade failed: {output}")
            keycloak.result()
        self.adapter.start_server()
        self._subscribe()
        self.adapter.start_worker()
        self.adapter.start_scheduler()
        self.started_s = time.monotonic() - started
        return self

    def _adapter_environment(self) -> dict[str, str]:
        kki_secret, sisdmk_secret = _webhook_secret(), _webhook_secret()
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **python_path(),
            "DATABASE_URL": self.postgres.url,
            "BROKER_URL": self.rabbit.url,
            "BROKER_QUEUE_PREFIX": QUEUE_PREFIX,
            "OIDC_ISSUER": self.keycloak.issuer(),
            "OIDC_AUDIENCE": "hf-adapter",
            "KKI_BASE_URL": self.kki.url,
            "KKI_API_TOKEN": KKI_TOKEN,
            "SISDMK_BASE_URL": self.sisdmk.url,
            "SISDMK_CLIENT_ID": SISDMK_CLIENT[0],
            "SISDMK_CLIENT_SECRET": SISDMK_CLIENT[1],
            "KKI_WEBHOOK_SECRET": kki_secret,
            "SISDMK_WEBHOOK_SECRET": sisdmk_secret,
            "ENCRYPTION_KEYS": f"e2e-enc:{_key()}",
            "BLIND_INDEX_KEY": f"e2e-bidx:{_key()}",
            "AUDIT_KEYS": f"e2e-audit:{_key()}",
            # Every outbound HTTPS call (sources, Keycloak, alerts) trusts this CA only.
            "CA_BUNDLE": str(self.ca.bundle),
            "ALERT_WEBHOOK_URL": f"{self.sink.url}/alerts",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.sink.url,
            "OTEL_EXPORTER_OTLP_CERTIFICATE": str(self.ca.bundle),
            # The exporter's `requests` lets these override the certificate above when set
            # (this machine sets them to the system store): the same CA, then.
            "REQUESTS_CA_BUNDLE": str(self.ca.bundle),
            "CURL_CA_BUNDLE": str(self.ca.bundle),
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "LOG_FORMAT": "json",
            "EVENT_RETRY_DELAYS_S": EVENT_RETRY_DELAYS,
            "EVENT_MAX_ATTEMPTS": EVENT_MAX_ATTEMPTS,
            # Both daily slots have passed whenever the stack starts: the scheduler's first
            # poll runs the first sync of each system (SISDMK first, as configured).
            "SYNC_SCHEDULE": "sisdmk=00:00,kki=00:00",
            "SYNC_TIMEZONE": "UTC",
            "SCHEDULE_POLL_S": "1",
            "READINESS_CACHE_S": "0",
            "HTTP_CONNECT_TIMEOUT_S": "2",
            "HTTP_READ_TIMEOUT_S": "10",
        }

    def kki_subscription(self, url: str) -> str:
        """A KKI webhook subscription to `url` (its id), beside the adapter's."""
        created = httpx.post(
            f"{self.kki.url}/v1/webhook-subscriptions",
            json={"url": url},
            headers={"X-API-Key": KKI_TOKEN},
            verify=self.verify,
            timeout=30,
        ).raise_for_status()
        return str(created.json()["id"])

    def kki_unsubscribe(self, subscription: str) -> None:
        httpx.delete(
            f"{self.kki.url}/v1/webhook-subscriptions/{subscription}",
            headers={"X-API-Key": KKI_TOKEN},
            verify=self.verify,
            timeout=30,
        ).raise_for_status()

    def _subscribe(self) -> None:
        assert self.adapter is not None
        environment = self.adapter.environment
        kki = httpx.post(
            f"{self.kki.url}/v1/webhook-subscriptions",
            json={
                "url": f"{self.adapter.url}/webhooks/kki",
                "secret": environment["KKI_WEBHOOK_SECRET"],
            },
            headers={"X-API-Key": KKI_TOKEN},
            verify=self.verify,
            timeout=30,
        )
        kki.raise_for_status()
        token = (
            httpx.post(
                f"{self.sisdmk.url}/oauth2/v1/accesstoken",
                params={"grant_type": "client_credentials"},
                data={"client_id": SISDMK_CLIENT[0], "client_secret": SISDMK_CLIENT[1]},
                verify=self.verify,
                timeout=30,
            )
            .raise_for_status()
            .json()["access_token"]
        )
        sisdmk = httpx.post(
            f"{self.sisdmk.url}/v1/webhook-subscriptions",
            json={
                "url": f"{self.adapter.url}/webhooks/sisdmk",
                "secret": environment["SISDMK_WEBHOOK_SECRET"],
            },
            headers={"Authorization": f"Bearer {token}"},
            verify=self.verify,
            timeout=30,
        )
        sisdmk.raise_for_status()

    # -- talking to the adapter ---------------------------------------------------------------

    def token(self, client_id: str) -> str:
        """A client-credentials access token of `client_id`, reused for TOKEN_REUSE_S (well
        inside its lifetime) so that polling does not hammer Keycloak."""
        held = self._tokens.get(client_id)
        if held is not None and time.monotonic() - held[1] < TOKEN_REUSE_S:
            return held[0]
        answer = self.keycloak.realm().client_credentials(client_id, CLIENT_SECRETS[client_id])
        self._tokens[client_id] = (str(answer["access_token"]), time.monotonic())
        return self._tokens[client_id][0]

    @contextmanager
    def api(self, client_id: str) -> Iterator[httpx.Client]:
        """An API client of the adapter with a fresh Keycloak token of `client_id`."""
        assert self.adapter is not None
        with httpx.Client(
            base_url=f"{self.adapter.url}/api/v1",
            verify=self.verify,
            headers={"Authorization": f"Bearer {self.token(client_id)}"},
            timeout=30,
        ) as client:
            yield client

    def close(self) -> None:
        if self.adapter is not None:
            self.adapter.close()
        # The rest stop independently; RabbitMQ and Keycloak take seconds each.
        with ThreadPoolExecutor(max_workers=4) as pool:
            stopping = [
                pool.submit(stop)
                for stop in (
                    *(mock.close for mock in self.mocks.values()),
                    self.keycloak.close,
                    self.rabbit.close,
                    self.postgres.close,
                )
            ]
        self.sink.close()
        for stopped in stopping:
            stopped.result()  # an error stopping one is raised once all have stopped


def _pair(certificate: ServerCertificate) -> tuple[Path, Path]:
    return certificate.certfile, certificate.keyfile
