"""The conformance tests' targets (a real mock process with a breaking proxy in front) and a
helper that runs `hf-conformance` in-process and reads its JSON report."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from adapter.clients.http import tls_context
from conformance.cli import main
from harness.processes import start_mock
from tests.support.breaking_proxy import Breakage, BreakingProxy, Exchange
from tests.support.mock_servers import KKI_TOKEN, SEED, SISDMK_CLIENT, Mock, sisdmk_token

SIZE = 500
TODAY = dt.date(2026, 12, 1)

KKI_ARGS = ["--api-key", KKI_TOKEN]
SISDMK_ARGS = [
    "--client-id",
    SISDMK_CLIENT["client_id"],
    "--client-secret",
    SISDMK_CLIENT["client_secret"],
]
CREDENTIALS = {"kki": KKI_ARGS, "sisdmk": SISDMK_ARGS}


class Target:
    """A real mock, the breaking proxy in front of it, and clients for both APIs."""

    def __init__(self, system: str) -> None:
        process, url = start_mock(system, size=SIZE, seed=SEED)
        self.system = system
        self.mock = Mock(process, url)
        self.proxy = BreakingProxy(url)

    def public(self) -> httpx.Client:
        if self.system == "kki":
            headers = {"X-API-Key": KKI_TOKEN}
        else:
            headers = {"Authorization": f"Bearer {sisdmk_token(self.mock.url)}"}
        return httpx.Client(
            base_url=self.mock.url, headers=headers, timeout=30, verify=tls_context(None)
        )

    def patch(self, collection: str, key: str, document: dict[str, Any]) -> None:
        response = self.mock.admin.patch(
            f"/records/{collection}/{key}",
            json=document,
            headers={"content-type": "application/merge-patch+json"},
        )
        assert response.status_code == 200, response.text

    def reset(self, breakage: Breakage | None = None) -> None:
        self.mock.reset()
        self.proxy.breakage = breakage or Breakage()

    def close(self) -> None:
        self.proxy.close()
        self.mock.close()


def run_conformance(
    system: str, url: str, tmp_path: Path, *args: str, today: dt.date = TODAY
) -> tuple[int, dict[str, Any]]:
    """`hf-conformance` in this process; its exit code and JSON report."""
    report = tmp_path / "report.json"
    code = main(
        [system, "--base-url", url, *CREDENTIALS[system], "--quiet", "--json", str(report), *args],
        clock=lambda: today,
    )
    document = json.loads(report.read_text()) if report.exists() else {}
    return code, document


def failing(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (f["rule"], f["operation"])
        for f in report.get("findings", [])
        if f["severity"] == "error" and not f["accepted"]
    }


Change = Callable[[dict[str, str], Any, int], Any]


class DeliveryRelay(Breakage):
    """Webhook deliveries pass through a relay that may change them on the way to the receiver:
    the subscription the command creates is pointed at the relay instead. `change(headers,
    body, count)` may edit the headers and the body in place, or return another body to send
    (None: the body as it is; bytes: sent as they are, JSON or not)."""

    def __init__(self, change: Change) -> None:
        self.change = change
        self.receiver: str | None = None
        self.count = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                headers = {
                    k.lower(): v
                    for k, v in self.headers.items()
                    if k.lower().startswith("webhook-") or k.lower() == "content-type"
                }
                relay.count += 1
                changed = relay.change(headers, body, relay.count)
                assert relay.receiver is not None
                if not isinstance(changed, bytes):
                    changed = json.dumps(body if changed is None else changed).encode()
                answer = httpx.post(relay.receiver, content=changed, headers=headers)
                self.send_response(answer.status_code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/relay"

    def request(self, exchange: Exchange) -> None:
        if exchange.method == "POST" and exchange.path == "/v1/webhook-subscriptions":
            document = json.loads(exchange.body)
            self.receiver = document["url"]
            exchange.body = json.dumps({**document, "url": self.url}).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
