# mypy: disallow-untyped-calls=False
"""The worker: takes events from RabbitMQ or the embedded queue, applies them, acts on verdicts.

A pool of threads applies events (each waits mostly on the source's answer); the thread that
talks to the broker acks, publishes retries and dead letters, always after the verdict was
committed to the database. Beside it the outbox relay publishes events the receiver could not,
and queue depths are sampled for the metrics. SIGTERM or SIGINT: stop taking, finish what is in
hand, ack it, exit.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from kombu.message import Message
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from adapter.observability.event_metrics import EventMetrics
from adapter.queue.embedded import EmbeddedQueue
from adapter.queue.messages import BrokerUnavailable, EventMessage, EventPublisher, MalformedMessage
from adapter.queue.processor import EventProcessor, Verdict
from adapter.queue.rabbit import CONNECTION_ERRORS, RabbitConsumer, RabbitPublisher
from adapter.queue.topology import DEAD_ROUTING_KEY, QueueTopology
from adapter.webhooks.inbox import WebhookInbox, now
from adapter.webhooks.outbox import event_message, publish_events

log = logging.getLogger("adapter.worker")

RELAY_INTERVAL_S: Final = 1.0
RELAY_BATCH: Final = 500
# An unpublished event younger than this is the receiver's publishing thread's to publish; the
# relay takes it only after, so the two rarely publish the same event twice.
UNPUBLISHED_GRACE_S: Final = 5.0
DEPTH_INTERVAL_S: Final = 5.0
EMBEDDED_POLL_S: Final = 0.2
DRAIN_TIMEOUT_S: Final = 0.2
# While events are being applied, the broker thread looks for finished ones this often: a
# message is acked (and its prefetch slot freed) only by that thread, and with nothing arriving
# it would otherwise sleep the full DRAIN_TIMEOUT_S with every slot taken by finished work.
SETTLE_POLL_S: Final = 0.005
RECONNECT_DELAY_S: Final = 1.0


@dataclass
class WorkerStats:
    """What this worker did, for the progress line and the summary table."""

    applied: int = 0
    skipped: int = 0
    retried: int = 0
    dead_lettered: int = 0
    relayed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, verdict: Verdict) -> None:
        with self._lock:
            if verdict.kind == "done":
                self.applied += 1
                self.by_outcome[verdict.outcome] = self.by_outcome.get(verdict.outcome, 0) + 1
            elif verdict.kind == "skip":
                self.skipped += 1
            elif verdict.kind == "retry":
                self.retried += 1
            else:
                self.dead_lettered += 1

    def add_relayed(self, count: int) -> None:
        with self._lock:
            self.relayed += count

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


class OutboxRelay:
    """Publishes pending events the broker has not confirmed (or lost), oldest first."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        publisher: EventPublisher,
        *,
        republish_after_s: float,
        metrics: EventMetrics,
        stats: WorkerStats,
        unpublished_grace_s: float = UNPUBLISHED_GRACE_S,
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._republish_after_s = republish_after_s
        self._unpublished_grace_s = unpublished_grace_s
        self._metrics = metrics
        self._stats = stats
        self._broker_down = False

    def relay_once(self) -> int:
        """Publish one batch; the number published (0 when the broker is still away)."""
        with self._sessions() as session:
            rows = WebhookInbox(session).to_relay(
                limit=RELAY_BATCH,
                republish_before=now() - dt.timedelta(seconds=self._republish_after_s),
                unpublished_before=now() - dt.timedelta(seconds=self._unpublished_grace_s),
            )
            messages = [event_message(row) for row in rows]
        if not messages:
            return 0
        unavailable = publish_events(
            self._sessions, self._publisher, messages, path="relay", metrics=self._metrics
        )
        if unavailable is not None:
            if not self._broker_down:
                log.warning("outbox relay: broker unavailable (%s); retrying", unavailable.message)
            self._broker_down = True
            return 0
        if self._broker_down:
            log.info("outbox relay: broker back")
        self._broker_down = False
        self._stats.add_relayed(len(messages))
        return len(messages)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                published = self.relay_once()
            except SQLAlchemyError as exc:
                log.warning("outbox relay: database unavailable (%s)", type(exc).__name__)
                published = 0
            except Exception:  # the relay thread must outlive any one failure
                log.exception("outbox relay: unexpected error")
                published = 0
            if published < RELAY_BATCH:
                stop.wait(RELAY_INTERVAL_S)


class Worker:
    def __init__(
        self,
        *,
        processor: EventProcessor,
        sessions: sessionmaker[Session],
        metrics: EventMetrics,
        concurrency: int,
        stats: WorkerStats | None = None,
    ) -> None:
        self._processor = processor
        self._sessions = sessions
        self._metrics = metrics
        self._concurrency = concurrency
        self.stats = stats if stats is not None else WorkerStats()
        self.stop_event = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="hf-event")
        self._last_depths = 0.0
        # Until then, retry and dead-letter publishes are not tried (the last one failed).
        self._publishes_held_until = 0.0

    def stop(self) -> None:
        self.stop_event.set()

    def _apply(self, event_id: Any, unfinished: int, from_broker: bool = False) -> Verdict:
        try:
            verdict = self._processor.process(
                event_id, unfinished_deliveries=unfinished, from_broker=from_broker
            )
        except SQLAlchemyError as exc:
            # The database went away mid-event: nothing was committed; the event comes back.
            log.warning("event %s: database unavailable (%s)", event_id, type(exc).__name__)
            verdict = Verdict("retry", "retry", delay_s=RECONNECT_DELAY_S, reason="database")
        except Exception:  # one bad event must not stop the worker
            log.exception("event %s: unexpected error; it will be delivered again", event_id)
            verdict = Verdict("retry", "retry", delay_s=RECONNECT_DELAY_S, reason="unexpected")
        self.stats.count(verdict)
        return verdict

    def _sample_depths(self, extra: Callable[[], dict[str, int]] | None = None) -> None:
        if time.monotonic() - self._last_depths < DEPTH_INTERVAL_S:
            return
        self._last_depths = time.monotonic()
        # The inbox's and the broker's depths each on their own: the outbox's depth matters
        # most while the broker is away (HfWebhookOutboxStuck), so it never waits for it.
        for source in (self._inbox_depths, extra):
            if source is None:
                continue
            try:
                depths = source()
            except (SQLAlchemyError, *CONNECTION_ERRORS) as exc:
                log.debug("queue depths unavailable: %s", type(exc).__name__)
                continue
            for queue, depth in depths.items():
                self._metrics.queue_depth.labels(queue).set(depth)

    def _inbox_depths(self) -> dict[str, int]:
        with self._sessions() as session:
            return WebhookInbox(session).depths()

    # -- the embedded queue -----------------------------------------------------------------

    def run_embedded(self, queue: EmbeddedQueue) -> None:
        try:
            while not self.stop_event.is_set():
                self._sample_depths()
                try:
                    batch = queue.take(self._concurrency * 2)
                except SQLAlchemyError as exc:
                    log.warning("embedded queue: database unavailable (%s)", type(exc).__name__)
                    self.stop_event.wait(RECONNECT_DELAY_S)
                    continue
                if not batch:
                    self.stop_event.wait(EMBEDDED_POLL_S)
                    continue
                futures = [
                    self._pool.submit(self._apply, event.id, unfinished)
                    for event, unfinished in batch
                ]
                for future in futures:
                    future.result()
        finally:
            self._pool.shutdown(wait=True)

    # -- RabbitMQ ---------------------------------------------------------------------------

    def run_rabbit(
        self,
        consumer: RabbitConsumer,
        publisher: RabbitPublisher,
        topology: QueueTopology,
        relay: OutboxRelay,
    ) -> None:
        relay_thread = threading.Thread(
            target=relay.run, args=(self.stop_event,), name="hf-outbox-relay", daemon=True
        )
        relay_thread.start()
        in_flight: list[tuple[Message, Future[Verdict] | None]] = []

        def on_message(body: Any, message: Message) -> None:
            try:
                event = EventMessage.from_body(body)
            except MalformedMessage as exc:
                log.error("dead-lettering a malformed message: %s", exc.message)
                in_flight.append((message, None))
                return
            # Redeliveries by RabbitMQ happen only when a worker took the message and never
            # acked it (crash, kill, lost connection): they count toward the delivery limit.
            headers = message.headers or {}
            unfinished = int(headers.get("x-delivery-count") or 0)
            in_flight.append(
                (message, self._pool.submit(self._apply, event.event_id, unfinished, True))
            )

        try:
            while not self.stop_event.is_set():
                if not consumer.connected:
                    try:
                        consumer.connect(on_message)
                        log.info("worker connected to the broker")
                    except CONNECTION_ERRORS as exc:
                        log.warning("broker unavailable (%s); retrying", type(exc).__name__)
                        self._sample_depths()  # the outbox fills meanwhile: say so
                        self.stop_event.wait(RECONNECT_DELAY_S)
                        continue
                try:
                    busy = in_flight and time.monotonic() >= self._publishes_held_until
                    consumer.drain(SETTLE_POLL_S if busy else DRAIN_TIMEOUT_S)
                    in_flight = self._settle(in_flight, publisher, topology, wait=False)
                    self._sample_depths(consumer.queue_depths)
                except (BrokerUnavailable, *CONNECTION_ERRORS) as exc:
                    log.warning("lost the broker (%s); reconnecting", type(exc).__name__)
                    # Unacked messages come back to a worker: the inbox guard skips done ones.
                    for _, future in in_flight:
                        if future is not None:
                            future.result()
                    in_flight = []
                    consumer.close()
            # Stopping: finish and settle what is in hand, then leave.
            try:
                self._settle(in_flight, publisher, topology, wait=True)
            except (BrokerUnavailable, *CONNECTION_ERRORS) as exc:
                log.warning("could not ack on the way out (%s); redelivered", type(exc).__name__)
        finally:
            self.stop_event.set()
            relay_thread.join(timeout=5)
            self._pool.shutdown(wait=True)
            consumer.close()
            publisher.close()

    def _settle(
        self,
        in_flight: list[tuple[Message, Future[Verdict] | None]],
        publisher: RabbitPublisher,
        topology: QueueTopology,
        *,
        wait: bool,
    ) -> list[tuple[Message, Future[Verdict] | None]]:
        """Ack (after any retry or dead-letter publish) the messages whose verdict is in."""
        waiting: list[tuple[Message, Future[Verdict] | None]] = []
        for message, future in in_flight:
            if future is None:
                message.reject(requeue=False)  # to the dead-letter exchange
                continue
            if not wait and not future.done():
                waiting.append((message, future))
                continue
            verdict = future.result()
            if verdict.kind in ("retry", "dead"):
                if not wait and time.monotonic() < self._publishes_held_until:
                    waiting.append((message, future))  # held: its publish is tried again soon
                    continue
                event = EventMessage.from_body(message.payload)
                try:
                    if verdict.kind == "retry":
                        publisher.publish_to(
                            [event],
                            exchange="retry",
                            routing_key=topology.retry_routing_key(
                                min(verdict.tier, len(topology.retry_delays_s) - 1)
                            ),
                            expiration_s=verdict.delay_s,
                        )
                    else:
                        publisher.publish_to([event], exchange="dead", routing_key=DEAD_ROUTING_KEY)
                except BrokerUnavailable as exc:
                    if wait:  # leaving: not acked, so it comes back to a worker; the rest go on
                        log.warning(
                            "could not publish the %s of %s: %s; it is delivered again",
                            verdict.kind,
                            event.event_id,
                            exc,
                        )
                        continue
                    # The publish failed, not the consumer: the message stays unacked in hand
                    # (its slot of the prefetch taken) and its publish is tried again after
                    # RECONNECT_DELAY_S. Closing the consumer here made the broker deliver
                    # every message in hand again, and reconnect, for as long as the
                    # publishes failed.
                    log.warning(
                        "could not publish the %s of %s: %s; held, tried again in %.0f s",
                        verdict.kind,
                        event.event_id,
                        exc,
                        RECONNECT_DELAY_S,
                    )
                    self._publishes_held_until = time.monotonic() + RECONNECT_DELAY_S
                    waiting.append((message, future))
                    continue
            message.ack()
        return waiting
