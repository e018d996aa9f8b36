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


class Batcher(Generic[Item, Result]):
    """`submit` returns a future settled once `handle` has run over a batch holding the item.

    `handle(items)` returns one outcome per item, in order: a result, or an exception for that
    item alone; if it raises, every item of the batch fails with that exception. The thread is
    started on first use and again after a fork (gunicorn forks its workers; threads do not
    survive a fork).
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[Sequence[Item]], Sequence[Result | Exception]],
        *,
        max_batch: int,
    ) -> None:
        self._name = name
        self._handle = handle
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pid = 0
        self._items: queue.SimpleQueue[tuple[Item, Future[Result]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, item: Item) -> Future[Result]:
        future: Future[Result] = Future()
        self._running().put((item, future))
        return future

    def _running(self) -> queue.SimpleQueue[tuple[Item, Future[Result]] | None]:
        pid = os.getpid()
        if self._pid == pid:
            return self._items
        with self._lock:
            if self._pid != pid:
                self._items = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._items,), name=self._name, daemon=True
                )
                self._thread.start()
                self._pid = pid
        return self._items

    def close(self, timeout_s: float = 5.0) -> None:
        """Handle what is queued, then stop the thread (a later `submit` starts a new one)."""
        with self._lock:
            thread, items = self._thread, self._items
            if thread is None or self._pid != os.getpid():
                return
            items.put(None)
            self._thread, self._pid = None, 0
        thread.join(timeout_s)

    def _run(self, items: queue.SimpleQueue[tuple[Item, Future[Result]] | None]) -> None:
        stopping = False
        while not stopping:
            first = items.get()
            if first is None:
                return
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

    def _settle(self, batch: list[tuple[Item, Future[Result]]]) -> None:
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
