"""Readiness and metrics as an outsider meets them: cached readiness counted at the real
database, RabbitMQ and SSO; `OPS_BIND` moving /readyz and /metrics off the public port of a real
`hf-adapter serve`; hardening headers on what the ops port answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from adapter.app import create_app
from adapter.settings import load_settings
from harness.processes import ManagedProcess, free_port
from tests.integration.adapter.queue.tcp_proxy import TcpFaultProxy
from tests.integration.adapter.sync.support import adapter_environment, migrated
from tests.integration.adapter.webhooks.support import broker_url
from tests.unit.adapter.auth.auth_fakes import jwks, rsa_key

pytestmark = pytest.mark.integration

DISCOVERY = "/.well-known/openid-configuration"
CERTS = "/protocol/openid-connect/certs"
CALLS = 10


class CountingSso:
    """An SSO stand-in that answers its discovery document and its key set, and counts the
    requests for the discovery document."""

    def __init__(self) -> None:
        self.requests = 0
        sso = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith(CERTS):
                    body = json.dumps(jwks(rsa_key())).encode()
                    self.send_response(200)
                else:
                    sso.requests += 1
                    body = json.dumps(
                        {"issuer": sso.issuer, "jwks_uri": sso.issuer + CERTS}
                    ).encode()
                    self.send_response(200 if self.path.endswith(DISCOVERY) else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}/realms/healthforce"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def counted_adapter(tmp_path: Path, cache_s: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The app over real HTTP, its database, broker and SSO each counting what readiness does."""
    broker = broker_url()
    parts = urlsplit(broker)
    proxy = TcpFaultProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    credentials, _, _ = parts.netloc.rpartition("@")
    address = f"127.0.0.1:{proxy.port}"
    through_proxy = parts._replace(
        netloc=f"{credentials}@{address}" if credentials else address
    ).geturl()
    sso = CountingSso()
    database = f"sqlite:///{tmp_path / 'adapter.sqlite3'}"
    engine = migrated(make_url(database))
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    env = adapter_environment(database, "http://127.0.0.1:9", "http://127.0.0.1:9") | {
        "OIDC_ISSUER": sso.issuer,
        "BROKER_URL": through_proxy,
        "READINESS_CACHE_S": cache_s,
    }
    app = create_app(load_settings(env), engine=engine)
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    counts = {"statements": statements, "proxy": proxy, "sso": sso}
    try:
        yield f"http://127.0.0.1:{server.server_port}", counts
    finally:
        server.shutdown()
        thread.join(timeout=10)
        sso.close()
        proxy.down()
        engine.dispose()


def _readyz_calls(url: str, times: int, counts: dict[str, Any]) -> tuple[int, int, int]:
    """Database statements, AMQP connections and SSO requests that `times` probes cost."""
    statements, proxy, sso = counts["statements"], counts["proxy"], counts["sso"]
    before = (len(statements), proxy.accepted, sso.requests)
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(times):
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {
                "database": "ok",
                "broker": "ok",
                "sso": "ok",
                "signing_keys": "ok",
            }
    return (
        len(statements) - before[0],
        proxy.accepted - before[1],
        sso.requests - before[2],
    )


def test_readiness_calls_within_the_cache_window_cost_one_round_of_checks(
    tmp_path: Path,
) -> None:
    # A 300 s window: the calls fall inside it however slow the machine is.
    # The SSO's discovery document twice in the round: the probe, and once for good to find
    # the key set the process fetches then (signing_keys).
    with counted_adapter(tmp_path, "300") as (url, counts):
        assert _readyz_calls(url, CALLS, counts) == (1, 1, 2)


def test_without_a_cache_every_readiness_call_runs_every_check(tmp_path: Path) -> None:
    # The counters above count what they claim: with no window each call costs a round.
    with counted_adapter(tmp_path, "0") as (url, counts):
        assert _readyz_calls(url, 3, counts) == (3, 3, 4)  # the key set fetched once


# -- OPS_BIND: a real `hf-adapter serve` -------------------------------------------------------


@contextmanager
def served(tmp_path: Path, *extra: str, ops_bind: str | None) -> Iterator[tuple[str, str]]:
    database = f"sqlite:///{tmp_path / 'adapter.sqlite3'}"
    migrated(make_url(database)).dispose()
    env = adapter_environment(database, "http://127.0.0.1:9", "http://127.0.0.1:9")
    env["PATH"] = "/usr/bin:/bin"
    env["HOME"] = str(tmp_path)  # where gunicorn would put a control socket
    public_port, ops_port = free_port(), free_port()
    if ops_bind is not None:
        env["OPS_BIND"] = ops_bind.format(port=ops_port)
    argv = [sys.executable, "-m", "adapter", "serve", "--bind", f"127.0.0.1:{public_port}"]
    process = ManagedProcess("adapter-serve", [*argv, *extra], env=env).start()
    try:
        public, ops = f"http://127.0.0.1:{public_port}", f"http://127.0.0.1:{ops_port}"
        process.wait_http(f"{public}/healthz", timeout_s=60)
        if ops_bind is not None:
            process.wait_http(f"{ops}/healthz", timeout_s=60)
        yield public, ops
    finally:
        process.close()


@pytest.mark.parametrize("server", ["gunicorn", "dev"])
def test_ops_bind_serves_readyz_and_metrics_only_on_the_ops_port(
    tmp_path: Path, server: str
) -> None:
    extra = ("--workers", "2") if server == "gunicorn" else ("--dev",)
    with (
        served(tmp_path, *extra, ops_bind="127.0.0.1:{port}") as (public, ops),
        httpx.Client(base_url=public, timeout=30) as outside,
        httpx.Client(base_url=ops, timeout=30) as inside,
    ):
        # Whatever Host a caller sends, the public listener has no ops routes.
        for headers in ({}, {"Host": ops.removeprefix("http://")}):
            assert outside.get("/metrics", headers=headers).status_code == 404
            assert outside.get("/readyz", headers=headers).status_code == 404
        assert outside.get("/healthz").status_code == 200
        assert outside.get("/api/v1/health-workers").status_code == 401  # the API stays
        metrics = inside.get("/metrics")
        assert metrics.status_code == 200
        assert "hf_http_requests" in metrics.text
        ready = inside.get("/readyz")  # the SSO and registries are not running: 503, but here
        assert ready.status_code in (200, 503)
        assert set(ready.json()["checks"]) == {"database", "broker", "sso", "signing_keys"}
        assert ready.headers["Cache-Control"] == "no-store"
        assert ready.headers["X-Content-Type-Options"] == "nosniff"
        assert inside.get("/api/v1/health-workers").status_code == 404  # only ops here
        assert inside.post("/webhooks/kki", content=b"{}").status_code == 404


def test_without_ops_bind_the_public_port_serves_readyz_and_metrics(tmp_path: Path) -> None:
    with (
        served(tmp_path, "--workers", "1", ops_bind=None) as (public, _),
        httpx.Client(base_url=public, timeout=30) as outside,
    ):
        assert outside.get("/metrics").status_code == 200
        assert outside.get("/readyz").status_code in (200, 503)
    # No control socket (gunicorn's `gunicornc` interface: scale, reload, stop), which two
    # servers on one host would also take from each other at one default path.
    assert not (tmp_path / ".gunicorn").exists()


@pytest.mark.parametrize(
    ("bind", "ops_bind", "expected"),
    [
        ("unix:/tmp/hf-adapter.sock", "127.0.0.1:9100", "not a unix socket"),
        ("127.0.0.1:9100", "127.0.0.1:9100", "give it a port of its own"),
    ],
)
def test_serve_refuses_an_ops_bind_it_cannot_keep_apart(
    tmp_path: Path, bind: str, ops_bind: str, expected: str
) -> None:
    database = f"sqlite:///{tmp_path / 'adapter.sqlite3'}"
    env = adapter_environment(database, "http://127.0.0.1:9", "http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-m", "adapter", "serve", "--bind", bind],
        env={**os.environ, **env, "OPS_BIND": ops_bind},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert expected in done.stderr


def test_a_process_that_never_had_the_ssos_keys_is_not_ready(tmp_path: Path) -> None:
    """The SSO does not gate readiness while a process checks tokens with keys it holds; a
    process that never fetched them (a replica started during an SSO outage, a wrong
    OIDC_ISSUER or CA_BUNDLE in a rollout) can check none, and must not take traffic."""
    database = f"sqlite:///{tmp_path / 'adapter.sqlite3'}"
    engine = migrated(make_url(database))
    nowhere = f"http://127.0.0.1:{free_port()}/realms/healthforce"
    env = adapter_environment(database, "http://127.0.0.1:9", "http://127.0.0.1:9") | {
        "OIDC_ISSUER": nowhere,
        "READINESS_CACHE_S": "0",
    }
    try:
        app = create_app(load_settings(env), engine=engine)
        with app.test_client() as client:
            ready = client.get("/readyz")
    finally:
        engine.dispose()
    assert ready.status_code == 503
    checks = ready.get_json()["checks"]
    assert ready.get_json()["status"] == "not_ready"
    assert checks["database"] == "ok"
    assert checks["sso"].startswith("unreachable")
    assert checks["signing_keys"].startswith(
        "none fetched yet (OIDC discovery: the SSO is unreachable"
    )
