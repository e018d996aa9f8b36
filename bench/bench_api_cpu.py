"""CPU per read of one worker in full, in process: `ApiServices.worker` on PostgreSQL from N
threads (the audit entry included), the process's CPU and its database backends' (from /proc),
per read. Load-independent where `bench_api.py`'s requests per second are not: on a shared
machine those follow the other processes' load. Needs the database on this machine."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from adapter.api.services import Caller  # noqa: E402
from adapter.audit import Actor  # noqa: E402
from adapter.composition import build_services  # noqa: E402
from adapter.queue.embedded import EmbeddedPublisher  # noqa: E402
from adapter.settings import load_settings  # noqa: E402
from adapter.store.crypto import BlindIndex, FieldCipher, KeyRing  # noqa: E402
from adapter.store.database import create_engine_from_url, session_factory, upgrade  # noqa: E402
from adapter.store.repositories import HealthWorkerRepository  # noqa: E402
from bench.processes import backends, cpu_seconds, throwaway_database  # noqa: E402
from tests.integration.adapter.sync.support import adapter_environment  # noqa: E402
from tests.support.databases import AUDIT_KEYS, BLIND_INDEX_KEY, ENCRYPTION_KEY  # noqa: E402
from tests.support.documents import kki_registration, sisdmk_worker  # noqa: E402

FETCHED_AT = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--reads", type=int, default=300, help="reads per thread")
    args = parser.parse_args()
    with throwaway_database("hf_bench_cpu") as url:
        engine = create_engine_from_url(url, pool_size=args.threads + 4)
        upgrade(engine)
        cipher, blind_index = FieldCipher(KeyRing([ENCRYPTION_KEY])), BlindIndex(BLIND_INDEX_KEY)
        worker = sisdmk_worker()
        with session_factory(engine, audit_keys=AUDIT_KEYS).begin() as session:
            repository = HealthWorkerRepository(session, cipher, blind_index)
            repository.upsert_from_sisdmk(worker, fetched_at=FETCHED_AT)
            for _ in range(3):
                repository.upsert_registration_from_kki(
                    kki_registration(worker), fetched_at=FETCHED_AT
                )
        with engine.connect() as connection:
            worker_id = connection.scalar(text("SELECT id FROM health_workers"))
        environment = adapter_environment(
            url.render_as_string(hide_password=False), "http://127.0.0.1:9", "http://127.0.0.1:9"
        )
        built = build_services(
            load_settings(environment), engine=engine, publisher=EmbeddedPublisher()
        )
        api = built.api
        caller = Caller(Actor(kind="user", subject="bench", client="hf-readonly"), pii=False)

        def reads(count: int) -> None:
            start = threading.Barrier(args.threads)

            def reader() -> None:
                start.wait()
                for _ in range(count):
                    api.worker(caller, worker_id)

            threads = [threading.Thread(target=reader) for _ in range(args.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        reads(20)  # the pool's connections opened, the statements prepared
        serving = backends(url.render_as_string(hide_password=False))
        database = cpu_seconds(serving)
        process, wall = time.process_time(), time.perf_counter()
        reads(args.reads)
        wall, process = time.perf_counter() - wall, time.process_time() - process
        database = cpu_seconds(serving) - database
        count = args.threads * args.reads
        print(
            f"{count} reads by {args.threads} threads in {wall:.1f} s ({count / wall:.0f}/s, "
            f"load {os.getloadavg()[0]:.1f}): CPU per read {process / count * 1e3:.2f} ms in "
            f"this process + {database / count * 1e3:.2f} ms in its {len(serving)} PostgreSQL "
            f"backends = {(process + database) / count * 1e3:.2f} ms"
        )
        built.close()
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
