"""A provider that drifted: a reverse proxy to a real mock that drops one field from every JSON
answer. `python -m tests.contract.drifting_proxy --target URL --port P --drop FIELD`.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


def without(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return {k: without(v, name) for k, v in value.items() if k != name}
    if isinstance(value, list):
        return [without(item, name) for item in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--drop", required=True, help="field name removed at any depth")
    args = parser.parse_args()
    upstream = httpx.Client(base_url=args.target, timeout=30)
    dropped: str = args.drop

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            answer = upstream.request(self.command, self.path, headers=headers, content=body)
            content = answer.content
            if answer.headers.get("content-type", "").split(";")[0].endswith("json") and content:
                content = json.dumps(without(answer.json(), dropped)).encode()
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in HOP_BY_HOP | {"content-encoding"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, format: str, *args: Any) -> None:
            return

    ThreadingHTTPServer(("127.0.0.1", args.port), Proxy).serve_forever()


if __name__ == "__main__":
    main()
