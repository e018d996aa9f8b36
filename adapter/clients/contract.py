"""Response bodies checked against the operation's schema in contracts/openapi/*.yaml.

Each spec is loaded and its `$ref`s resolved once per process; validators are compiled once per
schema (jsonschema-rs decides, the Python validator words a failure). Messages say where and
which rule failed, never the offending value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import httpx
from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

import strict_json
from adapter.clients.errors import ContractViolation
from openapi_schemas import (
    compiled_validator,
    ignore_connexion_import_warnings,
    load_yaml,
    resolve_local_refs,
)

CONTRACTS_DIR: Final = Path(__file__).resolve().parents[2] / "contracts" / "openapi"
_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
_SIZE_RULES: Final = frozenset(
    {"minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "multipleOf"}
)
# One object, so the validator cache (keyed by schema identity) never meets a recycled id.
_ANY_BODY: Final[dict[str, Any]] = {}
_JSON_TYPES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


ignore_connexion_import_warnings()


@cache
def connexion_json_schema() -> ModuleType:
    """connexion's schema helpers (`Draft4ResponseValidator`), imported the first time a
    response fails the fast check and its error has to be worded: importing connexion costs a
    quarter of a second of CPU (its Starlette middleware stack), which no process pays at start
    any more (the contracts' references are resolved by `openapi_schemas.resolve_local_refs`)."""
    import connexion.json_schema

    module: ModuleType = connexion.json_schema
    return module


class OpenApiContract:
    """One system's OpenAPI document, ready to validate the responses of its operations."""

    def __init__(self, system: str, spec: Mapping[str, Any]) -> None:
        self.system = system
        resolved = resolve_local_refs(spec)
        # The whole resolved document, for the other readers of the same contract (the webhook
        # envelope's schemas): one parse and one resolution per process.
        self.document: Mapping[str, Any] = resolved
        self._responses = dict(_responses_by_operation(resolved))
        # Per schema object; the schemas live as long as the contract, so their ids stay unique.
        self._validators: dict[int, Validator] = {}
        self._list_parts: dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, system: str, path: Path) -> OpenApiContract:
        with path.open(encoding="utf-8") as fh:
            spec = load_yaml(fh)
        return cls(system, spec)

    def _response(self, operation_id: str, status: int) -> dict[str, Any]:
        responses = self._responses.get(operation_id)
        if responses is None:
            raise KeyError(f"{self.system} contract has no operation {operation_id!r}")
        response = responses.get(str(status)) or responses.get(f"{status // 100}XX")
        response = response or responses.get("default")
        if response is None:
            raise ContractViolation(
                f"status {status} is not in the contract",
                system=self.system,
                operation=operation_id,
            )
        documented: dict[str, Any] = response
        return documented

    def _schema(self, operation_id: str, status: int) -> dict[str, Any]:
        response = self._response(operation_id, status)
        for media_type, content in (response.get("content") or {}).items():
            if media_type.split(";")[0].strip().endswith("json") and "schema" in content:
                schema: dict[str, Any] = content["schema"]
                return schema
        return _ANY_BODY  # no JSON body documented for this status: anything parseable passes

    def check_media_type(self, operation_id: str, status: int, content_type: str | None) -> None:
        """Raise `ContractViolation` unless `content_type` is one the contract documents for
        the `status` answer of the operation (parameters such as ``charset`` aside).

        A status documented without a body takes any. The value is not repeated in the
        message beyond its media type, which is cut to a sane length.
        """
        documented = self._media_types(operation_id, status)
        if not documented:
            return
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type in documented:
            return
        shown = media_type[:60] or "(none)"
        raise ContractViolation(
            f"{status} response has Content-Type {shown}; the contract documents "
            f"{', '.join(sorted(documented))}",
            system=self.system,
            operation=operation_id,
            status=status,
        )

    def _media_types(self, operation_id: str, status: int) -> frozenset[str]:
        content = self._response(operation_id, status).get("content") or {}
        return frozenset(str(media_type).lower() for media_type in content)

    def validate(self, operation_id: str, status: int, body: Any) -> None:
        """Raise `ContractViolation` unless `body` is a valid `status` answer of the operation."""
        self._check(self._schema(operation_id, status), operation_id, status, body, "body")

    def validate_envelope(self, operation_id: str, status: int, body: Any) -> None:
        """Like `validate` for a list answer, but the items of ``data`` are not looked at.

        A list's items are checked one by one with `item_error`, so that one bad record is
        set aside (quarantined) instead of failing the page that carries it.
        """
        envelope, _ = self._list_schema(operation_id, status)
        self._check(envelope, operation_id, status, body, "body")

    def item_error(self, operation_id: str, status: int, index: int, item: Any) -> str | None:
        """Why ``data[index]`` of a list answer breaks the contract, or ``None`` if it doesn't."""
        _, item_schema = self._list_schema(operation_id, status)
        try:
            self._check(item_schema, operation_id, status, item, f"body.data[{index}]")
        except ContractViolation as exc:
            return exc.message
        return None

    def _check(
        self, schema: dict[str, Any], operation_id: str, status: int, body: Any, root: str
    ) -> None:
        fast = compiled_validator(schema)
        if fast is not None and fast.is_valid(body):
            return
        # The slow validator words the error (and checks what jsonschema-rs could not compile).
        errors = list(self._python_validator(schema).iter_errors(body))
        if not errors:
            return
        first = best_match(errors)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ContractViolation(
            f"{status} response does not match the contract at {_where(first, root)}: "
            f"{_what(first)}{more}",
            system=self.system,
            operation=operation_id,
            status=status,
        )

    def _python_validator(self, schema: dict[str, Any]) -> Validator:
        with self._lock:
            validator = self._validators.get(id(schema))
            if validator is None:
                validator = connexion_json_schema().Draft4ResponseValidator(
                    schema, format_checker=FormatChecker()
                )
                self._validators[id(schema)] = validator
            return validator

    def _list_schema(self, operation_id: str, status: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The list answer's schema without its items' schema, and the items' schema."""
        key = (operation_id, status)
        with self._lock:
            parts = self._list_parts.get(key)
        if parts is not None:
            return parts
        schema = self._schema(operation_id, status)
        data = (schema.get("properties") or {}).get("data") or {}
        if data.get("type") != "array" or "items" not in data:
            raise KeyError(f"{self.system} operation {operation_id!r} does not answer a list")
        envelope = {
            **schema,
            "properties": {**schema["properties"], "data": {**data, "items": {}}},
        }
        parts = (envelope, data["items"])
        with self._lock:
            return self._list_parts.setdefault(key, parts)


def _responses_by_operation(
    spec: Mapping[str, Any],
) -> Iterator[tuple[str, dict[str, Any]]]:
    for item in (spec.get("paths") or {}).values():
        for method, operation in item.items():
            if method in _HTTP_METHODS and "operationId" in operation:
                yield operation["operationId"], operation.get("responses") or {}


def _where(error: ValidationError, root: str = "body") -> str:
    where = root
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def _what(error: ValidationError) -> str:
    """Which rule failed, in words built from the schema and field names, never the value."""
    rule, expected, instance = error.validator, error.validator_value, error.instance
    if rule == "required" and isinstance(instance, dict):
        missing = [name for name in expected if name not in instance]
        return f"missing required field(s) {', '.join(missing)}"
    if rule == "type":
        got = _JSON_TYPES.get(type(instance), "another type")
        return f"expected {expected}, got {got}"
    if rule == "additionalProperties" and isinstance(instance, dict):
        known = set(
            (error.schema.get("properties") or {}) if isinstance(error.schema, dict) else ()
        )
        extra = sorted(str(name)[:40] for name in instance if name not in known)[:5]
        return f"unexpected field(s) {', '.join(extra)}"
    if rule == "enum":
        return "not one of the allowed values"
    if rule == "pattern":
        return f"does not match the pattern {expected}"
    if rule == "format":
        return f"is not a valid {expected}"
    if rule in _SIZE_RULES:
        return f"violates {rule} {expected}"
    if rule in {"oneOf", "anyOf"}:
        return "matches none of the allowed shapes"
    return f"fails the {rule!s} rule"


@cache
def contract_for(system: str, filename: str) -> OpenApiContract:
    """The contract of `system` from contracts/openapi/`filename`, loaded once per process."""
    return OpenApiContract.from_file(system, CONTRACTS_DIR / filename)


def decode_json(system: str, operation: str, response: httpx.Response) -> Any:
    """The parsed JSON body, or `ContractViolation` saying why not (never echoing the body)."""
    try:
        return strict_json.loads(response.content)
    except json.JSONDecodeError as exc:
        raise ContractViolation(
            f"{response.status_code} response is not valid JSON "
            f"({exc.msg} at line {exc.lineno} column {exc.colno})",
            system=system,
            operation=operation,
            status=response.status_code,
        ) from None
    except strict_json.NotJson as exc:  # NaN would be stored: NUMERIC takes 'NaN'
        raise ContractViolation(
            f"{response.status_code} response is not valid JSON ({exc})",
            system=system,
            operation=operation,
            status=response.status_code,
        ) from None
    except UnicodeDecodeError:
        raise ContractViolation(
            f"{response.status_code} response is not UTF-8 text",
            system=system,
            operation=operation,
            status=response.status_code,
        ) from None
    except RecursionError:
        raise ContractViolation(
            f"{response.status_code} response is JSON nested too deeply to read",
            system=system,
            operation=operation,
            status=response.status_code,
        ) from None
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise ContractViolation(
            f"{response.status_code} response holds a number too long to read",
            system=system,
            operation=operation,
            status=response.status_code,
        ) from None
