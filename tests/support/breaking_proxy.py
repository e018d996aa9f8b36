"""A deliberately broken provider made from a real mock: an HTTP proxy in front of it whose
`breakage` rewrites requests on the way in and responses on the way out (the admin API passes).

The conformance catalogue swaps breakages on one shared proxy, one broken behaviour per test.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from adapter.clients.http import tls_context

HOP_BY_HOP = {"connection", "transfer-encoding", "content-length", "keep-alive", "content-encoding"}


@dataclass
class Exchange:
    """A request as it goes upstream and the answer as it goes back; breakages change both."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)


class HangUp(Exception):
    """Raised by a breakage's `request` hook: the connection is closed with no answer."""


class Breakage:
    """No change; subclasses override one or both hooks (`request` may raise `HangUp`). The
    admin API passes untouched unless `admin` is set (a breakage that makes the mock misbehave
    when the command drives it)."""

    admin = False

    def request(self, exchange: Exchange) -> None:
        return None

    def response(self, exchange: Exchange) -> None:
        return None


class Relabelled(Breakage):
    """The 200 answers of the paths matching `path` keep their JSON body but are labelled
    `content_type`, as a gateway or a misconfigured server would send them."""

    def __init__(self, path: str, content_type: str) -> None:
        self.path = re.compile(path)
        self.content_type = content_type
        self.relabelled = 0

    def response(self, exchange: Exchange) -> None:
        if exchange.status != 200 or not self.path.fullmatch(exchange.path):
            return
        headers = {k: v for k, v in exchange.response_headers.items() if k != "content-type"}
        exchange.response_headers = {**headers, "content-type": self.content_type}
        self.relabelled += 1


class BreakingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=30, verify=tls_context(None))
        self.breakage: Breakage = Breakage()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def __getattr__(self, name: str) -> Any:
                # Every method (TRACE, made-up ones) goes upstream: the mock answers it.
                if name.startswith("do_"):
                    return lambda: proxy.forward(self)
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("content-length") or 0)
        exchange = Exchange(
            method=handler.command,
            path=split.path,
            query=parse_qsl(split.query, keep_blank_values=True),
            headers={
                k: v
                for k, v in handler.headers.items()
                # Fuzzed header values httpx refuses to send (NUL, newlines) are dropped.
                if k.lower() not in HOP_BY_HOP and v.isprintable()
            },
            body=handler.rfile.read(length) if length else b"",
        )
        admin = exchange.path.startswith("/__admin") and not self.breakage.admin
        if not admin:
            try:
                self.breakage.request(exchange)
            except HangUp:
                handler.close_connection = True
                return
        exchange.headers.pop("Host", None)
        exchange.headers.pop("host", None)
        upstream = self.upstream.request(
            exchange.method,
            exchange.path + (f"?{urlencode(exchange.query)}" if exchange.query else ""),
            headers=exchange.headers,
            content=exchange.body,
        )
        exchange.status = upstream.status_code
        exchange.response_headers = {
            k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
        }
        exchange.response_body = upstream.content
        if not admin:
            self.breakage.response(exchange)
        handler.send_response(exchange.status)
        for name, value in exchange.response_headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(exchange.response_body)))
        handler.end_headers()
        if exchange.method != "HEAD":
            handler.wfile.write(exchange.response_body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()
