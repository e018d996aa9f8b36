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
    ("received", "verdict"),
    [
        ([0.0, 0.001, 0.002], "error"),  # immediate retries
        ([0.0, 0.05, 0.09], "error"),  # ditto, a little slower
        ([0.0, 1.0, 2.0], "warning"),  # a fixed interval, or jitter drawing a short delay
        ([0.0, 1.3, 2.5], "warning"),  # a fixed 1.2 s, the first a little late
        ([0.0, 2.0, 3.0], "warning"),  # shrinking: jitter can do that, one sample cannot tell
        ([0.0, 0.04, 1.5], None),  # full jitter: a first delay drawn short, the second long
        ([0.0, 1.0, 3.0], None),  # the mocks' fast policy: 1 s, then 2 s
        ([0.0, 1.4, 3.2], None),  # ditto, the first retry 0.4 s late on a busy machine
        ([0.0, 5.0, 305.0], None),  # Standard Webhooks' schedule: 5 s, then 5 min
    ],
)
def test_retries_must_back_off(received: list[float], verdict: str | None) -> None:
    """Immediate retries fail the rule. A second delay no longer than the first is reported
    as a warning: full jitter (the mocks' own default) draws such pairs in a quarter to a third
    of runs, so one pair cannot fail a provider."""
    ctx, receiver = _retries(received)

    deliveries: list[Delivery] = receiver.snapshot()
    webhooks._check_retries(ctx, "createWebhookSubscription", "http://r.test", receiver, deliveries)

    found = [(f.severity.value, f.message) for f in ctx.findings if f.rule == "webhooks/retry"]
    assert ("webhooks/retry", "createWebhookSubscription") in ctx.checked
    if verdict is None:
        assert found == []
    else:
        [(severity, message)] = found
        assert severity == verdict
        assert "growing delays" in message or "fixed interval" in message
