"""The mock listener's per-connection protocol."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from mocks.core.listener import connection_aware_protocol


class _Transport(asyncio.Transport):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._sock if name == "socket" else default


def test_connections_turn_nagle_off() -> None:
    # Keep-alive requests stall ~40 ms on delayed ACKs when Nagle stays on.
    protocol_class = connection_aware_protocol("h11")
    protocol = protocol_class.__new__(protocol_class)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        # uvicorn's own set-up needs a real server; the option is set before it runs.
        with contextlib.suppress(AttributeError):
            protocol.connection_made(_Transport(sock))
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
