"""Serve an ASGI app with uvicorn under a `ListenerControl` that can close and re-open the
listening socket (the `down` fault), and hand each request its TCP connection through the
scope extension `hf.connection` (so a fault can drop or cut a response without a 500)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("hf_mock.listener")

CONNECTION_EXTENSION = "hf.connection"
# How long `ConnectionHandle.close` lets a client drain what was written before aborting.
CLOSE_GRACE_S = 5.0
# Re-listening after an outage retries this long (another process may hold the port briefly).
RELISTEN_GIVE_UP_S = 30.0
RELISTEN_RETRY_S = 0.2

HttpImplementation = Literal["auto", "h11", "httptools"]


class ConnectionHandle:
    """The TCP connection a request arrived on, for faults that must misbehave on the wire."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._lost = asyncio.Event()
        self.stalled = False

    @property
    def is_closed(self) -> bool:
        return self._lost.is_set()

    def abort(self) -> None:
        """Close at once, discarding anything not yet written."""
        self._transport.abort()

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Flush what was written, close, and return once the server has seen the connection go.

        Returning only after uvicorn's `connection_lost` matters: the request is then marked
        disconnected, so a missing or unfinished response is neither logged nor answered 500.
        """
        self._transport.close()
        try:
            await asyncio.wait_for(self._lost.wait(), grace_s)
        except TimeoutError:  # a client that stopped reading keeps the write buffer full
            self._transport.abort()
            await self._lost.wait()

    async def stall(self, seconds: float) -> bool:
        """Hold the request for `seconds`; False when the connection went away meanwhile."""
        self.stalled = True
        try:
            await asyncio.wait_for(self._lost.wait(), seconds)
        except TimeoutError:
            return True
        finally:
            self.stalled = False
        return False

    def connection_lost(self) -> None:
        self._lost.set()


def connection_handle(scope: Scope) -> ConnectionHandle | None:
    """The handle `serve()` put in this request's scope, or None under another server."""
    handle = (scope.get("extensions") or {}).get(CONNECTION_EXTENSION)
    return handle if isinstance(handle, ConnectionHandle) else None


class _HandleMixin(asyncio.Protocol):
    """Gives every request on the connection a `ConnectionHandle` in `scope["extensions"]`."""

    app: Any
    _hf_handle: ConnectionHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio turns Nagle off only for sockets created with proto=IPPROTO_TCP, and ours come
        # from `socket.create_server` (proto 0): without this every keep-alive request waits
        # ~40 ms for the client's delayed ACK.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        handle = ConnectionHandle(cast(asyncio.Transport, transport))
        self._hf_handle = handle
        app = self.app

        # uvicorn passes `self.app` to each request task, so a per-connection wrapper is the
        # one place to add the extension without copying its request parsing.
        async def app_with_handle(scope: Scope, receive: Receive, send: Send) -> None:
            scope["extensions"] = {**(scope.get("extensions") or {}), CONNECTION_EXTENSION: handle}
            await app(scope, receive, send)

        self.app = app_with_handle

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._hf_handle is not None:
            self._hf_handle.connection_lost()


def connection_aware_protocol(http: HttpImplementation = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol class (httptools when installed) with connection handles."""
    if http in ("auto", "httptools"):
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        except ImportError:
            if http == "httptools":
                raise
        else:

            class HttpToolsWithHandle(_HandleMixin, HttpToolsProtocol):
                pass

            return HttpToolsWithHandle

    from uvicorn.protocols.http.h11_impl import H11Protocol

    class H11WithHandle(_HandleMixin, H11Protocol):
        pass

    return H11WithHandle


class ListenerControl:
    """Takes a running server's listener down and brings it up again on the same address."""

    def __init__(
        self,
        server: uvicorn.Server,
        family: socket.AddressFamily,
        address: tuple[Any, ...],
        protocol_class: Callable[..., asyncio.Protocol],
    ) -> None:
        self._server = server
        self._family = family
        self._address = address
        self._protocol_class = protocol_class
        self._loop = asyncio.get_running_loop()
        self._down_until: float | None = None
        self._up_task: asyncio.Task[None] | None = None
        self._relisten_lock = asyncio.Lock()

    @property
    def port(self) -> int:
        return int(self._address[1])

    @property
    def is_down(self) -> bool:
        return self._down_until is not None

    async def go_down(self, duration_s: float) -> None:
        """Refuse connections for `duration_s` and drop the open ones (extends an outage)."""
        if duration_s <= 0:
            raise ValueError(f"an outage needs a positive duration, got {duration_s}")
        until = self._loop.time() + duration_s
        if self._down_until is None:
            for server in self._server.servers:
                server.close()
            self._down_until = until
            log.warning("listener on port %d closed for %.3f s (down fault)", self.port, duration_s)
        else:
            self._down_until = max(self._down_until, until)
        self._drop_connections()
        if self._up_task is None:
            self._up_task = self._loop.create_task(self._come_up_when_due())

    async def come_up(self) -> None:
        """Listen again now, before the outage would end by itself."""
        task, self._up_task = self._up_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        await self._relisten()

    def stop(self) -> None:
        """Ask the server to shut down gracefully, as SIGTERM would (`serve()` then returns)."""
        self._server.should_exit = True

    def shutdown(self) -> None:
        """Before uvicorn's graceful shutdown: no re-listen, and no waiting on held requests."""
        if self._up_task is not None:
            self._up_task.cancel()
            self._up_task = None
        for connection in list(self._server.server_state.connections):
            handle = getattr(connection, "_hf_handle", None)
            if isinstance(handle, ConnectionHandle) and handle.stalled:
                handle.abort()

    def _drop_connections(self) -> None:
        for connection in list(self._server.server_state.connections):
            abort = getattr(getattr(connection, "transport", None), "abort", None)
            if callable(abort):  # duck-typed: uvloop's transports are not asyncio classes
                abort()

    async def _come_up_when_due(self) -> None:
        while self._down_until is not None:
            remaining = self._down_until - self._loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(remaining)
        self._up_task = None
        await self._relisten()

    async def _relisten(self) -> None:
        async with self._relisten_lock:
            give_up = self._loop.time() + RELISTEN_GIVE_UP_S
            config = self._server.config
            while self._down_until is not None and not self._server.should_exit:
                try:
                    sock = socket.create_server(
                        self._address, family=self._family, backlog=config.backlog
                    )
                except OSError as exc:
                    if self._loop.time() >= give_up:
                        log.error(
                            "cannot listen on port %d again (%s); stopping the server",
                            self.port,
                            exc,
                        )
                        self._server.should_exit = True
                        return
                    log.warning("port %d not free yet (%s); retrying", self.port, exc)
                    await asyncio.sleep(RELISTEN_RETRY_S)
                    continue
                server = await self._loop.create_server(
                    self._new_protocol, sock=sock, backlog=config.backlog, ssl=config.ssl
                )
                self._server.servers = [server]
                self._down_until = None
                log.warning("listener on port %d open again", self.port)

    def _new_protocol(self) -> asyncio.Protocol:
        # The same arguments uvicorn's own factory in `Server.startup()` passes.
        server = self._server
        return self._protocol_class(
            config=server.config,
            server_state=server.server_state,
            app_state=server.lifespan.state,
            _loop=self._loop,
        )


class _ControlledServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        sock: socket.socket,
        protocol_class: type[asyncio.Protocol],
        started: Callable[[ListenerControl], None],
    ) -> None:
        super().__init__(config)
        self._sock = sock
        self._protocol_class = protocol_class
        self._started = started
        self.control: ListenerControl | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.control = ListenerControl(
                self, self._sock.family, self._sock.getsockname(), self._protocol_class
            )
            self._started(self.control)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.control is not None:
            self.control.shutdown()
        await super().shutdown(sockets=sockets)


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address, family=family, backlog=backlog)


async def serve(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    control_ready: Callable[[ListenerControl], None] | None = None,
    on_ready: Callable[[int], None] | None = None,
    http: HttpImplementation = "auto",
    log_level: str | int | None = None,
    access_log: bool = True,
    timeout_graceful_shutdown: int | None = None,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
) -> None:
    """Serve `app` on `host:port` (0 = any free port) until SIGINT or SIGTERM.

    The socket is bound here, so an address in use raises `OSError` to the caller instead of
    uvicorn's log line and `sys.exit(1)`. Once listening, `control_ready` gets the
    `ListenerControl` and `on_ready` the port.

    `lifespan="off"`: a mock builds its state before serving and its owner starts and stops
    background work (the webhook dispatcher) around this call, so there is nothing to run at
    lifespan events; and uvicorn's default "auto" sends a lifespan scope through every
    middleware, logging an error when one does not pass it on. Re-created protocols after an
    outage then share the same (empty) lifespan state as the first ones.

    With `ssl_certfile` and `ssl_keyfile` it serves HTTPS only (also after an outage).
    """
    protocol_class = connection_aware_protocol(http)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class,
        ws="none",
        lifespan="off",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        ssl_certfile=str(ssl_certfile) if ssl_certfile is not None else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile is not None else None,
    )
    sock = _bind(host, port, config.backlog)

    def started(control: ListenerControl) -> None:
        if control_ready is not None:
            control_ready(control)
        if on_ready is not None:
            on_ready(control.port)

    server = _ControlledServer(config, sock, protocol_class, started)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
