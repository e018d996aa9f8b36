"""A local webhook receiver that verifies Standard Webhooks signatures and records what came.

For the demo and tests: `with WebhookReceiver() as rx: ... rx.wait_for(n)`. It can be told to
fail requests on purpose to exercise the sender's retries.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class ReceivedWebhook:
    headers: dict[str, str]
    body: bytes
    verified: bool
    verify_error: str | None
    received_at: float

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass
class WebhookReceiver:
    """Threaded HTTP server on 127.0.0.1; `secret` may be set after start (subscriptions
    hand one out). `respond` decides each status code (default 204)."""

    secret: str | None = None
    respond: Callable[[int], int | tuple[int, dict[str, str]]] = lambda _n: 204
    received: list[ReceivedWebhook] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def __enter__(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(min(length, MAX_BODY))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified, error = receiver._verify(headers, body)
                with receiver._cond:
                    receiver.received.append(
                        ReceivedWebhook(headers, body, verified, error, time.monotonic())
                    )
                    n = len(receiver.received)
                    receiver._cond.notify_all()
                answer = receiver.respond(n)
                status, extra = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _verify(self, headers: dict[str, str], body: bytes) -> tuple[bool, str | None]:
        if self.secret is None:
            return False, "no secret configured"
        try:
            Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            return False, str(exc)
        return True, None

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[ReceivedWebhook]:
        """The first `count` webhooks, waiting up to `timeout_s` for them to arrive."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} webhooks within {timeout_s:.0f} s, "
                        f"got {len(self.received)}"
                    )
                self._cond.wait(remaining)
            return list(self.received[:count])


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.receiver --port 9000 [--secret whsec_...]`: print each webhook."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m harness.receiver",
        description="Receive webhooks on 127.0.0.1 and print each one with its signature check.",
    )
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", help="the subscription's whsec_... secret (to verify)")
    args = parser.parse_args(argv)

    def show(n: int) -> int:
        hook = receiver.received[n - 1]
        verdict = "signature OK" if hook.verified else f"NOT VERIFIED ({hook.verify_error})"
        try:
            kind = hook.event.get("type", "?")
        except ValueError:
            kind = "(body is not JSON)"
        print(f"{n:>4}  {hook.webhook_id}  {kind:<32} {verdict}", flush=True)
        return 204

    receiver = WebhookReceiver(secret=args.secret, respond=show, port=args.port)
    with receiver:
        print(f"listening on {receiver.url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
