"""An operator's "disable" stops all three doors of the write path for that system, and
"enable" lets the held work through.

While KKI's connection is disabled (through the API): the batch sync is refused (the CLI's exit
code and message, the API's 409), a look-up is served from the store marked stale, and KKI's
webhook events are held — pending, no attempt spent, never dead-lettered, however often the
worker looks at them — while SISDMK's go through. Once enabled again the held events are
applied, each once. Real `serve` and `worker` processes, real mocks, PostgreSQL with RabbitMQ
and SQLite with the embedded queue.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from adapter.store.models import Registration
from harness.idp import IdpProcess
from harness.processes import free_port
from tests.integration.adapter.api.stack import OPS, PORTAL
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import emit, port_open
from tests.integration.adapter.write_path.support import WRITE_ACTIONS, Stack, metric, write_stack
from tests.support.databases import BACKENDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Held events come back at the longest tier (no tier reaches 30 s): every second. Two
# attempts and two hand-overs are all a failing event gets, so an event still pending after
# more looks than that was not counted as failing.
HOLD_ENV = {
    "EVENT_RETRY_DELAYS_S": "0.2,0.5,1",
    "EVENT_MAX_ATTEMPTS": "2",
    "BROKER_DELIVERY_LIMIT": "2",
}
LOOKS = 3
HELD_TYPES = ("registration.corrected", "registration.suspended")
OPS_SERVICE = ("service", OPS, OPS)


def set_kki(stack: Stack, *, enabled: bool) -> None:
    with stack.api(OPS) as ops:
        response = ops.patch("/api/v1/integrations/kki", json={"enabled": enabled})
    assert response.status_code == 200, response.text
    assert response.json()["enabled"] is enabled


def stored_versions(stack: Stack, str_numbers: list[str]) -> dict[str, int]:
    with Session(stack.adapter.engine) as session:
        rows = session.execute(
            select(Registration.str_number, Registration.source_version).where(
                Registration.str_number.in_(str_numbers)
            )
        ).all()
    return {str(str_number): int(version) for str_number, version in rows}


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_disabled_connection_refuses_sync_serves_stale_and_holds_events_until_enabled(
    empty_database_url: URL,
    mocks: tuple[Mock, Mock],
    idp: IdpProcess,
    queue_broker: str | None,
) -> None:
    kki, sisdmk = mocks
    held_keys = [r["str_number"] for r in kki.records("registrations")[:2]]
    worker_id = str(sisdmk.records("health-workers")[0]["worker_id"])
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"

    with write_stack(
        empty_database_url, mocks, idp, broker=queue_broker, extra_env=HOLD_ENV
    ) as stack:
        adapter = stack.adapter
        adapter.start_worker(concurrency=2, extra=("--metrics-port", str(port)))
        assert stack.sync("kki")["status"] == "succeeded"
        before = stored_versions(stack, held_keys)
        audited = stack.audit_count()

        set_kki(stack, enabled=False)

        # The batch sync is refused at both its doors, and nothing is written.
        status, output = adapter.cli("sync", "--system", "kki")
        assert status == 2, output
        assert "hf-adapter: error: the kki connection is disabled" in output
        with stack.api(OPS) as ops:
            refused = ops.post("/api/v1/sync-runs", json={"system": "kki"})
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["reason"] == "connection_disabled"
        assert len(stack.sync_runs("kki")) == 1

        # Events about KKI are held; SISDMK's connection is on, its event is applied.
        held = [
            emit(kki, event_type, key=key)["events"][0]
            for event_type, key in zip(HELD_TYPES, held_keys, strict=True)
        ]
        (passing,) = emit(sisdmk, "worker.updated", key=worker_id)["events"]

        def looked_at_often() -> bool:
            counts = adapter.counts()
            assert "failed" not in counts, f"a held event was dead-lettered: {counts}"
            if not port_open(port):  # the worker's metrics are not served yet
                return False
            looks = [
                metric(metrics_url, "hf_events_processed_total", type=t, outcome="held")
                for t in HELD_TYPES
            ]
            return min(looks) >= LOOKS and counts.get("done", 0) == 1

        adapter.wait_for(looked_at_often, what=f"each KKI event held {LOOKS} times")
        events = {event.webhook_id: event for event in adapter.events()}
        assert events[passing["event_id"]].state == "done"
        for emitted in held:
            event = events[emitted["event_id"]]
            assert (event.state, event.attempts, event.applied_count) == ("pending", 0, 0)
            assert event.last_error == "held: the kki connection is disabled"

        # A look-up is answered from the store, marked stale, without asking KKI.
        with stack.api(PORTAL) as portal:
            response = portal.post(
                "/api/v1/registrations/lookup", json={"str_number": held_keys[0]}
            )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["live"], answer["stale"]) == (False, True)
        assert answer["stale_reason"] == "connection_disabled"
        (registration,) = answer["registrations"]
        assert registration["source_version"] == before[held_keys[0]]
        status, output = adapter.cli("lookup", "--str", held_keys[0])
        assert status == 0, output
        assert "STALE: stored copy (connection_disabled)" in output
        # Nothing stored: a 503 saying what to do, not an empty answer ("not registered").
        with stack.api(PORTAL) as portal:
            nothing = portal.post(
                "/api/v1/registrations/lookup", json={"str_number": "QZ99999999999999"}
            )
        assert nothing.status_code == 503, nothing.text
        assert nothing.json()["reason"] == "connection_disabled"
        assert nothing.json()["detail"].startswith("the KKI connection is disabled")
        status, output = adapter.cli("lookup", "--str", "QZ99999999999999")
        assert status == 1, output
        assert "next step: enable the kki connection" in output
        assert stored_versions(stack, held_keys) == before
        writes = [e for e in stack.entries(*WRITE_ACTIONS) if e.seq > audited]
        assert [e.resource_type for e in writes] == ["sisdmk:health-workers"], "no KKI write"

        set_kki(stack, enabled=True)

        adapter.wait_for(lambda: adapter.counts() == {"done": 3}, what="the held events applied")
        for event in adapter.events():
            assert (event.state, event.attempts, event.applied_count) == ("done", 0, 1)
        inbox = {event.webhook_id: str(event.id) for event in adapter.events()}
        applied = stack.entries("event.apply")
        # An entry names every event applied in its transaction, with the records written.
        named = [
            (event_id, key)
            for e in applied
            for event_id, key in zip(e.detail["event_ids"], e.written, strict=True)
        ]
        assert sorted(named) == sorted(
            [(inbox[e["event_id"]], key) for e, key in zip(held, held_keys, strict=True)]
            + [(inbox[passing["event_id"]], worker_id)]
        )
        after = stored_versions(stack, held_keys)
        assert all(after[key] > before[key] for key in held_keys), (before, after)

        updates = stack.entries("integration.update")
        assert [(e.actor, e.detail["enabled"]) for e in updates] == [
            (OPS_SERVICE, False),
            (OPS_SERVICE, True),
        ]
        assert stack.sync("kki")["status"] == "succeeded"
        refusals = [e for e in stack.entries("sync.start") if e.outcome == "denied"]
        assert [(e.actor, e.detail["system"]) for e in refusals] == [(OPS_SERVICE, "kki")]
