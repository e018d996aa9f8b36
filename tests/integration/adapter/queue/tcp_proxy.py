"""A TCP proxy that can cut every connection and refuse new ones, or hold what is sent both ways
until told to go on: RabbitMQ "down" or stalled for one test without stopping the machine's
RabbitMQ, which other tests share."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from urllib.parse import urlsplit

BUFFER = 65536


class TcpFaultProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self.accepted = 0  # connections accepted so far (each one a new upstream connection)
        self._flowing = threading.Event()
        self._flowing.set()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accepting.start()

    def down(self) -> None:
        """Refuse new connections and reset every open one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @classmethod
    def before_broker(cls, broker: str) -> tuple[TcpFaultProxy, str]:
        """A proxy to the RabbitMQ at `broker`, and the broker URL that goes through it."""
        parts = urlsplit(broker)
        proxy = cls((parts.hostname or "127.0.0.1", parts.port or 5672))
        through = broker.replace(
            f"{parts.hostname}:{parts.port or 5672}", f"127.0.0.1:{proxy.port}"
        )
        if through == broker:  # the URL had no explicit port
            through = broker.replace(str(parts.hostname), f"127.0.0.1:{proxy.port}", 1)
        return proxy, through

    def pause(self) -> None:
        """Keep every connection open but forward nothing, either way, until `resume`."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, server))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(client, selectors.EVENT_READ, server)
            selector.register(server, selectors.EVENT_READ, client)
            while True:
                for key, _ in selector.select(timeout=1):
                    self._flowing.wait()
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(BUFFER)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(server)

    def close(self) -> None:
        self.down()
        self.resume()  # the paused pumps find their sockets closed and end
