"""Every fault kind, injected through the admin API (or a profile) of a real mock process and
observed from an ordinary HTTP client."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from harness.processes import start_mock
from tests.support.mock_servers import Mock

pytestmark = pytest.mark.integration


def add_fault(mock: Mock, **rule: object) -> dict:  # type: ignore[type-arg]
    response = mock.admin.post("/faults", json=rule)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_error_fault_answers_in_kki_problem_format(kki: httpx.Client, kki_mock: Mock) -> None:
    add_fault(kki_mock, route="getRegistration", kind="error", status=503, retry_after_s=7)
    response = kki.get("/v1/registrations/QN00000000000001")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 503
    # Other routes are untouched.
    assert kki.get("/v1/registrations", params={"limit": 1}).status_code == 200


def test_error_fault_answers_in_sisdmk_envelope(sisdmk: httpx.Client, sisdmk_mock: Mock) -> None:
    add_fault(sisdmk_mock, route="GET /v1/health-workers", kind="error", status=500)
    response = sisdmk.get("/v1/health-workers")
    assert response.status_code == 500
    assert response.json()["status"] == 500


def test_probability_and_seed_make_faults_reproducible(kki: httpx.Client, kki_mock: Mock) -> None:
    def run() -> list[int]:
        kki_mock.admin.delete("/faults")
        add_fault(kki_mock, route="*", kind="error", status=502, probability=0.5, seed=99)
        return [kki.get("/v1/registrations", params={"limit": 1}).status_code for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert 5 < first.count(502) < 35


def test_times_limits_how_often_a_fault_applies(kki: httpx.Client, kki_mock: Mock) -> None:
    rule = add_fault(kki_mock, route="listRegistrations", kind="error", status=500, times=2)
    statuses = [kki.get("/v1/registrations", params={"limit": 1}).status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert kki_mock.admin.get(f"/faults/{rule['id']}").status_code == 404


def test_latency_fault_delays_the_answer(kki: httpx.Client, kki_mock: Mock) -> None:
    add_fault(kki_mock, route="listRegistrations", kind="latency", latency_ms=400)
    started = time.monotonic()
    response = kki.get("/v1/registrations", params={"limit": 1})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


def test_timeout_fault_never_answers(kki_mock: Mock) -> None:
    kki_mock.reset()
    add_fault(kki_mock, route="listRegistrations", kind="timeout", timeout_ms=3000)
    with pytest.raises((httpx.ReadTimeout, httpx.RemoteProtocolError)):
        httpx.get(
            f"{kki_mock.url}/v1/registrations",
            headers={"X-API-Key": "kki-dev-token"},
            timeout=httpx.Timeout(5.0, read=1.0),
        )


def test_rate_limit_fault_answers_429_with_retry_after(kki: httpx.Client, kki_mock: Mock) -> None:
    add_fault(kki_mock, route="listRegistrations", kind="rate_limit", limit=3, window_s=30)
    statuses = [kki.get("/v1/registrations", params={"limit": 1}) for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    assert int(statuses[3].headers["retry-after"]) >= 1


def test_malformed_fault_sends_unparseable_json(kki: httpx.Client, kki_mock: Mock) -> None:
    add_fault(kki_mock, route="listRegistrations", kind="malformed")
    response = kki.get("/v1/registrations", params={"limit": 1})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_truncated_fault_cuts_the_body(kki_mock: Mock) -> None:
    kki_mock.reset()
    add_fault(kki_mock, route="listRegistrations", kind="truncated")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(
            f"{kki_mock.url}/v1/registrations",
            params={"limit": 50},
            headers={"X-API-Key": "kki-dev-token"},
        )


def test_down_fault_refuses_connections_then_recovers() -> None:
    process, url = start_mock("kki", size=20)
    try:
        port = int(url.rsplit(":", 1)[1])
        admin = httpx.Client(base_url=f"{url}/__admin")
        response = admin.post("/faults", json={"route": "*", "kind": "down", "duration_ms": 1500})
        assert response.status_code == 201, response.text
        # The next public request triggers the outage.
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{url}/v1/registrations", headers={"X-API-Key": "kki-dev-token"})
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                ok = httpx.get(f"{url}/__admin/health", timeout=1)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        else:
            raise AssertionError("the mock did not come back after its outage")
        assert ok.status_code == 200
    finally:
        process.close()


def test_fault_profile_applies_at_start(tmp_path: Path) -> None:
    profile = tmp_path / "faults.yaml"
    profile.write_text("faults:\n  - route: getHealthWorker\n    kind: error\n    status: 503\n")
    process, url = start_mock("sisdmk", size=10, extra=["--faults", str(profile)])
    try:
        faults = httpx.get(f"{url}/__admin/faults").json()["data"]
        assert [(f["route"], f["kind"], f["status"]) for f in faults] == [
            ("getHealthWorker", "error", 503)
        ]
    finally:
        process.close()


def test_bad_fault_profile_stops_start_with_a_precise_message(tmp_path: Path) -> None:
    profile = tmp_path / "faults.yaml"
    profile.write_text("faults:\n  - route: '*'\n    kind: latency\n")
    with pytest.raises(Exception, match="latency"):
        start_mock("kki", size=10, extra=["--faults", str(profile)], timeout_s=30)


def test_invalid_fault_rule_is_422(kki_mock: Mock) -> None:
    response = kki_mock.admin.post("/faults", json={"route": "*", "kind": "down"})
    assert response.status_code in (400, 422)
    assert "duration_ms" in response.text


def test_fault_on_token_endpoint_answers_operation_outcome(sisdmk_mock: Mock) -> None:
    add_fault(sisdmk_mock, route="issueAccessToken", kind="error", status=503)
    response = httpx.post(
        f"{sisdmk_mock.url}/oauth2/v1/accesstoken",
        params={"grant_type": "client_credentials"},
        data={"client_id": "sisdmk-dev-client", "client_secret": "sisdmk-dev-secret"},
    )
    assert response.status_code == 503
    assert response.json()["resourceType"] == "OperationOutcome"
