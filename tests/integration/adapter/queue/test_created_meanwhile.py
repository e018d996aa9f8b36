"""Two writers create one new person at once (a KKI and a SISDMK event about the same NIK, say):
the one that commits second meets the first's unique key, and the worker applies its event again
at once, without spending an attempt or waiting for a retry tier."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL

from adapter.apply import Origin, apply_documents
from adapter.audit import SYSTEM_SYNC
from adapter.composition import build_services
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.alerts import DeadLetterAlerts
from adapter.settings import load_settings
from adapter.store.models import HealthWorker, WebhookEvent
from adapter.webhooks.envelope import EventEnvelope
from adapter.webhooks.inbox import WebhookInbox
from tests.integration.adapter.consistency.support import blocked_by, mock_process, wait_until
from tests.integration.adapter.sync.support import Mock, adapter_environment
from tests.integration.adapter.webhooks.support import migrated_engine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mocks() -> Iterator[tuple[Mock, Mock]]:
    # The same seed: the two systems hold the same people (NIKs).
    with (
        mock_process("kki", size=3, seed=31) as kki,
        mock_process("sisdmk", size=3, seed=31) as sisdmk,
    ):
        yield kki, sisdmk


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_an_event_whose_new_person_another_writer_creates_meanwhile_is_applied_at_once(
    empty_database_url: URL, mocks: tuple[Mock, Mock], caplog: pytest.LogCaptureFixture
) -> None:
    """Deterministic: the test creates the person from KKI's registration and holds that
    transaction open; the worker applies SISDMK's event for the same NIK, reads no person,
    inserts one and waits on the test's uncommitted key; the test commits."""
    kki, sisdmk = mocks
    registration = kki.records("registrations")[0]
    (worker,) = [w for w in sisdmk.records("health-workers") if w["nik"] == registration["nik"]]
    engine = migrated_engine(empty_database_url)
    environment = adapter_environment(
        empty_database_url.render_as_string(hide_password=False), kki.url, sisdmk.url
    )
    metrics = EventMetrics.for_registry(CollectorRegistry())
    alerts = DeadLetterAlerts(None, metrics)
    services = build_services(load_settings(environment), engine=engine)
    try:
        with services.sessions() as session, session.begin():
            envelope = EventEnvelope(
                "sisdmk",
                f"msg_{uuid.uuid4().hex}",
                "worker.updated",
                str(worker["worker_id"]),
                int(worker["version"]),
                dt.datetime.now(dt.UTC),
            )
            event_id = WebhookInbox(session).record(envelope, traceparent=None, published=True)
        assert event_id is not None
        with (
            services.kki_client() as kki_client,
            services.sisdmk_client() as sisdmk_client,
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool,
            caplog.at_level(logging.INFO, logger="adapter.worker"),
        ):
            processor = services.event_processor(
                kki=kki_client, sisdmk=sisdmk_client, metrics=metrics, alerts=alerts
            )
            try:
                with services.sessions() as holder, holder.begin():
                    apply_documents(
                        holder,
                        services.repository(holder),
                        "kki",
                        [registration],
                        fetched_at=dt.datetime.now(dt.UTC),
                        origin=Origin(SYSTEM_SYNC, "sync.write"),
                    )
                    holder_pid = int(holder.scalar(text("SELECT pg_backend_pid()")))
                    applying = pool.submit(processor.process, event_id)

                    def waits() -> bool:
                        assert not applying.done(), f"applied without waiting: {applying.result()}"
                        return bool(blocked_by(engine, holder_pid))

                    wait_until(waits, lambda: 0, what="the worker's insert to wait on the key")
                verdict = applying.result(timeout=60)
            finally:
                processor.close()
        with services.sessions() as session:
            event = session.get(WebhookEvent, event_id)
            people = session.scalar(select(func.count()).select_from(HealthWorker))
            assert event is not None
            stored = (event.state, event.outcome, event.attempts, event.last_error)
    finally:
        services.close()
        alerts.close()

    assert (verdict.kind, verdict.outcome) == ("done", "updated")
    assert stored == ("done", "updated", 0, None)
    assert people == 1
    assert any("a unique key was taken meanwhile" in m for m in caplog.messages)
