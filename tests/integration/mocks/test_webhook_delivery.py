"""The webhook dispatcher against a real local HTTP receiver: signing, retries, misbehaviour
modes, redelivery and shutdown. Each test runs its own asyncio loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import email.utils
import hashlib
import hmac
import itertools
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from mocks.core import webhooks as webhooks_module
from mocks.core.webhooks import (
    Delivery,
    Dispatcher,
    SubscriptionRegistry,
    WebhookEvent,
    WebhookPolicy,
)

pytestmark = pytest.mark.integration

EVENT_TYPES = ("registration.issued", "registration.revoked", "skp.credited")
NIK = "3174054506900012"
SEED = 7
# Fast, deterministic timing; gaps are compared with each other, never with the clock.
FAST = WebhookPolicy(
    max_attempts=4, base_delay_ms=20, max_delay_ms=200, timeout_ms=2000, jitter=False
)
WAIT_S = 20.0

Answer = tuple[int, dict[str, str]]


@dataclass(frozen=True, slots=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # monotonic

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """A threaded HTTP server recording every POST; `respond(n)` answers the n-th (1-based)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.respond: Callable[[int], Answer] = lambda _n: (204, {})
        self.release = threading.Event()  # lets hanging handlers go at teardown
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._cond:
                    receiver.received.append(Received(headers, body, time.monotonic()))
                    number = len(receiver.received)
                    receiver._cond.notify_all()
                status, extra = receiver.respond(number)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # the dispatcher hung up on a slow answer on purpose

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def fail_first(
        self, count: int, status: int = 500, headers: dict[str, str] | None = None
    ) -> None:
        self.respond = lambda n: (status, headers or {}) if n <= count else (204, {})

    def wait_for(self, count: int, timeout_s: float = WAIT_S) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {count} webhooks, got {len(self.received)}")
                self._cond.wait(remaining)
            return list(self.received[:count])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    rx.start()
    yield rx
    rx.stop()


@pytest.fixture
def registry() -> SubscriptionRegistry:
    return SubscriptionRegistry(EVENT_TYPES)


@contextlib.asynccontextmanager
async def running(
    registry: SubscriptionRegistry, policy: WebhookPolicy = FAST
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(registry, policy=policy, seed=SEED, user_agent="hf-mock/kki")
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.aclose()


async def received(receiver: Receiver, count: int) -> list[Received]:
    return await asyncio.to_thread(receiver.wait_for, count)


async def settled(dispatcher: Dispatcher, delivery: Delivery) -> Delivery:
    """The delivery once nothing is scheduled or in flight any more."""
    async with asyncio.timeout(WAIT_S):
        await dispatcher.wait_idle()
    current = dispatcher.get(delivery.id)
    assert current is not None
    return current


def make_event(
    event_type: str = "registration.revoked", occurred_at: dt.datetime | None = None
) -> WebhookEvent:
    return WebhookEvent(
        event_id=str(uuid.uuid4()),
        type=event_type,
        occurred_at=occurred_at or dt.datetime.now(dt.UTC),
        source="kki",
        subject={"str_number": "KK0123456789"},
        data={"from": "AKTIF", "to": "DICABUT"},
        nik=NIK,
    )


def standard_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The documented algorithm, without the library: v1,base64(HMAC-SHA256(id.ts.body))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signatures(request: Received) -> list[str]:
    return request.headers["webhook-signature"].split(" ")


def status_codes(delivery: Delivery) -> list[int | None]:
    return [a.status_code for a in delivery.attempts]


def gaps(requests: list[Received]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(requests)]


# -- signing and the body ---------------------------------------------------------------------


def test_delivery_is_signed_per_standard_webhooks_and_carries_no_nik(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    subscription = registry.create(receiver.url)
    event = make_event()

    async def scenario() -> tuple[list[Delivery], list[Received], Delivery]:
        async with running(registry) as dispatcher:
            published = dispatcher.publish(event)
            got = await received(receiver, 1)
            return published, got, await settled(dispatcher, published[0])

    [published], [request], delivery = asyncio.run(scenario())
    headers = request.headers
    assert published.event_id == headers["webhook-id"] == event.event_id
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "hf-mock/kki"
    assert Webhook(subscription.secret).verify(request.body, headers) == request.event
    assert standard_signature(
        subscription.secret, event.event_id, headers["webhook-timestamp"], request.body
    ) in signatures(request)
    assert NIK.encode() not in request.body
    key = base64.b64decode(subscription.secret.removeprefix("whsec_"))
    assert request.event["subject"] == {
        "str_number": "KK0123456789",
        "nik_hash": hmac.new(key, NIK.encode(), hashlib.sha256).hexdigest(),
    }
    assert request.event["version"] == "1"
    assert delivery.status == "succeeded"
    assert status_codes(delivery) == [204]


def test_each_subscriber_gets_its_own_nik_hash(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    first, second = registry.create(receiver.url), registry.create(receiver.url)

    async def scenario() -> list[Received]:
        async with running(registry) as dispatcher:
            assert len(dispatcher.publish(make_event())) == 2
            return await received(receiver, 2)

    requests = asyncio.run(scenario())
    hashes = {r.event["subject"]["nik_hash"] for r in requests}
    assert len(hashes) == 2
    verified = 0
    for request in requests:
        for sub in (first, second):
            with contextlib.suppress(WebhookVerificationError):
                Webhook(sub.secret).verify(request.body, request.headers)
                verified += 1
    assert verified == 2  # each body verifies with its own subscription's secret only


def test_event_type_filter_and_targeting(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    everything = registry.create(receiver.url)
    revoked_only = registry.create(receiver.url, event_types=["registration.revoked"])

    async def scenario() -> tuple[list[Delivery], list[Delivery], list[Delivery]]:
        async with running(registry) as dispatcher:
            credited = dispatcher.publish(make_event("skp.credited"))
            targeted = dispatcher.publish(make_event(), subscription_id=revoked_only.id)
            filtered = dispatcher.publish(
                make_event("skp.credited"), subscription_id=revoked_only.id
            )
            await received(receiver, 2)
            return credited, targeted, filtered

    credited, targeted, filtered = asyncio.run(scenario())
    assert [d.subscription_id for d in credited] == [everything.id]
    assert [d.subscription_id for d in targeted] == [revoked_only.id]
    assert filtered == []


def test_publish_from_a_worker_thread_wakes_the_loop(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    """connexion runs sync handlers in a thread pool; their publishes must still go out."""
    registry.create(receiver.url)
    event = make_event()

    async def scenario() -> list[Received]:
        async with running(registry) as dispatcher:
            await asyncio.sleep(0.05)  # the dispatcher is idle, waiting for work
            await asyncio.to_thread(dispatcher.publish, event)
            return await received(receiver, 1)

    [request] = asyncio.run(scenario())
    assert request.webhook_id == event.event_id


# -- retries ----------------------------------------------------------------------------------


def test_5xx_is_retried_with_growing_gaps(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    subscription = registry.create(receiver.url)
    receiver.fail_first(3, status=500)
    policy = WebhookPolicy(
        max_attempts=5, base_delay_ms=150, max_delay_ms=5000, timeout_ms=2000, jitter=False
    )

    async def scenario() -> tuple[list[Received], Delivery]:
        async with running(registry, policy) as dispatcher:
            [published] = dispatcher.publish(make_event())
            got = await received(receiver, 4)
            return got, await settled(dispatcher, published)

    requests, delivery = asyncio.run(scenario())
    assert len({r.webhook_id for r in requests}) == 1, "a retry re-sends the same event id"
    first, second, third = gaps(requests)
    # Never earlier than the policy's doubling delays (150, 300, 600 ms); a busy machine may
    # make one later, so growth is read from the first to the third, four times apart.
    assert all((first >= 0.135, second >= 0.27, third >= 0.54)), (first, second, third)
    assert first < third
    for request in requests:  # each attempt is signed anew, so it verifies however late
        Webhook(subscription.secret).verify(request.body, request.headers)
    assert delivery.status == "succeeded"
    assert status_codes(delivery) == [500, 500, 500, 204]
    assert delivery.next_attempt_at is None


def test_retries_stop_after_max_attempts_with_one_log_line(
    receiver: Receiver, registry: SubscriptionRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    registry.create(receiver.url)
    receiver.respond = lambda _n: (503, {})
    event = make_event()

    async def scenario() -> Delivery:
        async with running(registry) as dispatcher:
            [published] = dispatcher.publish(event)
            return await settled(dispatcher, published)

    with caplog.at_level(logging.WARNING, logger="hf_mock.webhooks"):
        delivery = asyncio.run(scenario())
    assert delivery.status == "failed"
    assert status_codes(delivery) == [503] * FAST.max_attempts
    assert len(receiver.received) == FAST.max_attempts
    [line] = [r for r in caplog.records if r.name == "hf_mock.webhooks"]
    assert "webhook_delivery_failed" in line.getMessage()
    assert event.event_id in line.getMessage()
    assert NIK not in line.getMessage()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_4xx_other_than_408_and_429_is_final(
    receiver: Receiver, registry: SubscriptionRegistry, status: int
) -> None:
    registry.create(receiver.url)
    receiver.respond = lambda _n: (status, {})

    async def scenario() -> Delivery:
        async with running(registry) as dispatcher:
            [published] = dispatcher.publish(make_event())
            return await settled(dispatcher, published)

    delivery = asyncio.run(scenario())
    assert delivery.status == "failed"
    assert status_codes(delivery) == [status]
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
def test_timeouts_throttling_and_5xx_are_retried(
    receiver: Receiver, registry: SubscriptionRegistry, status: int
) -> None:
    registry.create(receiver.url)
    receiver.fail_first(1, status=status)

    async def scenario() -> Delivery:
        async with running(registry) as dispatcher:
            [published] = dispatcher.publish(make_event())
            return await settled(dispatcher, published)

    delivery = asyncio.run(scenario())
    assert delivery.status == "succeeded"
    assert status_codes(delivery) == [status, 204]


def test_429_retry_after_seconds_is_honoured(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    registry.create(receiver.url)
    receiver.respond = lambda n: (429, {"Retry-After": "1"}) if n == 1 else (204, {})
    policy = WebhookPolicy(max_attempts=3, base_delay_ms=10, max_delay_ms=5000, jitter=False)

    async def scenario() -> list[Received]:
        async with running(registry, policy) as dispatcher:
            dispatcher.publish(make_event())
            return await received(receiver, 2)

    [gap] = gaps(asyncio.run(scenario()))
    assert gap >= 0.95  # the 10 ms backoff would have retried at once


def test_503_retry_after_http_date_is_honoured(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    registry.create(receiver.url)

    def respond(n: int) -> Answer:
        if n > 1:
            return 204, {}
        # An HTTP-date has whole seconds: two seconds ahead is at least one second away.
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        return 503, {"Retry-After": email.utils.format_datetime(later, usegmt=True)}

    receiver.respond = respond
    policy = WebhookPolicy(max_attempts=3, base_delay_ms=10, max_delay_ms=5000, jitter=False)

    async def scenario() -> list[Received]:
        async with running(registry, policy) as dispatcher:
            dispatcher.publish(make_event())
            return await received(receiver, 2)

    [gap] = gaps(asyncio.run(scenario()))
    assert gap >= 0.95


def test_retry_after_longer_than_max_delay_is_capped(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    registry.create(receiver.url)
    receiver.fail_first(1, status=429, headers={"Retry-After": "3600"})

    async def scenario() -> Delivery:
        async with running(registry) as dispatcher:  # max_delay_ms=200
            [published] = dispatcher.publish(make_event())
            return await settled(dispatcher, published)

    delivery = asyncio.run(scenario())
    assert status_codes(delivery) == [429, 204]


def test_refused_connections_are_retried_then_failed(registry: SubscriptionRegistry) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registry.create(f"http://127.0.0.1:{port}/hooks")

    async def scenario() -> Delivery:
        async with running(registry) as dispatcher:
            [published] = dispatcher.publish(make_event())
            return await settled(dispatcher, published)

    delivery = asyncio.run(scenario())
    assert delivery.status == "failed"
    assert len(delivery.attempts) == FAST.max_attempts
    assert all(
        a.status_code is None and "ConnectError" in (a.error or "") for a in delivery.attempts
    )


def test_slow_receiver_times_out_and_is_retried(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    registry.create(receiver.url)

    def respond(n: int) -> Answer:
        if n == 1:
            receiver.release.wait(30)
        return 204, {}

    receiver.respond = respond
    # The second attempt must be answered within the timeout too: seconds, on a busy machine.
    policy = WebhookPolicy(max_attempts=3, base_delay_ms=10, max_delay_ms=100, timeout_ms=3000)

    async def scenario() -> Delivery:
        async with running(registry, policy) as dispatcher:
            [published] = dispatcher.publish(make_event())
            return await settled(dispatcher, published)

    delivery = asyncio.run(scenario())
    assert delivery.status == "succeeded"
    assert [a.error for a in delivery.attempts] == ["no response within 3000 ms", None]
    assert status_codes(delivery) == [None, 204]


def test_deleting_the_subscription_stops_its_retries(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    subscription = registry.create(receiver.url)
    receiver.respond = lambda _n: (500, {})
    # The delete must come before the retry is due: seconds, on a busy machine.
    policy = WebhookPolicy(max_attempts=5, base_delay_ms=3000, max_delay_ms=5000, jitter=False)

    async def scenario() -> Delivery:
        async with running(registry, policy) as dispatcher:
            [published] = dispatcher.publish(make_event())
            await received(receiver, 1)
            registry.delete(subscription.id)
            return await settled(dispatcher, published)

    delivery = asyncio.run(scenario())
    assert delivery.status == "failed"
    assert status_codes(delivery) == [500, None]
    assert "deleted" in (delivery.attempts[-1].error or "")
    assert len(receiver.received) == 1


# -- misbehaviour modes -----------------------------------------------------------------------


def test_duplicate_mode_sends_the_same_signed_message_concurrently(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    subscription = registry.create(receiver.url)
    copies = 4
    # Every copy waits until all have arrived: sequential sending would break the barrier.
    barrier = threading.Barrier(copies, timeout=10)

    def respond(_n: int) -> Answer:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return 500, {}
        return 204, {}

    receiver.respond = respond

    async def scenario() -> tuple[list[Delivery], list[Received], list[Delivery]]:
        async with running(registry) as dispatcher:
            published = dispatcher.publish(make_event(), mode="duplicate", copies=copies)
            got = await received(receiver, copies)
            final = [await settled(dispatcher, d) for d in published]
            return published, got, final

    published, requests, final = asyncio.run(scenario())
    assert len(published) == copies
    assert {d.mode for d in published} == {"duplicate"}
    signed = {
        (r.webhook_id, r.headers["webhook-timestamp"], r.headers["webhook-signature"], r.body)
        for r in requests
    }
    assert len(signed) == 1, "every copy is the very same signed message"
    for request in requests:
        Webhook(subscription.secret).verify(request.body, request.headers)
    assert all(status_codes(d) == [204] for d in final)


def test_duplicate_copies_sign_the_time_of_their_first_send_not_of_the_publish(
    receiver: Receiver, registry: SubscriptionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The timestamp was taken at publish: behind a backlog of ten minutes every copy was
    # older than receivers' 5-minute tolerance and refused, though the mode says "accept".
    subscription = registry.create(receiver.url)
    sent_at = time.time()
    clock = {"now": sent_at - 600}  # published ten minutes before the send
    monkeypatch.setattr(
        webhooks_module,
        "time",
        SimpleNamespace(
            time=lambda: clock["now"], monotonic=time.monotonic, perf_counter=time.perf_counter
        ),
    )

    async def scenario() -> list[Received]:
        dispatcher = Dispatcher(registry, policy=FAST, seed=SEED, user_agent="hf-mock/kki")
        dispatcher.publish(make_event(), mode="duplicate", copies=3)  # not started: all wait
        clock["now"] = sent_at  # the backlog
        dispatcher.start()
        try:
            return await received(receiver, 3)
        finally:
            await dispatcher.aclose()

    requests = asyncio.run(scenario())
    assert {r.headers["webhook-timestamp"] for r in requests} == {str(int(sent_at))}
    assert len({r.headers["webhook-signature"] for r in requests}) == 1
    for request in requests:
        Webhook(subscription.secret).verify(request.body, request.headers)


def test_bad_signature_mode_fails_verification(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    subscription = registry.create(receiver.url)

    async def scenario() -> tuple[list[Received], Delivery]:
        async with running(registry) as dispatcher:
            [published] = dispatcher.publish(make_event(), mode="bad_signature")
            got = await received(receiver, 1)
            return got, await settled(dispatcher, published)

    [request], delivery = asyncio.run(scenario())
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(subscription.secret).verify(request.body, request.headers)
    expected = standard_signature(
        subscription.secret, request.webhook_id, request.headers["webhook-timestamp"], request.body
    )
    assert expected not in signatures(request)
    assert delivery.mode == "bad_signature"
    assert delivery.status == "succeeded"  # logged like any delivery; this receiver didn't check


def test_stale_timestamp_mode_is_old_but_correctly_signed(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    subscription = registry.create(receiver.url)

    async def scenario() -> list[Received]:
        async with running(registry) as dispatcher:
            dispatcher.publish(make_event(), mode="stale_timestamp")
            return await received(receiver, 1)

    [request] = asyncio.run(scenario())
    timestamp = request.headers["webhook-timestamp"]
    assert time.time() - int(timestamp) >= 300
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(subscription.secret).verify(request.body, request.headers)
    assert standard_signature(
        subscription.secret, request.webhook_id, timestamp, request.body
    ) in signatures(request)


def test_out_of_order_mode_delivers_a_batch_newest_first(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    registry.create(receiver.url)
    start = dt.datetime.now(dt.UTC)
    events = [make_event(occurred_at=start + dt.timedelta(seconds=i)) for i in range(5)]

    async def scenario() -> tuple[list[Delivery], list[Received]]:
        async with running(registry) as dispatcher:
            published = dispatcher.publish_batch(events, mode="out_of_order")
            return published, await received(receiver, len(events))

    published, requests = asyncio.run(scenario())
    newest_first = [e.event_id for e in reversed(events)]
    assert [d.event_id for d in published] == newest_first
    assert [r.webhook_id for r in requests] == newest_first
    occurred = [r.event["occurred_at"] for r in requests]
    assert occurred == sorted(occurred, reverse=True)


# -- redelivery and shutdown ------------------------------------------------------------------


def test_redeliver_resends_the_same_event_with_a_fresh_signature(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    subscription = registry.create(receiver.url)

    async def scenario() -> tuple[Delivery, Delivery, list[Received]]:
        async with running(registry) as dispatcher:
            [first] = dispatcher.publish(make_event())
            await received(receiver, 1)
            await settled(dispatcher, first)
            await asyncio.sleep(1.1)  # so the fresh timestamp is a later second
            again = dispatcher.redeliver(first.id)
            got = await received(receiver, 2)
            return first, await settled(dispatcher, again), got

    first, again, (original, resent) = asyncio.run(scenario())
    assert again.id != first.id
    assert again.redelivery_of == first.id
    assert again.event_id == first.event_id == original.webhook_id == resent.webhook_id
    assert resent.body == original.body
    assert int(resent.headers["webhook-timestamp"]) > int(original.headers["webhook-timestamp"])
    assert resent.headers["webhook-signature"] != original.headers["webhook-signature"]
    Webhook(subscription.secret).verify(resent.body, resent.headers)
    assert again.status == "succeeded"


def test_close_puts_an_interrupted_send_back_to_pending(
    receiver: Receiver, registry: SubscriptionRegistry
) -> None:
    registry.create(receiver.url)

    def hang(_n: int) -> Answer:
        receiver.release.wait(10)
        return 204, {}

    receiver.respond = hang

    async def scenario() -> Delivery | None:
        dispatcher = Dispatcher(registry, policy=WebhookPolicy(timeout_ms=10_000), seed=SEED)
        dispatcher.start()
        [published] = dispatcher.publish(make_event())
        await received(receiver, 1)  # in flight, and the receiver hangs
        await dispatcher.aclose(grace_s=0.1)
        return dispatcher.get(published.id)

    delivery = asyncio.run(scenario())
    assert delivery is not None
    assert delivery.status == "pending"
    assert delivery.attempts == []


def test_publish_before_start_waits_as_pending(registry: SubscriptionRegistry) -> None:
    registry.create("http://127.0.0.1:9/hooks")
    dispatcher = Dispatcher(registry, seed=SEED)
    [delivery] = dispatcher.publish(make_event())
    assert delivery.status == "pending"
    assert [d.id for d in dispatcher.deliveries(status="pending")] == [delivery.id]
