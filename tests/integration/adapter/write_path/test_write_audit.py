"""Every door of the one write path audits its writes once, in its actor's name.

A webhook event applied by the worker, a live look-up (through the API and the CLI) and a
batch sync's pages each leave exactly one entry per write — ``event.apply``,
``lookup.refresh``, ``sync.write`` — naming who wrote and which records; the chain still
verifies with the real ``hf-adapter audit verify`` afterwards. Real `serve` and `worker`
processes, real mocks, PostgreSQL with RabbitMQ and SQLite with the embedded queue.
"""

from __future__ import annotations

import json
import math

import pytest
from sqlalchemy.engine import URL

from adapter.audit import command_line_operator
from harness.idp import IdpProcess
from tests.integration.adapter.api.stack import PORTAL
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import emit
from tests.integration.adapter.write_path.support import WRITE_ACTIONS, write_stack
from tests.support.databases import BACKENDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYNC_PAGE = 15
WORKER = ("system", "hf-adapter worker", None)
SYNC = ("system", "hf-adapter sync", None)
# A client-credentials token speaks for its service account: subject and client are its id.
PORTAL_SERVICE = ("service", PORTAL, PORTAL)
# The console's actor: the OS user of the process's real uid.
OPERATOR = ("user", command_line_operator().subject, "hf-adapter-cli")


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_each_door_leaves_one_audit_entry_naming_its_actor(
    empty_database_url: URL,
    mocks: tuple[Mock, Mock],
    idp: IdpProcess,
    queue_broker: str | None,
) -> None:
    kki, sisdmk = mocks
    registrations = kki.records("registrations")
    str_numbers = [r["str_number"] for r in registrations]
    by_api, by_cli, by_event = str_numbers[:3]
    worker_id = str(sisdmk.records("health-workers")[0]["worker_id"])

    with write_stack(empty_database_url, mocks, idp, broker=queue_broker) as stack:
        adapter = stack.adapter
        adapter.start_worker(concurrency=2)  # it starts up while the look-ups run
        # Look-ups of registrations the store does not hold yet: each refresh writes one.
        with stack.api(PORTAL) as portal:
            response = portal.post("/api/v1/registrations/lookup", json={"str_number": by_api})
        assert response.status_code == 200, response.text
        assert response.json()["live"] is True
        status, output = adapter.cli("lookup", "--str", by_cli)
        assert status == 0, output
        assert "from KKI just now" in output

        # One webhook event from each source, applied by the worker.
        (kki_event,) = emit(kki, "registration.corrected", key=by_event)["events"]
        (sisdmk_event,) = emit(sisdmk, "worker.updated", key=worker_id)["events"]
        adapter.wait_for(lambda: adapter.counts() == {"done": 2}, what="both events applied")
        inbox = {event.webhook_id: str(event.id) for event in adapter.events()}

        # Then (so it cannot write the event's record first) a batch sync in pages brings
        # the rest of KKI's registrations.
        status, output = adapter.cli("sync", "--system", "kki", "--page-size", str(SYNC_PAGE))
        assert status == 0, output
        (run,) = stack.sync_runs("kki")

        lookups = stack.entries("lookup.refresh")
        assert [(entry.actor, entry.written) for entry in lookups] == [
            (PORTAL_SERVICE, [by_api]),
            (OPERATOR, [by_cli]),
        ]
        for entry in lookups:
            assert entry.resource_type == "kki:registrations"
            assert entry.detail["by"] == "str_number"
            assert "nik" in entry.fields

        applied = stack.entries("event.apply")
        assert {entry.actor for entry in applied} == {WORKER}
        assert {
            tuple(entry.detail["event_ids"]): (
                entry.detail["event_types"],
                entry.resource_type,
                entry.written,
            )
            for entry in applied
        } == {
            (inbox[kki_event["event_id"]],): (
                ["registration.corrected"],
                "kki:registrations",
                [by_event],
            ),
            (inbox[sisdmk_event["event_id"]],): (
                ["worker.updated"],
                "sisdmk:health-workers",
                [worker_id],
            ),
        }
        assert len(applied) == 2

        # Who started the run at the console: its own entry, as an API request's caller has
        # (`requested_by` is the API's, null for console runs as the contract says).
        (start,) = stack.entries("sync.start")
        assert (start.actor, start.detail) == (OPERATOR, {"system": "kki", "full": False})
        assert run.requested_by is None

        pages = stack.entries("sync.write")
        assert len(pages) == math.ceil(len(str_numbers) / SYNC_PAGE), "one entry per page"
        assert {entry.actor for entry in pages} == {SYNC}
        assert {entry.detail["run_id"] for entry in pages} == {str(run.id)}
        synced = [str_number for entry in pages for str_number in entry.written]
        assert sorted(synced) == sorted(set(str_numbers) - {by_api, by_cli, by_event})
        assert sum(entry.detail["created"] for entry in pages) == len(synced)

        # Each record written is named by exactly one write entry, whichever door wrote it.
        written = [i for entry in stack.entries(*WRITE_ACTIONS) for i in entry.written]
        assert sorted(written) == sorted([*str_numbers, worker_id])
        trail = json.dumps([entry.detail for entry in stack.entries()])
        assert not any(registration["nik"] in trail for registration in registrations)

        status, output = adapter.cli("audit", "verify")
        assert status == 0, output
        assert f"audit trail intact: {stack.audit_count():,} entries" in output
