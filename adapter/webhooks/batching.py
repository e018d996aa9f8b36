"""`Batcher`: many threads hand over one item each; one thread per process handles them in batches.

Group commit of inbox rows and batched publisher confirms have this shape: the costly step (a
commit's fsync, a broker's confirm) is paid once per batch instead of once per request. There is
no timer: a batch is whatever queued while the previous one ran, so a lone request waits for
nothing but its own work.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger("adapter.webhooks")

Item = TypeVar("Item")
Result = TypeVar("Result")


class BatcherFull(RuntimeError):
    """`submit` found `max_queued` items already waiting; the item was not taken."""


class BatcherStopped(RuntimeError):
    """The item will never be handled: the batcher was closed, or its thread died."""


class Batcher(Generic[Item, Result]):
    """`submit` returns a future settled once `handle` has run over a batch holding the item.

    `handle(items)` returns one outcome per item, in order: a result, or an exception for that
    item alone; if it raises, every item of the batch fails with that exception. The thread is
    started on first use, again after a fork (gunicorn forks its workers; threads do not
    survive a fork) and again after it died; a future is always settled, if need be with
    `BatcherStopped`. `max_queued` (0: no bound) caps the items waiting. A waiter that stops
    waiting cancels its future (`Future.cancel`): if the item's batch has not started, the item
    is dropped, and `cancel` says so.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[Sequence[Item]], Sequence[Result | Exception]],
        *,
        max_batch: int,
        max_queued: int = 0,
    ) -> None:
        self._name = name
        self._handle = handle
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._lock = threading.Lock()
        self._closed = False
        self._pid = 0
        self._items: queue.Queue[tuple[Item, Future[Result]] | None] = queue.Queue(max_queued)
        self._thread: threading.Thread | None = None

    def submit(self, item: Item) -> Future[Result]:
        """Queue `item`; `BatcherStopped` once closed, `BatcherFull` when the queue is full."""
        future: Future[Result] = Future()
        with self._lock:
            # Under the lock, so no item can queue behind the stop marker `close` puts.
            if self._closed:
                raise BatcherStopped(f"{self._name} is closed")
            try:
                self._running().put_nowait((item, future))
            except queue.Full:
                raise BatcherFull(f"{self._name}: {self._max_queued} items waiting") from None
        return future

    def _running(self) -> queue.Queue[tuple[Item, Future[Result]] | None]:
        # Called under the lock. A thread that died has already failed what its queue held.
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            self._items = queue.Queue(self._max_queued)
            self._thread = threading.Thread(
                target=self._run, args=(self._items,), name=self._name, daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()
        return self._items

    def close(self, timeout_s: float = 5.0) -> None:
        """Handle what is queued, then stop the thread; a later `submit` gets `BatcherStopped`."""
        with self._lock:
            self._closed = True
            thread, items = self._thread, self._items
            if thread is None or self._pid != os.getpid():
                return
            self._thread, self._pid = None, 0
        # Outside the lock (a dying thread takes it): waits only while a bounded queue is full.
        try:
            items.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("%s: still full after %.0f s; not waiting for it", self._name, timeout_s)
            return
        thread.join(timeout_s)

    def _run(self, items: queue.Queue[tuple[Item, Future[Result]] | None]) -> None:
        batch: list[tuple[Item, Future[Result]]] = []
        try:
            stopping = False
            while not stopping:
                first = items.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        waiting = items.get_nowait()
                    except queue.Empty:
                        break
                    if waiting is None:
                        stopping = True
                        break
                    batch.append(waiting)
                self._settle(batch)
                batch = []
        except BaseException as exc:  # no waiter may wait for a dead thread
            log.exception(
                "%s: the batch thread stopped; the next item starts a new one", self._name
            )
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
                for _, future in [*batch, *_drain(items)]:
                    if not future.done():
                        stopped = BatcherStopped(f"{self._name} stopped: {type(exc).__name__}")
                        stopped.__cause__ = exc
                        future.set_exception(stopped)
            return
        # Closed: nothing should be queued behind the marker; anything that is, is failed.
        for _, future in _drain(items):
            if not future.done():  # a cancelled one is done
                future.set_exception(BatcherStopped(f"{self._name} is closed"))

    def _settle(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        # A waiter that gave up and cancelled its future is left out: its item is not handled.
        # The others cannot be cancelled from here on.
        batch = [entry for entry in batch if entry[1].set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            outcomes = self._handle([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - passed on to every waiter, who raises it
            # Whoever waits gets the error (the view maps it); logged here once for the batch.
            log.warning("%s: a batch of %d failed: %s", self._name, len(batch), type(exc).__name__)
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _drain(
    items: queue.Queue[tuple[Item, Future[Result]] | None],
) -> list[tuple[Item, Future[Result]]]:
    drained: list[tuple[Item, Future[Result]]] = []
    while True:
        try:
            entry = items.get_nowait()
        except queue.Empty:
            return drained
        if entry is not None:
            drained.append(entry)
