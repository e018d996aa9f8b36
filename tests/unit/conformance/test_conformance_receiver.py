"""The webhook receiver of `--webhooks` reads a delivery however it is framed: a provider (or
its gateway) may send the body chunked instead of with a Content-Length."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from conformance import webhooks
from conformance.context import Credentials, RunContext, RunOptions
from conformance.provider import ApiKeyAuth, ProviderClient
from conformance.spec import load_contract
from conformance.systems import SYSTEMS
from conformance.webhooks import Delivery, Receiver

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


def _retries(received: list[float]) -> tuple[RunContext, Receiver]:
    """A receiver that refused the first two attempts of event e-1, received at these times."""
    receiver = Receiver(failing_event="e-1")
    for at in received:
        receiver.answer({"webhook-id": "msg_1"}, BODY, at)
    options = RunOptions(system="kki", base_url="http://kki.test", credentials=Credentials())
    client = ProviderClient(options.base_url, ApiKeyAuth("X-API-Key", "k"))
    ctx = RunContext(
        options, load_contract(SYSTEMS["kki"].contract), client, lambda: dt.date(2026, 12, 1)
    )
    return ctx, receiver


@pytest.mark.parametrize(
    ("received", "grows"),
    [
        ([0.0, 0.001, 0.002], False),  # immediate retries
        ([0.0, 1.0, 2.0], False),  # a fixed interval
        ([0.0, 1.3, 2.5], False),  # a fixed 1.2 s, the first a little late: not growing
        ([0.0, 2.0, 3.0], False),  # shrinking
        ([0.0, 1.0, 3.0], True),  # the mocks' fast policy: 1 s, then 2 s
        ([0.0, 1.4, 3.2], True),  # ditto, the first retry 0.4 s late on a busy machine
        ([0.0, 5.0, 305.0], True),  # Standard Webhooks' schedule: 5 s, then 5 min
    ],
)
def test_retries_must_come_with_growing_delays(received: list[float], grows: bool) -> None:
    ctx, receiver = _retries(received)

    deliveries: list[Delivery] = receiver.snapshot()
    webhooks._check_retries(ctx, "createWebhookSubscription", "http://r.test", receiver, deliveries)

    failing = [f.message for f in ctx.findings if f.rule == "webhooks/retry"]
    assert ("webhooks/retry", "createWebhookSubscription") in ctx.checked
    if grows:
        assert failing == []
    else:
        [message] = failing
        assert "retries must back off with growing delays" in message
