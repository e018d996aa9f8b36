"""CPU per audit entry on PostgreSQL: appending it (the baseline: `record_audit` in a transaction
of its own, from several threads, as reads and writes append) and sealing it into the chain
(`seal_all`, the sealer threads' work), each as the process's CPU plus its PostgreSQL
backends' (from /proc), in the same invocation. Needs the database on this machine
(`make services`)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy.engine import URL  # noqa: E402

from adapter.audit import Actor, record_audit, seal_all  # noqa: E402
from adapter.audit.seal import SEAL_BATCH, pending_count  # noqa: E402
from adapter.store.database import create_engine_from_url, session_factory, upgrade  # noqa: E402
from bench.processes import backends, cpu_seconds, throwaway_database  # noqa: E402
from tests.support.databases import AUDIT_KEYS  # noqa: E402

READER = Actor(kind="user", subject="bench", client="hf-readonly")


class Meter:
    """Wall time, this process's CPU and the database's backends' CPU over a `with` block."""

    def __init__(self, url: URL) -> None:
        self._url = url.render_as_string(hide_password=False)

    def __enter__(self) -> Meter:
        self._backends = backends(self._url)
        self._database = cpu_seconds(self._backends)
        self._process, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.process = time.process_time() - self._process
        # Backends opened during the block count from zero.
        serving = sorted(set(self._backends) | set(backends(self._url)))
        self.database = cpu_seconds(serving) - self._database


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=4_000, help="entries appended, then sealed")
    parser.add_argument("--threads", type=int, default=4, help="appending threads")
    parser.add_argument("--batch", type=int, default=SEAL_BATCH, help="entries per seal")
    args = parser.parse_args()
    with throwaway_database("hf_bench_seal") as url:
        engine = create_engine_from_url(url, pool_size=args.threads + 2)
        upgrade(engine)
        sessions = session_factory(engine, audit_keys=AUDIT_KEYS)
        each = args.entries // args.threads

        def append() -> None:
            for n in range(each):
                with sessions.begin() as session:
                    record_audit(
                        session, READER, "healthworker.read", "health-workers", resource_id=str(n)
                    )

        with sessions() as session:  # the pool's connections opened before measuring
            session.connection()
        threads = [threading.Thread(target=append) for _ in range(args.threads)]
        with Meter(url) as appended:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        entries = each * args.threads
        with Meter(url) as sealed:
            result = seal_all(sessions, batch=args.batch)
        with sessions() as session:
            left = pending_count(session)
        engine.dispose()
    if result.sealed != entries or left:
        print(f"sealed {result.sealed:,} of {entries:,}; {left:,} pending", file=sys.stderr)
        return 1

    table = Table(
        title=f"{entries:,} audit entries on PostgreSQL, load average {os.getloadavg()[0]:.1f}"
    )
    for column in ("", "wall", "entries/s", "process CPU / entry", "database CPU / entry", "all"):
        table.add_column(column, justify="left" if not column else "right")
    for label, meter in (
        (f"append, {args.threads} threads", appended),
        (f"seal (batches of {args.batch:,})", sealed),
    ):
        table.add_row(
            label,
            f"{meter.wall:.2f} s",
            f"{entries / meter.wall:,.0f}",
            f"{meter.process / entries * 1e3:.3f} ms",
            f"{meter.database / entries * 1e3:.3f} ms",
            f"{(meter.process + meter.database) / entries * 1e3:.3f} ms",
        )
    ratio = (sealed.process + sealed.database) / (appended.process + appended.database)
    table.caption = f"sealing costs {ratio:.2f}x the CPU of appending, per entry"
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
