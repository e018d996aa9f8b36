"""CPU per changed record of the store's write path on PostgreSQL, by records per transaction:
`apply_documents` of changed SISDMK workers (the worker's and the sync's one write path), with
updates merged from a temporary table (``COPY`` + ``UPDATE … FROM``) against updates sent as
an executemany of ``UPDATE … WHERE id``, in the same invocation. Process CPU plus its
PostgreSQL backend's (from /proc), per record; the threshold `adapter.store.bulk` uses is
chosen from this table. Needs the database on this machine."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from adapter.apply import Origin, apply_documents  # noqa: E402
from adapter.audit import WORKER  # noqa: E402
from adapter.store import bulk  # noqa: E402
from adapter.store.crypto import BlindIndex, FieldCipher, KeyRing  # noqa: E402
from adapter.store.database import create_engine_from_url, session_factory, upgrade  # noqa: E402
from adapter.store.repositories import HealthWorkerRepository  # noqa: E402
from bench.processes import backends, cpu_seconds, throwaway_database  # noqa: E402
from tests.support.databases import AUDIT_KEYS, BLIND_INDEX_KEY, ENCRYPTION_KEY  # noqa: E402
from tests.support.documents import bumped, sisdmk_worker  # noqa: E402

FETCHED_AT = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
ORIGIN = Origin(WORKER, "event.apply", {"event_ids": ["bench"]})
# Merge from a temporary table from this many rows on (1: always, as before the threshold).
STRATEGIES = {"temporary table": 1, "executemany": sys.maxsize}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1024, help="records changed per run")
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64,256", help="records per transaction")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with throwaway_database("hf_bench_bulk") as database:
        url = database.render_as_string(hide_password=False)
        engine = create_engine_from_url(url, pool_size=1)
        upgrade(engine)
        sessions = session_factory(engine, audit_keys=AUDIT_KEYS)
        cipher, blind_index = FieldCipher(KeyRing([ENCRYPTION_KEY])), BlindIndex(BLIND_INDEX_KEY)
        documents = [sisdmk_worker() for _ in range(args.records)]

        def apply(batch: list[dict[str, Any]]) -> None:
            with sessions.begin() as session:
                repository = HealthWorkerRepository(session, cipher, blind_index)
                apply_documents(
                    session, repository, "sisdmk", batch, fetched_at=FETCHED_AT, origin=ORIGIN
                )

        def run(size: int) -> tuple[float, float]:
            """Every record changed once, `size` per transaction: CPU ms per record."""
            nonlocal documents
            documents = [
                bumped(doc, email=f"{secrets.token_hex(6)}@example.org") for doc in documents
            ]
            serving = backends(url)
            database_cpu, process_cpu = cpu_seconds(serving), time.process_time()
            for start in range(0, len(documents), size):
                apply(documents[start : start + size])
            process_cpu = time.process_time() - process_cpu
            database_cpu = cpu_seconds(serving) - database_cpu
            return process_cpu * 1e3 / len(documents), database_cpu * 1e3 / len(documents)

        for start in range(0, len(documents), 256):
            apply(documents[start : start + 256])  # the records exist: each run updates them
        run(64)  # statements prepared, caches warm
        table = Table(
            title=f"CPU per changed record, {args.records} records per run "
            f"(load {os.getloadavg()[0]:.1f})"
        )
        table.add_column("records per transaction", justify="right")
        for name in STRATEGIES:
            table.add_column(f"{name}: process + PostgreSQL ms", justify="right")
        table.add_column("executemany / temporary table", justify="right")
        threshold = bulk.MERGE_FROM_ROWS
        try:
            for size in sizes:
                cells: list[float] = []
                for name, merge_from in STRATEGIES.items():
                    bulk.MERGE_FROM_ROWS = merge_from
                    process_ms, database_ms = run(size)
                    cells.append(process_ms + database_ms)
                    print(
                        f"{size:>4} per transaction, {name}: {process_ms:.3f} + "
                        f"{database_ms:.3f} ms per record",
                        flush=True,
                    )
                table.add_row(
                    str(size), *(f"{cell:.3f}" for cell in cells), f"{cells[1] / cells[0]:.2f}x"
                )
        finally:
            bulk.MERGE_FROM_ROWS = threshold
        Console().print(table)
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
