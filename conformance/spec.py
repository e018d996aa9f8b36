"""A system's OpenAPI contract, loaded once: its operations and what each documents.

Responses are checked with the project's compiled jsonschema-rs validators (openapi_schemas).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import jsonschema_rs
import yaml

from openapi_schemas import compiled_validator, load_yaml

METHODS = ("get", "post", "put", "patch", "delete")


class SpecError(ValueError):
    """The contract is missing or unusable; the message names the file."""


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    method: str  # upper case
    path: str
    secured: bool
    parameters: tuple[dict[str, Any], ...]
    responses: dict[str, Any] = field(hash=False)
    request_body: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def path_params(self) -> list[str]:
        return [p["name"] for p in self.parameters if p.get("in") == "path"]

    def query_param(self, name: str) -> dict[str, Any] | None:
        return next(
            (p for p in self.parameters if p.get("in") == "query" and p["name"] == name), None
        )

    @property
    def is_paged_list(self) -> bool:
        return self.method == "GET" and self.query_param("cursor") is not None


@dataclass(slots=True)
class Contract:
    path: Path
    document: dict[str, Any]
    operations: list[Operation]
    _schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def operation(self, operation_id: str) -> Operation:
        return next(op for op in self.operations if op.id == operation_id)

    def schema(self, name: str) -> dict[str, Any] | None:
        """A named component schema with its references resolved, if the contract has it."""
        schemas = self.document.get("components", {}).get("schemas", {})
        if name not in schemas:
            return None
        resolved = self._schemas.get(name)
        if resolved is None:
            resolved = self._schemas[name] = _resolve(copy.deepcopy(schemas[name]), self.document)
        return resolved

    def check_response(self, operation: Operation, response: httpx.Response) -> list[str]:
        """Why `response` is not what the contract documents for its status; empty if it is."""
        documented = operation.responses.get(str(response.status_code)) or operation.responses.get(
            f"{response.status_code // 100}XX"
        )
        if documented is None:
            documented = operation.responses.get("default")
            if documented is None:
                return [f"status {response.status_code} is not documented for {operation.id}"]
        content = documented.get("content") or {}
        if not content:
            return []
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in content:
            return [
                f"Content-Type {media or '(none)'} is not documented for status "
                f"{response.status_code} (expected {', '.join(sorted(content))})"
            ]
        schema = content[media].get("schema")
        if schema is None:
            return []
        try:
            body = response.json()
        except ValueError:
            return [f"the {response.status_code} body is not JSON"]
        return schema_problems(schema, body)


def schema_problems(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = compiled_validator(schema)
    if validator is None:  # a cyclic schema: not in these contracts
        return []
    problems = []
    for error in validator.iter_errors(instance):
        where = "/".join(str(part) for part in error.instance_path) or "(body)"
        problems.append(f"{where}: {_without_the_value(error)}")
        if len(problems) >= 10:
            break
    return problems


def _without_the_value(error: Any) -> str:
    """What the value breaks, without the value (a jsonschema-rs error): its own message quotes
    it ('"Budi Santoso" is longer than 5 characters'), and a finding's message reaches the
    reports, where only NIK-like numbers would be masked, not a name. The value stays in the
    finding's evidence, masked field by field."""
    kinds, kind, value = jsonschema_rs.ValidationErrorKind, error.kind, error.instance
    described = json_kind(value)
    if isinstance(kind, kinds.Required | kinds.AdditionalProperties):
        return str(error.message)  # property names, from the contract or the provider's keys
    if isinstance(kind, kinds.Type):
        return f"{described}, the contract says {' or '.join(map(str, kind.types))}"
    if isinstance(kind, kinds.MaxLength | kinds.MinLength) and isinstance(value, str):
        bound = "at most" if isinstance(kind, kinds.MaxLength) else "at least"
        return f"{len(value)} characters, the contract says {bound} {kind.limit}"
    if isinstance(kind, kinds.MaxItems | kinds.MinItems) and isinstance(value, list):
        bound = "at most" if isinstance(kind, kinds.MaxItems) else "at least"
        return f"{len(value)} items, the contract says {bound} {kind.limit}"
    if isinstance(kind, kinds.Minimum | kinds.ExclusiveMinimum):
        return f"{described} under the contract's minimum {kind.limit}"
    if isinstance(kind, kinds.Maximum | kinds.ExclusiveMaximum):
        return f"{described} over the contract's maximum {kind.limit}"
    if isinstance(kind, kinds.Pattern):
        return f"does not match the pattern {kind.pattern}"
    if isinstance(kind, kinds.Format):
        return f"not a valid {kind.format}"
    if isinstance(kind, kinds.Enum):
        return f"not one of {', '.join(map(str, kind.options))}"
    keyword = str(error.schema_path[-1]) if error.schema_path else "schema"
    return f"{described} that breaks the contract's {keyword}"


def json_kind(value: Any) -> str:
    """What a JSON value is ("a string", "an array", …), for a message that must not quote it."""
    return _JSON_TYPES.get(type(value), f"a {type(value).__name__}")


_JSON_TYPES: Final = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def load_contract(path: Path) -> Contract:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"contract {path}: cannot read it ({exc.strerror})") from None
    try:
        document = load_yaml(text)
    except yaml.YAMLError:
        raise SpecError(f"contract {path}: not valid YAML") from None
    if not isinstance(document, dict) or "paths" not in document:
        raise SpecError(f"contract {path}: not an OpenAPI document (no `paths`)")
    resolved = _resolve(copy.deepcopy(document), document)
    default_security = resolved.get("security") or []
    operations = []
    for route, item in resolved["paths"].items():
        shared = item.get("parameters", [])
        for method in METHODS:
            spec = item.get(method)
            if spec is None:
                continue
            security = spec.get("security", default_security)
            operations.append(
                Operation(
                    id=spec.get("operationId") or f"{method.upper()} {route}",
                    method=method.upper(),
                    path=route,
                    secured=bool(security),
                    parameters=tuple([*shared, *spec.get("parameters", [])]),
                    responses=spec.get("responses", {}),
                    request_body=spec.get("requestBody"),
                )
            )
    return Contract(path=path, document=document, operations=operations)


def _resolve(node: Any, root: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """`node` with every local `$ref` replaced by its target (the contracts have no cycles)."""
    if isinstance(node, list):
        return [_resolve(item, root, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        if ref in seen:
            return {}
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return _resolve(copy.deepcopy(target), root, (*seen, ref))
    return {key: _resolve(value, root, seen) for key, value in node.items()}
