"""The data-flow scenarios, in order, against one stack (e2e/conftest.py): each test starts from
what the ones before it left, as an operator's day would. docs/e2e.md says what each proves."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from kombu import Connection, Queue
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from adapter.queue.topology import EVENT_ROUTING_KEY, QueueTopology
from adapter.webhooks.signature import sign
from e2e.pki import CertificateAuthority
from e2e.stack import QUEUE_PREFIX, Adapter, RecordingSink, Stack, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.keycloak, pytest.mark.slow]

OPS = "hf-ops"  # sync:run, integrations:admin, events:admin, audit:read
PORTAL = "healthforce-portal"  # healthworkers:read (+ pii), audit:read


def all_pages(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        items += response.json()["data"]
        cursor = response.json()["page"].get("next_cursor")
        if not cursor:
            return items


def runs_of(stack: Stack) -> list[dict[str, Any]]:
    with stack.api(OPS) as ops:
        return all_pages(ops, "/sync-runs")


def wait_for_run(stack: Stack, run_id: str) -> dict[str, Any]:
    """The requested run once it has ended; a failed run fails the test with its error."""

    def ended() -> dict[str, Any] | None:
        with stack.api(OPS) as ops:
            run: dict[str, Any] = ops.get(f"/sync-runs/{run_id}").raise_for_status().json()
        return run if run["status"] in ("succeeded", "failed") else None

    run = eventually(ended, what=f"sync run {run_id} to end")
    assert run["status"] == "succeeded", run
    return run


def request_sync(stack: Stack, system: str) -> dict[str, Any]:
    with stack.api(OPS) as ops:
        response = ops.post("/sync-runs", json={"system": system, "full": False})
    assert response.status_code == 202, response.text
    return wait_for_run(stack, str(response.json()["id"]))


# -- 1. the first full sync, read through the API with a Keycloak token --------------------


def test_first_sync_of_both_systems_makes_every_worker_readable(stack: Stack) -> None:
    def first_runs() -> dict[str, dict[str, Any]] | None:
        ended = {
            run["system"]: run for run in runs_of(stack) if run["status"] in ("succeeded", "failed")
        }
        return ended if {"kki", "sisdmk"} <= ended.keys() else None

    runs = eventually(first_runs, what="the scheduler's first run of SISDMK and of KKI")
    assert {system: run["status"] for system, run in runs.items()} == {
        "kki": "succeeded",
        "sisdmk": "succeeded",
    }, runs
    people = {r["nik"] for r in stack.sisdmk.records("health-workers")}
    people |= {r["nik"] for r in stack.kki.records("registrations")}

    stored_strs: set[str] = set()
    with stack.api(PORTAL) as portal:
        workers = all_pages(portal, "/health-workers", limit=200)
        assert {worker["nik"] for worker in workers} == people
        for worker in workers:
            assert worker["masked"] is False  # the portal holds healthworkers:read:pii
            detail = portal.get(f"/health-workers/{worker['id']}")
            assert detail.status_code == 200, detail.text
            assert detail.json()["id"] == worker["id"]
            stored_strs |= {r["str_number"] for r in detail.json()["registrations"]}
    assert stored_strs == {r["str_number"] for r in stack.kki.records("registrations")}


def stored_versions(stack: Stack) -> dict[str, int]:
    """STR number → the KKI version the adapter holds, read through the API."""
    versions: dict[str, int] = {}
    with stack.api(PORTAL) as portal:
        for worker in all_pages(portal, "/health-workers", limit=200):
            detail = portal.get(f"/health-workers/{worker['id']}").raise_for_status().json()
            for registration in detail["registrations"]:
                versions[registration["str_number"]] = registration["provenance"]["source_version"]
    return versions


# -- TLS: a wrong or missing CA is refused, never accepted -----------------------------------


def test_a_client_without_the_ca_cannot_talk_to_the_adapter(stack: Stack) -> None:
    assert stack.adapter is not None
    url = f"{stack.adapter.url}/healthz"
    assert httpx.get(url, verify=stack.verify, timeout=10).status_code == 200
    wrong = ssl.create_default_context(cafile=stack.wrong_ca.bundle)
    for verify in (True, wrong):  # the system trust store; the wrong CA
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url, verify=verify, timeout=10)
    # Nor the mocks, nor Keycloak.
    for url in (f"{stack.kki.url}/__admin/health", stack.keycloak.discovery_url()):
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url, verify=wrong, timeout=10)


def test_the_adapter_refuses_a_source_its_ca_bundle_does_not_vouch_for(stack: Stack) -> None:
    assert stack.adapter is not None
    wrong = {
        **stack.adapter.environment,
        "CA_BUNDLE": str(stack.wrong_ca.bundle),
        "OTEL_TRACES_EXPORTER": "none",  # only the source's certificate is at stake here
    }
    code, output = stack.adapter.cli_with(wrong, "sync", "--system", "sisdmk")
    assert code != 0, output
    assert "TLS certificate verify failed" in output, output
    assert "CA_BUNDLE" in output, output
    code, output = stack.adapter.cli_with(wrong, "lookup", "--str", _any_str(stack))
    assert "STALE" in output, output  # a look-up serves the stored copy, never the untrusted


def test_the_adapter_refuses_a_keycloak_its_ca_bundle_does_not_vouch_for(stack: Stack) -> None:
    assert stack.adapter is not None
    wrong = {
        **stack.adapter.environment,
        "CA_BUNDLE": str(stack.wrong_ca.bundle),
        "OTEL_TRACES_EXPORTER": "none",
    }
    doubting = Adapter(wrong, stack.adapter.certificate, stack.ca.bundle)
    try:
        doubting.start_server(workers=1)
        response = httpx.get(
            f"{doubting.url}/api/v1/health-workers",
            headers={"Authorization": f"Bearer {stack.token(PORTAL)}"},
            verify=stack.verify,
            timeout=30,
        )
        # No key set could be fetched from a Keycloak it does not trust: no token is valid.
        assert response.status_code == 503, response.text
        assert response.json()["reason"] == "jwks_unavailable"
        assert doubting.server is not None
        assert "TLS certificate verify failed" in doubting.server.output(), doubting.server.output()
    finally:
        doubting.close()


def _any_str(stack: Stack) -> str:
    return str(stack.kki.records("registrations")[0]["str_number"])


def test_the_mocks_refuse_a_webhook_receiver_outside_their_ca(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    impostor_ca = CertificateAuthority.new(tmp_path_factory.mktemp("impostor"), "impostor")
    impostor = RecordingSink(impostor_ca.issue("impostor"))
    try:
        subscription = stack.kki_subscription(f"{impostor.url}/hooks")
        try:
            (event,) = stack.kki.emit(
                "registration.corrected", count=1, subscription_id=subscription
            )

            def failed_attempt() -> dict[str, Any] | None:
                found = stack.kki.admin.get(
                    "/deliveries", params={"event_id": event["event_id"]}
                ).raise_for_status()
                attempts = [a for d in found.json()["data"] for a in d.get("attempts", [])]
                return attempts[0] if attempts else None

            attempt = eventually(failed_attempt, what="the delivery's first attempt")
            assert attempt.get("status_code") is None, attempt
            assert "certificate verify failed" in attempt["error"], attempt
            assert impostor.posts == []
        finally:
            stack.kki_unsubscribe(subscription)
    finally:
        impostor.close()


def plain_http_answer(url: str) -> str:
    """What a server says to a plain-HTTP request: a transport error, or its status."""
    try:
        response = httpx.get(url, timeout=10)
    except httpx.TransportError as exc:
        return type(exc).__name__
    return f"HTTP {response.status_code}"


def test_plain_http_is_not_served(stack: Stack) -> None:
    assert stack.adapter is not None
    for url in (stack.adapter.url, stack.kki.url, stack.sisdmk.url, stack.keycloak.base_url):
        answer = plain_http_answer(url.replace("https://", "http://") + "/")
        # A closed connection, or an error about TLS (Keycloak answers 400): never a page.
        assert not answer.startswith(("HTTP 2", "HTTP 3")), (url, answer)


# -- helpers of the scenarios ----------------------------------------------------------------


def worker_with_str(stack: Stack, str_number: str) -> dict[str, Any] | None:
    with stack.api(PORTAL) as portal:
        found = portal.get("/health-workers", params={"str_number": str_number})
        assert found.status_code == 200, found.text
        workers = found.json()["data"]
        if not workers:
            return None
        detail: dict[str, Any] = (
            portal.get(f"/health-workers/{workers[0]['id']}").raise_for_status().json()
        )
    return detail


def registration_in(worker: dict[str, Any] | None, str_number: str) -> dict[str, Any] | None:
    if worker is None:
        return None
    for registration in worker["registrations"]:
        if registration["str_number"] == str_number:
            found: dict[str, Any] = registration
            return found
    return None


def webhook_event(stack: Stack, webhook_id: str, state: str = "any") -> dict[str, Any] | None:
    """The adapter's inbox entry of the webhook `webhook_id` (the source's event id)."""
    with stack.api(OPS) as ops:
        params = {"state": state, "limit": 200} if state != "any" else {"limit": 200}
        if state == "any":
            entries = []
            for one in ("pending", "done", "failed", "purged"):
                entries += all_pages(ops, "/webhook-events", state=one, limit=200)
        else:
            entries = all_pages(ops, "/webhook-events", **params)
    for entry in entries:
        if entry["webhook_id"] == webhook_id:
            return entry
    return None


def event_in_state(stack: Stack, webhook_id: str, state: str) -> dict[str, Any] | None:
    entry = webhook_event(stack, webhook_id, state)
    return entry if entry is not None and entry["state"] == state else None


def kki_version(stack: Stack, str_number: str) -> int:
    return int(stack.kki.record("registrations", str_number)["version"])


# -- 2. a revocation by webhook, visible through the API within seconds --------------------


def test_a_kki_revocation_by_webhook_is_visible_through_the_api_within_seconds(
    stack: Stack,
) -> None:
    str_number = _any_str(stack)
    before = registration_in(worker_with_str(stack, str_number), str_number)
    assert before is not None
    assert before["status"] != "DICABUT", before
    stack.kki.admin.post(
        f"/registrations/{str_number}/status",
        json={"status": "DICABUT", "reason": "Putusan MKDKI (e2e)"},
    ).raise_for_status()

    def revoked() -> dict[str, Any] | None:
        found = registration_in(worker_with_str(stack, str_number), str_number)
        return found if found is not None and found["status"] == "DICABUT" else None

    registration = eventually(revoked, what=f"{str_number} DICABUT through the API", timeout_s=30)
    assert registration["status_reason"] == "Putusan MKDKI (e2e)"
    assert registration["provenance"]["source_version"] == kki_version(stack, str_number)


# -- 3. a SISDMK transfer; an identity mismatch flagged and listed ---------------------------


def test_a_sisdmk_transfer_moves_the_worker_and_a_name_mismatch_is_listed(stack: Stack) -> None:
    people = stack.sisdmk.records("health-workers")
    person = next(p for p in people if p["is_active"] and p["facility_code"])
    old_facility = person["facility_code"]
    facilities = stack.sisdmk.records("facilities")
    new = next(f for f in facilities if f["code"] != old_facility)
    employments = [
        {**job, "is_current": False, "end_date": "2026-01-31", "end_reason": "MUTASI"}
        if job["is_current"]
        else job
        for job in person["employments"]
    ]
    current = next(job for job in person["employments"] if job["is_current"])
    employments.insert(
        0,
        {
            **current,
            "facility_code": new["code"],
            "facility_name": new["name"],
            "tmt_start": "2026-02-01",
            "end_date": None,
            "end_reason": None,
            "is_current": True,
        },
    )
    stack.sisdmk.admin.patch(
        f"/records/health-workers/{person['worker_id']}",
        json={"facility_code": new["code"], "employments": employments},
    ).raise_for_status()

    def moved() -> list[dict[str, Any]] | None:
        with stack.api(PORTAL) as portal:
            found = portal.get("/health-workers", params={"facility_code": new["code"]})
        workers = [w for w in found.raise_for_status().json()["data"] if w["nik"] == person["nik"]]
        return workers or None

    eventually(moved, what=f"the worker listed at facility {new['code']}", timeout_s=30)

    # KKI now spells one person's name differently from SISDMK: a finding, listed.
    registration = next(r for r in stack.kki.records("registrations") if r["nik"] != person["nik"])
    stack.kki.admin.patch(
        f"/records/registrations/{registration['str_number']}",
        json={"full_name": registration["full_name"] + " Berbeda"},
    ).raise_for_status()

    def flagged() -> dict[str, Any] | None:
        with stack.api(PORTAL) as portal:
            findings = all_pages(
                portal, "/identity-findings", rule="identity_mismatch", open_only="true"
            )
        worker = worker_with_str(stack, registration["str_number"])
        if worker is None:
            return None
        for finding in findings:
            if finding["worker_id"] == worker["id"] and finding["field"] == "full_name":
                return finding
        return None

    finding = eventually(flagged, what="a full_name identity_mismatch finding", timeout_s=30)
    assert finding["kki_has_value"] is True
    assert finding["sisdmk_has_value"] is True


# -- 5. a poison event: dead-lettered, listed, replayed after the fix -------------------------


def test_a_poison_event_is_dead_lettered_listed_and_replayed_after_the_fix(stack: Stack) -> None:
    str_number = str(stack.kki.records("registrations")[1]["str_number"])
    # KKI answers this registration with a body that is not JSON: the event cannot be applied.
    fault = stack.kki.add_fault({"route": "getRegistration", "kind": "malformed"})
    try:
        (event,) = stack.kki.emit("registration.corrected", key=str_number)
        failed = eventually(
            lambda: event_in_state(stack, event["event_id"], "failed"),
            what=f"event {event['event_id']} dead-lettered",
        )
        assert failed["resource_id"] == str_number
        assert failed["last_error"], failed
        alert = eventually(
            lambda: next((a for a in stack.sink.alerts() if a["event_id"] == failed["id"]), None),
            what="the dead-letter alert at ALERT_WEBHOOK_URL (over HTTPS)",
        )
        assert alert["alert"] == "webhook_event_dead_lettered"
    finally:
        stack.kki.remove_fault(fault)  # the fix

    with stack.api(OPS) as ops:
        replayed = ops.post(f"/webhook-events/{failed['id']}/replay")
    assert replayed.status_code == 200, replayed.text
    eventually(
        lambda: event_in_state(stack, event["event_id"], "done"),
        what=f"event {event['event_id']} applied after the replay",
    )
    stored = registration_in(worker_with_str(stack, str_number), str_number)
    assert stored is not None
    assert stored["provenance"]["source_version"] == kki_version(stack, str_number)


# -- 6. an operator disables KKI: no syncs, events held; enabled: caught up -----------------


def test_a_disabled_kki_runs_no_sync_and_holds_events_until_enabled(stack: Stack) -> None:
    str_number = str(stack.kki.records("registrations")[2]["str_number"])
    with stack.api(OPS) as ops:
        answer = ops.patch("/integrations/kki", json={"enabled": False})
        assert answer.status_code == 200, answer.text
        assert answer.json()["enabled"] is False
        refused = ops.post("/sync-runs", json={"system": "kki", "full": False})
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason"] == "connection_disabled"
    kki_runs = [run["id"] for run in runs_of(stack) if run["system"] == "kki"]
    (event,) = stack.kki.emit("registration.corrected", key=str_number)

    def held() -> dict[str, Any] | None:
        entry = event_in_state(stack, event["event_id"], "pending")
        return entry if entry is not None and "disabled" in (entry["last_error"] or "") else None

    held_entry = eventually(held, what=f"event {event['event_id']} held")
    assert held_entry["attempts"] == 0, held_entry  # a hold spends no attempt
    stored = registration_in(worker_with_str(stack, str_number), str_number)
    assert stored is not None
    assert stored["provenance"]["source_version"] < kki_version(stack, str_number)
    assert [run["id"] for run in runs_of(stack) if run["system"] == "kki"] == kki_runs

    with stack.api(OPS) as ops:
        assert ops.patch("/integrations/kki", json={"enabled": True}).status_code == 200
    eventually(
        lambda: event_in_state(stack, event["event_id"], "done"),
        what=f"held event {event['event_id']} applied once KKI is enabled",
    )
    run = request_sync(stack, "kki")
    assert run["status"] == "succeeded"
    stored = registration_in(worker_with_str(stack, str_number), str_number)
    assert stored is not None
    assert stored["provenance"]["source_version"] == kki_version(stack, str_number)


# -- 7. the audit trail: every step, the right actor, a chain that verifies ------------------


def test_the_audit_trail_holds_every_step_with_its_actor_and_verifies(stack: Stack) -> None:
    assert stack.adapter is not None
    with stack.api(OPS) as ops:
        entries = all_pages(ops, "/audit-events", limit=200)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_action.setdefault(entry["action"], []).append(entry)

    def clients(action: str) -> set[str | None]:
        return {entry["actor_client"] for entry in by_action.get(action, [])}

    assert clients("integration.update") == {OPS}, by_action.get("integration.update")
    assert len(by_action["integration.update"]) >= 2  # disabled, then enabled
    assert OPS in clients("sync.start")
    assert clients("events.replay") == {OPS}
    assert PORTAL in clients("healthworker.read")
    assert PORTAL in clients("healthworker.list")
    api_entries = [e for a in ("integration.update", "healthworker.read") for e in by_action[a]]
    assert {entry["actor_kind"] for entry in api_entries} == {"service"}
    # What the worker and the syncs applied: the adapter's own actors, never an API client.
    assert {entry["actor_subject"] for entry in by_action["event.apply"]} == {"hf-adapter worker"}
    assert all(entry["actor_kind"] == "system" for entry in by_action["event.apply"])

    code, output = stack.adapter.cli("audit", "verify")
    assert code == 0, output


# -- 8. one webhook's trace id through logs, queue, audit and the call to the source ---------

TRACE_ID = "5a1f0c2e9b7d4e3f8a6b2c1d0e9f8a7b"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_one_webhooks_trace_id_is_followed_through_logs_queue_audit_and_the_source_call(
    stack: Stack,
) -> None:
    assert stack.adapter is not None
    str_number = str(stack.kki.records("registrations")[3]["str_number"])
    topology = QueueTopology(QUEUE_PREFIX, 1, (1.0,))
    with Connection(stack.rabbit.url, connect_timeout=10) as connection:
        # A queue of the test's own on the events exchange: a copy of each message published.
        copies = Queue(
            f"{QUEUE_PREFIX}.e2e-copies",
            exchange=topology.events_exchange,
            routing_key=EVENT_ROUTING_KEY,
            exclusive=True,
        )(connection.default_channel)
        copies.declare()
        # KKI gets a newer version the adapter is not told about (the event goes to another
        # subscription), so the traced webhook below is the one that brings it in.
        quiet = stack.kki_subscription(f"{stack.sink.url}/hooks")
        try:
            stack.kki.emit("registration.corrected", key=str_number, subscription_id=quiet)
        finally:
            stack.kki_unsubscribe(quiet)
        registration = stack.kki.record("registrations", str_number)
        # KKI's first two answers are 503: the worker's failed attempt is logged, then retried.
        stack.kki.add_fault(
            {"route": "getRegistration", "kind": "error", "status": 503, "times": 2}
        )
        webhook_id = str(uuid.uuid4())
        body = json.dumps(
            {
                "event_id": webhook_id,
                "type": "registration.corrected",
                "occurred_at": "2026-02-01T09:30:00.000000Z",
                "source": "kki",
                "subject": {"nik_hash": "0" * 64, "str_number": str_number},
                "data": {
                    "str_number": str_number,
                    "version": registration["version"],
                    "status": registration["certification"]["status"],
                },
                "version": "1",
            }
        ).encode()
        moment = int(time.time())
        secret = stack.adapter.environment["KKI_WEBHOOK_SECRET"]
        response = httpx.post(
            f"{stack.adapter.url}/webhooks/kki",
            content=body,
            headers={
                "webhook-id": webhook_id,
                "webhook-timestamp": str(moment),
                "webhook-signature": sign(secret, webhook_id, moment, body),
                "content-type": "application/json",
                "traceparent": TRACEPARENT,
            },
            verify=stack.verify,
            timeout=30,
        )
        assert response.status_code == 202, response.text
        assert response.headers["X-Trace-Id"] == TRACE_ID
        done = eventually(
            lambda: event_in_state(stack, webhook_id, "done"), what="the traced event applied"
        )
        message = eventually(lambda: copies.get(no_ack=True), what="the queue message's copy")

    # The queue message carries the trace (header and body).
    assert message.headers["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert json.loads(message.body)["traceparent"].startswith(f"00-{TRACE_ID}-")

    # The audit entry of the change the worker applied. The listing shows sealed entries; one
    # committed while another process's sealer is mid-turn stays pending (X-Audit-Pending) until
    # that sealer's next turn, so it is waited for.
    def applied_entries() -> list[dict[str, Any]] | None:
        with stack.api(OPS) as ops:
            found = [
                entry
                for entry in all_pages(ops, "/audit-events", action="event.apply", limit=200)
                if done["id"] in (entry.get("detail") or {}).get("event_ids", [])
            ]
        return found or None

    applied = eventually(applied_entries, what="the event.apply entry, sealed and listed")
    assert [entry["trace_id"] for entry in applied] == [TRACE_ID], applied

    # The worker's log lines about the failed attempt: its own and the client's retry.
    traced = [
        line for line in json_lines(stack.adapter.output()) if line.get("trace_id") == TRACE_ID
    ]
    assert any(done["id"] in str(line.get("event")) for line in traced), traced
    assert any(line.get("event") == "external_call_retry" for line in traced), traced

    # The call to KKI for the resource: a client span of the same trace, exported over HTTPS.
    eventually(
        lambda: stack.sink.traces_hold(bytes.fromhex(TRACE_ID), b"KKI getRegistration") or None,
        what="the span of the worker's call to KKI under the webhook's trace",
    )
    eventually(
        lambda: stack.sink.traces_hold(bytes.fromhex(TRACE_ID), b"POST /webhooks/<source>") or None,
        what="the receiver's span under the webhook's trace",
    )


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


# -- 4. KKI down: stale look-ups, a degraded connection, an alert; back: caught up ----------

OUTAGE_MS = 20_000


def kki_unreachable(stack: Stack) -> bool | None:
    """True once KKI refuses connections (`down` closes its socket); a slow answer on a busy
    machine is no outage, and is looked at again."""
    try:
        stack.kki.admin.get("/health", timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return None
    return None


def kki_reachable(stack: Stack) -> bool | None:
    try:
        stack.kki.admin.get("/health", timeout=2)
    except httpx.TransportError:
        return None
    return True


def integration(stack: Stack, system: str) -> dict[str, Any]:
    with stack.api(OPS) as ops:
        listed = ops.get("/integrations").raise_for_status().json()["data"]
    found: dict[str, Any] = next(entry for entry in listed if entry["system"] == system)
    return found


def test_kki_down_serves_stale_degrades_and_alerts_then_catches_up(stack: Stack) -> None:
    str_number = str(stack.kki.records("registrations")[4]["str_number"])
    other = str(stack.kki.records("registrations")[5]["str_number"])
    # The first public request to KKI takes it down (admin API included) for OUTAGE_MS.
    stack.kki.add_fault({"route": "*", "kind": "down", "duration_ms": OUTAGE_MS, "times": 1})
    (event,) = stack.kki.emit("registration.corrected", key=str_number)
    eventually(lambda: kki_unreachable(stack), what="KKI down (the worker's fetch set it off)")

    with stack.api(PORTAL) as portal:
        answer = portal.post("/registrations/lookup", json={"str_number": other})
    assert answer.status_code == 200, answer.text
    looked_up = answer.json()
    assert looked_up["live"] is False
    assert looked_up["stale"] is True
    assert looked_up["stale_reason"] in ("upstream_unavailable", "circuit_open"), looked_up
    assert [r["str_number"] for r in looked_up["registrations"]] == [other]
    assert integration(stack, "kki")["status"] in ("degraded", "down")
    failed = eventually(
        lambda: event_in_state(stack, event["event_id"], "failed"),
        what="the event KKI could not answer dead-lettered",
    )
    eventually(
        lambda: next((a for a in stack.sink.alerts() if a["event_id"] == failed["id"]), None),
        what="the dead-letter alert for the event KKI could not answer",
    )

    eventually(lambda: kki_reachable(stack), what="KKI back", timeout_s=OUTAGE_MS / 1000 + 30)
    run = request_sync(stack, "kki")
    assert run["status"] == "succeeded"
    assert integration(stack, "kki")["status"] == "healthy"
    stored = registration_in(worker_with_str(stack, str_number), str_number)
    assert stored is not None
    assert stored["provenance"]["source_version"] == kki_version(stack, str_number)


# -- 9. the adapter, RabbitMQ, PostgreSQL restarted mid-storm: nothing lost or doubled -------

STORM_BATCHES = 6
KKI_PER_BATCH = 8
SISDMK_PER_BATCH = 4


def inbox(stack: Stack, webhook_ids: set[str]) -> dict[str, tuple[str, int]]:
    """webhook id → (state, applied_count), read from the database."""
    engine = create_engine(stack.postgres.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT webhook_id, state, applied_count FROM webhook_events")
            ).all()
    finally:
        engine.dispose()
    return {str(r[0]): (str(r[1]), int(r[2])) for r in rows if str(r[0]) in webhook_ids}


def applies_per_event(stack: Stack) -> dict[str, int]:
    """event id → the `event.apply` audit entries naming it, read from the database."""
    engine = create_engine(stack.postgres.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            details = connection.scalars(
                text("SELECT detail FROM audit_events WHERE action = 'event.apply'")
            ).all()
    finally:
        engine.dispose()
    counts: dict[str, int] = {}
    for detail in details:
        for event_id in json.loads(detail or "{}").get("event_ids", []):
            counts[event_id] = counts.get(event_id, 0) + 1
    return counts


def storm(stack: Stack, emitted: list[str], halfway: threading.Event) -> None:
    for batch in range(STORM_BATCHES):
        for event in stack.kki.emit("registration.corrected", count=KKI_PER_BATCH):
            emitted.append(event["event_id"])
        for event in stack.sisdmk.emit("worker.updated", count=SISDMK_PER_BATCH):
            emitted.append(event["event_id"])
        if batch == STORM_BATCHES // 2 - 1:
            halfway.set()
        time.sleep(0.3)


def restart(stack: Stack, part: str) -> None:
    assert stack.adapter is not None
    if part == "adapter":
        stack.adapter.kill_worker()  # SIGKILL: whatever it held comes back from the broker
        stack.adapter.restart_server()  # SIGTERM, then a new gunicorn
        stack.adapter.start_worker()
    elif part == "rabbitmq":
        stack.rabbit.restart()
    else:
        stack.postgres.restart()  # immediate shutdown: crash recovery at start


@pytest.mark.parametrize("part", ["adapter", "rabbitmq", "postgresql"])
def test_a_restart_mid_storm_loses_nothing_and_applies_nothing_twice(
    stack: Stack, part: str
) -> None:
    assert stack.adapter is not None
    emitted: list[str] = []
    halfway = threading.Event()
    storming = threading.Thread(target=storm, args=(stack, emitted, halfway), daemon=True)
    storming.start()
    assert halfway.wait(timeout=120), "the storm never got halfway"
    restart(stack, part)
    storming.join(timeout=300)
    assert not storming.is_alive()
    expected = set(emitted)
    assert len(expected) == STORM_BATCHES * (KKI_PER_BATCH + SISDMK_PER_BATCH)

    def all_done() -> dict[str, tuple[str, int]] | None:
        seen = inbox(stack, expected)
        done = {webhook_id for webhook_id, (state, _) in seen.items() if state == "done"}
        return seen if done == expected else None

    # Progress resets the wait: a slow machine is waited for, a stall fails.
    last: dict[str, tuple[str, int]] = {}
    deadline = time.monotonic() + 60
    while (finished := all_done()) is None:
        now_seen = inbox(stack, expected)
        if now_seen != last:
            last, deadline = now_seen, time.monotonic() + 60
        if time.monotonic() > deadline:
            states: dict[str, int] = {}
            for state, _ in last.values():
                states[state] = states.get(state, 0) + 1
            missing = len(expected) - len(last)
            raise AssertionError(
                f"after restarting {part}: no progress for 60 s; of {len(expected)} events "
                f"{missing} never reached the inbox, the rest by state {states}\n"
                f"{stack.adapter.log_tail()}"
            )
        time.sleep(0.5)

    # Nothing lost: every event is in the inbox once, applied; nothing applied twice.
    assert len(finished) == len(expected)
    assert all(count <= 1 for _, count in finished.values()), finished
    applied = applies_per_event(stack)
    doubled = {event_id: n for event_id, n in applied.items() if n > 1}
    assert doubled == {}
    # And what the store holds is what the sources hold now.
    assert stored_versions(stack) == {
        r["str_number"]: int(r["version"]) for r in stack.kki.records("registrations")
    }
    for process in (stack.adapter.server, stack.adapter.worker, stack.adapter.scheduler):
        assert process is not None
        assert process.is_running(), f"{process.name} exited:\n{process.output()}"
