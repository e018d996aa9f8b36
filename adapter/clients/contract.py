"""Response bodies checked against the operation's schema in contracts/openapi/*.yaml.

Each spec is loaded and its `$ref`s resolved once per process; validators are cached per
(operationId, status). Messages say where and which rule failed, never the offending value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

import httpx
import yaml
from connexion.json_schema import Draft4ResponseValidator, resolve_refs
from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from adapter.clients.errors import ContractViolation

CONTRACTS_DIR: Final = Path(__file__).resolve().parents[2] / "contracts" / "openapi"
_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
_SIZE_RULES: Final = frozenset(
    {"minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "multipleOf"}
)
_JSON_TYPES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


class OpenApiContract:
    """One system's OpenAPI document, ready to validate the responses of its operations."""

    def __init__(self, system: str, spec: Mapping[str, Any]) -> None:
        self.system = system
        resolved: dict[str, Any] = resolve_refs(dict(spec))
        self._responses = dict(_responses_by_operation(resolved))
        self._validators: dict[tuple[str, int], Validator] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, system: str, path: Path) -> OpenApiContract:
        with path.open(encoding="utf-8") as fh:
            spec = yaml.safe_load(fh)
        return cls(system, spec)

    def validator(self, operation_id: str, status: int) -> Validator:
        key = (operation_id, status)
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                schema = self._schema(operation_id, status)
                validator = Draft4ResponseValidator(schema, format_checker=FormatChecker())
                self._validators[key] = validator
            return validator

    def _schema(self, operation_id: str, status: int) -> dict[str, Any]:
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
        for media_type, content in (response.get("content") or {}).items():
            if media_type.split(";")[0].strip().endswith("json") and "schema" in content:
                schema: dict[str, Any] = content["schema"]
                return schema
        return {}  # no JSON body documented for this status: anything parseable passes

    def validate(self, operation_id: str, status: int, body: Any) -> None:
        """Raise `ContractViolation` unless `body` is a valid `status` answer of the operation."""
        errors = list(self.validator(operation_id, status).iter_errors(body))
        if not errors:
            return
        first = best_match(errors)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ContractViolation(
            f"{status} response does not match the contract at {_where(first)}: "
            f"{_what(first)}{more}",
            system=self.system,
            operation=operation_id,
            status=status,
        )


def _responses_by_operation(
    spec: Mapping[str, Any],
) -> Iterator[tuple[str, dict[str, Any]]]:
    for item in (spec.get("paths") or {}).values():
        for method, operation in item.items():
            if method in _HTTP_METHODS and "operationId" in operation:
                yield operation["operationId"], operation.get("responses") or {}


def _where(error: ValidationError) -> str:
    where = "body"
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
        return json.loads(response.content)
    except json.JSONDecodeError as exc:
        raise ContractViolation(
            f"{response.status_code} response is not valid JSON "
            f"({exc.msg} at line {exc.lineno} column {exc.colno})",
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
