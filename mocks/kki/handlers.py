"""Handlers of contracts/openapi/kki.yaml and kki-admin.yaml (method names = operationIds)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from indonesian_ids.nik import validate_nik
from mocks.core.fast_read import StoredPage, StoredRead
from mocks.core.problems import FieldError, MockProblem
from mocks.core.public_api import DEFAULT_LIMIT, PublicApi, Response, page_handler
from mocks.core.runtime import MockRuntime
from mocks.core.store import RecordStore, format_timestamp
from mocks.core.validation import StoredAnswer
from mocks.kki.system import REGISTRATIONS


def nik_problem(nik: str) -> MockProblem | None:
    """422 for a 16-digit NIK that can't exist (the schema already checked the shape)."""
    problems = validate_nik(nik, quote=False)  # its digits are never echoed
    if not problems:
        return None
    return MockProblem(
        422,
        "the NIK can't belong to anyone: " + "; ".join(problems),
        errors=[FieldError("body", "nik", p) for p in problems],
    )


class KkiApi(PublicApi):
    @property
    def registrations(self) -> RecordStore:
        return self.runtime.store(REGISTRATIONS)

    def stored_reads(self) -> Mapping[str, StoredRead]:
        return {"getRegistration": StoredRead(lambda: self.registrations, self.stored_body)}

    def stored_pages(self) -> Mapping[str, StoredPage]:
        return {"listRegistrations": StoredPage(self.registrations_page)}

    def registrations_page(
        self,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        updated_since: str | None = None,
        status: str | None = None,
        profession: str | None = None,
    ) -> StoredAnswer:
        return self.list_answer(
            self.registrations,
            limit=limit,
            cursor=cursor,
            updated_since=updated_since,
            filters={"status": status, "profession": profession},
        )

    list_registrations = page_handler(registrations_page)

    async def lookup_registrations_by_nik(self, body: Mapping[str, Any]) -> Response:
        nik = str(body["nik"])
        problem = nik_problem(nik)
        if problem is not None:
            raise problem
        keys = self.registrations.keys_for("nik", nik)
        if not keys:
            raise MockProblem(404, "no registration is held for this NIK")
        return {"data": [self.registrations.require(k) for k in sorted(keys)]}, 200

    async def get_registration(self, str_number: str) -> Response:
        record = self.registrations.record(str_number)
        if record is None:
            raise MockProblem(404, f"no registration with STR number {str_number}")
        return self.stored(self.registrations, record)

    async def get_certification_status(self, str_number: str) -> Response:
        return self._registration(str_number)["certification"], 200

    async def get_skp_summary(self, str_number: str) -> Response:
        return self._registration(str_number)["skp"], 200

    async def list_trainings(
        self, str_number: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Response:
        return self.embedded_page(self._registration(str_number), "trainings", limit, cursor)

    async def list_practice_licenses(
        self, str_number: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Response:
        return self.embedded_page(self._registration(str_number), "sips", limit, cursor)

    def _registration(self, str_number: str) -> dict[str, Any]:
        doc = self.registrations.get(str_number)
        if doc is None:
            raise MockProblem(404, f"no registration with STR number {str_number}")
        return doc


class KkiAdmin:
    """KKI-only admin operations (contracts/openapi/kki-admin.yaml)."""

    def __init__(self, runtime: MockRuntime) -> None:
        self.runtime = runtime

    async def change_registration_status(
        self, str_number: str, body: Mapping[str, Any]
    ) -> Response:
        store = self.runtime.store(REGISTRATIONS)
        doc = store.get(str_number)
        if doc is None:
            raise MockProblem(404, f"no registration with STR number {str_number}")
        effective_at = body.get("effective_at") or format_timestamp(self.runtime.clock.tick())
        certification = {
            **doc["certification"],
            "status": body["status"],
            "status_reason": body.get("reason"),
            "status_changed_at": effective_at,
        }
        updated = self.runtime.replace_record(
            REGISTRATIONS, str_number, {**doc, "certification": certification}
        )
        return updated, 200
