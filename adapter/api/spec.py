"""contracts/openapi/adapter.yaml as the API's request checker: query parameters and JSON bodies.

Problems name the field and the rule broken, never the value sent (it may be a NIK). No web
framework here: `RequestChecker` takes plain mappings and bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import strict_json
from adapter.errors import AdapterError
from openapi_schemas import compiled_validator, load_yaml, resolve_local_refs

SPEC_PATH: Final = Path(__file__).resolve().parents[2] / "contracts" / "openapi" / "adapter.yaml"
API_PREFIX: Final = "/api/v1"
_HTTP_METHODS: Final = ("get", "put", "post", "delete", "patch")
_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,40}")
# Six digits is a birth date (DDMMYY) or a NIK's district code; no name in the spec has any.
# Counted in the whole name, whatever lies between them: 3201-0112-3456-7890 and
# 3171x0145x0987x0001 are NIKs too.
_DIGITS: Final = 6
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")


class RequestProblem(AdapterError):
    """A request the API refuses before any work: `status` is its HTTP status."""

    default_reason = "bad_request"

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        errors: Sequence[Mapping[str, str]] = (),
    ) -> None:
        super().__init__(message, reason=reason)
        self.status = status
        self.errors = list(errors)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    scopes: tuple[str, ...]
    query: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@cache
def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """The spec with every local ``$ref`` inlined (it has no cycles)."""
    return resolve_local_refs(load_yaml(path.read_text(encoding="utf-8")))


@cache
def operations(path: Path = SPEC_PATH) -> dict[str, Operation]:
    """Every operation of the spec by operationId."""
    spec = load_spec(path)
    found: dict[str, Operation] = {}
    for url, item in spec["paths"].items():
        for method in _HTTP_METHODS:
            if method not in item:
                continue
            op = item[method]
            params = [*item.get("parameters", []), *op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            found[op["operationId"]] = Operation(
                operation_id=op["operationId"],
                method=method.upper(),
                path=url,
                scopes=tuple(s for req in op.get("security", []) for s in req.get("oauth2", [])),
                query={p["name"]: p["schema"] for p in params if p["in"] == "query"},
                body=body.get("schema"),
            )
    return found


class RequestChecker:
    """Checks one operation's query string and JSON body against the spec."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        self._operations = operations(path)

    def operation(self, operation_id: str) -> Operation:
        return self._operations[operation_id]

    def query(self, operation_id: str, args: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """The query parameters, typed and checked, with the spec's defaults filled in."""
        declared = self._operations[operation_id].query
        unknown = sorted(name for name in args if name not in declared)
        if unknown:
            raise RequestProblem(
                400,
                f"unknown query parameter {_name(unknown[0])}; "
                f"this operation takes {', '.join(sorted(declared)) or 'none'}",
                reason="unknown_parameter",
            )
        values: dict[str, Any] = {}
        for name, schema in declared.items():
            given = args.get(name)
            if not given:
                values[name] = schema.get("default")
                continue
            if len(given) > 1:
                raise RequestProblem(400, f"{name}: give it once", reason="invalid_parameter")
            values[name] = _typed(name, given[0], schema)
        return values

    def body(self, operation_id: str, raw: bytes) -> dict[str, Any]:
        """The JSON body, checked: 400 when it is not JSON, 422 naming each field it breaks."""
        schema = self._operations[operation_id].body
        if schema is None:
            raise RequestProblem(400, "this operation takes no body", reason="unexpected_body")
        try:
            document = strict_json.loads(raw)
        except strict_json.NotJson as exc:
            raise RequestProblem(400, f"the body is not valid JSON: {exc}", reason="json") from None
        except (UnicodeDecodeError, ValueError):
            raise RequestProblem(400, "the body is not valid JSON", reason="json") from None
        except RecursionError:
            raise RequestProblem(
                400, "the body is not valid JSON here: it is nested too deeply", reason="json"
            ) from None
        validator = compiled_validator(schema)
        errors = [_describe(error, schema) for error in validator.iter_errors(document)]
        if errors:
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            raise RequestProblem(422, detail, reason="schema", errors=errors)
        checked: dict[str, Any] = document
        return checked


def _typed(name: str, text: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    value: Any = text
    if kind == "integer":
        if not _INTEGER.fullmatch(text):
            raise RequestProblem(400, f"{name}: must be an integer", reason="invalid_parameter")
        value = int(text)
    elif kind == "boolean":
        if text not in ("true", "false"):
            raise RequestProblem(400, f"{name}: must be true or false", reason="invalid_parameter")
        value = text == "true"
    if not compiled_validator(schema).is_valid(value):
        raise RequestProblem(400, f"{name}: {_rule(schema)}", reason="invalid_parameter")
    return value


def _rule(schema: dict[str, Any]) -> str:
    """What a value must be, in words, from its schema (never quoting the value)."""
    if "enum" in schema:
        return "must be one of " + ", ".join(str(v) for v in schema["enum"])
    if "minimum" in schema or "maximum" in schema:
        return f"must be between {schema.get('minimum', '-∞')} and {schema.get('maximum', '∞')}"
    if "pattern" in schema:
        return f"must match {schema['pattern']}"
    if schema.get("format"):
        return f"must be a {schema['format']}"
    if "maxLength" in schema:
        return f"must be at most {schema['maxLength']} characters"
    return f"must be a {schema.get('type', 'valid value')}"


def _describe(error: Any, schema: dict[str, Any]) -> dict[str, str]:
    path = ".".join(str(part) for part in error.instance_path)
    kind = type(error.kind).__name__
    if kind == "Required":
        field_name = ".".join(filter(None, [path, _name(str(error.kind.property))]))
        return {"field": field_name, "message": "is required"}
    if kind == "AdditionalProperties":
        names = ", ".join(_name(str(n)) for n in error.kind.unexpected)
        return {"field": names, "message": "is not a field of this body"}
    if kind in ("MinProperties", "MaxProperties"):
        known = ", ".join(schema.get("properties", {}))
        return {"field": path or "(body)", "message": f"give exactly one of {known}"}
    target: Any = schema
    for part in list(error.schema_path)[:-1]:
        target = target[part] if isinstance(target, dict) else target[int(part)]
    if kind == "Type" and not path:
        return {"field": "(body)", "message": f"must be a JSON {schema.get('type', 'value')}"}
    return {"field": path or "(body)", "message": _rule(target if isinstance(target, dict) else {})}


def _name(text: str) -> str:
    """A field name fit to echo back (an unexpected key could be anything, even a NIK, alone or
    with letters or separators around it): none with as many digits as a date."""
    if _SAFE_NAME.fullmatch(text) and sum(char.isdigit() for char in text) < _DIGITS:
        return text
    return "(an unknown field)"
