"""Webhook subscriptions and at-least-once delivery of Standard Webhooks-signed events.

Deliveries retry with capped exponential backoff, can misbehave on purpose (duplicates,
reordering, stale timestamps, bad signatures) and are kept in a bounded, queryable log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import dataclasses
import datetime as dt
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import re
import secrets
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from mocks.core.store import RecordConflict, RecordNotFound, format_timestamp
from retry_after import parse_retry_after

log = logging.getLogger("hf_mock.webhooks")

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, not a secret
GENERATED_SECRET_BYTES: Final = 24
# Standard Webhooks: secrets SHOULD be between 24 and 64 bytes.
MIN_SECRET_BYTES: Final = 24
MAX_SECRET_BYTES: Final = 64
MAX_URL_LENGTH: Final = 2048
MAX_SUBSCRIPTIONS: Final = 1000
MAX_COPIES: Final = 1000
# Policy bounds, as in the admin API's WebhookPolicy schema.
MAX_ATTEMPTS: Final = 20
MAX_BASE_DELAY_MS: Final = 3_600_000
MAX_MAX_DELAY_MS: Final = 86_400_000
MAX_TIMEOUT_MS: Final = 600_000
MAX_ERROR_LENGTH: Final = 1000
DEFAULT_LOG_CAPACITY: Final = 50_000
DEFAULT_CONCURRENCY: Final = 16
DEFAULT_CLOSE_GRACE_S: Final = 1.0
# Twice the 5-minute tolerance Standard Webhooks verifiers apply, so every receiver rejects it.
STALE_TIMESTAMP_AGE_S: Final = 600
# Keeps 2**(n-1) finite for absurd attempt numbers; any realistic cap is reached long before.
_MAX_BACKOFF_EXPONENT: Final = 62

RETRYABLE_STATUSES: Final = frozenset({408, 429})
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
DELIVERY_MODES: Final = ("normal", "duplicate", "out_of_order", "stale_timestamp", "bad_signature")
DELIVERY_STATUSES: Final = ("pending", "delivering", "retrying", "succeeded", "failed")

DeliveryStatus = Literal["pending", "delivering", "retrying", "succeeded", "failed"]
Outcome = Literal["succeeded", "retry", "rejected"]

_NIK = re.compile(r"^[0-9]{16}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


class WebhookConfigError(ValueError):
    """A subscription, policy or publish request the mock refuses; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SubscriptionNotFound(RecordNotFound):
    """No subscription with that id (maps to 404 through the store error handler)."""


class DeliveryNotFound(RecordNotFound):
    """No delivery with that id in the log (it may have been evicted)."""


class RedeliveryRefused(RecordConflict):
    """The delivery can't be sent again, e.g. because its subscription was deleted (409)."""


class DeliveryBacklogFull(RecordConflict):
    """More deliveries would wait to be sent than the log keeps (409): nothing was changed."""


# -- secrets and subject hashing ----------------------------------------------------------


def generate_secret() -> str:
    """A fresh `whsec_` secret: 24 random bytes, standard base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_SECRET_BYTES)).decode()


def decode_secret(secret: object) -> bytes:
    """The HMAC key inside a `whsec_<base64>` secret, or `WebhookConfigError` saying what's wrong.

    Padding may be omitted (the `standardwebhooks` library accepts that too); anything else
    that is not standard base64 is refused rather than half-decoded.
    """
    if not isinstance(secret, str):
        raise WebhookConfigError(
            f"secret must be a string like '{SECRET_PREFIX}<base64>', got {type(secret).__name__}"
        )
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookConfigError(
            f"secret must start with '{SECRET_PREFIX}' followed by standard base64 "
            "(Standard Webhooks format)"
        )
    encoded = secret.removeprefix(SECRET_PREFIX)
    if not encoded:
        raise WebhookConfigError(f"secret has nothing after '{SECRET_PREFIX}'")
    if not _BASE64.fullmatch(encoded):
        raise WebhookConfigError(
            f"secret after '{SECRET_PREFIX}' is not standard base64 "
            "(allowed: A-Z a-z 0-9 + / and trailing '=' padding)"
        )
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise WebhookConfigError(
            f"secret after '{SECRET_PREFIX}' does not decode as base64: {exc}"
        ) from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise WebhookConfigError(
            f"secret must decode to between {MIN_SECRET_BYTES} and {MAX_SECRET_BYTES} bytes, "
            f"got {len(key)}"
        )
    return key


def nik_hash(nik: str, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of the NIK digits, keyed with the secret's decoded bytes.

    Each subscriber can match people it already knows without the NIK travelling in clear,
    and two subscribers' hashes of the same person can't be joined.
    """
    if not _NIK.fullmatch(nik):
        raise ValueError("a NIK is exactly 16 ASCII digits")
    return hmac.new(decode_secret(secret), nik.encode("ascii"), hashlib.sha256).hexdigest()


# -- subscriptions ----------------------------------------------------------------------------


def validate_url(url: object) -> str:
    if not isinstance(url, str):
        raise WebhookConfigError(f"url must be a string, got {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookConfigError(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise WebhookConfigError("url must not contain whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        shown = parts.scheme or "(none)"
        raise WebhookConfigError(f"url scheme must be http or https, got {shown!r}")
    if not parts.hostname:
        raise WebhookConfigError("url must name a host, e.g. http://127.0.0.1:9000/hooks")
    if parts.username is not None or parts.password is not None:
        raise WebhookConfigError(
            "url must not embed credentials (user:password@); the delivery log shows the url"
        )
    try:
        parts.port  # noqa: B018 - urlsplit only checks the port when asked
    except ValueError as exc:
        raise WebhookConfigError(f"url has an invalid port: {exc}") from exc
    return url


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    event_types: tuple[str, ...]  # empty: every event type
    secret: str = field(repr=False)
    created_at: dt.datetime

    @property
    def key(self) -> bytes:
        return decode_secret(self.secret)

    def matches(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types

    def to_dict(self, *, include_secret: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "event_types": list(self.event_types),
            "created_at": format_timestamp(self.created_at),
        }
        if include_secret:
            body["secret"] = self.secret
        return body


class SubscriptionRegistry:
    """The subscriptions of one mock. Thread-safe: sync handlers run in a thread pool."""

    def __init__(
        self, event_types: Iterable[str], *, max_subscriptions: int = MAX_SUBSCRIPTIONS
    ) -> None:
        self.event_types: tuple[str, ...] = tuple(event_types)
        self.max_subscriptions = max_subscriptions
        self._known = frozenset(self.event_types)
        self._subscriptions: dict[str, Subscription] = {}
        self._lock = threading.Lock()

    def create(
        self,
        url: str,
        event_types: Sequence[str] | None = None,
        secret: str | None = None,
    ) -> Subscription:
        checked_url = validate_url(url)
        types = self._checked_event_types(event_types or ())
        if secret is None:
            secret = generate_secret()
        else:
            decode_secret(secret)
        subscription = Subscription(
            id=str(uuid.uuid4()),
            url=checked_url,
            event_types=types,
            secret=secret,
            created_at=dt.datetime.now(dt.UTC),
        )
        with self._lock:
            if len(self._subscriptions) >= self.max_subscriptions:
                raise WebhookConfigError(
                    f"this mock keeps at most {self.max_subscriptions} subscriptions; "
                    "delete one first"
                )
            self._subscriptions[subscription.id] = subscription
        return subscription

    def _checked_event_types(self, event_types: Sequence[str]) -> tuple[str, ...]:
        if isinstance(event_types, str):
            raise WebhookConfigError("event_types must be a list of event type names")
        unknown = [t for t in event_types if t not in self._known]
        if unknown:
            raise WebhookConfigError(
                f"unknown event type {unknown[0]!r}; this mock sends: "
                + ", ".join(self.event_types)
            )
        return tuple(dict.fromkeys(event_types))  # de-duplicated, order kept

    def get(self, subscription_id: str) -> Subscription:
        subscription = self.find(subscription_id)
        if subscription is None:
            raise SubscriptionNotFound(f"no webhook subscription with id {subscription_id!r}")
        return subscription

    def find(self, subscription_id: str) -> Subscription | None:
        with self._lock:
            return self._subscriptions.get(subscription_id)

    def list(self) -> builtins.list[Subscription]:
        """In creation order."""
        with self._lock:
            return builtins.list(self._subscriptions.values())

    def matching(self, event_type: str) -> builtins.list[Subscription]:
        return [s for s in self.list() if s.matches(event_type)]

    def delete(self, subscription_id: str) -> Subscription:
        with self._lock:
            subscription = self._subscriptions.pop(subscription_id, None)
        if subscription is None:
            raise SubscriptionNotFound(f"no webhook subscription with id {subscription_id!r}")
        return subscription

    def clear(self) -> None:
        with self._lock:
            self._subscriptions.clear()


# -- events and signing ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event before it is addressed to a subscriber.

    `nik` only lives in memory: `build_body` turns it into the subscriber's `nik_hash`.
    """

    event_id: str
    type: str
    occurred_at: dt.datetime
    source: str
    subject: Mapping[str, str]
    data: Mapping[str, Any]
    nik: str | None = field(default=None, repr=False)
    version: str = "1"

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        if self.nik is not None and not _NIK.fullmatch(self.nik):
            raise ValueError(f"event {self.event_id}: nik must be exactly 16 ASCII digits")
        if "nik" in self.subject or "nik" in self.data:
            raise ValueError(f"event {self.event_id}: pass the NIK as `nik`, never in the payload")
        if "nik_hash" in self.subject:
            raise ValueError(f"event {self.event_id}: nik_hash is computed per subscription")


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable in a webhook body")


def build_body(event: WebhookEvent, subscription: Subscription) -> bytes:
    """The exact bytes a subscriber receives (and the signature covers): compact, sorted keys.

    `subject.nik_hash` is left out for events about no person (e.g. `facility.updated`).
    """
    subject: dict[str, Any] = dict(event.subject)
    if event.nik is not None:
        subject["nik_hash"] = nik_hash(event.nik, subscription.secret)
    envelope = {
        "event_id": event.event_id,
        "type": event.type,
        "occurred_at": format_timestamp(event.occurred_at),
        "source": event.source,
        "subject": subject,
        "data": dict(event.data),
        "version": event.version,
    }
    body = json.dumps(
        envelope,
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
        default=_json_default,
    ).encode("utf-8")
    if event.nik is not None and event.nik.encode("ascii") in body:
        raise ValueError(f"event {event.event_id} would carry a NIK in clear text")
    return body


def sign(msg_id: str, timestamp: int, body: bytes, key: bytes) -> str:
    """The `webhook-signature` value (`v1,<base64>`) over `msg_id.timestamp.body`."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    signature: str = Webhook(key).sign(msg_id, moment, body.decode("utf-8"))
    return signature


def signed_headers(
    msg_id: str, timestamp: int, body: bytes, key: bytes, *, user_agent: str
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, key),
        "content-type": "application/json",
        "user-agent": user_agent,
    }


def wrong_key(key: bytes) -> bytes:
    """A key that is certainly not `key`, derived from it so runs are reproducible."""
    return hashlib.sha256(b"hf-mock bad_signature mode|" + key).digest()


# -- retry policy ---------------------------------------------------------------------------


def classify_status(status_code: int) -> Outcome:
    """What a receiver's answer means for the delivery. Redirects are not followed: final."""
    if 200 <= status_code < 300:
        return "succeeded"
    if status_code in RETRYABLE_STATUSES or 500 <= status_code < 600:
        return "retry"
    return "rejected"


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    max_attempts: int = 8
    base_delay_ms: int = 500
    max_delay_ms: int = 60_000
    timeout_ms: int = 5_000
    jitter: bool = True  # full jitter: uniform(0, capped exponential delay)

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise WebhookConfigError(
                f"max_attempts must be between 1 and {MAX_ATTEMPTS}, got {self.max_attempts}"
            )
        if not 0 <= self.base_delay_ms <= MAX_BASE_DELAY_MS:
            raise WebhookConfigError(
                f"base_delay_ms must be between 0 and {MAX_BASE_DELAY_MS}, got {self.base_delay_ms}"
            )
        if not self.base_delay_ms <= self.max_delay_ms <= MAX_MAX_DELAY_MS:
            raise WebhookConfigError(
                f"max_delay_ms must be between base_delay_ms ({self.base_delay_ms}) and "
                f"{MAX_MAX_DELAY_MS}, got {self.max_delay_ms}"
            )
        if not 1 <= self.timeout_ms <= MAX_TIMEOUT_MS:
            raise WebhookConfigError(
                f"timeout_ms must be between 1 and {MAX_TIMEOUT_MS}, got {self.timeout_ms}"
            )

    def backoff_ms(self, attempt: int, rng: random.Random) -> float:
        """Delay after failed attempt number `attempt` (1-based): min(max, base * 2**(n-1))."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        exponent = min(attempt - 1, _MAX_BACKOFF_EXPONENT)
        delay = float(min(self.max_delay_ms, self.base_delay_ms * 2**exponent))
        return rng.uniform(0.0, delay) if self.jitter else delay

    def retry_delay_ms(
        self, attempt: int, rng: random.Random, retry_after_s: float | None = None
    ) -> float:
        """The receiver's `Retry-After` when it gave one (capped), else the backoff."""
        if retry_after_s is not None:
            return min(float(self.max_delay_ms), retry_after_s * 1000.0)
        return self.backoff_ms(attempt, rng)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the delivery log -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    at: dt.datetime
    duration_ms: float
    status_code: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.error is not None and len(self.error) > MAX_ERROR_LENGTH:
            object.__setattr__(self, "error", self.error[: MAX_ERROR_LENGTH - 1] + "…")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "at": format_timestamp(self.at),
            "duration_ms": round(self.duration_ms, 3),
        }
        if self.status_code is not None:
            body["status_code"] = self.status_code
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass(slots=True, eq=False)
class Delivery:
    """One event addressed to one subscription, and every attempt to send it.

    The dispatcher's methods hand out copies, so a `Delivery` in your hands does not change.
    """

    id: str
    event_id: str
    subscription_id: str
    url: str
    event_type: str
    mode: str
    created_at: dt.datetime
    body: bytes = field(repr=False)
    status: DeliveryStatus = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: dt.datetime | None = None
    redelivery_of: str | None = None
    # duplicate mode: every copy's first attempt carries the very same signed message
    pinned_timestamp: PinnedTimestamp | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "subscription_id": self.subscription_id,
            "url": self.url,
            "event_type": self.event_type,
            "status": self.status,
            "mode": self.mode,
            "attempts": [a.to_dict() for a in self.attempts],
            "next_attempt_at": (
                format_timestamp(self.next_attempt_at) if self.next_attempt_at else None
            ),
            "created_at": format_timestamp(self.created_at),
            "redelivery_of": self.redelivery_of,
        }

    def snapshot(self) -> Delivery:
        return dataclasses.replace(self, attempts=builtins.list(self.attempts))


@dataclass(slots=True)
class PinnedTimestamp:
    """The `webhook-timestamp` every copy of a `duplicate` delivery signs, so that all send
    the very same message; taken by the first copy's first attempt (under the dispatcher's
    lock)."""

    at: int | None = None


class DeliveryLog:
    """Deliveries by id; past `capacity` the oldest succeeded go first, then the oldest failed.
    One still to be sent is never dropped: the dispatcher refuses what would leave more of
    those than `capacity` (`Dispatcher.ensure_room`). Not thread-safe: the dispatcher locks."""

    def __init__(self, capacity: int = DEFAULT_LOG_CAPACITY) -> None:
        if capacity < 1:
            raise WebhookConfigError(f"the delivery log needs room for one, got {capacity}")
        self.capacity = capacity
        self._all: OrderedDict[str, Delivery] = OrderedDict()
        self._succeeded: OrderedDict[str, None] = OrderedDict()
        self._failed: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._all)

    @property
    def unfinished(self) -> int:
        """Deliveries not yet succeeded or failed (pending, delivering, retrying)."""
        return len(self._all) - len(self._succeeded) - len(self._failed)

    def add(self, delivery: Delivery) -> builtins.list[str]:
        """Store `delivery`; returns the ids evicted to make room (finished ones only)."""
        self._all[delivery.id] = delivery
        evicted: builtins.list[str] = []
        while len(self._all) > self.capacity:
            for index in (self._succeeded, self._failed):
                if index:
                    victim, _ = index.popitem(last=False)
                    break
            else:
                break  # every one left is still to be sent
            del self._all[victim]
            evicted.append(victim)
        return evicted

    def get(self, delivery_id: str) -> Delivery | None:
        return self._all.get(delivery_id)

    def finished(self, delivery: Delivery) -> None:
        """Record that `delivery` reached a final status (it becomes evictable first)."""
        index = self._succeeded if delivery.status == "succeeded" else self._failed
        if delivery.id in self._all:
            index[delivery.id] = None

    def list(
        self,
        *,
        subscription_id: str | None = None,
        event_type: str | None = None,
        status: str | None = None,
        event_id: str | None = None,
        mode: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Delivery]:
        """Newest first."""
        found: builtins.list[Delivery] = []
        for delivery in reversed(self._all.values()):
            if len(found) >= limit:
                break
            if (
                (subscription_id is None or delivery.subscription_id == subscription_id)
                and (event_type is None or delivery.event_type == event_type)
                and (status is None or delivery.status == status)
                and (event_id is None or delivery.event_id == event_id)
                and (mode is None or delivery.mode == mode)
            ):
                found.append(delivery)
        return found

    def clear(self) -> None:
        self._all.clear()
        self._succeeded.clear()
        self._failed.clear()


# -- the dispatcher -------------------------------------------------------------------------


def _loggable_url(url: str) -> str:
    """Scheme, host and path only: query strings sometimes carry receiver tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass(slots=True)
class _SendResult:
    attempt: Attempt
    retry_after_s: float | None
    final: bool = False  # no retry whatever the attempt shows


class _InvalidStatus(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class Dispatcher:
    """Sends deliveries from inside the mock's asyncio loop; one shared `httpx.AsyncClient`.

    `publish`, `publish_batch`, `redeliver` and the log queries are plain methods, safe to call
    from the loop or from the thread pool connexion runs sync handlers in: they only record
    deliveries and wake the loop, which does the sending. Published before `start()`,
    deliveries wait as `pending`.
    """

    def __init__(
        self,
        subscriptions: SubscriptionRegistry,
        *,
        policy: WebhookPolicy | None = None,
        seed: int = 0,
        user_agent: str = "hf-mock",
        max_concurrency: int = DEFAULT_CONCURRENCY,
        log_capacity: int = DEFAULT_LOG_CAPACITY,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if max_concurrency < 1:
            raise WebhookConfigError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.subscriptions = subscriptions
        self.policy = policy or WebhookPolicy()
        self.user_agent = user_agent
        self.max_concurrency = max_concurrency
        self._transport = transport
        # TLS verification of https receivers: a context trusting their CA, or True (certifi).
        self._verify = verify
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._log = DeliveryLog(log_capacity)
        self._heap: list[tuple[float, int, str]] = []  # (monotonic due time, tie-break, id)
        self._seq = 0
        self._after: dict[str, str] = {}  # out_of_order: predecessor id -> successor id
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._client: httpx.AsyncClient | None = None
        self._runner: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin sending; call from inside the running loop. Idempotent."""
        if self._runner is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError as exc:
            raise RuntimeError(
                "Dispatcher.start() must be called from a running event loop"
            ) from exc
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_concurrency)
        limits = httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )
        # trust_env=False: a proxy set for the developer's shell must not intercept deliveries
        # to local receivers. Verification still reads SSL_CERT_FILE / SSL_CERT_DIR when no CA
        # bundle was given (with trust_env=False httpx would use certifi's bundle alone).
        verify = httpx.create_ssl_context(trust_env=True) if self._verify is True else self._verify
        self._client = httpx.AsyncClient(
            transport=self._transport,
            limits=limits,
            follow_redirects=False,
            trust_env=False,
            verify=verify,
        )
        self._runner = loop.create_task(self._run(), name="webhook-dispatcher")

    async def aclose(self, grace_s: float = DEFAULT_CLOSE_GRACE_S) -> None:
        """Stop sending. Sends in flight get `grace_s` to finish; the rest go back to `pending`
        (retries keep their `retrying` status and time), so the log shows what never went."""
        runner, client = self._runner, self._client
        if runner is None or client is None:
            return
        runner.cancel()
        await asyncio.wait([runner])
        in_flight = builtins.list(self._in_flight)
        if in_flight:
            _, unfinished = await asyncio.wait(in_flight, timeout=grace_s)
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished)
        await client.aclose()
        self._runner = self._client = self._slots = self._wakeup = None
        self._loop = None

    async def wait_idle(self, poll_s: float = 0.01) -> None:
        """Return once nothing is scheduled or in flight (wrap in a timeout)."""
        while self._busy():
            await asyncio.sleep(poll_s)

    def _busy(self) -> bool:
        with self._lock:
            return bool(self._heap or self._in_flight or self._after)

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self,
        event: WebhookEvent,
        mode: str = "normal",
        copies: int = 2,
        subscription_id: str | None = None,
    ) -> list[Delivery]:
        """Address `event` to every matching subscription (or only `subscription_id`, if it
        matches); `duplicate` sends the same signed message `copies` times at once."""
        self._check_mode(mode, copies)
        if mode == "out_of_order":
            raise WebhookConfigError(
                "out_of_order reorders a batch: publish the events together with publish_batch"
            )
        self._check_event_type(event)
        created: list[Delivery] = []
        now = dt.datetime.now(dt.UTC)
        for subscription in self._targets(event.type, subscription_id):
            body = build_body(event, subscription)
            if mode == "duplicate":
                pinned = PinnedTimestamp()  # set by the first copy's first attempt
                created += [
                    self._new_delivery(event, subscription, body, mode, now, pinned)
                    for _ in range(copies)
                ]
            else:
                created.append(self._new_delivery(event, subscription, body, mode, now))
        with self._lock:
            for delivery in created:
                self._insert_locked(delivery)
                self._schedule_locked(delivery.id, 0.0)
            snapshots = [d.snapshot() for d in created]
        return snapshots

    def publish_batch(
        self,
        events: Sequence[WebhookEvent],
        mode: str = "normal",
        copies: int = 2,
        subscription_id: str | None = None,
    ) -> list[Delivery]:
        """Publish several events; `out_of_order` sends each subscriber the batch newest
        first, one after another, so the reversal really arrives."""
        self._check_mode(mode, copies)
        if mode != "out_of_order":
            return [d for e in events for d in self.publish(e, mode, copies, subscription_id)]
        for event in events:
            self._check_event_type(event)
        newest_first = sorted(events, key=lambda e: (e.occurred_at, e.event_id), reverse=True)
        now = dt.datetime.now(dt.UTC)
        chains: list[list[Delivery]] = []
        targets = (
            [self.subscriptions.get(subscription_id)]
            if subscription_id is not None
            else self.subscriptions.list()
        )
        for subscription in targets:
            chain = [
                self._new_delivery(e, subscription, build_body(e, subscription), mode, now)
                for e in newest_first
                if subscription.matches(e.type)
            ]
            if chain:
                chains.append(chain)
        with self._lock:
            for chain in chains:
                for delivery in chain:
                    self._insert_locked(delivery)
                for earlier, later in itertools.pairwise(chain):
                    self._after[earlier.id] = later.id
                self._schedule_locked(chain[0].id, 0.0)
            snapshots = [d.snapshot() for chain in chains for d in chain]
        return snapshots

    def redeliver(self, delivery_id: str) -> Delivery:
        """A fresh attempt series of the same event id and body (normal mode, signed anew);
        receivers must de-duplicate on `webhook-id`."""
        with self._lock:
            original = self._log.get(delivery_id)
            if original is None:
                raise DeliveryNotFound(f"no delivery with id {delivery_id!r}")
            if self.subscriptions.find(original.subscription_id) is None:
                raise RedeliveryRefused(
                    f"subscription {original.subscription_id} of delivery {delivery_id} "
                    "no longer exists"
                )
            now = dt.datetime.now(dt.UTC)
            again = Delivery(
                id=str(uuid.uuid4()),
                event_id=original.event_id,
                subscription_id=original.subscription_id,
                url=original.url,
                event_type=original.event_type,
                mode="normal",
                created_at=now,
                body=original.body,
                next_attempt_at=now,
                redelivery_of=original.id,
            )
            self._insert_locked(again)
            self._schedule_locked(again.id, 0.0)
            snapshot = again.snapshot()
        return snapshot

    def _check_mode(self, mode: str, copies: int) -> None:
        if mode not in DELIVERY_MODES:
            raise WebhookConfigError(
                f"unknown delivery mode {mode!r}; one of: " + ", ".join(DELIVERY_MODES)
            )
        if not 1 <= copies <= MAX_COPIES:
            raise WebhookConfigError(f"copies must be between 1 and {MAX_COPIES}, got {copies}")

    def _check_event_type(self, event: WebhookEvent) -> None:
        if event.type not in self.subscriptions.event_types:
            raise WebhookConfigError(
                f"unknown event type {event.type!r}; this mock sends: "
                + ", ".join(self.subscriptions.event_types)
            )

    def ensure_room(self, deliveries: int) -> None:
        """Refuse (`DeliveryBacklogFull`) what would leave more than the log's capacity of
        deliveries waiting to be sent; callers ask before they change anything. A record's
        change asks room for one: its few events may overshoot the cap by that much."""
        with self._lock:
            waiting, capacity = self._log.unfinished, self._log.capacity
        if waiting + deliveries > capacity:
            raise DeliveryBacklogFull(
                f"{waiting:,} webhook deliveries are waiting to be sent and this would add "
                f"{deliveries:,}: the mock keeps at most {capacity:,} unsent; wait for them "
                "(GET /__admin/deliveries?status=pending) or drop them (DELETE "
                "/__admin/deliveries)"
            )

    def deliveries_for(
        self, event_type: str, events: int, mode: str, copies: int, subscription_id: str | None
    ) -> int:
        """How many deliveries publishing `events` events of `event_type` would schedule."""
        per_event = copies if mode == "duplicate" else 1
        return events * per_event * len(self._targets(event_type, subscription_id))

    def _targets(self, event_type: str, subscription_id: str | None) -> list[Subscription]:
        if subscription_id is None:
            return self.subscriptions.matching(event_type)
        subscription = self.subscriptions.get(subscription_id)
        return [subscription] if subscription.matches(event_type) else []

    @staticmethod
    def _new_delivery(
        event: WebhookEvent,
        subscription: Subscription,
        body: bytes,
        mode: str,
        now: dt.datetime,
        pinned_timestamp: PinnedTimestamp | None = None,
    ) -> Delivery:
        return Delivery(
            id=str(uuid.uuid4()),
            event_id=event.event_id,
            subscription_id=subscription.id,
            url=subscription.url,
            event_type=event.type,
            mode=mode,
            created_at=now,
            body=body,
            next_attempt_at=now,
            pinned_timestamp=pinned_timestamp,
        )

    # -- the log ---------------------------------------------------------------------------

    def deliveries(
        self,
        *,
        subscription_id: str | None = None,
        event_type: str | None = None,
        status: str | None = None,
        event_id: str | None = None,
        mode: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Copies of logged deliveries, newest first."""
        if status is not None and status not in DELIVERY_STATUSES:
            raise WebhookConfigError(
                f"unknown delivery status {status!r}; one of: " + ", ".join(DELIVERY_STATUSES)
            )
        if limit < 1:
            raise WebhookConfigError(f"limit must be at least 1, got {limit}")
        with self._lock:
            found = self._log.list(
                subscription_id=subscription_id,
                event_type=event_type,
                status=status,
                event_id=event_id,
                mode=mode,
                limit=limit,
            )
            return [d.snapshot() for d in found]

    def get(self, delivery_id: str) -> Delivery | None:
        with self._lock:
            delivery = self._log.get(delivery_id)
            return None if delivery is None else delivery.snapshot()

    def reseed(self, seed: int) -> None:
        """The retry jitter's random numbers from `seed` again, as at start-up."""
        with self._lock:
            self._rng = random.Random(seed)

    def clear_log(self) -> None:
        """Forget every delivery, including scheduled retries (sends in flight finish unlogged)."""
        with self._lock:
            self._log.clear()
            self._heap.clear()
            self._after.clear()

    def _insert_locked(self, delivery: Delivery) -> None:
        for evicted in self._log.add(delivery):
            successor = self._after.pop(evicted, None)
            if successor is not None:
                self._schedule_locked(successor, 0.0)

    def _schedule_locked(self, delivery_id: str, delay_s: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time.monotonic() + delay_s, self._seq, delivery_id))
        self._wake()  # the runner may be asleep until a later due time, or with nothing due

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wakeup.set()
            return
        try:
            loop.call_soon_threadsafe(wakeup.set)
        except RuntimeError:  # the loop has closed; the deliveries stay pending in the log
            log.debug("webhook dispatcher loop closed; deliveries stay pending")

    # -- sending -----------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._slots is not None
        while True:
            await self._slots.acquire()
            try:
                delivery_id = await self._next_due()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._attempt(delivery_id))
            with self._lock:
                self._in_flight.add(task)
            task.add_done_callback(self._attempt_done)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._in_flight.discard(task)
        if self._slots is not None:
            self._slots.release()

    async def _next_due(self) -> str:
        assert self._wakeup is not None
        while True:
            # Cleared before looking, so a publish after the look still wakes us.
            self._wakeup.clear()
            with self._lock:
                delay: float | None = None
                if self._heap:
                    due, _, delivery_id = self._heap[0]
                    delay = due - time.monotonic()
                    if delay <= 0:
                        heapq.heappop(self._heap)
                        return delivery_id
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    async def _attempt(self, delivery_id: str) -> None:
        with self._lock:
            delivery = self._log.get(delivery_id)
            if delivery is None:  # evicted or cleared while waiting
                self._release_successor_locked(delivery_id)
                return
            policy = self.policy
        subscription = self.subscriptions.find(delivery.subscription_id)
        if subscription is None:
            self._give_up(delivery, "subscription was deleted; not sent")
            return
        with self._lock:
            delivery.status = "delivering"
            delivery.next_attempt_at = None
            first = not delivery.attempts
            headers = self._headers(delivery, subscription.key, first)
        try:
            result = await self._send(delivery.url, delivery.body, headers, policy)
        except asyncio.CancelledError:
            with self._lock:  # dispatcher closing: not attempted, so pending again
                delivery.status = "pending"
                delivery.next_attempt_at = dt.datetime.now(dt.UTC)
                self._schedule_locked(delivery.id, 0.0)
            raise
        except Exception as exc:  # the worker's edge: a bug must not stall other deliveries
            log.exception("webhook attempt crashed delivery_id=%s", delivery.id)
            result = _SendResult(
                Attempt(dt.datetime.now(dt.UTC), 0.0, error=f"internal error: {exc!r}"), None
            )
        self._record(delivery, result, policy)

    def _headers(self, delivery: Delivery, key: bytes, first: bool) -> dict[str, str]:
        timestamp = int(time.time())
        if delivery.mode == "stale_timestamp":
            timestamp -= STALE_TIMESTAMP_AGE_S
        elif first and delivery.pinned_timestamp is not None:
            # Taken when the first copy is sent, not when the event was published: a backlog
            # of deliveries would otherwise age every copy past receivers' 5-minute tolerance.
            pin = delivery.pinned_timestamp
            if pin.at is None:
                pin.at = timestamp
            timestamp = pin.at
        signing_key = wrong_key(key) if delivery.mode == "bad_signature" else key
        return signed_headers(
            delivery.event_id, timestamp, delivery.body, signing_key, user_agent=self.user_agent
        )

    async def _send(
        self, url: str, body: bytes, headers: Mapping[str, str], policy: WebhookPolicy
    ) -> _SendResult:
        assert self._client is not None
        at = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        timeout_s = policy.timeout_ms / 1000
        status_code: int | None = None
        retry_after_s: float | None = None
        error: str | None = None
        try:
            # httpx times each phase; the outer timeout caps the whole exchange.
            async with asyncio.timeout(timeout_s):
                async with self._client.stream(
                    "POST", url, content=body, headers=dict(headers), timeout=timeout_s
                ) as response:
                    if not 100 <= response.status_code <= 599:
                        raise _InvalidStatus(response.status_code)
                    status_code = response.status_code
                    if status_code in RETRY_AFTER_STATUSES:
                        retry_after_s = parse_retry_after(response.headers.get("retry-after"))
        except (TimeoutError, httpx.TimeoutException):
            if status_code is None:
                error = f"no response within {policy.timeout_ms} ms"
        except httpx.TransportError as exc:
            if status_code is None:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except _InvalidStatus as exc:
            error = f"receiver answered the invalid HTTP status {exc.status_code}"
            return _SendResult(Attempt(at, _elapsed_ms(started), error=error), None, final=True)
        attempt = Attempt(at, _elapsed_ms(started), status_code, error)
        return _SendResult(attempt, retry_after_s)

    def _record(self, delivery: Delivery, result: _SendResult, policy: WebhookPolicy) -> None:
        attempt = result.attempt
        outcome: Outcome
        if result.final:
            outcome = "rejected"
        elif attempt.status_code is None:
            outcome = "retry"  # connection error or timeout
        else:
            outcome = classify_status(attempt.status_code)
        with self._lock:
            delivery.attempts.append(attempt)
            number = len(delivery.attempts)
            if number == 1:
                self._release_successor_locked(delivery.id)
            if outcome == "succeeded":
                delivery.status = "succeeded"
                self._log.finished(delivery)
                return
            if outcome == "retry" and number < policy.max_attempts:
                delay_ms = policy.retry_delay_ms(number, self._rng, result.retry_after_s)
                delivery.status = "retrying"
                delivery.next_attempt_at = dt.datetime.now(dt.UTC) + dt.timedelta(
                    milliseconds=delay_ms
                )
                self._schedule_locked(delivery.id, delay_ms / 1000)
                return
            delivery.status = "failed"
            self._log.finished(delivery)
        self._log_failure(delivery, "rejected by receiver" if outcome == "rejected" else None)

    def _give_up(self, delivery: Delivery, reason: str) -> None:
        with self._lock:
            delivery.attempts.append(Attempt(dt.datetime.now(dt.UTC), 0.0, error=reason))
            delivery.status = "failed"
            delivery.next_attempt_at = None
            self._log.finished(delivery)
            self._release_successor_locked(delivery.id)
        self._log_failure(delivery, reason)

    def _release_successor_locked(self, delivery_id: str) -> None:
        successor = self._after.pop(delivery_id, None)
        if successor is not None:
            self._schedule_locked(successor, 0.0)

    @staticmethod
    def _log_failure(delivery: Delivery, reason: str | None) -> None:
        last = delivery.attempts[-1] if delivery.attempts else None
        fields = {
            "delivery_id": delivery.id,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "subscription_id": delivery.subscription_id,
            "url": _loggable_url(delivery.url),
            "mode": delivery.mode,
            "attempts": len(delivery.attempts),
            "last_status_code": last.status_code if last else None,
            "last_error": last.error if last else None,
            "reason": reason or "attempts exhausted",
        }
        log.warning(
            "webhook_delivery_failed %s",
            " ".join(f"{name}={value!r}" for name, value in fields.items()),
            extra={"webhook_delivery": fields},
        )
