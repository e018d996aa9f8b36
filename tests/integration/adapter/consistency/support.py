"""The lost-update tests' tools: a trigger that records every write of a registration, a sync
process, waits that fail on a stall (never on a slow machine), and the store-vs-KKI check."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kombu.connection import Connection
from sqlalchemy import Engine, text

from adapter.queue.topology import QueueTopology
from harness.processes import ManagedProcess, start_mock
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import FAST_RETRIES, Adapter, deliveries


@contextmanager
def mock_process(system: str, *, size: int, seed: int, extra: Sequence[str] = ()) -> Iterator[Mock]:
    """A running `hf-mock` process and a client for it; both closed on exit."""
    process, url = start_mock(system, size=size, seed=seed, extra=extra)
    mock = Mock(url)
    try:
        yield mock
    finally:
        mock.close()
        process.close()


# A delivery in one of these is still to be (re)sent or answered.
UNFINISHED_DELIVERIES = ("pending", "delivering", "retrying")
# A stall this long (nothing moved: no page, no event, no stored version) fails a wait.
STALL_S = 60.0
# The trigger lives outside the adapter's schema, so `serve` and `worker` (which refuse a
# database that differs from the migrations) start as usual.
_WRITES_DDL = (
    "CREATE SCHEMA hf_test_audit",
    """
    CREATE TABLE hf_test_audit.registration_writes (
        seq bigserial PRIMARY KEY,
        str_number text NOT NULL,
        old_version integer,
        new_version integer NOT NULL,
        new_status text NOT NULL,
        application_name text,
        writer text
    )
    """,
    """
    CREATE FUNCTION hf_test_audit.record_registration_write() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO hf_test_audit.registration_writes
            (str_number, old_version, new_version, new_status, application_name, writer)
        VALUES (
            NEW.str_number,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.source_version END,
            NEW.source_version,
            NEW.status,
            current_setting('application_name', true),
            current_setting('hf_test.writer', true)
        );
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER hf_test_registration_writes
    AFTER INSERT OR UPDATE ON registrations
    FOR EACH ROW EXECUTE FUNCTION hf_test_audit.record_registration_write()
    """,
)
_CHILD_TABLES = ("practice_licenses", "cpd_summaries", "trainings")


@dataclass(frozen=True)
class Write:
    """One write of a registration row, as the trigger saw it."""

    str_number: str
    old_version: int | None
    new_version: int
    new_status: str
    writer: str | None


def record_registration_writes(engine: Engine) -> None:
    """From now on every INSERT or UPDATE of a registration leaves a `Write`."""
    with engine.begin() as connection:
        for statement in _WRITES_DDL:
            connection.execute(text(statement))


def registration_writes(engine: Engine) -> list[Write]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT str_number, old_version, new_version, new_status, writer "
                "FROM hf_test_audit.registration_writes ORDER BY seq"
            )
        ).all()
    return [Write(str(r[0]), r[1], int(r[2]), str(r[3]), r[4]) for r in rows]


def stored_registrations(engine: Engine) -> dict[str, tuple[int, str]]:
    """STR number → (source_version, status) as stored."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT str_number, source_version, status FROM registrations")
        ).all()
    return {str(r[0]): (int(r[1]), str(r[2])) for r in rows}


def kki_registrations(kki: Mock) -> dict[str, tuple[int, str]]:
    """STR number → (version, status) as KKI has them now."""
    return {
        r["str_number"]: (int(r["version"]), str(r["certification"]["status"]))
        for r in kki.records("registrations")
    }


def torn_children(engine: Engine) -> list[str]:
    """Child rows (SIPs, SKP, trainings) of another version than their registration."""
    torn: list[str] = []
    with engine.connect() as connection:
        for table in _CHILD_TABLES:
            rows = connection.execute(
                text(
                    f"SELECT r.str_number, c.source_version, r.source_version FROM {table} c "  # noqa: S608 - fixed names
                    "JOIN registrations r ON r.id = c.registration_id "
                    "WHERE c.source_version <> r.source_version"
                )
            ).all()
            torn += [f"{table}: {r[0]} v{r[1]} under v{r[2]}" for r in rows]
    return torn


def assert_never_backwards(
    engine: Engine, kki: Mock, status_of: dict[tuple[str, int], str], *, context: str = ""
) -> None:
    """The store equals KKI, and no write took a version back or mixed two versions."""
    now = kki_registrations(kki)
    stored = stored_registrations(engine)
    wrong = sorted(
        f"{number}: stored v{stored.get(number, (0, '-'))[0]} {stored.get(number, (0, '-'))[1]}"
        f", KKI v{version} {status}"
        for number, (version, status) in now.items()
        if stored.get(number) != (version, status)
    )
    writes = registration_writes(engine)
    backwards = [
        f"{w.str_number}: v{w.old_version} -> v{w.new_version}{_by(w)}"
        for w in writes
        if w.old_version is not None and w.new_version < w.old_version
    ]
    status_of = {**status_of, **{(n, v): s for n, (v, s) in now.items()}}
    mixed = [
        f"{w.str_number}: v{w.new_version} stored with {w.new_status}{_by(w)}, "
        f"KKI's v{w.new_version} is {status_of[(w.str_number, w.new_version)]}"
        for w in writes
        if (w.str_number, w.new_version) in status_of
        and status_of[(w.str_number, w.new_version)] != w.new_status
    ]
    children = torn_children(engine)
    assert (wrong, backwards, mixed, children) == ([], [], [], []), (
        f"{context + ' ' if context else ''}{len(wrong)} of {len(now)} STRs differ from KKI: "
        f"{wrong[:10]}; "
        f"{len(backwards)} writes went backwards: {backwards[:10]}; "
        f"{len(mixed)} writes mixed two versions: {mixed[:10]}; "
        f"{len(children)} child rows of another version: {children[:10]}"
    )


def _by(write: Write) -> str:
    return f" by the {write.writer}" if write.writer else ""


def wait_until(
    condition: Callable[[], bool],
    progress: Callable[[], Hashable],
    *,
    what: str,
    stall_s: float = STALL_S,
    processes: Iterable[ManagedProcess | None] = (),
) -> None:
    """Wait for `condition`; fail when `progress()` has not changed for `stall_s`."""
    last = progress()
    deadline = time.monotonic() + stall_s
    while not condition():
        now = progress()
        if now != last:
            last, deadline = now, time.monotonic() + stall_s
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}:\n{p.output(3000)}" for p in processes if p)
            raise AssertionError(f"no progress for {stall_s:.0f} s waiting for {what}\n{logs}")
        time.sleep(0.1)


def blocked_by(engine: Engine, pid: int) -> list[int]:
    """The server processes waiting for a lock `pid` holds."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
            {"pid": pid},
        ).all()
    return [int(row[0]) for row in rows]


def waiting_on_locks(engine: Engine) -> int:
    """How many server processes of this database wait for a row (or any other) lock."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND cardinality(pg_blocking_pids(pid)) > 0"
                )
            ).scalar_one()
        )


def start_sync(adapter: Adapter, *, page_size: int) -> ManagedProcess:
    """`hf-adapter sync --system kki --full` as a process of its own."""
    argv = [
        sys.executable,
        "-m",
        "adapter",
        "sync",
        "--system",
        "kki",
        "--full",
        "--page-size",
        str(page_size),
    ]
    return ManagedProcess("adapter-sync", argv, env=labelled(adapter.environment, "sync")).start()


def labelled(environment: dict[str, str], writer: str) -> dict[str, str]:
    """`environment` for a process whose writes the trigger records as `writer`'s (libpq
    passes PGOPTIONS to the server at connect)."""
    return {**environment, "PGOPTIONS": f"-c hf_test.writer={writer}"}


def sync_progress(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as connection:
        return tuple(
            connection.execute(
                text("SELECT count(*), coalesce(sum(fetched), 0) FROM sync_runs")
            ).one()
        )


def finish(process: ManagedProcess, adapter: Adapter) -> int:
    """Wait for `process` to exit while it makes progress; its exit status."""
    wait_until(
        lambda: not process.is_running(),
        lambda: sync_progress(adapter.engine),
        what=f"{process.name} to finish",
        processes=[process],
    )
    assert process.process is not None
    return int(process.process.wait())


def unfinished_deliveries(mock: Mock) -> int:
    """Deliveries the mock has not finished (filtered by status, so none is past the list's
    limit); one moving between two of the statuses meanwhile can be missed: ask twice."""
    return sum(len(deliveries(mock, status=status)) for status in UNFINISHED_DELIVERIES)


def quiescent(adapter: Adapter, kki: Mock) -> bool:
    """KKI delivered every webhook and the worker finished every event it received."""
    states = set(adapter.counts())
    return unfinished_deliveries(kki) == 0 and states <= {"done", "failed"}


def wait_for_quiescence(adapter: Adapter, kki: Mock) -> None:
    wait_until(
        lambda: quiescent(adapter, kki) and quiescent(adapter, kki),
        lambda: (tuple(sorted(adapter.counts().items())), unfinished_deliveries(kki)),
        what="every webhook delivered and applied",
        processes=[adapter.server, *adapter.workers],
    )


def queue_depths(broker: str, prefix: str) -> dict[str, int]:
    """Messages ready in each of the test's RabbitMQ queues (events, retry tiers, dead)."""
    topology = QueueTopology(prefix, 1, tuple(float(d) for d in FAST_RETRIES.split(",")))
    with Connection(broker, connect_timeout=3) as connection:
        channel = connection.default_channel
        return {
            queue.name.removeprefix(f"{prefix}."): int(
                channel.queue_declare(queue=queue.name, passive=True).message_count
            )
            for queue in topology.all_queues
        }


def event_consumers(broker: str, prefix: str) -> int:
    """Consumers of the test's events queue: a worker is taking events."""
    with Connection(broker, connect_timeout=3) as connection:
        declared = connection.default_channel.queue_declare(queue=f"{prefix}.events", passive=True)
    return int(declared.consumer_count)
