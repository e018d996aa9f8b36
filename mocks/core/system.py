"""What differs between the KKI and SISDMK mocks, behind one interface the shared engine uses."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mocks.core.population import Population
from mocks.core.problems import ErrorFormat, ProblemJson
from mocks.core.store import Document, DocumentCheck, MonotonicClock, RecordStore

if TYPE_CHECKING:
    from mocks.core.runtime import MockRuntime


ADMIN_ERROR_FORMAT = ProblemJson()


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event about one record before it is addressed to subscribers.

    `nik` stays in memory: each delivery turns it into a keyed hash, never clear text.
    """

    type: str
    nik: str | None
    subject: Mapping[str, str]
    data: Mapping[str, Any]
    occurred_at: dt.datetime | None = None
    key: str = ""


@dataclass(frozen=True, slots=True)
class Credentials:
    """Development credentials a mock accepts (documented defaults, overridable)."""

    values: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return self.values[name]


class MockSystem(abc.ABC):
    """One external system the harness imitates."""

    name: str
    title: str
    spec_file: str
    admin_extension_file: str | None = None
    error_format: ErrorFormat
    event_types: tuple[str, ...]

    def error_format_for(self, path: str) -> ErrorFormat:
        """The error format of the API `path` belongs to (the admin API is always problem+json)."""
        return ADMIN_ERROR_FORMAT if path.startswith("/__admin") else self.error_format

    @abc.abstractmethod
    def create_stores(
        self, clock: MonotonicClock, check_for: Callable[[str], DocumentCheck]
    ) -> dict[str, RecordStore]:
        """Empty collections by admin name (e.g. `registrations`), each checking what it stores
        with `check_for(collection)`."""

    @abc.abstractmethod
    def generated_documents(self, population: Population) -> dict[str, Iterable[Document]]:
        """The documents of each collection for a generated population (lazily built)."""

    @abc.abstractmethod
    def public_handlers(self, runtime: MockRuntime) -> object:
        """An object whose snake_case methods implement the public spec's operationIds."""

    def admin_extension_handlers(self, runtime: MockRuntime) -> object | None:
        return None

    @abc.abstractmethod
    def collection_schema(self, collection: str) -> str:
        """Name of the component schema a stored document of `collection` must satisfy."""

    @abc.abstractmethod
    def events_for_change(
        self, collection: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
    ) -> list[EventDraft]:
        """Events a record change fires (create: before is None; delete: after is None)."""

    @abc.abstractmethod
    def collection_for_event(self, event_type: str) -> str:
        """Which collection an emitted event of this type is about."""

    @abc.abstractmethod
    def event_about(self, event_type: str, doc: Mapping[str, Any]) -> EventDraft:
        """An event of `event_type` describing the current state of `doc`."""

    def token_scopes(self, client_id: str, credentials: Mapping[str, str]) -> frozenset[str] | None:
        """Scopes of an access token for `client_id`, or None when the system issues none."""
        return None

    @abc.abstractmethod
    def default_credentials(self) -> Credentials:
        """Development credentials, each overridable by flag and environment variable."""
