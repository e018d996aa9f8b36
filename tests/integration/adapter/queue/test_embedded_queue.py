"""Without BROKER_URL: `serve` and `worker` processes share the embedded queue (the inbox in a
SQLite file), with the same retry, dead-letter and crash semantics as RabbitMQ."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import adapter_stack, emit, hang_fetches_after

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 200


def sqlite_url(tmp_path: Path) -> URL:
    return URL.create("sqlite", database=str(tmp_path / "var" / "hf-adapter.sqlite3"))


def test_embedded_queue_survives_a_killed_worker_and_applies_each_event_once(
    tmp_path: Path, mocks: tuple[Mock, Mock]
) -> None:
    kki, sisdmk = mocks
    with adapter_stack(sqlite_url(tmp_path), kki, sisdmk, broker=None) as adapter:
        assert "BROKER_URL" not in adapter.environment
        emitted = emit(kki, "training.completed", count=BATCH // 2)["events"]
        emitted += emit(sisdmk, "education.added", count=BATCH // 2)["events"]
        # Fetches after the 25th of each source hang: the first worker cannot have applied
        # every event when the test kills it, however slow the machine. The kill comes once 20
        # are done, which the 25 answered fetches reach before any hang can hold them up.
        for mock, route in ((kki, "getRegistration"), (sisdmk, "getHealthWorker")):
            hang_fetches_after(mock, route, 25)
        first = adapter.start_worker(concurrency=4)
        adapter.wait_for(lambda: adapter.counts().get("done", 0) >= 20, what="20 events done")
        first.signal(signal.SIGKILL)  # its leased events come back when the lease ends
        first.process.wait(timeout=10)  # type: ignore[union-attr]
        assert adapter.counts().get("done", 0) < BATCH
        for mock in (kki, sisdmk):
            mock.admin.delete("/faults").raise_for_status()
        adapter.start_worker(concurrency=4)
        adapter.wait_for(lambda: adapter.counts().get("done", 0) == BATCH, what="every event")
        events = adapter.events()
        assert {event.webhook_id for event in events} == {e["event_id"] for e in emitted}
        assert {(event.state, event.applied_count) for event in events} == {("done", 1)}


def test_embedded_queue_retries_dead_letters_and_replays(
    tmp_path: Path, mocks: tuple[Mock, Mock]
) -> None:
    kki, sisdmk = mocks
    with adapter_stack(sqlite_url(tmp_path), kki, sisdmk, broker=None) as adapter:
        adapter.start_worker(concurrency=2)
        # No Retry-After: the retry tiers and the breaker pace the attempts, not the source.
        kki.fault({"route": "getRegistration", "kind": "error", "status": 503, "retry_after_s": 0})
        emit(kki, "sip.recorded")
        adapter.wait_for(lambda: adapter.counts().get("failed", 0) == 1, what="a dead letter")
        (failed,) = adapter.events()
        assert (failed.attempts, failed.applied_count) == (4, 0)
        status, output = adapter.cli("events", "show", str(failed.id))
        assert status == 0
        assert "failed" in output

        kki.admin.delete("/faults").raise_for_status()
        status, output = adapter.cli("events", "replay", "--all")
        assert status == 0, output
        adapter.wait_for(lambda: adapter.counts().get("done", 0) == 1, what="the replayed event")

        # A purge needs a failed event and a reason; a done event is left alone.
        status, output = adapter.cli("events", "purge", str(failed.id), "--reason", "test")
        assert status == 1
        (done,) = adapter.events()
        assert (done.state, done.applied_count, done.replays) == ("done", 1, 1)
