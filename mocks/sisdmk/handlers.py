"""Handlers of contracts/openapi/sisdmk.yaml (method names = operationIds)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any

from mocks.core.fast_read import StoredPage, StoredRead
from mocks.core.problems import MockProblem
from mocks.core.public_api import (
    DEFAULT_LIMIT,
    JsonAnswer,
    PublicApi,
    Response,
    page_handler,
)
from mocks.core.store import RecordStore
from mocks.core.validation import StoredAnswer
from mocks.kki.handlers import nik_problem
from mocks.sisdmk.system import FACILITIES, HEALTH_WORKERS

API_PRODUCTS = ["sisdmk-workforce", "sisdmk-webhooks"]
READ_PRODUCTS = ["sisdmk-workforce"]
PRODUCT_SCOPES = {"sisdmk-workforce": "workforce:read", "sisdmk-webhooks": "webhooks:manage"}


def operation_outcome(code: str, text: str) -> dict[str, Any]:
    """A FHIR OperationOutcome, the shape SATUSEHAT's gateway uses for auth errors."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "details": {"text": text}}],
    }


class SisdmkApi(PublicApi):
    # -- envelope ---------------------------------------------------------------------------

    def ok(self, data: Any, status: int = 200) -> JsonAnswer:
        return {"status": status, "message": "OK", "data": data}, status

    def items(self, items: list[Any]) -> JsonAnswer:
        return self.ok(items)

    def listing(self, items: list[Any], limit: int, next_cursor: str | None) -> JsonAnswer:
        body, status = super().listing(items, limit, next_cursor)[:2]
        return {"status": status, "message": "OK", **body}, status

    def stored_reads(self) -> Mapping[str, StoredRead]:
        return {"getHealthWorker": StoredRead(lambda: self.workers, self.stored_body)}

    def stored_pages(self) -> Mapping[str, StoredPage]:
        return {
            "listHealthWorkers": StoredPage(self.health_workers_page),
            "listFacilities": StoredPage(self.facilities_page),
        }

    # -- token endpoint ---------------------------------------------------------------------

    async def issue_access_token(self, grant_type: str, body: Mapping[str, Any]) -> Response:
        credentials = self.runtime.settings.credentials
        client_id = str(body.get("client_id") or "")
        secret = str(body.get("client_secret") or "").encode()
        clients = {
            credentials["client_id"]: (credentials["client_secret"], API_PRODUCTS),
            credentials["readonly_client_id"]: (
                credentials["readonly_client_secret"],
                READ_PRODUCTS,
            ),
        }
        known = clients.get(client_id)
        if known is None or not hmac.compare_digest(secret, known[0].encode()):
            return operation_outcome(
                "login",
                "The user or system was not able to be authenticated (either because of "
                "incorrect client_id or client_secret).",
            ), 401
        products = known[1]
        token, _issued = self.runtime.issue_token(
            client_id, frozenset(PRODUCT_SCOPES[p] for p in products)
        )
        return {
            "refresh_token_expires_in": "0",
            "api_product_list": "[" + ", ".join(products) + "]",
            "api_product_list_json": products,
            "organization_name": "kemkes-sisdmk-mock",
            "developer.email": "developer@example.id",
            "token_type": "BearerToken",
            "issued_at": str(int(time.time() * 1000)),
            "client_id": client_id,
            "access_token": token,
            "application_name": f"hf-mock-{client_id}",
            "scope": "",
            "expires_in": str(self.runtime.settings.token_ttl_s),
            "refresh_count": "0",
            "status": "approved",
        }, 200

    # -- health workers ---------------------------------------------------------------------

    @property
    def workers(self) -> RecordStore:
        return self.runtime.store(HEALTH_WORKERS)

    def health_workers_page(
        self,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        updated_since: str | None = None,
        facility_code: str | None = None,
        profession: str | None = None,
    ) -> StoredAnswer:
        return self.list_answer(
            self.workers,
            limit=limit,
            cursor=cursor,
            updated_since=updated_since,
            filters={"facility": facility_code, "profession": profession},
        )

    list_health_workers = page_handler(health_workers_page)

    async def lookup_health_worker_by_nik(self, body: Mapping[str, Any]) -> Response:
        nik = str(body["nik"])
        problem = nik_problem(nik)
        if problem is not None:
            raise problem
        keys = self.workers.keys_for("nik", nik)
        if not keys:
            raise MockProblem(404, "no health worker is registered with this NIK")
        return self.ok(self.workers.require(min(keys)))

    async def get_health_worker(self, worker_id: str) -> Response:
        record = self.workers.record(worker_id)
        if record is None:
            raise MockProblem(404, f"no health worker with id {worker_id}")
        return self.stored(self.workers, record)

    async def list_employments(
        self, worker_id: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Response:
        return self._embedded(worker_id, "employments", limit, cursor)

    async def list_educations(
        self, worker_id: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Response:
        return self._embedded(worker_id, "educations", limit, cursor)

    async def list_certifications(
        self, worker_id: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Response:
        return self._embedded(worker_id, "certifications", limit, cursor)

    def _embedded(self, worker_id: str, field: str, limit: int, cursor: str | None) -> Response:
        return self.embedded_page(self._worker(worker_id), field, limit, cursor)

    def _worker(self, worker_id: str) -> dict[str, Any]:
        doc = self.workers.get(worker_id)
        if doc is None:
            raise MockProblem(404, f"no health worker with id {worker_id}")
        return doc

    # -- facilities -------------------------------------------------------------------------

    def facilities_page(
        self,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        updated_since: str | None = None,
    ) -> StoredAnswer:
        return self.list_answer(
            self.runtime.store(FACILITIES), limit=limit, cursor=cursor, updated_since=updated_since
        )

    list_facilities = page_handler(facilities_page)

    async def get_facility(self, facility_code: str) -> Response:
        facilities = self.runtime.store(FACILITIES)
        record = facilities.record(facility_code)
        if record is None:
            raise MockProblem(404, f"no facility with code {facility_code}")
        return self.stored(facilities, record)

    async def list_facility_health_workers(
        self,
        facility_code: str,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        updated_since: str | None = None,
    ) -> Response:
        self._facility(facility_code)
        return self.list_page(
            self.workers,
            limit=limit,
            cursor=cursor,
            updated_since=updated_since,
            filters={"facility": facility_code},
        )

    def _facility(self, code: str) -> dict[str, Any]:
        doc = self.runtime.store(FACILITIES).get(code)
        if doc is None:
            raise MockProblem(404, f"no facility with code {code}")
        return doc
