"""Pact provider states: named set-ups a consumer's pact asks for before an interaction.

State names are generic so one handler serves both mocks; their `params` say which collection
and record. A pact written by the adapter's consumer tests names them in `.given(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from mocks.core.faults import FaultRule, FaultSpecError
from mocks.core.problems import FieldError, MockProblem
from mocks.core.store import Cursor, RecordStore

if TYPE_CHECKING:
    from mocks.core.runtime import MockRuntime

StateHandler = Callable[[dict[str, Any]], dict[str, Any]]

# Bounds a pact can ask for: a state is test set-up, not a bulk loader.
MAX_STATE_DOCUMENTS: Final = 100
MAX_RETRY_AFTER_S: Final = 86_400


class ProviderStates:
    def __init__(self, runtime: MockRuntime) -> None:
        self.runtime = runtime
        self._handlers: dict[str, StateHandler] = {
            "the seeded data set": self._seeded,
            "record exists": self._record_exists,
            "record is absent": self._record_absent,
            "record has fields": self._record_has_fields,
            "only these records exist": self._only_these_records,
            "records follow a cursor": self._records_follow_cursor,
            "a record changed after a moment": self._record_changed_after,
            "nothing changed after the newest record": self._nothing_changed_after,
            "no record has the NIK": self._no_record_has_nik,
            "requests are rate limited": self._rate_limited,
            "an access token is issued": self._access_token_issued,
            "the client credentials are valid": self._client_credentials_valid,
            "the API token is valid": self._api_token_valid,
        }

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    def apply(self, state: str, params: dict[str, Any], action: str) -> dict[str, Any]:
        handler = self._handlers.get(state)
        if handler is None:
            raise MockProblem(
                400,
                f"unknown provider state {state!r}; known states: {', '.join(self.names)}",
                errors=[FieldError("body", "state", "unknown provider state")],
            )
        if action == "teardown":
            return {}  # every set-up here is idempotent; the next test's state replaces it
        return handler(params)

    def _param(self, params: dict[str, Any], name: str) -> str:
        value = params.get(name)
        if not isinstance(value, str) or not value:
            raise MockProblem(
                400,
                f"provider state needs the string parameter {name!r}",
                errors=[FieldError("body", f"params.{name}", "missing or not a string")],
            )
        return value

    def _int_param(
        self, params: dict[str, Any], name: str, default: int | None, low: int, high: int
    ) -> int:
        value = params.get(name, default)
        # bool is an int in Python; `true` is no count.
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise MockProblem(
                400,
                f"provider state needs the integer parameter {name!r} in {low}..{high}",
                errors=[FieldError("body", f"params.{name}", f"not an integer in {low}..{high}")],
            )
        return value

    def _seeded(self, params: dict[str, Any]) -> dict[str, Any]:
        self.runtime.reset()
        self.runtime.injector.clear()
        return {}

    def _record_exists(self, params: dict[str, Any]) -> dict[str, Any]:
        collection = self._param(params, "collection")
        store = self.runtime.store(collection)
        if "key" not in params:
            # Any record will do: hand its key back so the pact can use it (`fromProviderState`).
            first = next(store.records(), None)
            if first is None:
                raise MockProblem(409, f"the {collection} collection is empty")
            return {"key": first.key}
        key = self._param(params, "key")
        if store.get(key) is None:
            document = params.get("document")
            if not isinstance(document, dict):
                raise MockProblem(
                    404,
                    f"no {collection} record {key!r}; pass params.document to create it",
                )
            named = _key_in(store, document)
            if named is not None and named != key:  # not the record the pact then asks for
                raise MockProblem(
                    400,
                    f"params.document is the {collection} record {named!r}, not params.key "
                    f"{key!r}: give the document that key",
                    errors=[FieldError("body", "params.document", "its key is not params.key")],
                )
            self.runtime.create_record(collection, document)
        return {"key": key}

    def _record_absent(self, params: dict[str, Any]) -> dict[str, Any]:
        collection = self._param(params, "collection")
        key = self._param(params, "key")
        if self.runtime.store(collection).get(key) is not None:
            self.runtime.delete_record(collection, key)
        return {"key": key}

    def _record_has_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        collection = self._param(params, "collection")
        key = self._param(params, "key")
        fields = params.get("fields")
        if not isinstance(fields, dict):
            raise MockProblem(400, "provider state needs params.fields (a merge patch)")
        self.runtime.patch_record(collection, key, fields)
        return {"key": key}

    def _only_these_records(self, params: dict[str, Any]) -> dict[str, Any]:
        collection = self._param(params, "collection")
        documents = params.get("documents")
        if (
            not isinstance(documents, list)
            or not 1 <= len(documents) <= MAX_STATE_DOCUMENTS
            or not all(isinstance(doc, dict) for doc in documents)
        ):
            raise MockProblem(
                400,
                f"provider state needs params.documents: 1..{MAX_STATE_DOCUMENTS} objects",
                errors=[FieldError("body", "params.documents", "missing or not a list of objects")],
            )
        # Check every document before touching the store, so a bad one leaves it as it was.
        for index, doc in enumerate(documents):
            errors = self.runtime.validate_document(
                collection, {"version": 1, "updated_at": "1970-01-01T00:00:00.000000Z", **doc}
            )
            if errors:
                raise MockProblem(
                    422,
                    f"params.documents[{index}] is not a valid "
                    f"{self.runtime.system.collection_schema(collection)}",
                    errors=errors,
                )
        store = self.runtime.store(collection)
        keys = [store.key_of(doc) for doc in documents]
        if len(set(keys)) != len(keys):
            raise MockProblem(
                422,
                "params.documents has two documents with the same key",
                errors=[FieldError("body", "params.documents", "duplicate key")],
            )
        # Room for every creation's events first: refused half-way, the collection would be
        # left with some of the documents.
        self.runtime.ensure_room_for_changes(collection, len(documents))
        for key in [record.key for record in store.records()]:
            self.runtime.delete_record(collection, key)
        for doc in documents:
            self.runtime.create_record(collection, doc)
        return {"keys": keys}

    def _records_follow_cursor(self, params: dict[str, Any]) -> dict[str, Any]:
        collection = self._param(params, "collection")
        store = self.runtime.store(collection)
        remaining = self._int_param(params, "remaining", 1, 1, max(1, len(store) - 1))
        ordered = list(store.records())
        if len(ordered) <= remaining:
            raise MockProblem(
                409, f"the {collection} collection has no record before the last {remaining}"
            )
        before = ordered[-remaining - 1]
        cursor = Cursor(before.updated_at, before.key).encode(store.name)
        return {"cursor": cursor}

    def _newest_updated_at(self, collection: str) -> str:
        store = self.runtime.store(collection)
        newest = store.newest_updated_at()
        if newest is None:
            raise MockProblem(409, f"the {collection} collection is empty")
        return newest

    def _record_changed_after(self, params: dict[str, Any]) -> dict[str, Any]:
        collection = self._param(params, "collection")
        moment = self._newest_updated_at(collection)
        store = self.runtime.store(collection)
        if "key" in params:
            key = self._param(params, "key")
            store.require(key)
        else:
            key = next(store.records()).key
        # An empty merge patch is still a change: a new version, a later `updated_at`.
        self.runtime.patch_record(collection, key, {})
        return {"updated_since": moment, "key": key}

    def _nothing_changed_after(self, params: dict[str, Any]) -> dict[str, Any]:
        collection = self._param(params, "collection")
        return {"updated_since": self._newest_updated_at(collection)}

    def _no_record_has_nik(self, params: dict[str, Any]) -> dict[str, Any]:
        collection = self._param(params, "collection")
        nik = self._param(params, "nik")
        store = self.runtime.store(collection)
        try:
            keys = store.keys_for("nik", nik)
        except KeyError:
            raise MockProblem(400, f"the {collection} collection has no NIK index") from None
        for key in sorted(keys):
            self.runtime.delete_record(collection, key)
        return {"nik": nik}

    def _rate_limited(self, params: dict[str, Any]) -> dict[str, Any]:
        route = self._param(params, "route")
        retry_after = self._int_param(params, "retry_after_s", None, 0, MAX_RETRY_AFTER_S)
        times = self._int_param(params, "times", 1, 1, 1000)
        try:
            rule = self.runtime.injector.add(
                FaultRule(
                    route=route, kind="error", status=429, retry_after_s=retry_after, times=times
                )
            )
        except FaultSpecError as exc:
            raise MockProblem(
                400, str(exc), errors=[FieldError("body", "params.route", str(exc))]
            ) from exc
        return {"fault_id": rule.id}

    def _client_credentials_valid(self, params: dict[str, Any]) -> dict[str, Any]:
        # The mock's credentials are fixed at start: the state only confirms the pact's client
        # is one of them, so a pact written for other credentials fails here, not later.
        client_id = self._param(params, "client_id")
        credentials = self.runtime.settings.credentials
        if self.runtime.system.token_scopes(client_id, credentials) is None:
            raise MockProblem(
                409, f"the {self.runtime.system.name} mock has no client {client_id!r}"
            )
        return {"client_id": client_id}

    def _api_token_valid(self, params: dict[str, Any]) -> dict[str, Any]:
        # Like the client credentials: fixed at start, so the state only confirms the token.
        token = self._param(params, "api_token")
        credentials = self.runtime.settings.credentials
        known = {credentials.get("api_token"), credentials.get("readonly_token")} - {None}
        if token not in known:
            raise MockProblem(409, f"the {self.runtime.system.name} mock accepts no such API token")
        return {}

    def _access_token_issued(self, params: dict[str, Any]) -> dict[str, Any]:
        credentials = self.runtime.settings.credentials
        client_id = params.get("client_id", credentials.get("client_id"))
        if client_id is None:
            raise MockProblem(409, f"the {self.runtime.system.name} mock issues no access tokens")
        if not isinstance(client_id, str) or not client_id:
            raise MockProblem(400, "provider state needs the string parameter 'client_id'")
        scopes = self.runtime.system.token_scopes(client_id, credentials)
        if scopes is None:
            raise MockProblem(
                409,
                f"the {self.runtime.system.name} mock issues no access token to {client_id!r}",
            )
        token, _issued = self.runtime.issue_token(client_id, scopes)
        return {"access_token": token}


def _key_in(store: RecordStore, document: Mapping[str, Any]) -> str | None:
    """The key `document` would be stored under; ``None`` without one (the contract check of
    the create says what is missing)."""
    try:
        return store.key_of(document)
    except (KeyError, TypeError):
        return None
