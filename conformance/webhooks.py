"""`--webhooks`: a receiver, a subscription, changes caused through the mocks' admin API (or a
bounded wait on a real provider), then the Standard Webhooks checks on what arrived.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook

from conformance.context import BudgetSpent, RunContext, is_mock_admin
from conformance.findings import Exchange, Severity
from conformance.provider import CannotRun
from conformance.spec import schema_problems

# Standard Webhooks' default tolerance for `webhook-timestamp`.
TIMESTAMP_TOLERANCE_S = 300
EVENTS = 3
# The first event is answered 503 this often before it is accepted: two retries to time.
FAILURES_BEFORE_SUCCESS = 2
# On the mocks: retries in fractions of a second, without jitter so the delays can be compared.
FAST_POLICY = {
    "max_attempts": 4,
    "base_delay_ms": 1000,
    "max_delay_ms": 3000,
    "timeout_ms": 5000,
    "jitter": False,
}
MOCK_WAIT_S = 10.0
# When the fast policy's retries of the refused event are due (1 s, then 2 s after), and a
# second for a busy machine: a shorter --webhook-wait on the mocks cannot judge the retries.
MOCK_RETRIES_DUE_S = (
    sum(
        min(FAST_POLICY["base_delay_ms"] * 2**attempt, FAST_POLICY["max_delay_ms"])
        for attempt in range(FAILURES_BEFORE_SUCCESS)
    )
    / 1000
    + 1.0
)
# A busy machine can start one retry late (or the one after it early) by this much: a delay must
# outgrow the one before it by more than this to count as growing. The mocks' fast policy grows
# by a second (1 s, then 2 s); immediate retries or a fixed interval do not grow at all.
SCHEDULING_SLACK_S = 0.25
# Both delays under this: the retries were immediate, whatever backoff the provider claims (full
# jitter draws each delay from 0 to its cap: both of the first two under 0.1 s has odds of about
# 1 in 200 with caps of 1 s and 2 s, and far less with longer ones).
IMMEDIATE_S = 0.1
PROVIDER_WAIT_S = 120.0
HOOK_PATH = "/hf-conformance/webhook"
MOCK_POLICY_PATH = "/__admin/webhook-policy"
MOCK_POLICY_ADVICE = (
    "nothing was changed there; check that the target runs hf-mock of this release, "
    "or leave out --webhooks"
)
MOCK_EVENTS_PATH = "/__admin/events"


class NothingChecked(Exception):
    """The phase could not check what it exists to check (no subscription, no event caused or
    delivered): it is `not run`, and `--phases webhooks` incomplete. The message says why."""


class PolicyNotSet(CannotRun):
    """The mock's `PUT /__admin/webhook-policy` failed; `maybe_changed` when the request may
    have reached the mock (no answer), so the old policy is to be put back."""

    def __init__(self, message: str, *, maybe_changed: bool) -> None:
        super().__init__(message)
        self.maybe_changed = maybe_changed


@dataclass
class Delivery:
    received: float  # time.time()
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event_id(self) -> str:
        try:
            return str(json.loads(self.body).get("event_id"))
        except (ValueError, AttributeError):
            return self.headers.get("webhook-id", "")


# A delivery larger than this is not read whole (an event is a few hundred bytes).
MAX_DELIVERY_BYTES = 1 << 20


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request's body, sent with a Content-Length or chunked (RFC 9112 §7.1); at most
    `MAX_DELIVERY_BYTES`. `ValueError` for a body that is not framed either way."""
    if "chunked" in (handler.headers.get("transfer-encoding") or "").lower():
        chunks: list[bytes] = []
        size = 0
        while True:
            line = handler.rfile.readline(1024)
            length = int(line.split(b";", 1)[0].strip() or b"x", 16)
            if length == 0:
                while handler.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return b"".join(chunks)
            size += length
            if size > MAX_DELIVERY_BYTES:
                raise ValueError("delivery too large")
            chunks.append(handler.rfile.read(length))
            handler.rfile.readline(1024)  # the CRLF after the chunk
    length = int(handler.headers.get("content-length") or 0)
    if not 0 <= length <= MAX_DELIVERY_BYTES:
        raise ValueError("delivery too large")
    return handler.rfile.read(length)


@dataclass
class Receiver:
    """Answers 503 to the first attempts of the first event it sees, 204 to everything else."""

    deliveries: list[Delivery] = field(default_factory=list)
    failing_event: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                try:
                    body = _read_body(self)
                except ValueError:
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = receiver.answer(
                    {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = _listen(host, port, Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://{host}:{self.server.server_address[1]}{HOOK_PATH}"

    def answer(self, headers: dict[str, str], body: bytes, now: float) -> int:
        with self.lock:
            delivery = Delivery(now, headers, body, 204)
            if self.failing_event is None:
                self.failing_event = delivery.event_id
            if delivery.event_id == self.failing_event:
                earlier = sum(1 for d in self.deliveries if d.event_id == self.failing_event)
                if earlier < FAILURES_BEFORE_SUCCESS:
                    delivery.answered = 503
            self.deliveries.append(delivery)
            return delivery.answered

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)


def _listen(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server bound to `host:port`; `CannotRun` naming --receiver-listen when it cannot be."""
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise CannotRun(
            f"the webhook receiver cannot listen on {host}:{port} "
            f"({exc.strerror or exc}): choose another --receiver-listen HOST:PORT"
        ) from None


def check_startup(ctx: RunContext) -> None:
    """What the webhooks phase needs that can be checked before any phase runs, so that it
    stops the run (`CannotRun`) before anything is found, not after: the receiver's address can
    be listened on, and on the mocks the retry policy can be read and set (set to what it is:
    nothing changes)."""
    _listen(*ctx.options.receiver_listen, BaseHTTPRequestHandler).server_close()
    admin = f"{ctx.options.base_url}/__admin"
    if is_mock_admin(ctx, admin, ctx.options.system):
        _put_policy(ctx, admin, _mock_policy(ctx, admin), "its retry policy")


def _find_key(document: Any, key: str) -> Any:
    if isinstance(document, dict):
        if key in document:
            return document[key]
        for value in document.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def _evidence(url: str, delivery: Delivery) -> Exchange:
    return Exchange(
        method="POST",
        url=url,
        request_headers=delivery.headers,
        request_body=delivery.body.decode("utf-8", "replace"),
        status=delivery.answered,
    )


def check_webhooks(ctx: RunContext) -> None:
    contract = ctx.contract
    event_schema = contract.schema("WebhookEvent")
    event_types = (contract.schema("EventType") or {}).get("enum", [])
    create = next((op for op in contract.operations if op.id == "createWebhookSubscription"), None)
    if create is None or event_schema is None or not event_types:
        raise NothingChecked(
            "the contract has no webhook subscriptions (createWebhookSubscription, WebhookEvent, "
            "EventType): give --spec a contract that has them, or leave out --webhooks"
        )
    event_type = str(event_types[0])
    receiver = Receiver()
    listening = receiver.start(*ctx.options.receiver_listen)
    url = ctx.options.receiver_url or listening
    admin = f"{ctx.options.base_url}/__admin"
    http = ctx.client.http
    # Only a mock recognised by its health document gets its retry policy changed and events
    # caused: a real provider answering some /health must not.
    has_admin = is_mock_admin(ctx, admin, ctx.options.system)
    saved_policy: Any = None
    subscription_id: str | None = None
    try:
        created = ctx.client.request(
            create.id,
            "POST",
            create.path,
            json={"url": url, "event_types": [event_type]},
        )
        if created.status_code != 201:
            raise NothingChecked(
                f"{create.method} {create.path} answered {created.status_code}: the receiver "
                "could not be subscribed; check that these credentials may subscribe and that "
                "the target accepts the receiver's URL (--receiver-url)"
            )
        try:
            document = created.json()
        except ValueError:
            ctx.fail(
                "webhooks/payload",
                create.id,
                "subscribing answered 201 with a body that is not JSON",
                created,
            )
            return
        secret = str(_find_key(document, "secret") or "")
        subscription_id = _find_key(document, "id")
        if not secret:
            ctx.fail(
                "webhooks/signature",
                create.id,
                "the subscription's answer carries no secret: deliveries cannot be verified",
            )
        emitted: set[str] = set()
        if has_admin:
            policy = _mock_policy(ctx, admin)
            try:
                _put_policy(ctx, admin, FAST_POLICY, "its fast retry policy")
            except PolicyNotSet as exc:
                if exc.maybe_changed:
                    saved_policy = policy  # the request may have reached the mock: put it back
                raise
            saved_policy = policy
            emitted = _cause_events(ctx, admin, event_type, subscription_id)
        default_s = MOCK_WAIT_S if has_admin else PROVIDER_WAIT_S
        limit_s = ctx.options.webhook_wait_s or default_s
        wait_s = min(limit_s, max(ctx.time_left(), 1.0))
        arrived = _wait(receiver, emitted, wait_s)
        if not arrived and wait_s < limit_s:
            # Too short a wait proves nothing about the provider's deliveries or retries.
            raise BudgetSpent(
                f"webhooks: the wait for deliveries was cut to {wait_s:.0f} s of {limit_s:.0f} s "
                "by the time budget; nothing was judged"
            )
        deliveries = receiver.snapshot()
        # Some arrived, not all: a --webhook-wait that ends before the retries are due would
        # report a provider that retries as one that does not. On the mocks their schedule is
        # known; a provider's is not, so there any wait shorter than the default is too short.
        enough_s = MOCK_RETRIES_DUE_S if has_admin else default_s
        if not arrived and deliveries and wait_s < enough_s:
            raise NothingChecked(
                f"--webhook-wait {wait_s:g} s ended before every delivery and retry arrived, so "
                f"nothing was judged; give it {enough_s:g} s or more"
            )
        ctx.stats["webhook_deliveries"] = len(deliveries)
        if not deliveries and emitted:
            # On the mocks the command caused the events: none arriving is the finding.
            ctx.fail(
                "webhooks/retry",
                create.id,
                f"none of the {len(emitted)} events caused was delivered to {url} within "
                f"{wait_s:.0f} s; if the provider cannot reach the receiver, set "
                "--receiver-listen and --receiver-url",
            )
            return
        if not deliveries:
            # A provider sends events of real changes; none in the wait leaves nothing judged.
            raise NothingChecked(
                f"no event was delivered within {wait_s:.0f} s, so nothing could be checked; "
                "run it while the provider has changes to send, or give --webhook-wait more "
                "seconds"
            )
        _check_deliveries(ctx, create.id, url, secret, event_schema, deliveries)
        _check_retries(ctx, create.id, url, receiver, deliveries)
        missing = emitted - {d.event_id for d in deliveries}
        if missing:
            ctx.fail(
                "webhooks/retry",
                create.id,
                f"{len(missing)} of {len(emitted)} events caused were never delivered",
            )
    finally:
        receiver.stop()
        # Each clean-up on its own: one that fails must neither hide the run's own error nor
        # stop the next (a subscription left behind keeps the provider sending).
        try:
            if saved_policy is not None:
                http.put(f"{admin}/webhook-policy", json=saved_policy)
        except httpx.HTTPError as exc:
            ctx.notes.append(f"webhooks: the mock's retry policy was not restored ({exc})")
        try:
            if subscription_id:
                ctx.client.request(
                    "deleteWebhookSubscription", "DELETE", f"{create.path}/{subscription_id}"
                )
        except (httpx.HTTPError, CannotRun) as exc:
            # The provider client turns a dropped connection into CannotRun: at clean-up that
            # must not replace the phase's own outcome.
            ctx.notes.append(
                f"webhooks: subscription {subscription_id} was not deleted ({exc}); delete it "
                "by hand"
            )


def _unreachable_advice(ctx: RunContext) -> str:
    return (
        f"check that the mock at {ctx.options.base_url} is up and reachable, "
        "or leave out --webhooks"
    )


def _cause_events(
    ctx: RunContext, admin: str, event_type: str, subscription_id: str | None
) -> set[str]:
    """The ids of the events the mock was asked to cause; `NothingChecked` when it names none
    (without them, nothing arriving could not be told from nothing caused)."""
    try:
        response = ctx.client.http.post(
            f"{admin}/events",
            json={"type": event_type, "count": EVENTS, "subscription_id": subscription_id},
        )
    except httpx.HTTPError as exc:
        raise NothingChecked(
            f"the mock's POST {MOCK_EVENTS_PATH} failed ({type(exc).__name__}): no event is "
            f"known to wait for; {_unreachable_advice(ctx)}"
        ) from None
    try:
        emitted = {str(e["event_id"]) for e in response.json().get("events", [])}
    except (ValueError, KeyError, TypeError, AttributeError):
        emitted = set()
    if not emitted:
        raise NothingChecked(
            f"the mock's POST {MOCK_EVENTS_PATH} answered {response.status_code} without the "
            "ids of the events it caused: no event is known to wait for; check that the target "
            "runs hf-mock of this release, or leave out --webhooks"
        )
    return emitted


def _mock_policy(ctx: RunContext, admin: str) -> dict[str, Any]:
    """The mock's retry policy, to put back afterwards; `CannotRun` when the answer is not one
    (changed without it, the mock would keep the fast policy after the run)."""
    try:
        answer = ctx.client.http.get(f"{admin}/webhook-policy")
    except httpx.HTTPError as exc:
        raise CannotRun(
            f"the mock's GET {MOCK_POLICY_PATH} failed ({type(exc).__name__}): its retry policy "
            f"could not be read; nothing was changed there; {_unreachable_advice(ctx)}"
        ) from None
    try:
        policy = answer.json() if answer.status_code == 200 else None
    except ValueError:
        policy = None
    if not isinstance(policy, dict):
        what = " with a body that is not a JSON object" if answer.status_code == 200 else ""
        raise CannotRun(
            f"the mock's GET {MOCK_POLICY_PATH} answered {answer.status_code}{what}: its retry "
            f"policy could not be read to be put back after the run; {MOCK_POLICY_ADVICE}"
        )
    return policy


def _put_policy(ctx: RunContext, admin: str, policy: dict[str, Any], what: str) -> None:
    """The mock's retry policy set to `policy`; `PolicyNotSet` naming the call when it is not
    (`what` names the policy in the message)."""
    try:
        answer = ctx.client.http.put(f"{admin}/webhook-policy", json=policy)
    except httpx.HTTPError as exc:
        raise PolicyNotSet(
            f"the mock's PUT {MOCK_POLICY_PATH} failed ({type(exc).__name__}): {what} may not "
            f"be set; {_unreachable_advice(ctx)}",
            maybe_changed=True,
        ) from None
    if not answer.is_success:
        raise PolicyNotSet(
            f"the mock's PUT {MOCK_POLICY_PATH} answered {answer.status_code}: {what} could not "
            f"be set; {MOCK_POLICY_ADVICE}",
            maybe_changed=False,
        )


def _wait(receiver: Receiver, emitted: set[str], wait_s: float) -> bool:
    """Wait up to `wait_s` for what the checks need; whether it arrived before the end."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        deliveries = receiver.snapshot()
        accepted = {d.event_id for d in deliveries if d.answered < 300}
        if emitted and emitted <= accepted:
            return True
        if not emitted and deliveries and receiver.failing_event in accepted:
            return True
        time.sleep(0.1)
    return False


def _check_deliveries(
    ctx: RunContext,
    operation: str,
    url: str,
    secret: str,
    event_schema: dict[str, Any],
    deliveries: list[Delivery],
) -> None:
    for rule in ("signature", "timestamp", "unique-id", "stable-id", "payload"):
        ctx.ok(f"webhooks/{rule}", operation)
    ids_per_event: dict[str, set[str]] = {}
    events_per_id: dict[str, set[str]] = {}
    for delivery in deliveries:
        headers = delivery.headers
        webhook_id = headers.get("webhook-id", "")
        ids_per_event.setdefault(delivery.event_id, set()).add(webhook_id)
        events_per_id.setdefault(webhook_id, set()).add(delivery.event_id)
        stamp = headers.get("webhook-timestamp", "")
        if not stamp.isdigit() or abs(delivery.received - int(stamp)) > TIMESTAMP_TOLERANCE_S:
            ctx.fail(
                "webhooks/timestamp",
                operation,
                f"webhook-timestamp {stamp or '(missing)'} is not within "
                f"{TIMESTAMP_TOLERANCE_S} s of the delivery",
                _evidence(url, delivery),
            )
        elif secret and not _signed(secret, webhook_id, int(stamp), delivery):
            ctx.fail(
                "webhooks/signature",
                operation,
                "no webhook-signature entry is the HMAC-SHA256 of id.timestamp.body under the "
                "subscription's secret",
                _evidence(url, delivery),
            )
        try:
            body = json.loads(delivery.body)
        except ValueError:
            ctx.fail(
                "webhooks/payload", operation, "the body is not JSON", _evidence(url, delivery)
            )
            continue
        problems = schema_problems(event_schema, body)
        if problems:
            ctx.fail(
                "webhooks/payload",
                operation,
                "the event does not match the contract's WebhookEvent: " + "; ".join(problems[:3]),
                _evidence(url, delivery),
            )
    for event_id, ids in ids_per_event.items():
        if len(ids) > 1:
            ctx.fail(
                "webhooks/stable-id",
                operation,
                f"event {event_id} was delivered under {len(ids)} different webhook-ids",
            )
    for webhook_id, events in events_per_id.items():
        if len(events) > 1:
            ctx.fail(
                "webhooks/unique-id",
                operation,
                f"webhook-id {webhook_id} was used for {len(events)} different events",
            )


def _signed(secret: str, webhook_id: str, stamp: int, delivery: Delivery) -> bool:
    try:
        expected = Webhook(secret).sign(
            webhook_id, dt.datetime.fromtimestamp(stamp, tz=dt.UTC), delivery.body.decode()
        )
    except Exception:  # noqa: BLE001 - the provider's secret or headers: any failure is "unsigned"
        return False
    offered = delivery.headers.get("webhook-signature", "").split()
    return expected in offered


def _check_retries(
    ctx: RunContext, operation: str, url: str, receiver: Receiver, deliveries: list[Delivery]
) -> None:
    ctx.ok("webhooks/retry", operation)
    attempts = [d for d in deliveries if d.event_id == receiver.failing_event]
    if len(attempts) <= FAILURES_BEFORE_SUCCESS:
        ctx.fail(
            "webhooks/retry",
            operation,
            f"an event answered 503 was attempted {len(attempts)} time(s) in the wait; "
            f"expected retries until it was accepted (attempt {FAILURES_BEFORE_SUCCESS + 1})",
            _evidence(url, attempts[-1]) if attempts else None,
        )
        return
    gaps = [b.received - a.received for a, b in itertools.pairwise(attempts)]
    ctx.stats["webhook_retry_gaps_s"] = [round(gap, 3) for gap in gaps]
    if max(gaps[:2]) < IMMEDIATE_S:
        ctx.fail(
            "webhooks/retry",
            operation,
            f"the second and third attempts came {gaps[0]:.3f} s and {gaps[1]:.3f} s after the "
            f"one before: retries must back off with growing delays, not follow at once",
            _evidence(url, attempts[2]),
        )
    elif gaps[1] <= gaps[0] + SCHEDULING_SLACK_S:
        # One pair of delays cannot tell a fixed interval from a backoff with full jitter
        # (each delay drawn from 0 to a growing cap, as the mocks' own default): reported,
        # not failed.
        ctx.fail(
            "webhooks/retry",
            operation,
            f"the delay before the third attempt ({gaps[1]:.2f} s) is not longer than before "
            f"the second ({gaps[0]:.2f} s) by more than {SCHEDULING_SLACK_S:g} s: a fixed "
            "interval, or a backoff with jitter that drew a short delay; run again to tell",
            _evidence(url, attempts[2]),
            severity=Severity.WARNING,
        )
