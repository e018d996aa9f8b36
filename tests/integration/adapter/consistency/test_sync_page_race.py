"""A full batch sync and the webhook worker write the same STRs at once: the sync's page, which
read the older versions, must not write them over the newer ones the worker stored meanwhile."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from adapter.clients import HttpKkiClient
from harness.processes import ManagedProcess
from tests.integration.adapter.consistency.support import (
    assert_never_backwards,
    blocked_by,
    finish,
    kki_registrations,
    mock_process,
    record_registration_writes,
    start_sync,
    stored_registrations,
    sync_progress,
    wait_for_quiescence,
    wait_until,
)
from tests.integration.adapter.sync.support import Mock, client_for
from tests.integration.adapter.webhooks.support import (
    FAST_WEBHOOKS,
    Adapter,
    migrated_engine,
    stack_environment,
    subscribe,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REGISTRATIONS = 2000
PAGE_SIZE = 100
# The store falls behind KKI on this many registrations: the full sync's last page updates them.
BEHIND = PAGE_SIZE
CHANGED = 20


@pytest.fixture(scope="module")
def kki_mock() -> Iterator[Mock]:
    with mock_process("kki", size=REGISTRATIONS, seed=23, extra=FAST_WEBHOOKS) as mock:
        yield mock


@pytest.fixture(scope="module")
def sisdmk_mock() -> Iterator[Mock]:
    with mock_process("sisdmk", size=10, seed=23) as mock:
        yield mock


def flip_status(kki: Mock, number: str, status_of: dict[tuple[str, int], str]) -> None:
    """A new version of `number` at KKI with the other status (KKI sends its webhooks)."""
    current = kki.admin.get(f"/records/registrations/{number}").raise_for_status().json()
    suspended = current["certification"]["status"] == "AKTIF"
    status = "NONAKTIF_SEMENTARA" if suspended else "AKTIF"
    reason = "test: suspended" if suspended else "test: reinstated"
    doc = kki.patch(
        "registrations", number, {"certification": {"status": status, "status_reason": reason}}
    )
    status_of[(number, int(doc["version"]))] = status


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_sync_page_keeps_newer_versions_when_the_worker_stores_them_mid_page(
    empty_database_url: URL, kki_mock: Mock, sisdmk_mock: Mock
) -> None:
    """Deterministic: the test holds the row lock of the last page's first STR, so the page
    stops there after reading its rows; meanwhile 20 STRs of that page change at KKI and the
    worker stores them; then the page goes on. Every write is recorded by a trigger."""
    kki = kki_mock
    environment = stack_environment(
        empty_database_url.render_as_string(hide_password=False),
        kki.url,
        sisdmk_mock.url,
        broker=None,
        prefix=None,
    )
    adapter = Adapter(environment, migrated_engine(empty_database_url))
    sync: ManagedProcess | None = None
    try:
        record_registration_writes(adapter.engine)
        status_of = {(n, v): s for n, (v, s) in kki_registrations(kki).items()}
        assert finish(start_sync(adapter, page_size=500), adapter) == 0
        # Corrections the store has not heard of (nobody subscribed yet): a new version with
        # the same status, so a write that mixes versions shows in the status.
        behind = sorted(number for number, _ in status_of)[:BEHIND]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            corrected = list(
                pool.map(
                    lambda number: kki.patch(
                        "registrations", number, {"kompetensi": "Kompetensi (koreksi)"}
                    ),
                    behind,
                )
            )
        for doc in corrected:
            status_of[(doc["str_number"], int(doc["version"]))] = doc["certification"]["status"]

        adapter.serve(workers=1)
        subscribe(kki, "kki", f"{adapter.url}/webhooks/kki", environment["KKI_WEBHOOK_SECRET"])
        adapter.start_worker(concurrency=4)
        with client_for("kki", kki) as client:
            assert isinstance(client, HttpKkiClient)
            pages = [page.items for page in client.iter_registrations(None, PAGE_SIZE)]
        last_page = [str(doc["str_number"]) for doc in pages[-1]]
        assert set(last_page) <= set(behind)
        assert len(last_page) > CHANGED
        held, changed = last_page[0], last_page[1 : CHANGED + 1]

        with adapter.engine.connect() as holder:
            holder.execute(
                text("SELECT 1 FROM registrations WHERE str_number = :n FOR UPDATE"), {"n": held}
            )
            holder_pid = int(holder.execute(text("SELECT pg_backend_pid()")).scalar_one())
            sync = start_sync(adapter, page_size=PAGE_SIZE)

            def sync_waits() -> bool:
                assert sync is not None
                assert sync.is_running(), f"the sync ended early:\n{sync.output()}"
                return bool(blocked_by(adapter.engine, holder_pid))

            wait_until(
                sync_waits,
                lambda: sync_progress(adapter.engine),
                what="the sync's last page to reach the held row",
                processes=[sync],
            )
            (sync_pid,) = blocked_by(adapter.engine, holder_pid)
            for number in changed:
                flip_status(kki, number, status_of)
            wanted = {number: max(v for n, v in status_of if n == number) for number in changed}

            def stored_newer() -> tuple[int, ...]:
                stored = stored_registrations(adapter.engine)
                return tuple(stored[number][0] for number in changed)

            # The worker stores the new versions, unless it waits for a row the sync has
            # locked (a sync that locks what it read): then the page must go on first.
            wait_until(
                lambda: (
                    stored_newer() == tuple(wanted.values())
                    or bool(blocked_by(adapter.engine, sync_pid))
                ),
                lambda: (stored_newer(), tuple(sorted(adapter.counts().items()))),
                what="the worker to store the new versions",
                processes=[adapter.server, *adapter.workers],
            )
            holder.rollback()

        assert finish(sync, adapter) == 0, sync.output()
        wait_for_quiescence(adapter, kki)
        assert_never_backwards(adapter.engine, kki, status_of)
    finally:
        if sync is not None:
            sync.close()
        adapter.close()
