"""A local OTLP/HTTP trace endpoint for tests: keeps the body of every export it is sent.

The bodies are protobuf ``ExportTraceServiceRequest`` messages; trace ids (16 raw bytes) and
span names (UTF-8) can be found in them as they are, so the tests need no decoder.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OtlpReceiver:
    def __init__(self) -> None:
        self.exports: list[bytes] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if self.path == "/v1/traces":
                    with receiver._lock:
                        receiver.exports.append(body)
                # An empty ExportTraceServiceResponse: everything accepted.
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def environment(self) -> dict[str, str]:
        """What turns the adapter's span export on, towards this receiver, quickly."""
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }

    def received(self, *parts: bytes) -> bool:
        """Whether one export holds every one of `parts`."""
        with self._lock:
            return any(all(part in body for part in parts) for body in self.exports)

    def wait_for(self, *parts: bytes, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.received(*parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"no export held {parts!r} in {timeout_s:.0f} s")
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
