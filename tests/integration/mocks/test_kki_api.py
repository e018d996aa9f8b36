"""The KKI mock over real HTTP: auth, paging, incremental listing, look-ups, admin changes."""

from __future__ import annotations

import httpx
import pytest

from harness.processes import mock_process
from indonesian_ids.nik import validate_nik
from tests.support.mock_servers import KKI_READONLY_TOKEN, SIZE, Mock, all_pages

pytestmark = pytest.mark.integration


def test_request_without_token_is_401_problem(kki_mock: Mock) -> None:
    response = httpx.get(f"{kki_mock.url}/v1/registrations")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 401


def test_wrong_token_is_401(kki_mock: Mock) -> None:
    response = httpx.get(f"{kki_mock.url}/v1/registrations", headers={"X-API-Key": "nope"})
    assert response.status_code == 401


def test_readonly_token_reads_but_cannot_subscribe(kki_mock: Mock) -> None:
    headers = {"X-API-Key": KKI_READONLY_TOKEN}
    assert httpx.get(f"{kki_mock.url}/v1/registrations", headers=headers).status_code == 200
    response = httpx.post(
        f"{kki_mock.url}/v1/webhook-subscriptions",
        headers=headers,
        json={"url": "http://127.0.0.1:9/hooks"},
    )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


def test_paging_returns_every_registration_once(kki: httpx.Client) -> None:
    items = all_pages(kki, "/v1/registrations", limit=37)
    numbers = [r["str_number"] for r in items]
    assert len(numbers) == SIZE
    assert len(set(numbers)) == SIZE
    stamps = [(r["updated_at"], r["str_number"]) for r in items]
    assert stamps == sorted(stamps)


def test_every_nik_is_structurally_valid(kki: httpx.Client) -> None:
    items = all_pages(kki, "/v1/registrations", limit=500)
    assert all(validate_nik(r["nik"]) == [] for r in items)


def test_updated_since_returns_only_later_changes(kki: httpx.Client, kki_mock: Mock) -> None:
    first = kki.get("/v1/registrations", params={"limit": 500}).json()["data"]
    newest = max(r["updated_at"] for r in first)
    target = first[3]["str_number"]
    changed = kki_mock.admin.post(
        f"/registrations/{target}/status", json={"status": "DICABUT", "reason": "sanksi disiplin"}
    )
    assert changed.status_code == 200, changed.text
    later = all_pages(kki, "/v1/registrations", updated_since=newest)
    assert [r["str_number"] for r in later] == [target]
    assert later[0]["version"] == first[3]["version"] + 1
    assert later[0]["certification"]["status"] == "DICABUT"


def test_status_filter_uses_current_status(kki: httpx.Client, kki_mock: Mock) -> None:
    target = kki.get("/v1/registrations", params={"limit": 1}).json()["data"][0]["str_number"]
    kki_mock.admin.post(f"/registrations/{target}/status", json={"status": "DICABUT"})
    revoked = all_pages(kki, "/v1/registrations", status="DICABUT", limit=100)
    assert target in {r["str_number"] for r in revoked}
    assert all(r["certification"]["status"] == "DICABUT" for r in revoked)


def test_lookup_by_nik_finds_the_registration(kki: httpx.Client) -> None:
    registration = kki.get("/v1/registrations", params={"limit": 1}).json()["data"][0]
    response = kki.post("/v1/registrations/lookup", json={"nik": registration["nik"]})
    assert response.status_code == 200
    assert [r["str_number"] for r in response.json()["data"]] == [registration["str_number"]]


def test_lookup_of_unknown_but_possible_nik_is_404(kki: httpx.Client) -> None:
    response = kki.post("/v1/registrations/lookup", json={"nik": "3171010101900999"})
    assert response.status_code == 404


def test_lookup_of_impossible_nik_is_422_with_reason(kki: httpx.Client) -> None:
    response = kki.post("/v1/registrations/lookup", json={"nik": "0071013202900001"})
    assert response.status_code == 422
    problem = response.json()
    assert "province" in problem["detail"]
    assert "0071013202900001" not in response.text, "personal data must not be echoed"


def test_malformed_lookup_body_is_400(kki: httpx.Client) -> None:
    response = kki.post("/v1/registrations/lookup", json={"nik": "12ab"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


def test_lookup_body_nested_too_deeply_is_400(kki: httpx.Client) -> None:
    response = kki.post(
        "/v1/registrations/lookup",
        content=b"[" * 8_000 + b"]" * 8_000,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "nested too deeply" in response.json()["detail"]


def test_sub_resources_agree_with_the_registration(kki: httpx.Client) -> None:
    registration = kki.get("/v1/registrations", params={"limit": 1}).json()["data"][0]
    number = registration["str_number"]
    assert kki.get(f"/v1/registrations/{number}").json() == registration
    cert = kki.get(f"/v1/registrations/{number}/certification").json()
    assert cert == registration["certification"]
    assert kki.get(f"/v1/registrations/{number}/skp").json() == registration["skp"]
    trainings = all_pages(kki, f"/v1/registrations/{number}/trainings", limit=1)
    assert trainings == registration["trainings"]
    sips = all_pages(kki, f"/v1/registrations/{number}/sips", limit=1)
    assert sips == registration["sips"]


def test_unknown_str_is_404_problem(kki: httpx.Client) -> None:
    response = kki.get("/v1/registrations/ZZ99999999999999")
    assert response.status_code == 404
    assert response.json()["title"] == "Not Found"


@pytest.mark.parametrize(
    "path",
    ["/v1/registrations/1%0A", "/v1/registrations/AB%00CD", "/v1/registrations?limit=1%0A"],
)
def test_control_characters_in_target_are_400_not_500(kki: httpx.Client, path: str) -> None:
    response = kki.get(path)
    assert response.status_code == 400


def test_invalid_cursor_is_400(kki: httpx.Client) -> None:
    response = kki.get("/v1/registrations", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


def test_limit_above_maximum_is_400(kki: httpx.Client) -> None:
    assert kki.get("/v1/registrations", params={"limit": 501}).status_code == 400


def test_undeclared_method_is_405_with_allow(kki: httpx.Client) -> None:
    response = kki.get("/v1/registrations/lookup")  # POST only; not a {str_number}
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"].startswith("application/problem+json")
    deleted = kki.delete("/v1/registrations")
    assert deleted.status_code == 405
    assert deleted.headers["allow"] == "GET, HEAD"


def test_body_that_is_not_utf8_is_400(kki: httpx.Client) -> None:
    response = kki.post(
        "/v1/webhook-subscriptions",
        content=b"\x7a\xfe\x58",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "utf-8" in response.json()["detail"]


def test_credentials_come_from_environment_and_flags() -> None:
    process, url = mock_process(
        "kki",
        size=5,
        extra=["--readonly-token", "flag-readonly"],
        env={"HF_MOCK_KKI_API_TOKEN": "env-token"},
    )
    try:
        process.start()
        process.wait_http(f"{url}/__admin/health")
        path = f"{url}/v1/registrations"
        assert httpx.get(path, headers={"X-API-Key": "env-token"}).status_code == 200
        assert httpx.get(path, headers={"X-API-Key": "flag-readonly"}).status_code == 200
        assert httpx.get(path, headers={"X-API-Key": "kki-dev-token"}).status_code == 401
    finally:
        process.close()
