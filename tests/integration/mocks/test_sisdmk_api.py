"""The SISDMK mock over real HTTP: token endpoint, envelope, paging, facilities, consistency
with KKI for the same seed."""

from __future__ import annotations

import httpx
import pytest

from harness.processes import start_mock
from tests.support.mock_servers import (
    SEED,
    SISDMK_CLIENT,
    SISDMK_READONLY,
    SIZE,
    Mock,
    all_pages,
    sisdmk_token,
)

pytestmark = pytest.mark.integration

TOKEN_PATH = "/oauth2/v1/accesstoken"


def test_token_response_has_satusehat_shape(sisdmk_mock: Mock) -> None:
    response = httpx.post(
        f"{sisdmk_mock.url}{TOKEN_PATH}",
        params={"grant_type": "client_credentials"},
        data=SISDMK_CLIENT,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "BearerToken"
    assert body["expires_in"] == "14399"
    assert body["status"] == "approved"
    scalar = {k: v for k, v in body.items() if k != "api_product_list_json"}
    assert all(isinstance(v, str) for v in scalar.values()), "every scalar value is a string"


def test_bad_client_secret_is_401_operation_outcome(sisdmk_mock: Mock) -> None:
    response = httpx.post(
        f"{sisdmk_mock.url}{TOKEN_PATH}",
        params={"grant_type": "client_credentials"},
        data={**SISDMK_CLIENT, "client_secret": "wrong"},
    )
    assert response.status_code == 401
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "wrong" not in response.text


def test_unsupported_grant_type_is_400(sisdmk_mock: Mock) -> None:
    response = httpx.post(
        f"{sisdmk_mock.url}{TOKEN_PATH}", params={"grant_type": "password"}, data=SISDMK_CLIENT
    )
    assert response.status_code == 400


def test_api_without_token_is_401_in_sisdmk_envelope(sisdmk_mock: Mock) -> None:
    response = httpx.get(f"{sisdmk_mock.url}/v1/health-workers")
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == 401
    assert isinstance(body["message"], str)


def test_readonly_client_reads_but_cannot_subscribe(sisdmk_mock: Mock) -> None:
    token = sisdmk_token(sisdmk_mock.url, SISDMK_READONLY)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{sisdmk_mock.url}/v1/health-workers", headers=headers).status_code == 200
    response = httpx.post(
        f"{sisdmk_mock.url}/v1/webhook-subscriptions",
        headers=headers,
        json={"url": "http://127.0.0.1:9/hooks"},
    )
    assert response.status_code == 403
    assert response.json()["status"] == 403


def test_expired_token_is_401() -> None:
    # Seconds enough to issue a token and use it once on a busy machine, then see it expire.
    process, url = start_mock("sisdmk", size=10, extra=["--token-ttl", "3"])
    try:
        token = sisdmk_token(url)
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/v1/health-workers", headers=headers).status_code == 200
        import time

        time.sleep(3.2)
        assert httpx.get(f"{url}/v1/health-workers", headers=headers).status_code == 401
    finally:
        process.close()


def test_paging_returns_every_worker_once(sisdmk: httpx.Client) -> None:
    workers = all_pages(sisdmk, "/v1/health-workers", limit=41)
    assert len({w["worker_id"] for w in workers}) == len(workers) == SIZE


def test_facility_listing_holds_only_that_facilitys_workers(sisdmk: httpx.Client) -> None:
    page = sisdmk.get("/v1/health-workers", params={"limit": 50}).json()["data"]
    worker = next(w for w in page if w["facility_code"])  # ~2% have no current employment
    code = worker["facility_code"]
    listed = all_pages(sisdmk, f"/v1/facilities/{code}/health-workers")
    assert worker["worker_id"] in {w["worker_id"] for w in listed}
    assert all(w["facility_code"] == code for w in listed)
    filtered = all_pages(sisdmk, "/v1/health-workers", facility_code=code)
    assert [w["worker_id"] for w in filtered] == [w["worker_id"] for w in listed]


def test_unknown_facility_is_404_envelope(sisdmk: httpx.Client) -> None:
    response = sisdmk.get("/v1/facilities/9999999")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_lookup_by_nik_finds_the_worker(sisdmk: httpx.Client) -> None:
    worker = sisdmk.get("/v1/health-workers", params={"limit": 1}).json()["data"][0]
    found = sisdmk.post("/v1/health-workers/lookup", json={"nik": worker["nik"]})
    assert found.status_code == 200
    assert found.json()["data"]["worker_id"] == worker["worker_id"]


def test_sub_resources_agree_with_the_worker(sisdmk: httpx.Client) -> None:
    worker = sisdmk.get("/v1/health-workers", params={"limit": 1}).json()["data"][0]
    wid = worker["worker_id"]
    assert sisdmk.get(f"/v1/health-workers/{wid}").json()["data"] == worker
    for field in ("employments", "educations", "certifications"):
        assert all_pages(sisdmk, f"/v1/health-workers/{wid}/{field}", limit=1) == worker[field]


def test_malformed_worker_id_is_400(sisdmk: httpx.Client) -> None:
    response = sisdmk.get("/v1/health-workers/not-a-uuid")
    assert response.status_code == 400
    assert response.json()["status"] == 400


def test_same_seed_gives_same_people_as_kki(sisdmk: httpx.Client) -> None:
    kki_process, kki_url = start_mock("kki", size=SIZE, seed=SEED)
    try:
        kki = httpx.Client(base_url=kki_url, headers={"X-API-Key": "kki-dev-token"})
        registrations = []
        cursor = None
        while True:
            page = kki.get(
                "/v1/registrations", params={"limit": 500, **({"cursor": cursor} if cursor else {})}
            ).json()
            registrations += page["data"]
            cursor = page["page"]["next_cursor"]
            if not cursor:
                break
        workers = all_pages(sisdmk, "/v1/health-workers", limit=500)
        assert {r["nik"] for r in registrations} == {w["nik"] for w in workers}
        # Every SISDMK certification names the STR that KKI holds for the same NIK.
        str_by_nik = {r["nik"]: r["str_number"] for r in registrations}
        for w in workers:
            numbers = {c.get("str_number") for c in w["certifications"]} - {None}
            assert str_by_nik[w["nik"]] in numbers
        # A share of people differ on purpose (mismatch rate 0.02 by default).
        names_kki = {r["nik"]: (r["full_name"], r["birth_date"]) for r in registrations}
        differing = sum(names_kki[w["nik"]] != (w["full_name"], w["birth_date"]) for w in workers)
        assert 0 < differing < SIZE * 0.06
    finally:
        kki_process.close()
