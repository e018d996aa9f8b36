"""Pact provider states: named set-ups a consumer's pact asks for before an interaction.

State names are generic so one handler serves both mocks; their `params` say which collection
and record. A pact written by the adapter's consumer tests names them in `.given(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mocks.core.problems import FieldError, MockProblem

if TYPE_CHECKING:
    from mocks.core.runtime import MockRuntime

StateHandler = Callable[[dict[str, Any]], dict[str, Any]]


class ProviderStates:
    def __init__(self, runtime: MockRuntime) -> None:
        self.runtime = runtime
        self._handlers: dict[str, StateHandler] = {
            "the seeded data set": self._seeded,
            "record exists": self._record_exists,
            "record is absent": self._record_absent,
            "record has fields": self._record_has_fields,
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

    def _seeded(self, params: dict[str, Any]) -> dict[str, Any]:
        self.runtime.reset()
        self.runtime.injector.clear()
        return {}

    def _record_exists(self, params: dict[str, Any]) -> dict[str, Any]:
        collection = self._param(params, "collection")
        store = self.runtime.store(collection)
        if "key" not in params:
            # Any record will do: hand its key back so the pact can use it (`fromProviderState`).
            first = next(store.documents(), None)
            if first is None:
                raise MockProblem(409, f"the {collection} collection is empty")
            return {"key": store.key_of(first)}
        key = self._param(params, "key")
        if store.get(key) is None:
            document = params.get("document")
            if not isinstance(document, dict):
                raise MockProblem(
                    404,
                    f"no {collection} record {key!r}; pass params.document to create it",
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
