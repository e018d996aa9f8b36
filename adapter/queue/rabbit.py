# mypy: disallow-untyped-calls=False
"""RabbitMQ through kombu: a confirming publisher (one connection per thread) and a consumer.

Messages are persistent and published with publisher confirms, so `publish` returning means the
broker has them on disk (quorum queues: on a majority). A batch is published whole, then its
confirms are awaited together: one wait for the broker's disk write per batch, not per message.
The consumer acks only after the worker committed the outcome to the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import amqp.exceptions
import kombu.exceptions
from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.message import Message
from kombu.messaging import Consumer, Producer

from adapter.queue.messages import BrokerUnavailable, EventMessage
from adapter.queue.topology import DEAD_ROUTING_KEY, EVENT_ROUTING_KEY, QueueTopology

log = logging.getLogger("adapter.queue")

CONNECT_TIMEOUT_S: Final = 2.0
CONFIRM_TIMEOUT_S: Final = 5.0
# After a failed connect, publishers wait this long before trying again: a broker outage
# must not add a connect timeout to every webhook (the outbox keeps the events meanwhile).
PAUSE_AFTER_FAILURE_S: Final = 1.0
HEARTBEAT_S: Final = 30
# Errors that mean "the broker is not there or dropped us" (kombu and py-amqp spell them apart).
CONNECTION_ERRORS: Final = (
    OSError,
    kombu.exceptions.OperationalError,
    amqp.exceptions.ConnectionError,
    amqp.exceptions.ChannelError,
    amqp.exceptions.RecoverableConnectionError,
    amqp.exceptions.MessageNacked,
)


def open_connection(url: str) -> Connection:
    return Connection(url, connect_timeout=CONNECT_TIMEOUT_S, heartbeat=HEARTBEAT_S)


class Unroutable(Exception):
    """The broker confirmed a publish that no queue took (a queue deleted, say)."""


class PublisherConfirms:
    """The confirms of one channel in confirm mode, awaited for a whole batch at once.

    RabbitMQ numbers a confirm-mode channel's publishes 1, 2, 3 … and acks (or nacks) them,
    one tag or every tag up to one (``multiple``), in any order. Publishes are mandatory: one
    that no queue takes comes back (``basic.return``) before its ack, which alone would say
    nothing of it — the broker acks a message it dropped for want of a queue.
    """

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._published = 0
        self._unconfirmed: set[int] = set()
        self._nacked = False
        self._returned: list[str] = []
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)

    def published(self) -> None:
        self._published += 1
        self._unconfirmed.add(self._published)

    def wait(self, timeout_s: float) -> None:
        """Return once the broker confirmed every message so far; raise if it refused one."""
        deadline = time.monotonic() + timeout_s
        while self._unconfirmed and not self._nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("publisher confirms not received in time")
            self._channel.connection.drain_events(timeout=remaining)
        if self._nacked:
            raise amqp.exceptions.MessageNacked()
        if self._returned:
            raise Unroutable(
                f"{len(self._returned)} message(s) reached no queue: {self._returned[0]}"
            )

    def _settle(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {tag for tag in self._unconfirmed if tag > delivery_tag}
        else:
            self._unconfirmed.discard(delivery_tag)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)
        self._nacked = True

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self._returned.append(f"exchange {exchange!r}, routing key {routing_key!r} ({exc})")


def declare_topology(connection: Connection, topology: QueueTopology) -> None:
    """Declare the exchanges and queues (idempotent; the same arguments every time)."""
    channel = connection.default_channel
    for exchange in (topology.events_exchange, topology.retry_exchange, topology.dead_exchange):
        exchange(channel).declare()
    for queue in topology.all_queues:
        queue(channel).declare()


def message_properties(message: EventMessage) -> dict[str, Any]:
    return {
        "delivery_mode": 2,  # persistent
        "message_id": str(message.event_id),
        "headers": {"traceparent": message.traceparent} if message.traceparent else {},
    }


class RabbitPublisher:
    """`EventPublisher` for RabbitMQ; thread-safe (a connection per thread)."""

    needs_relay = True

    def __init__(self, url: str, topology: QueueTopology) -> None:
        self._url = url
        self._topology = topology
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._declared = False

    def _producer(self) -> Producer:
        producer: Producer | None = getattr(self._local, "producer", None)
        if producer is not None:
            return producer
        connection = open_connection(self._url)
        try:
            connection.ensure_connection(max_retries=1)
            if not self._declared:
                declare_topology(connection, self._topology)
                self._declared = True
            channel = connection.channel()
            self._local.confirms = PublisherConfirms(channel)
        except BaseException:
            # Not kept: closed here, or every failed set-up (a queue declared with other
            # arguments, say) would leave one more connection open at the broker.
            _close_quietly(connection)
            raise
        producer = Producer(channel, serializer="json")
        self._local.connection = connection
        self._local.producer = producer
        with self._lock:
            self._connections.append(connection)
        return producer

    def _drop_connection(self) -> None:
        connection: Connection | None = getattr(self._local, "connection", None)
        self._local.producer = None
        self._local.connection = None
        if connection is not None:
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)
            _close_quietly(connection)

    def publish(self, messages: Sequence[EventMessage], *, path: str) -> None:
        self.publish_to(messages, exchange="events", routing_key=EVENT_ROUTING_KEY)

    def publish_to(
        self,
        messages: Sequence[EventMessage],
        *,
        exchange: str,
        routing_key: str,
        expiration_s: float | None = None,
    ) -> None:
        if time.monotonic() < self._paused_until:
            raise BrokerUnavailable("the broker was unreachable a moment ago; kept in the outbox")
        target = {
            "events": self._topology.events_exchange,
            "retry": self._topology.retry_exchange,
            "dead": self._topology.dead_exchange,
        }[exchange]
        # A connection this thread kept from an earlier batch may have been closed meanwhile
        # (the broker closes one idle past two heartbeats: nothing sends them between
        # batches; a broker restart): it is replaced and the batch sent again at once, not
        # the broker called unreachable. A message sent twice is applied once (the inbox).
        kept = getattr(self._local, "producer", None) is not None
        again = True  # one more try at once, after a kept connection closed or no queue took it
        while True:
            try:
                self._send(messages, target, routing_key, expiration_s)
                return
            except (*CONNECTION_ERRORS, Unroutable) as exc:
                self._drop_connection()
                # Declared again with the next connection: an exchange or queue deleted
                # meanwhile (a 404 closes the channel; a message no queue took comes back)
                # is back for the next try.
                self._declared = False
                if again and isinstance(exc, Unroutable):
                    again = False
                    log.warning("publisher: %s; declaring the queues again", exc)
                    continue
                if (
                    again
                    and kept
                    and not isinstance(exc, TimeoutError | amqp.exceptions.MessageNacked)
                ):
                    again = False
                    log.info("publisher: a kept connection was closed (%s); reconnecting", exc)
                    continue
                self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
                raise BrokerUnavailable(f"RabbitMQ: {type(exc).__name__}: {exc}") from None

    def _send(
        self,
        messages: Sequence[EventMessage],
        target: Exchange,
        routing_key: str,
        expiration_s: float | None,
    ) -> None:
        producer = self._producer()
        confirms: PublisherConfirms = self._local.confirms
        for message in messages:
            extra: dict[str, Any] = {}
            if expiration_s is not None:
                extra["expiration"] = expiration_s
            producer.publish(
                message.to_body(),
                exchange=target,
                routing_key=routing_key,
                retry=False,
                mandatory=True,
                **message_properties(message),
                **extra,
            )
            confirms.published()
        confirms.wait(CONFIRM_TIMEOUT_S)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            _close_quietly(connection)


class RabbitConsumer:
    """Receives event messages from the events queue on one connection (one thread)."""

    def __init__(self, url: str, topology: QueueTopology, *, prefetch: int) -> None:
        self._url = url
        self._topology = topology
        self._prefetch = prefetch
        self._connection: Connection | None = None
        self._consumer: Consumer | None = None

    def connect(self, on_message: Callable[[Any, Message], None]) -> None:
        self.close()
        connection = open_connection(self._url)
        connection.ensure_connection(max_retries=1)
        declare_topology(connection, self._topology)
        channel = connection.channel()
        consumer = Consumer(
            channel,
            queues=[self._topology.events_queue],
            callbacks=[on_message],
            accept=["json"],
            prefetch_count=self._prefetch,
            on_decode_error=_dead_letter_undecodable,
        )
        consumer.consume()
        self._connection = connection
        self._consumer = consumer

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def drain(self, timeout_s: float) -> None:
        """Deliver waiting messages to the callback; returns after `timeout_s` without one."""
        assert self._connection is not None
        try:
            self._connection.drain_events(timeout=timeout_s)
        except TimeoutError:
            self._connection.heartbeat_check()

    def queue_depths(self) -> dict[str, int]:
        """Messages ready in each queue (passive declares on the consumer's connection)."""
        assert self._connection is not None
        channel = self._connection.default_channel
        depths: dict[str, int] = {}
        for queue in self._topology.all_queues:
            declared = channel.queue_declare(queue=queue.name, passive=True)
            depths[queue.name] = int(declared.message_count)
        return depths

    def close(self) -> None:
        if self._connection is not None:
            _close_quietly(self._connection)
        self._connection = None
        self._consumer = None


def _dead_letter_undecodable(message: Message, exc: Exception) -> None:
    """A body kombu cannot decode (not JSON, or a content type other than JSON) goes to the
    dead-letter queue. Raised instead, it left `drain_events`, stopped the worker, and came
    back unacked to the next worker, which stopped too."""
    log.error(
        "dead-lettering a message that cannot be decoded (%s; content type %s)",
        type(exc).__name__,
        str(message.content_type)[:100],
    )
    message.reject(requeue=False)


def _close_quietly(connection: Connection) -> None:
    try:
        connection.release()
    except CONNECTION_ERRORS as exc:
        log.debug("closing a broken broker connection: %s", exc)


__all__ = [
    "DEAD_ROUTING_KEY",
    "RabbitConsumer",
    "RabbitPublisher",
    "declare_topology",
    "open_connection",
]
