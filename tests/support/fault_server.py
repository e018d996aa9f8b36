"""A tiny ASGI app behind `FaultMiddleware`, served by `mocks.core.listener.serve`, for the fault
integration tests: `python -m tests.support.fault_server --port P [--seed S] [--http h11]`.

Public routes `GET /items` (listItems) and `GET /items/{item_id}` (getItem); an admin API
`/__admin/health` and `/__admin/faults` (POST a rule, DELETE all) that is never faulted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from starlette.types import Receive, Scope, Send

from mocks.core.faults import FaultInjector, FaultMiddleware, FaultRule, FaultSpecError, RouteTable
from mocks.core.listener import ListenerControl, serve

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "fault test app", "version": "1"},
    "paths": {
        "/items": {"get": {"operationId": "listItems"}},
        "/items/{item_id}": {"get": {"operationId": "getItem"}},
    },
}
ITEMS = [
    {"id": f"item-{n:04d}", "name": f"Item number {n}", "tags": ["a", "b"]} for n in range(100)
]


def render_problem(
    path: str, status: int, title: str, detail: str, headers: dict[str, str]
) -> tuple[bytes, str]:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return json.dumps(body).encode(), "application/problem+json"


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Send, status: int, document: object | None) -> None:
    body = b"" if document is None else json.dumps(document).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ItemsApp:
    def __init__(self, injector: FaultInjector) -> None:
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        method, path = scope["method"], scope["path"]
        if (method, path) == ("GET", "/items"):
            await send_json(send, 200, {"data": ITEMS})
        elif method == "GET" and path.startswith("/items/"):
            await send_json(send, 200, {"id": path.removeprefix("/items/")})
        elif (method, path) == ("GET", "/__admin/health"):
            await send_json(send, 200, {"status": "ok"})
        elif (method, path) == ("POST", "/__admin/faults"):
            try:
                rule = self.injector.add(FaultRule.from_dict(json.loads(await read_body(receive))))
            except FaultSpecError as exc:
                await send_json(send, 422, {"detail": exc.message})
                return
            await send_json(send, 201, rule.to_dict())
        elif (method, path) == ("DELETE", "/__admin/faults"):
            self.injector.clear()
            await send_json(send, 204, None)
        else:
            await send_json(send, 404, {"detail": f"no route {method} {path}"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--http", choices=["h11", "httptools"], default="httptools")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    injector = FaultInjector(seed=args.seed)
    app = FaultMiddleware(
        ItemsApp(injector),
        injector=injector,
        route_table=RouteTable.from_spec(SPEC),
        error_renderer=render_problem,
    )

    def attach(control: ListenerControl) -> None:
        injector.on_down = control.go_down

    asyncio.run(serve(app, port=args.port, control_ready=attach, http=args.http, log_level="info"))


if __name__ == "__main__":
    main()
