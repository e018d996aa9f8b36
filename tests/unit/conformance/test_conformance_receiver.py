"""The webhook receiver of `--webhooks` reads a delivery however it is framed: a provider (or
its gateway) may send the body chunked instead of with a Content-Length."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from conformance.webhooks import Receiver

BODY = b'{"event_id":"e-1","type":"registration.revoked","source":"kki"}'


def test_a_chunked_delivery_is_read_whole() -> None:
    receiver = Receiver()
    url = receiver.start()

    def chunks() -> Iterator[bytes]:
        yield BODY[:10]
        yield BODY[10:]

    try:
        with httpx.Client(timeout=5) as client:
            client.post(url, content=chunks(), headers={"content-type": "application/json"})
            client.post(url, content=BODY, headers={"content-type": "application/json"})
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    assert [delivery.body for delivery in receiver.deliveries] == [BODY, BODY]
