"""The Pact provider states the adapter's pacts use, over HTTP on real mock processes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.mock_servers import Mock

pytestmark = pytest.mark.integration


def set_state(mock: Mock, state: str, **params: Any) -> httpx.Response:
    return mock.admin.post("/provider-states", json={"state": state, "params": params})


def stored(mock: Mock, collection: str) -> list[dict[str, Any]]:
    body = mock.admin.get(f"/records/{collection}", params={"limit": 500}).json()
    return body["data"]  # type: ignore[no-any-return]


def test_only_these_records_exist_leaves_exactly_them(kki: httpx.Client, kki_mock: Mock) -> None:
    kept = [dict(doc) for doc in stored(kki_mock, "registrations")[:2]]
    for doc in kept:
        del doc["version"], doc["updated_at"]
    answer = set_state(
        kki_mock, "only these records exist", collection="registrations", documents=kept
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["keys"] == [doc["str_number"] for doc in kept]
    listed = kki.get("/v1/registrations").json()["data"]
    assert [doc["str_number"] for doc in listed] == answer.json()["result"]["keys"]


def test_only_these_records_exist_refuses_an_invalid_document(kki_mock: Mock) -> None:
    answer = set_state(
        kki_mock, "only these records exist", collection="registrations", documents=[{"nik": "1"}]
    )
    assert answer.status_code == 422
    assert len(stored(kki_mock, "registrations")) == 500


def test_cursor_from_the_state_lists_the_last_record(kki: httpx.Client, kki_mock: Mock) -> None:
    cursor = set_state(kki_mock, "records follow a cursor", collection="registrations").json()
    page = kki.get("/v1/registrations", params={"cursor": cursor["result"]["cursor"]}).json()
    assert [doc["str_number"] for doc in page["data"]] == [
        stored(kki_mock, "registrations")[-1]["str_number"]
    ]
    assert page["page"] == {"limit": 100, "next_cursor": None, "has_more": False}


def test_changed_after_a_moment_lists_only_the_changed_record(
    sisdmk: httpx.Client, sisdmk_mock: Mock
) -> None:
    oldest = stored(sisdmk_mock, "facilities")[0]
    result = set_state(sisdmk_mock, "a record changed after a moment", collection="facilities")
    since = result.json()["result"]["updated_since"]
    listed = sisdmk.get("/v1/facilities", params={"updated_since": since}).json()["data"]
    assert [(doc["code"], doc["version"]) for doc in listed] == [
        (oldest["code"], oldest["version"] + 1)
    ]


def test_nothing_changed_after_the_newest_record_lists_nothing(
    sisdmk: httpx.Client, sisdmk_mock: Mock
) -> None:
    result = set_state(
        sisdmk_mock, "nothing changed after the newest record", collection="health-workers"
    )
    since = result.json()["result"]["updated_since"]
    assert sisdmk.get("/v1/health-workers", params={"updated_since": since}).json()["data"] == []


def test_no_record_has_the_nik_makes_the_lookup_not_found(
    kki: httpx.Client, kki_mock: Mock
) -> None:
    nik = stored(kki_mock, "registrations")[0]["nik"]
    assert kki.post("/v1/registrations/lookup", json={"nik": nik}).status_code == 200
    assert set_state(
        kki_mock, "no record has the NIK", collection="registrations", nik=nik
    ).is_success
    assert kki.post("/v1/registrations/lookup", json={"nik": nik}).status_code == 404


def test_rate_limited_state_answers_429_once_with_retry_after(
    kki: httpx.Client, kki_mock: Mock
) -> None:
    assert set_state(
        kki_mock, "requests are rate limited", route="listRegistrations", retry_after_s=7
    ).is_success
    limited = kki.get("/v1/registrations")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert kki.get("/v1/registrations").status_code == 200


def test_rate_limited_state_refuses_an_unknown_route(kki_mock: Mock) -> None:
    answer = set_state(kki_mock, "requests are rate limited", route="noSuchOp", retry_after_s=1)
    assert answer.status_code == 400


def test_issued_access_token_is_accepted_by_the_public_api(sisdmk_mock: Mock) -> None:
    answer = set_state(sisdmk_mock, "an access token is issued")
    token = answer.json()["result"]["access_token"]
    listed = httpx.get(
        f"{sisdmk_mock.url}/v1/facilities",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert listed.status_code == 200


def test_access_token_state_is_refused_by_kki(kki_mock: Mock) -> None:
    assert set_state(kki_mock, "an access token is issued").status_code == 409


def test_credential_states_confirm_only_what_the_mock_accepts(
    kki_mock: Mock, sisdmk_mock: Mock
) -> None:
    assert set_state(kki_mock, "the API token is valid", api_token="kki-dev-token").is_success
    assert set_state(kki_mock, "the API token is valid", api_token="guess").status_code == 409
    valid = set_state(
        sisdmk_mock, "the client credentials are valid", client_id="sisdmk-dev-client"
    )
    assert valid.json()["result"] == {"client_id": "sisdmk-dev-client"}
    unknown = set_state(sisdmk_mock, "the client credentials are valid", client_id="nobody")
    assert unknown.status_code == 409
