"""A storm of 5,000 webhooks from the real mocks through `hf-adapter serve`, RabbitMQ and
`hf-adapter worker` into PostgreSQL: every event applied exactly once. (Its own file so that
the test runner can run it beside the other long tests.)"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import adapter_stack, deliveries, emit
from tests.integration.adapter.webhooks.test_webhook_storm import assert_each_applied_once

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORM = 5000


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_storm_of_5000_events_is_applied_once_each(
    empty_database_url: URL, mocks: tuple[Mock, Mock], broker: str
) -> None:
    kki, sisdmk = mocks
    with adapter_stack(empty_database_url, kki, sisdmk, broker=broker) as adapter:
        adapter.start_worker(concurrency=6)
        emitted = emit(kki, "registration.corrected", count=STORM // 2)["events"]
        emitted += emit(sisdmk, "worker.updated", count=STORM - STORM // 2)["events"]
        expected = {event["event_id"] for event in emitted}
        assert len(expected) == STORM
        adapter.wait_for(lambda: adapter.counts().get("done", 0) == STORM, what="5000 events done")
        assert_each_applied_once(adapter.events(), expected)
        # Every delivery ended with a 2xx from the adapter.
        statuses = {d["status"] for d in deliveries(kki)} | {
            d["status"] for d in deliveries(sisdmk)
        }
        assert statuses == {"succeeded"}
