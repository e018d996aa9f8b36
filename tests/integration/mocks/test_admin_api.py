"""The admin API over real HTTP: record CRUD with validation, snapshots, reset, provider states."""

from __future__ import annotations

import httpx
import pytest

from tests.support.mock_servers import Mock

pytestmark = pytest.mark.integration


def first_registration(kki: httpx.Client) -> dict:  # type: ignore[type-arg]
    return kki.get("/v1/registrations", params={"limit": 1}).json()["data"][0]  # type: ignore[no-any-return]


def test_health_reports_the_data_set(kki_mock: Mock) -> None:
    body = kki_mock.admin.get("/health").json()
    assert body["system"] == "kki"
    assert body["records"]["registrations"] == body["size"]


def test_patch_changes_record_and_bumps_version(kki: httpx.Client, kki_mock: Mock) -> None:
    reg = first_registration(kki)
    patched = kki_mock.admin.patch(
        f"/records/registrations/{reg['str_number']}",
        json={"kompetensi": "Dokter Umum"},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    served = kki.get(f"/v1/registrations/{reg['str_number']}").json()
    assert served["kompetensi"] == "Dokter Umum"
    assert served["version"] == reg["version"] + 1
    assert served["updated_at"] > reg["updated_at"]


def test_invalid_document_is_422_and_stored_record_is_intact(
    kki: httpx.Client, kki_mock: Mock
) -> None:
    reg = first_registration(kki)
    response = kki_mock.admin.patch(
        f"/records/registrations/{reg['str_number']}",
        json={"certification": {"status": "NOT-A-STATUS"}},
    )
    assert response.status_code == 422
    problem = response.json()
    assert any("certification" in e["name"] for e in problem["errors"])
    assert kki.get(f"/v1/registrations/{reg['str_number']}").json() == reg


def test_create_then_delete_record(kki: httpx.Client, kki_mock: Mock) -> None:
    reg = first_registration(kki)
    copy = {k: v for k, v in reg.items() if k not in ("version", "updated_at")}
    copy["str_number"] = "QN0001999999999999"[:16]
    created = kki_mock.admin.post("/records/registrations", json=copy)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert kki.get(f"/v1/registrations/{copy['str_number']}").status_code == 200
    duplicate = kki_mock.admin.post("/records/registrations", json=copy)
    assert duplicate.status_code == 409
    assert kki_mock.admin.delete(f"/records/registrations/{copy['str_number']}").status_code == 204
    assert kki.get(f"/v1/registrations/{copy['str_number']}").status_code == 404


def test_unknown_collection_is_404(kki_mock: Mock) -> None:
    assert kki_mock.admin.get("/records/health-workers").status_code == 404


def test_snapshot_and_restore(kki: httpx.Client, kki_mock: Mock) -> None:
    reg = first_registration(kki)
    assert kki_mock.admin.post("/snapshots", json={"name": "before"}).status_code == 201
    kki_mock.admin.post(f"/registrations/{reg['str_number']}/status", json={"status": "DICABUT"})
    assert kki.get(f"/v1/registrations/{reg['str_number']}").json()["version"] == 2
    assert kki_mock.admin.post("/snapshots/before/restore").status_code == 200
    assert kki.get(f"/v1/registrations/{reg['str_number']}").json() == reg
    assert kki_mock.admin.delete("/snapshots/before").status_code == 204
    assert kki_mock.admin.post("/snapshots/before/restore").status_code == 404


def test_reset_returns_to_seeded_data(kki: httpx.Client, kki_mock: Mock) -> None:
    reg = first_registration(kki)
    kki_mock.admin.post(f"/registrations/{reg['str_number']}/status", json={"status": "DICABUT"})
    kki_mock.reset()
    assert kki.get(f"/v1/registrations/{reg['str_number']}").json() == reg


def test_reset_starts_the_random_choices_again_from_the_seed(kki_mock: Mock) -> None:
    """A reset mock picks the same records for the same events as a fresh one, whatever was
    asked of it before (the shared test mocks serve module after module)."""

    def picked() -> list[str]:
        response = kki_mock.admin.post(
            "/events", json={"type": "registration.corrected", "count": 5}
        )
        response.raise_for_status()
        return [event["key"] for event in response.json()["events"]]

    kki_mock.reset()
    first = picked()
    assert picked() != first  # the choices move on ...
    kki_mock.reset()
    assert picked() == first  # ... and start again after a reset


def test_provider_state_makes_record_absent_then_reseeds(kki: httpx.Client, kki_mock: Mock) -> None:
    reg = first_registration(kki)
    state = {
        "state": "record is absent",
        "params": {"collection": "registrations", "key": reg["str_number"]},
    }
    assert kki_mock.admin.post("/provider-states", json=state).status_code == 200
    assert kki.get(f"/v1/registrations/{reg['str_number']}").status_code == 404
    seeded = kki_mock.admin.post("/provider-states", json={"state": "the seeded data set"})
    assert seeded.status_code == 200
    assert kki.get(f"/v1/registrations/{reg['str_number']}").status_code == 200


def test_unknown_provider_state_lists_known_ones(kki_mock: Mock) -> None:
    response = kki_mock.admin.post("/provider-states", json={"state": "the moon is full"})
    assert response.status_code == 400
    assert "record exists" in response.json()["detail"]


def test_sisdmk_worker_patch_is_validated(sisdmk: httpx.Client, sisdmk_mock: Mock) -> None:
    worker = sisdmk.get("/v1/health-workers", params={"limit": 1}).json()["data"][0]
    bad = sisdmk_mock.admin.patch(
        f"/records/health-workers/{worker['worker_id']}", json={"nik": "12"}
    )
    assert bad.status_code == 422
    good = sisdmk_mock.admin.patch(
        f"/records/health-workers/{worker['worker_id']}", json={"is_active": False}
    )
    assert good.status_code == 200, good.text
    served = sisdmk.get(f"/v1/health-workers/{worker['worker_id']}").json()["data"]
    assert served["is_active"] is False
    assert served["version"] == worker["version"] + 1
