"""The SISDMK mock: health workers with employment, education and certifications; facilities."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mocks.core.population import Population
from mocks.core.problems import ErrorFormat, OperationOutcomeFormat, SisdmkEnvelope
from mocks.core.store import Document, DocumentCheck, MonotonicClock, RecordStore
from mocks.core.system import Credentials, EventDraft, MockSystem
from mocks.sisdmk import resources

if TYPE_CHECKING:
    from mocks.core.runtime import MockRuntime

TOKEN_ERROR_FORMAT = OperationOutcomeFormat()
HEALTH_WORKERS = "health-workers"
FACILITIES = "facilities"

EVENT_TYPES = (
    "worker.registered",
    "worker.updated",
    "worker.deactivated",
    "worker.merged",
    "employment.started",
    "employment.changed",
    "employment.transferred",
    "employment.ended",
    "education.added",
    "education.updated",
    "facility.updated",
)


def current_facility(doc: Mapping[str, Any]) -> str | None:
    value = doc.get("facility_code")
    return str(value) if value else None


class SisdmkSystem(MockSystem):
    name = "sisdmk"
    title = "SISDMK (Kemenkes health-workforce information system)"
    spec_file = "sisdmk.yaml"
    error_format = SisdmkEnvelope()
    event_types = EVENT_TYPES

    def error_format_for(self, path: str) -> ErrorFormat:
        if path.startswith("/oauth2/"):
            return TOKEN_ERROR_FORMAT
        return super().error_format_for(path)

    def create_stores(
        self, clock: MonotonicClock, check_for: Callable[[str], DocumentCheck]
    ) -> dict[str, RecordStore]:
        workers = RecordStore(
            HEALTH_WORKERS,
            key_of=resources.health_worker_key,
            clock=clock,
            indexes={
                "nik": lambda d: [str(d["nik"])],
                "facility": lambda d: [f] if (f := current_facility(d)) else [],
                "profession": lambda d: [str(d["profession"])],
            },
            check=check_for(HEALTH_WORKERS),
        )
        facilities = RecordStore(
            FACILITIES, key_of=resources.facility_key, clock=clock, check=check_for(FACILITIES)
        )
        return {HEALTH_WORKERS: workers, FACILITIES: facilities}

    def generated_documents(self, population: Population) -> dict[str, Iterable[Document]]:
        facilities_by_code = {f.code: f for f in population.facilities}
        # Facilities date from the oldest person (none at all without people).
        epoch = min((p.updated_at for p in population.people), default=None)
        facilities: Iterable[Document] = (
            ()
            if epoch is None
            else (
                resources.facility_document(f, version=1, updated_at=epoch)
                for f in population.facilities
            )
        )
        return {
            HEALTH_WORKERS: (
                resources.health_worker_document(
                    person, facilities_by_code, version=1, updated_at=person.updated_at
                )
                for person in population.people
            ),
            FACILITIES: facilities,
        }

    def public_handlers(self, runtime: MockRuntime) -> object:
        from mocks.sisdmk.handlers import SisdmkApi

        return SisdmkApi(runtime)

    def collection_schema(self, collection: str) -> str:
        return "Facility" if collection == FACILITIES else "HealthWorker"

    def events_for_change(
        self, collection: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
    ) -> list[EventDraft]:
        if after is None:
            return []  # deleting is test set-up; SISDMK deactivates (is_active=false) instead
        if collection == FACILITIES:
            return [] if before is None else [self.event_about("facility.updated", after)]
        if before is None:
            return [self.event_about("worker.registered", after)]
        events: list[EventDraft] = []
        if before.get("is_active") and not after.get("is_active"):
            events.append(self.event_about("worker.deactivated", after))
        if current_facility(before) != current_facility(after):
            events.append(self.event_about("employment.transferred", after))
        elif before.get("employments") != after.get("employments"):
            events.append(self.event_about("employment.changed", after))
        if before.get("educations") != after.get("educations"):
            grew = len(after.get("educations") or []) > len(before.get("educations") or [])
            events.append(
                self.event_about("education.added" if grew else "education.updated", after)
            )
        return events or [self.event_about("worker.updated", after)]

    def collection_for_event(self, event_type: str) -> str:
        return FACILITIES if event_type.startswith("facility.") else HEALTH_WORKERS

    def event_about(self, event_type: str, doc: Mapping[str, Any]) -> EventDraft:
        if event_type.startswith("facility."):
            code = resources.facility_key(doc)
            return EventDraft(
                type=event_type,
                nik=None,
                subject={"facility_code": code},
                data={"facility_code": code, "version": int(doc["version"])},
                key=code,
            )
        worker_id = resources.health_worker_key(doc)
        subject = {"worker_id": worker_id}
        if (facility := current_facility(doc)) is not None:
            subject["facility_code"] = facility
        return EventDraft(
            type=event_type,
            nik=str(doc["nik"]),
            subject=subject,
            data={"worker_id": worker_id, "version": int(doc["version"])},
            key=worker_id,
        )

    def token_scopes(self, client_id: str, credentials: Mapping[str, str]) -> frozenset[str] | None:
        from mocks.sisdmk.handlers import API_PRODUCTS, PRODUCT_SCOPES, READ_PRODUCTS

        products = {
            credentials["client_id"]: API_PRODUCTS,
            credentials["readonly_client_id"]: READ_PRODUCTS,
        }.get(client_id)
        if products is None:
            return None
        return frozenset(PRODUCT_SCOPES[p] for p in products)

    def default_credentials(self) -> Credentials:
        return Credentials(
            {
                "client_id": "sisdmk-dev-client",
                "client_secret": "sisdmk-dev-secret",
                "readonly_client_id": "sisdmk-dev-readonly",
                "readonly_client_secret": "sisdmk-dev-readonly-secret",
            }
        )
