"""The storm: KKI changes statuses steadily (rapid flips of the same few STRs among them) and
sends its webhooks to `hf-adapter serve`; `hf-adapter worker` applies them with 16 threads
through RabbitMQ into PostgreSQL; two full batch syncs run meanwhile; serve and the worker are
each SIGKILLed and restarted at random moments. Once all is quiet the store equals KKI for every
STR, no write ever took a version back, and no event was lost or dead-lettered.

The seed of the plan (which STRs flip, where the kills fall) is drawn per run and named in every
failure; ``HF_STORM_SEED`` repeats a plan (the timing of the processes never repeats exactly).
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from harness.processes import ManagedProcess
from tests.integration.adapter.consistency.support import (
    assert_never_backwards,
    event_consumers,
    finish,
    kki_registrations,
    labelled,
    mock_process,
    queue_depths,
    quiescent,
    record_registration_writes,
    start_sync,
    sync_progress,
    unfinished_deliveries,
    wait_until,
)
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import (
    Adapter,
    delete_topology,
    deliveries,
    migrated_engine,
    stack_environment,
    subscribe,
    unique_prefix,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

log = logging.getLogger(__name__)

REGISTRATIONS = 2000
CHANGES = 500
# At most this many changes per second at KKI.
RATE = 20.0
# A few STRs flip again and again, in turn, once or twice at once (each a few times a second
# at full speed); the other changes fall on any STR. Two worker threads holding two versions
# of one STR, or a sync page and the worker, then meet on the same row.
HOT = 4
HOT_SHARE = 0.6
BURST = (1, 2)
# Outside the syncs KKI waits for the adapter while this many of its events are unapplied, so
# the storm keeps to the machine's pace (the worker lags by seconds, not minutes); during a
# sync it goes on regardless, so the worker stores new versions while the sync's pages run.
BACKLOG = 60
CONCURRENCY = 16
KILLS = 3  # of serve, and as many of the worker
PAGE_SIZE = 250
# Where the full syncs start and the span the kills fall in (shares of the changes made);
# from LATE on the storm waits until the second sync has started.
SYNC_AT = (0.15, 0.5)
KILL_SPAN = (0.05, 0.85)
LATE = 0.9
# The mock retries a delivery for ~35 s (20 attempts, full jitter up to 5 s apart): longer
# than serve needs to come back on a busy machine (up to 20 s seen).
STORM_WEBHOOKS = [
    "--webhook-max-attempts",
    "20",
    "--webhook-base-delay-ms",
    "100",
    "--webhook-max-delay-ms",
    "5000",
]
ACTIVE, SUSPENDED = "AKTIF", "NONAKTIF_SEMENTARA"
# A flip between the two fires registration.status_changed and the specific event of the new
# status: each change is two events at KKI and two rows in the inbox.
SPECIFIC_EVENT = {SUSPENDED: "registration.suspended", ACTIVE: "registration.reinstated"}
APPLIED = frozenset({"updated", "unchanged", "superseded"})


@pytest.fixture(scope="module")
def kki_mock() -> Iterator[Mock]:
    with mock_process("kki", size=REGISTRATIONS, seed=31, extra=STORM_WEBHOOKS) as mock:
        yield mock


@pytest.fixture(scope="module")
def sisdmk_mock() -> Iterator[Mock]:
    with mock_process("sisdmk", size=10, seed=31) as mock:
        yield mock


@pytest.fixture
def seed() -> int:
    given = os.environ.get("HF_STORM_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


class KkiChanges:
    """The storm's changes at KKI, one at a time, and what each made there."""

    def __init__(self, kki: Mock, statuses: dict[str, str], rng: random.Random) -> None:
        self.kki = kki
        self.rng = rng
        self.status = dict(statuses)
        self.eligible = sorted(statuses)
        self.hot = itertools.cycle(rng.sample(self.eligible, HOT))
        self.status_of: dict[tuple[str, int], str] = {}
        # (STR, version, event type) of every event the changes fired.
        self.events: set[tuple[str, int, str]] = set()
        self.made = 0

    def burst(self) -> list[str]:
        """The next STRs to flip: a hot STR's turn, or one change of any STR."""
        if self.rng.random() < HOT_SHARE:
            burst = [next(self.hot)] * self.rng.randint(*BURST)
        else:
            burst = [self.rng.choice(self.eligible)]
        return burst[: CHANGES - self.made]

    def flip(self, number: str) -> None:
        status = SUSPENDED if self.status[number] == ACTIVE else ACTIVE
        doc = self.kki.patch(
            "registrations",
            number,
            {"certification": {"status": status, "status_reason": f"storm: {status.lower()}"}},
        )
        version = int(doc["version"])
        self.status[number] = status
        self.status_of[(number, version)] = status
        self.events |= {
            (number, version, "registration.status_changed"),
            (number, version, SPECIFIC_EVENT[status]),
        }
        self.made += 1


class FullSyncs:
    """The storm's full syncs, each started when due (`SYNC_AT`) once the one before ended."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.started: list[ManagedProcess] = []

    @property
    def running(self) -> bool:
        return bool(self.started) and self.started[-1].is_running()

    def poll(self, made: int) -> None:
        due = len(self.started) < len(SYNC_AT) and made >= SYNC_AT[len(self.started)] * CHANGES
        if due and not self.running:
            self.started.append(start_sync(self.adapter, page_size=PAGE_SIZE))


class Chaos:
    """SIGKILLs serve and the worker (`KILLS` times each, in a random order) at random points
    of the storm, restarting each at once; runs in a thread of its own."""

    def __init__(self, adapter: Adapter, broker: str, prefix: str, rng: random.Random) -> None:
        self.adapter = adapter
        self.broker = broker
        self.prefix = prefix
        self.rng = rng
        points = sorted(round(rng.uniform(*KILL_SPAN) * CHANGES) for _ in range(2 * KILLS))
        targets = ["serve"] * KILLS + ["worker"] * KILLS
        rng.shuffle(targets)
        self.schedule = list(zip(points, targets, strict=True))
        self.begun = 0
        self.done: list[str] = []
        self.killed: list[ManagedProcess] = []

    def due(self, made: int) -> int:
        """Kills whose point the storm has reached."""
        return sum(1 for at, _ in self.schedule if at <= made)

    def run(self, changes: KkiChanges, stop: threading.Event) -> None:
        for at, target in self.schedule:
            while changes.made < at:
                if stop.wait(0.02):
                    return
            self.begun += 1
            if target == "serve":
                self._restart_serve()
            else:
                self._restart_worker()
            self.done.append(f"{target} at change {at}")

    def _restart_serve(self) -> None:
        assert self.adapter.server is not None
        self._kill(self.adapter.server)
        self.adapter.serve(workers=1)  # returns once /healthz answers

    def _restart_worker(self) -> None:
        self._kill(self.adapter.workers[-1])
        wait_until(
            lambda: event_consumers(self.broker, self.prefix) == 0,
            lambda: None,
            what="RabbitMQ to drop the killed worker's consumer",
        )
        time.sleep(self.rng.uniform(0.0, 1.0))  # messages pile up, as after a real crash
        worker = self.adapter.start_worker(concurrency=CONCURRENCY)
        wait_until(
            lambda: event_consumers(self.broker, self.prefix) > 0,
            lambda: worker.output(),
            what="the restarted worker to consume",
            processes=[worker],
        )

    def _kill(self, process: ManagedProcess) -> None:
        assert process.is_running(), f"{process.name} died unbidden:\n{process.output()}"
        process.signal(signal.SIGKILL)
        assert process.process is not None
        process.process.wait(timeout=10)
        self.killed.append(process)


def applied_events(adapter: Adapter) -> int:
    with adapter.engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM webhook_events WHERE state <> 'pending'")
            ).scalar_one()
        )


def inbox(adapter: Adapter) -> list[Any]:
    """(STR, version, event type, state, outcome) of every KKI event in the inbox."""
    with adapter.engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT resource_id, resource_version, event_type, state, outcome "
                    "FROM webhook_events WHERE source = 'kki'"
                )
            ).all()
        )


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_store_equals_kki_after_a_storm_of_flips_full_syncs_and_kills(
    empty_database_url: URL, kki_mock: Mock, sisdmk_mock: Mock, broker: str, seed: int
) -> None:
    """Eventually equal: the webhooks and the worker alone bring the store to KKI's state, so
    no final sync runs; the full syncs during the storm must never undo a newer write. Every
    write of a registration is recorded by a trigger the test installs."""
    kki = kki_mock
    rng = random.Random(seed)
    context = f"(storm seed {seed})"
    prefix = unique_prefix()
    environment = stack_environment(
        empty_database_url.render_as_string(hide_password=False),
        kki.url,
        sisdmk_mock.url,
        broker=broker,
        prefix=prefix,
    )
    adapter = Adapter(labelled(environment, "worker"), migrated_engine(empty_database_url))
    chaos = Chaos(adapter, broker, prefix, rng)
    syncs = FullSyncs(adapter)
    stop = threading.Event()
    try:
        record_registration_writes(adapter.engine)
        before = kki_registrations(kki)
        assert finish(start_sync(adapter, page_size=500), adapter) == 0
        adapter.serve(workers=1)
        subscribe(kki, "kki", f"{adapter.url}/webhooks/kki", environment["KKI_WEBHOOK_SECRET"])
        adapter.start_worker(concurrency=CONCURRENCY)
        eligible = {n: status for n, (_, status) in before.items() if status in SPECIFIC_EVENT}
        changes = KkiChanges(kki, eligible, rng)

        def backlog() -> int:
            """Events KKI fired that the adapter has not applied yet."""
            return len(changes.events) - applied_events(adapter)

        def wait_for(condition: Callable[[], bool], what: str) -> None:
            wait_until(
                condition,
                lambda: (backlog(), sync_progress(adapter.engine), len(chaos.done)),
                what=f"{what} {context}",
                processes=[*syncs.started, adapter.server, *adapter.workers],
            )

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            kills = pool.submit(chaos.run, changes, stop)

            def kill_begun() -> bool:
                if kills.done():
                    kills.result()  # a failed kill or restart fails the test here
                return chaos.begun >= chaos.due(changes.made)

            def second_sync_started() -> bool:
                syncs.poll(changes.made)
                return len(syncs.started) == len(SYNC_AT)

            try:
                next_at = started
                while changes.made < CHANGES:
                    syncs.poll(changes.made)
                    # A kill falls where it was drawn, even while the last restart goes on.
                    wait_for(kill_begun, "the kill due to begin")
                    if changes.made >= LATE * CHANGES:
                        wait_for(second_sync_started, "the second sync to start")
                    if not syncs.running:
                        wait_for(lambda: backlog() <= BACKLOG, "the adapter to take KKI's events")
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    burst = changes.burst()
                    for number in burst:
                        changes.flip(number)
                    next_at = max(next_at, time.monotonic()) + len(burst) / RATE
            finally:
                stop.set()
            kills.result()
        storm_s = time.monotonic() - started
        for sync in syncs.started:
            assert finish(sync, adapter) == 0, f"{context}\n{sync.output()}"

        def queued() -> int:
            depths = queue_depths(broker, prefix)
            return sum(count for name, count in depths.items() if name != "events.dead")

        wait_until(
            lambda: all(quiescent(adapter, kki) and queued() == 0 for _ in range(2)),
            lambda: (tuple(sorted(adapter.counts().items())), unfinished_deliveries(kki)),
            what=f"every webhook delivered and applied, the queues drained {context}",
            processes=[adapter.server, *adapter.workers],
        )
        settled_s = time.monotonic() - started

        assert_never_backwards(
            adapter.engine,
            kki,
            {**{(n, v): s for n, (v, s) in before.items()}, **changes.status_of},
            context=context,
        )
        failed = [
            (d["event_type"], len(d["attempts"]), d["attempts"][-1].get("error"))
            for d in deliveries(kki, status="failed")
        ]
        assert failed == [], f"{context} {len(failed)} deliveries failed: {failed[:10]}"
        rows = inbox(adapter)
        received = collections.Counter((str(r[0]), int(r[1]), str(r[2])) for r in rows)
        missing = sorted(changes.events - set(received))
        unexpected = sorted(set(received) - changes.events)
        twice = sorted(key for key, count in received.items() if count > 1)
        unapplied = [f"{r[0]} v{r[1]} {r[2]}: {r[3]} {r[4]}" for r in rows if r[4] not in APPLIED]
        assert (missing, unexpected, twice, unapplied) == ([], [], [], []), (
            f"{context} of {len(changes.events)} events KKI fired, {len(missing)} are not in "
            f"the inbox: {missing[:10]}; {len(unexpected)} unexpected: {unexpected[:10]}; "
            f"{len(twice)} stored twice: {twice[:10]}; {len(unapplied)} not applied (done, "
            f"superseded): {unapplied[:10]}"
        )
        assert {r[3] for r in rows} == {"done"}, context
        assert queue_depths(broker, prefix)["events.dead"] == 0, context
        # The storm was what it claims: every kill done, both syncs ran to the end.
        assert len(chaos.done) == 2 * KILLS, (context, chaos.done)
        with adapter.engine.connect() as connection:
            runs = connection.execute(
                text(
                    "SELECT status, fetched, updated, unchanged FROM sync_runs "
                    "WHERE mode = 'full' ORDER BY started_at"
                )
            ).all()
        assert [run[0] for run in runs] == ["succeeded"] * (1 + len(SYNC_AT)), (context, runs)
        log.info(
            "storm %s: %d changes, %d events %s, kills %s, syncs (fetched, updated, unchanged) "
            "%s; storm %.1f s, quiet after %.1f s",
            context,
            changes.made,
            len(rows),
            dict(collections.Counter(r[4] for r in rows)),
            chaos.done,
            [tuple(run[1:]) for run in runs[1:]],
            storm_s,
            settled_s,
        )
    finally:
        stop.set()
        for process in [*syncs.started, *chaos.killed]:
            process.close()
        adapter.close()
        delete_topology(broker, prefix)
