"""OpenAPI 3.0 schemas checked by jsonschema-rs, compiled once: shared by the mocks and the adapter.

OpenAPI 3.0 is not plain JSON Schema (`nullable`, `example`, `discriminator`); this converts a
resolved schema and caches the compiled validator per schema object. Checking a 100-record page
costs ~1 ms this way against ~50 ms with the pure-Python validator.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import IO, Any

import jsonschema_rs
import yaml

__all__ = [
    "CyclicSchema",
    "compiled_validator",
    "ignore_connexion_import_warnings",
    "load_yaml",
    "openapi30_to_json_schema",
    "resolve_local_refs",
]


def ignore_connexion_import_warnings() -> None:
    """Ignore what importing connexion warns about, whoever imports it (the mocks serve with it,
    the adapter words a contract error with its schema helpers): it imports starlette's test
    client, which warns that it uses httpx, and jsonschema's RefResolver and
    RefResolutionError, which warn they are deprecated. Neither is used here; printed, they
    would greet every user of `hf-mock` on stderr. Called at import, before connexion is:
    `catch_warnings` around a late import would change every thread's filters while a request
    thread imports."""
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient`")
    warnings.filterwarnings(
        "ignore", message=r"jsonschema\.(exceptions\.RefResolutionError|RefResolver) is"
    )


# libyaml's safe loader when PyYAML was built with it (the wheels are): the pure-Python one
# spent 0.4-0.6 s of CPU on each contract, and every adapter, mock and conformance process
# reads two to four of them at start.
_SAFE_LOADER: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


def load_yaml(source: str | IO[str]) -> Any:
    """`yaml.safe_load`, through libyaml when available: the same documents, the same errors
    (`yaml.YAMLError`), several times faster on the contracts."""
    return yaml.load(source, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader, C or Python


def resolve_local_refs(document: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `document` with every local ``$ref`` replaced by what it points to, the
    way connexion's `json_schema.resolve_refs` does it for the references the contracts use,
    ``#/`` pointers to named members (keys beside a ``$ref`` kept unless the component has
    the same key, the component's members shared by the places that refer to it, not
    copied) — without importing connexion, 0.25 to 0.34 s of CPU the adapter's processes paid
    only for this. A reference outside the document raises `ValueError` (the contracts have
    none); connexion's fallbacks (list indexes, percent-encoded pointers) are not needed."""
    resolved: dict[str, Any] = copy.deepcopy(dict(document))

    def target(ref: object) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise ValueError(f"only references inside the document are resolved, not {ref!r}")
        node: Any = resolved
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def resolve(node: Any) -> Any:
        if isinstance(node, dict) and "$ref" in node:
            found = target(node["$ref"])
            node.update(found)
            if isinstance(found, dict) and "$ref" in found:
                node = resolve(node)
            node.pop("$ref", None)
            return node
        if isinstance(node, dict):
            for key, value in node.items():
                node[key] = resolve(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                node[index] = resolve(value)
        return node

    result: dict[str, Any] = resolve(resolved)
    return result


class CyclicSchema(ValueError):
    """A schema that refers to itself (after $ref resolution): jsonschema-rs can't take it."""


def openapi30_to_json_schema(schema: Any, _path: tuple[int, ...] = ()) -> Any:
    """OpenAPI 3.0's `nullable: true` spelled in plain JSON Schema (for jsonschema-rs)."""
    if isinstance(schema, (dict, list)):
        if id(schema) in _path:
            raise CyclicSchema("the schema contains itself")
        _path = (*_path, id(schema))
    if isinstance(schema, list):
        return [openapi30_to_json_schema(item, _path) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {
        key: openapi30_to_json_schema(value, _path)
        for key, value in schema.items()
        if key not in ("nullable", "example", "discriminator", "readOnly", "writeOnly")
    }
    if schema.get("nullable") is True:
        if isinstance(converted.get("type"), str):
            converted["type"] = [converted["type"], "null"]
            if "enum" in converted:
                converted["enum"] = [*converted["enum"], None]
        else:
            converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


_COMPILED: dict[int, tuple[object, Any]] = {}


def compiled_validator(schema: dict[str, Any]) -> Any:
    """jsonschema-rs validator for `schema`, or None when only the Python validator can do it."""
    entry = _COMPILED.get(id(schema))
    if entry is None or entry[0] is not schema:  # keep the schema alive so its id stays unique
        try:
            validator = jsonschema_rs.Draft4Validator(
                openapi30_to_json_schema(schema), validate_formats=True
            )
        except CyclicSchema:
            validator = None
        entry = (schema, validator)
        _COMPILED[id(schema)] = entry
    return entry[1]
