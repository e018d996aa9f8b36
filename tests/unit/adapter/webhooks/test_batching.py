"""`Batcher`: what queues while a batch is handled is handled together next; errors reach the
right waiters."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from adapter.webhooks.batching import Batcher, BatcherFull, BatcherStopped


class GatedHandler:
    """Records each batch; the first batch waits until the test opens the gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.gate = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.started.set()
        self.gate.wait(10)
        return [ValueError(f"odd {item}") if item % 2 else item * 10 for item in items]


def test_items_queued_during_a_batch_are_handled_together_next() -> None:
    handler = GatedHandler()
    batcher: Batcher[int, int] = Batcher("test-batcher", handler, max_batch=100)
    try:
        first = batcher.submit(0)
        assert handler.started.wait(10)
        waiting = [batcher.submit(item) for item in (2, 4, 6)]
        handler.gate.set()
        assert first.result(10) == 0
        assert [future.result(10) for future in waiting] == [20, 40, 60]
    finally:
        batcher.close()
    assert handler.batches == [[0], [2, 4, 6]]


def test_a_batch_is_cut_at_max_batch() -> None:
    handler = GatedHandler()
    batcher: Batcher[int, int] = Batcher("test-batcher", handler, max_batch=2)
    try:
        first = batcher.submit(0)
        assert handler.started.wait(10)
        waiting = [batcher.submit(item) for item in (2, 4, 6)]
        handler.gate.set()
        for future in (first, *waiting):
            future.result(10)
    finally:
        batcher.close()
    assert handler.batches == [[0], [2, 4], [6]]


def test_an_item_error_fails_only_that_item() -> None:
    handler = GatedHandler()
    handler.gate.set()
    batcher: Batcher[int, int] = Batcher("test-batcher", handler, max_batch=100)
    try:
        futures = [batcher.submit(item) for item in (2, 3)]
        assert futures[0].result(10) == 20
        with pytest.raises(ValueError, match="odd 3"):
            futures[1].result(10)
    finally:
        batcher.close()


def test_a_failed_batch_fails_every_waiter_and_the_thread_goes_on() -> None:
    calls: list[list[int]] = []

    def handle(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            raise ConnectionError("database away")
        return list(items)

    batcher: Batcher[int, int] = Batcher("test-batcher", handle, max_batch=100)
    try:
        with pytest.raises(ConnectionError):
            batcher.submit(1).result(10)
        assert batcher.submit(2).result(10) == 2
    finally:
        batcher.close()


class ThreadKilled(BaseException):
    """Not an `Exception`: escapes `handle`'s error path like a SystemExit would."""


@pytest.mark.parametrize(
    "fault",
    [
        ThreadKilled("gone"),
        None,  # `handle` returns one outcome too few: the thread fails outside `handle`
    ],
    ids=["base-exception", "wrong-outcome-count"],
)
def test_a_dead_batch_thread_fails_its_waiters_and_the_next_item_restarts_it(
    fault: BaseException | None,
) -> None:
    calls: list[list[int]] = []

    def handle(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            if fault is not None:
                raise fault
            return []
        return list(items)

    batcher: Batcher[int, int] = Batcher("test-batcher", handle, max_batch=100)
    try:
        with pytest.raises(BatcherStopped):
            batcher.submit(1).result(10)
        assert batcher.submit(2).result(10) == 2
    finally:
        batcher.close()


def test_items_queued_before_close_are_handled_and_later_ones_refused() -> None:
    handler = GatedHandler()
    batcher: Batcher[int, int] = Batcher("test-batcher", handler, max_batch=100)
    first = batcher.submit(0)
    assert handler.started.wait(10)
    queued = batcher.submit(2)
    closing = threading.Thread(target=batcher.close)
    closing.start()
    try:
        with pytest.raises(BatcherStopped):
            batcher.submit(4)
    finally:
        handler.gate.set()
        closing.join(10)
    assert (first.result(10), queued.result(10)) == (0, 20)
    assert handler.batches == [[0], [2]]


def test_a_full_queue_refuses_the_item_at_once() -> None:
    handler = GatedHandler()
    batcher: Batcher[int, int] = Batcher("test-batcher", handler, max_batch=100, max_queued=2)
    try:
        first = batcher.submit(0)
        assert handler.started.wait(10)  # taken off the queue: two more fit
        waiting = [batcher.submit(2), batcher.submit(4)]
        with pytest.raises(BatcherFull):
            batcher.submit(6)
        handler.gate.set()
        assert [future.result(10) for future in (first, *waiting)] == [0, 20, 40]
    finally:
        handler.gate.set()
        batcher.close()


def test_an_item_cancelled_before_its_batch_starts_is_never_handled() -> None:
    handler = GatedHandler()
    batcher: Batcher[int, int] = Batcher("test-batcher", handler, max_batch=100)
    try:
        first = batcher.submit(0)
        assert handler.started.wait(10)
        given_up, kept = batcher.submit(2), batcher.submit(4)
        assert given_up.cancel()
        assert not first.cancel()  # its batch is under way
        handler.gate.set()
        assert (first.result(10), kept.result(10)) == (0, 40)
    finally:
        handler.gate.set()
        batcher.close()
    assert handler.batches == [[0], [4]]
    assert given_up.cancelled()


def test_cancelled_items_left_at_close_are_not_failed_again() -> None:
    handler = GatedHandler()
    batcher: Batcher[int, int] = Batcher("test-batcher", handler, max_batch=100)
    first = batcher.submit(0)
    assert handler.started.wait(10)
    given_up = batcher.submit(2)
    assert given_up.cancel()
    closing = threading.Thread(target=batcher.close)
    closing.start()
    handler.gate.set()
    closing.join(10)
    assert not closing.is_alive()
    assert first.result(10) == 0
    assert given_up.cancelled()
    assert handler.batches == [[0]]
