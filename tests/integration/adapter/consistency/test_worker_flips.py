"""Sixteen worker threads apply rapid flips of one STR at once: no write may take the
registration back to an older version, even for a moment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from tests.integration.adapter.consistency.support import (
    assert_never_backwards,
    finish,
    kki_registrations,
    mock_process,
    record_registration_writes,
    start_sync,
    wait_for_quiescence,
    wait_until,
    waiting_on_locks,
)
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import (
    FAST_WEBHOOKS,
    Adapter,
    delete_topology,
    migrated_engine,
    stack_environment,
    subscribe,
    unique_prefix,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REGISTRATIONS = 40
FLIPS = 40
# Worker threads waiting on the held row before it is released: their order is the lock's,
# not the versions'.
WAITING = 10
CONCURRENCY = 16


@pytest.fixture(scope="module")
def kki_mock() -> Iterator[Mock]:
    with mock_process("kki", size=REGISTRATIONS, seed=29, extra=FAST_WEBHOOKS) as mock:
        yield mock


@pytest.fixture(scope="module")
def sisdmk_mock() -> Iterator[Mock]:
    with mock_process("sisdmk", size=10, seed=29) as mock:
        yield mock


def flip(kki: Mock, number: str, times: int) -> dict[tuple[str, int], str]:
    """`times` new versions of `number` at KKI, alternating its status; version → status."""
    seen: dict[tuple[str, int], str] = {}
    for index in range(times):
        status = "NONAKTIF_SEMENTARA" if index % 2 == 0 else "AKTIF"
        doc = kki.patch(
            "registrations",
            number,
            {"certification": {"status": status, "status_reason": f"test: flip {index}"}},
        )
        seen[(number, int(doc["version"]))] = status
    return seen


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_worker_versions_never_go_backwards_when_16_threads_flip_one_str(
    empty_database_url: URL, kki_mock: Mock, sisdmk_mock: Mock, broker: str
) -> None:
    """The test holds the STR's row lock (as a sync page does while it commits) while KKI
    flips the STR 40 times; the worker threads queue on the row with different versions;
    released, they go on in the lock's order. Every write is recorded by a trigger."""
    kki = kki_mock
    prefix = unique_prefix()
    environment = stack_environment(
        empty_database_url.render_as_string(hide_password=False),
        kki.url,
        sisdmk_mock.url,
        broker=broker,
        prefix=prefix,
    )
    # One transaction per event, so the threads queue on the row lock each in its own
    # transaction (batched, one worker writes the events of one STR one after another in its
    # committing thread; the row lock then orders it against other processes only).
    environment["EVENT_APPLY_BATCH"] = "1"
    adapter = Adapter(environment, migrated_engine(empty_database_url))
    try:
        record_registration_writes(adapter.engine)
        status_of = {(n, v): s for n, (v, s) in kki_registrations(kki).items()}
        assert finish(start_sync(adapter, page_size=REGISTRATIONS), adapter) == 0
        adapter.serve(workers=1)
        subscribe(kki, "kki", f"{adapter.url}/webhooks/kki", environment["KKI_WEBHOOK_SECRET"])
        adapter.start_worker(concurrency=CONCURRENCY)
        number = min(number for number, _ in status_of)

        with adapter.engine.connect() as holder:
            holder.execute(
                text("SELECT 1 FROM registrations WHERE str_number = :n FOR UPDATE"),
                {"n": number},
            )
            status_of.update(flip(kki, number, FLIPS))
            wait_until(
                lambda: waiting_on_locks(adapter.engine) >= WAITING,
                lambda: (
                    waiting_on_locks(adapter.engine),
                    tuple(sorted(adapter.counts().items())),
                ),
                what=f"{WAITING} worker threads to wait on the held row",
                processes=[adapter.server, *adapter.workers],
            )
            holder.rollback()

        wait_for_quiescence(adapter, kki)
        assert_never_backwards(adapter.engine, kki, status_of)
    finally:
        adapter.close()
        delete_topology(broker, prefix)
