"""Pact provider states on an in-memory mock runtime: what each sets up and what it hands back."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mocks.core.problems import MockProblem
from mocks.core.provider_states import ProviderStates
from mocks.core.runtime import MockRuntime, MockSettings
from mocks.core.store import Cursor, parse_timestamp
from mocks.kki.system import KkiSystem
from mocks.sisdmk.system import SisdmkSystem


@pytest.fixture(scope="module")
def kki_runtime() -> MockRuntime:
    return MockRuntime.build(KkiSystem(), MockSettings(size=12, seed=7))


@pytest.fixture(scope="module")
def sisdmk_runtime() -> MockRuntime:
    return MockRuntime.build(SisdmkSystem(), MockSettings(size=12, seed=7))


@pytest.fixture
def kki(kki_runtime: MockRuntime) -> ProviderStates:
    states = ProviderStates(kki_runtime)
    states.apply("the seeded data set", {}, "setup")
    return states


@pytest.fixture
def sisdmk(sisdmk_runtime: MockRuntime) -> ProviderStates:
    states = ProviderStates(sisdmk_runtime)
    states.apply("the seeded data set", {}, "setup")
    return states


def registrations(runtime: MockRuntime) -> list[dict[str, Any]]:
    return list(runtime.store("registrations").documents())


def two_new_registrations(runtime: MockRuntime) -> list[dict[str, Any]]:
    """Copies of seeded registrations under new STR numbers (valid documents)."""
    documents = []
    for index, seeded in enumerate(registrations(runtime)[:2]):
        doc = copy.deepcopy(seeded)
        number = f"QZ0001123456789{index}"
        doc["str_number"] = number
        for part in ("certification", "skp"):
            doc[part]["str_number"] = number
        del doc["version"], doc["updated_at"]
        documents.append(doc)
    return documents


def test_only_these_records_exist_replaces_the_collection(
    kki: ProviderStates, kki_runtime: MockRuntime
) -> None:
    documents = two_new_registrations(kki_runtime)
    result = kki.apply(
        "only these records exist",
        {"collection": "registrations", "documents": documents},
        "setup",
    )
    assert result == {"keys": ["QZ00011234567890", "QZ00011234567891"]}
    stored = registrations(kki_runtime)
    assert [doc["str_number"] for doc in stored] == result["keys"]
    assert all(doc["version"] == 1 for doc in stored)


def test_only_these_records_exist_refuses_an_invalid_document_without_change(
    kki: ProviderStates, kki_runtime: MockRuntime
) -> None:
    before = len(kki_runtime.store("registrations"))
    documents = two_new_registrations(kki_runtime)
    documents[1]["nik"] = "12"
    with pytest.raises(MockProblem) as raised:
        kki.apply(
            "only these records exist",
            {"collection": "registrations", "documents": documents},
            "setup",
        )
    assert raised.value.status == 422
    assert len(kki_runtime.store("registrations")) == before


def test_only_these_records_exist_refuses_two_documents_with_one_key(
    kki: ProviderStates, kki_runtime: MockRuntime
) -> None:
    before = len(kki_runtime.store("registrations"))
    first, _ = two_new_registrations(kki_runtime)
    with pytest.raises(MockProblem) as raised:
        kki.apply(
            "only these records exist",
            {"collection": "registrations", "documents": [first, first]},
            "setup",
        )
    assert raised.value.status == 422
    assert len(kki_runtime.store("registrations")) == before


def test_record_exists_refuses_a_document_of_another_key_and_creates_nothing(
    kki: ProviderStates, kki_runtime: MockRuntime
) -> None:
    # It created the document's record and answered the key asked for, which did not exist:
    # the pact then failed on a 404 that said nothing of why.
    document = two_new_registrations(kki_runtime)[0]
    before = len(kki_runtime.store("registrations"))
    with pytest.raises(MockProblem) as raised:
        kki.apply(
            "record exists",
            {"collection": "registrations", "key": "QZ99999999999999", "document": document},
            "setup",
        )
    assert raised.value.status == 400
    assert raised.value.detail.startswith(
        "params.document is the registrations record 'QZ00011234567890', not params.key "
        "'QZ99999999999999'"
    )
    assert len(kki_runtime.store("registrations")) == before
    made = kki.apply(
        "record exists",
        {"collection": "registrations", "key": document["str_number"], "document": document},
        "setup",
    )
    assert made == {"key": document["str_number"]}
    assert kki_runtime.store("registrations").get(document["str_number"]) is not None


def test_records_follow_a_cursor_lists_exactly_the_last_records(
    kki: ProviderStates, kki_runtime: MockRuntime
) -> None:
    result = kki.apply(
        "records follow a cursor", {"collection": "registrations", "remaining": 2}, "setup"
    )
    page = kki_runtime.store("registrations").page(limit=10, cursor=result["cursor"])
    assert [d["str_number"] for d in page.items] == [
        d["str_number"] for d in registrations(kki_runtime)[-2:]
    ]
    assert page.next_cursor is None
    Cursor.decode(result["cursor"], "registrations")  # one the mock itself can read


def test_records_follow_a_cursor_refuses_more_than_the_collection_holds(
    kki: ProviderStates,
) -> None:
    with pytest.raises(MockProblem) as raised:
        kki.apply(
            "records follow a cursor", {"collection": "registrations", "remaining": 99}, "setup"
        )
    assert raised.value.status == 400


def test_a_record_changed_after_a_moment_is_the_only_one_listed_since_then(
    kki: ProviderStates, kki_runtime: MockRuntime
) -> None:
    oldest = registrations(kki_runtime)[0]
    result = kki.apply("a record changed after a moment", {"collection": "registrations"}, "setup")
    assert result["key"] == oldest["str_number"]
    store = kki_runtime.store("registrations")
    since = store.page(limit=100).items[-1]["updated_at"]
    assert since > result["updated_since"]
    page = store.page(limit=100, updated_since=parse_timestamp(result["updated_since"]))
    assert [d["str_number"] for d in page.items] == [oldest["str_number"]]
    assert page.items[0]["version"] == oldest["version"] + 1


def test_nothing_changed_after_the_newest_record_lists_nothing(
    sisdmk: ProviderStates, sisdmk_runtime: MockRuntime
) -> None:
    for collection in ("health-workers", "facilities"):
        result = sisdmk.apply(
            "nothing changed after the newest record", {"collection": collection}, "setup"
        )
        page = sisdmk_runtime.store(collection).page(
            limit=100, updated_since=parse_timestamp(result["updated_since"])
        )
        assert page.items == []


def test_no_record_has_the_nik_deletes_every_record_of_that_person(
    sisdmk: ProviderStates, sisdmk_runtime: MockRuntime
) -> None:
    store = sisdmk_runtime.store("health-workers")
    nik = str(next(store.documents())["nik"])
    result = sisdmk.apply(
        "no record has the NIK", {"collection": "health-workers", "nik": nik}, "setup"
    )
    assert result == {"nik": nik}
    assert store.keys_for("nik", nik) == frozenset()


def test_no_record_has_the_nik_refuses_a_collection_without_niks(
    sisdmk: ProviderStates,
) -> None:
    with pytest.raises(MockProblem) as raised:
        sisdmk.apply(
            "no record has the NIK",
            {"collection": "facilities", "nik": "3171015708900042"},
            "setup",
        )
    assert raised.value.status == 400


def test_requests_are_rate_limited_adds_a_429_fault_with_retry_after(
    kki: ProviderStates, kki_runtime: MockRuntime
) -> None:
    result = kki.apply(
        "requests are rate limited",
        {"route": "listRegistrations", "retry_after_s": 7},
        "setup",
    )
    rules = kki_runtime.injector.list()
    assert [(r.id, r.kind, r.status, r.retry_after_s, r.times) for r in rules] == [
        (result["fault_id"], "error", 429, 7, 1)
    ]


def test_requests_are_rate_limited_needs_a_retry_after(kki: ProviderStates) -> None:
    with pytest.raises(MockProblem) as raised:
        kki.apply("requests are rate limited", {"route": "listRegistrations"}, "setup")
    assert raised.value.status == 400


def test_an_access_token_is_issued_gives_a_live_token(
    sisdmk: ProviderStates, sisdmk_runtime: MockRuntime
) -> None:
    token = sisdmk.apply("an access token is issued", {}, "setup")["access_token"]
    issued = sisdmk_runtime.token_info(token)
    assert issued is not None
    assert issued.client_id == "sisdmk-dev-client"
    assert "workforce:read" in issued.scopes


def test_client_credentials_are_valid_only_for_the_mocks_clients(
    sisdmk: ProviderStates,
) -> None:
    confirmed = sisdmk.apply(
        "the client credentials are valid", {"client_id": "sisdmk-dev-client"}, "setup"
    )
    assert confirmed == {"client_id": "sisdmk-dev-client"}
    with pytest.raises(MockProblem) as raised:
        sisdmk.apply("the client credentials are valid", {"client_id": "someone"}, "setup")
    assert raised.value.status == 409


def test_api_token_is_valid_only_for_the_mocks_tokens(kki: ProviderStates) -> None:
    assert kki.apply("the API token is valid", {"api_token": "kki-dev-token"}, "setup") == {}
    with pytest.raises(MockProblem) as raised:
        kki.apply("the API token is valid", {"api_token": "guessed"}, "setup")
    assert raised.value.status == 409


def test_an_access_token_is_issued_refuses_on_kki(kki: ProviderStates) -> None:
    with pytest.raises(MockProblem) as raised:
        kki.apply("an access token is issued", {"client_id": "anyone"}, "setup")
    assert raised.value.status == 409


def test_teardown_of_a_new_state_changes_nothing(
    kki: ProviderStates, kki_runtime: MockRuntime
) -> None:
    before = registrations(kki_runtime)
    assert kki.apply("a record changed after a moment", {}, "teardown") == {}
    assert registrations(kki_runtime) == before
