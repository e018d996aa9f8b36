"""Every fault kind acted out by `FaultMiddleware` under `mocks.core.listener.serve` in a real
server process (both uvicorn HTTP implementations), observed from httpx and from raw sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mocks.core.listener import ListenerControl, serve
from tests.support.servers import (
    ServerProcess,
    ServerStartError,
    free_port,
    port_accepts,
    running_server,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
HTTP_IMPLEMENTATIONS = ["httptools", "h11"]
# What uvicorn logs when an app fails or leaves a response unfinished (it then answers 500).
SERVER_ERRORS = ("Traceback", "Exception in ASGI application", "ASGI callable returned without")


def fault_server(port: int, http: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.support.fault_server",
        "--port",
        str(port),
        "--seed",
        "7",
        "--http",
        http,
    ]


@pytest.fixture(scope="module", params=HTTP_IMPLEMENTATIONS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    port = free_port()
    with running_server(fault_server(port, request.param), port, cwd=ROOT) as process:
        yield process


@pytest.fixture(params=HTTP_IMPLEMENTATIONS)
def own_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A server of its own, for a test that takes the listener down."""
    port = free_port()
    with running_server(fault_server(port, request.param), port, cwd=ROOT) as process:
        yield process


@pytest.fixture
def url(server: ServerProcess) -> str:
    """The shared server's URL, with no fault rules left from an earlier test."""
    response = httpx.delete(f"{server.url}/__admin/faults")
    assert response.status_code == 204, response.text
    return server.url


def add_fault(url: str, **rule: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/__admin/faults", json=rule)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def raw_exchange(server: ServerProcess, path: str, *, keep_alive: bool = False) -> bytes:
    """Send one GET and read until the server closes the connection."""
    connection = "keep-alive" if keep_alive else "close"
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Head and body of one response whose length is given by Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(content_length(head))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return head, body


def content_length(head: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return value.strip()
    raise AssertionError(f"no Content-Length in {head!r}")


def assert_no_server_error(server: ServerProcess) -> None:
    output = server.output()
    for marker in SERVER_ERRORS:
        assert marker not in output, output


def test_error_fault_answers_status_body_and_retry_after(url: str) -> None:
    add_fault(url, route="getItem", kind="error", status=503, retry_after_s=7)
    response = httpx.get(f"{url}/items/abc")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 503
    assert response.json()["title"] == "Service Unavailable"


def test_error_fault_spares_other_routes_and_paths_outside_the_spec(url: str) -> None:
    add_fault(url, route="getItem", kind="error", status=500)
    assert httpx.get(f"{url}/items").status_code == 200
    httpx.delete(f"{url}/__admin/faults")
    add_fault(url, route="*", kind="error", status=500)
    assert httpx.get(f"{url}/items").status_code == 500
    assert httpx.get(f"{url}/__admin/health").status_code == 200
    assert httpx.get(f"{url}/openapi.json").status_code == 404


def test_times_expires_the_rule_after_n_applications(url: str) -> None:
    add_fault(url, route="listItems", kind="error", status=502, times=2)
    statuses = [httpx.get(f"{url}/items").status_code for _ in range(4)]
    assert statuses == [502, 502, 200, 200]


def test_seeded_probability_gives_the_same_statuses_on_every_run(url: str) -> None:
    def run(**seed: int) -> list[int]:
        httpx.delete(f"{url}/__admin/faults")
        add_fault(url, route="*", kind="error", status=502, probability=0.5, **seed)
        with httpx.Client(base_url=url) as client:
            return [client.get("/items/1").status_code for _ in range(40)]

    for seed in ({"seed": 99}, {}):  # an explicit rule seed, then one derived from --seed
        first = run(**seed)
        assert run(**seed) == first
        assert 5 < first.count(502) < 35


def test_latency_fault_delays_the_answer_by_at_least_latency_ms(url: str) -> None:
    add_fault(url, route="listItems", kind="latency", latency_ms=300)
    started = time.monotonic()
    response = httpx.get(f"{url}/items")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert len(response.json()["data"]) == 100
    assert elapsed >= 0.3


def test_latency_fault_with_range_delays_at_least_the_minimum(url: str) -> None:
    add_fault(url, route="getItem", kind="latency", latency_min_ms=200, latency_max_ms=400)
    started = time.monotonic()
    assert httpx.get(f"{url}/items/1").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_timeout_fault_gives_read_timeout_when_the_client_gives_up_first(url: str) -> None:
    add_fault(url, route="listItems", kind="timeout", timeout_ms=3000, times=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{url}/items", timeout=httpx.Timeout(5.0, read=0.5))


def test_timeout_fault_closes_the_connection_without_any_response(
    server: ServerProcess, url: str
) -> None:
    add_fault(url, route="listItems", kind="timeout", timeout_ms=500)
    started = time.monotonic()
    assert raw_exchange(server, "/items") == b""
    assert time.monotonic() - started >= 0.5
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        httpx.get(f"{url}/items", timeout=10)
    assert httpx.get(f"{url}/items/1").status_code == 200
    assert_no_server_error(server)


def test_rate_limit_fault_answers_429_with_retry_after_over_the_limit(url: str) -> None:
    add_fault(url, route="listItems", kind="rate_limit", limit=3, window_s=30)
    with httpx.Client(base_url=url) as client:
        responses = [client.get("/items") for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    for rejected in responses[3:]:
        assert 1 <= int(rejected.headers["retry-after"]) <= 30
        assert rejected.json()["status"] == 429


def test_malformed_fault_keeps_status_and_type_but_breaks_json(url: str) -> None:
    add_fault(url, route="listItems", kind="malformed")
    response = httpx.get(f"{url}/items")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_truncated_fault_makes_the_client_fail_on_an_incomplete_body(url: str) -> None:
    add_fault(url, route="listItems", kind="truncated")
    with pytest.raises(httpx.RemoteProtocolError, match=r"without sending complete message body"):
        httpx.get(f"{url}/items")


def test_truncated_fault_sends_full_length_header_then_half_the_body(
    server: ServerProcess, url: str
) -> None:
    full = httpx.get(f"{url}/items").content
    add_fault(url, route="listItems", kind="truncated")
    head, _, body = raw_exchange(server, "/items").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert int(content_length(head)) == len(full)
    assert body == full[: len(full) // 2]
    assert_no_server_error(server)


def test_down_fault_refuses_connections_then_listens_again(own_server: ServerProcess) -> None:
    url, address = own_server.url, (own_server.host, own_server.port)
    idle = socket.create_connection(address, timeout=10)
    idle.sendall(b"GET /__admin/health HTTP/1.1\r\nHost: test\r\n\r\n")
    head, _ = read_response(idle)
    assert head.startswith(b"HTTP/1.1 200 ")
    add_fault(url, route="*", kind="down", duration_ms=3000, times=1)

    started = time.monotonic()
    with pytest.raises(httpx.TransportError):  # the request that triggers the outage is dropped
        httpx.get(f"{url}/items")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=2).close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/__admin/health")
    try:  # the idle keep-alive connection was closed too
        assert idle.recv(1024) == b""
    except ConnectionResetError:
        pass
    finally:
        idle.close()

    deadline = started + 30
    while not port_accepts(*address):
        assert time.monotonic() < deadline, own_server.output()
        time.sleep(0.05)
    assert time.monotonic() - started >= 3.0
    assert httpx.get(f"{url}/items").status_code == 200  # `times: 1` has expired
    assert_no_server_error(own_server)


def test_serve_reports_a_taken_port_as_an_os_error() -> None:
    with socket.socket() as blocker:  # bound, not listening: connecting to it is refused
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        with (
            pytest.raises(ServerStartError, match="Address already in use"),
            running_server(fault_server(port, "h11"), port, cwd=ROOT),
        ):
            pass


def test_listener_control_comes_up_early_and_stops_the_server() -> None:
    async def ok(app_scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def accepts(port: int) -> bool:
        return await asyncio.to_thread(port_accepts, "127.0.0.1", port)

    async def scenario() -> None:
        ready: asyncio.Future[ListenerControl] = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(
            serve(ok, port=0, control_ready=ready.set_result, access_log=False)
        )
        control = await asyncio.wait_for(ready, 10)
        assert await accepts(control.port)
        await control.go_down(60)
        assert control.is_down
        assert not await accepts(control.port)
        await control.come_up()
        assert not control.is_down
        assert await accepts(control.port)
        control.stop()
        await asyncio.wait_for(serving, 10)

    asyncio.run(scenario())
