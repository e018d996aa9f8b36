"""The KKI mock: registrations (STR) with certification, SKP, trainings and SIPs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mocks.core.population import Population
from mocks.core.problems import ProblemJson
from mocks.core.store import Document, DocumentCheck, MonotonicClock, RecordStore
from mocks.core.system import Credentials, EventDraft, MockSystem
from mocks.kki import resources

if TYPE_CHECKING:
    from mocks.core.runtime import MockRuntime

REGISTRATIONS = "registrations"

EVENT_TYPES = (
    "registration.issued",
    "registration.status_changed",
    "registration.suspended",
    "registration.reinstated",
    "registration.revoked",
    "registration.corrected",
    "skp.credited",
    "skp.adequacy_changed",
    "skp.period_rolled",
    "training.completed",
    "sip.recorded",
    "sip.expiring",
    "sip.invalidated",
)

# Which specific event follows `registration.status_changed` for a move to each status.
STATUS_EVENTS = {
    "NONAKTIF_SEMENTARA": "registration.suspended",
    "DICABUT": "registration.revoked",
}


def registration_status(doc: Mapping[str, Any]) -> str:
    return str(doc["certification"]["status"])


class KkiSystem(MockSystem):
    name = "kki"
    title = "KKI (Konsil Kesehatan Indonesia)"
    spec_file = "kki.yaml"
    admin_extension_file = "kki-admin.yaml"
    error_format = ProblemJson()
    event_types = EVENT_TYPES

    def create_stores(
        self, clock: MonotonicClock, check_for: Callable[[str], DocumentCheck]
    ) -> dict[str, RecordStore]:
        store = RecordStore(
            REGISTRATIONS,
            key_of=resources.registration_key,
            clock=clock,
            indexes={
                "nik": lambda d: [str(d["nik"])],
                "status": lambda d: [registration_status(d)],
                "profession": lambda d: [str(d["profession"])],
            },
            check=check_for(REGISTRATIONS),
        )
        return {REGISTRATIONS: store}

    def generated_documents(self, population: Population) -> dict[str, Iterable[Document]]:
        return {
            REGISTRATIONS: (
                resources.registration_document(person, version=1, updated_at=person.updated_at)
                for person in population.people
            )
        }

    def public_handlers(self, runtime: MockRuntime) -> object:
        from mocks.kki.handlers import KkiApi

        return KkiApi(runtime)

    def admin_extension_handlers(self, runtime: MockRuntime) -> object | None:
        from mocks.kki.handlers import KkiAdmin

        return KkiAdmin(runtime)

    def collection_schema(self, collection: str) -> str:
        return "Registration"

    def events_for_change(
        self, collection: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
    ) -> list[EventDraft]:
        if after is None:
            return []  # deleting is test set-up; revocation is a status change
        if before is None:
            return [self.event_about("registration.issued", after)]
        old, new = registration_status(before), registration_status(after)
        if old == new:
            return [self.event_about("registration.corrected", after)]
        data = {
            "from": old,
            "to": new,
            "reason": after["certification"].get("status_reason"),
            "effective_at": after["certification"].get("status_changed_at"),
        }
        events = [self.event_about("registration.status_changed", after, extra=data)]
        specific = STATUS_EVENTS.get(new)
        if new == "AKTIF" and old in ("NONAKTIF_SEMENTARA", "KEDALUWARSA"):
            specific = "registration.reinstated"
        if specific:
            events.append(self.event_about(specific, after, extra=data))
        return events

    def collection_for_event(self, event_type: str) -> str:
        return REGISTRATIONS

    def event_about(
        self, event_type: str, doc: Mapping[str, Any], extra: Mapping[str, Any] | None = None
    ) -> EventDraft:
        str_number = resources.registration_key(doc)
        data: dict[str, Any] = {
            "str_number": str_number,
            "version": int(doc["version"]),
            "status": registration_status(doc),
        }
        data.update(extra or {})
        return EventDraft(
            type=event_type,
            nik=str(doc["nik"]),
            subject={"str_number": str_number},
            data=data,
            key=str_number,
        )

    def default_credentials(self) -> Credentials:
        return Credentials(
            {
                "api_token": "kki-dev-token",
                "readonly_token": "kki-dev-readonly-token",
            }
        )
