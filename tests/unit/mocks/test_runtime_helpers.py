"""Small pure pieces of the mock engine: merge patch, spec merging, error formats, resolver."""

from __future__ import annotations

import asyncio
import json

import pytest
from jsonschema import Draft4Validator

from mocks.core.app import _snake, method_resolver
from mocks.core.problems import FieldError, ProblemJson, SisdmkEnvelope
from mocks.core.runtime import merge_patch, merge_specs
from mocks.core.validation import field_errors
from openapi_schemas import compiled_validator


def test_merge_patch_follows_rfc_7396() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    patch = {"a": "z", "c": {"f": None}}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}}
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}}, "the target is not mutated"


def test_merge_patch_replaces_lists_and_non_objects() -> None:
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_patch({"a": 1}, ["x"]) == ["x"]


def test_merge_specs_adds_paths_and_components() -> None:
    base = {"paths": {"/a": {}}, "components": {"schemas": {"A": {}}}, "tags": [{"name": "a"}]}
    extension = {"paths": {"/b": {}}, "components": {"schemas": {"B": {}}}}
    merged = merge_specs(base, extension)
    assert set(merged["paths"]) == {"/a", "/b"}
    assert set(merged["components"]["schemas"]) == {"A", "B"}
    assert base["paths"] == {"/a": {}}


def test_problem_json_has_rfc_9457_members() -> None:
    body, content_type = ProblemJson().render(
        422, "Unprocessable Entity", "bad NIK", [FieldError("body", "nik", "unknown province")]
    )
    problem = json.loads(body)
    assert content_type == "application/problem+json"
    assert problem["type"].endswith("/unprocessable-entity")
    assert problem["status"] == 422
    assert problem["errors"] == [{"location": "body", "name": "nik", "message": "unknown province"}]


def test_sisdmk_envelope_mirrors_success_shape() -> None:
    body, content_type = SisdmkEnvelope().render(404, "Not Found", "no worker")
    assert content_type == "application/json"
    assert json.loads(body) == {"status": 404, "message": "Not Found: no worker"}


@pytest.mark.parametrize(
    ("operation_id", "name"),
    [
        ("listRegistrations", "list_registrations"),
        ("getHealth", "get_health"),
        ("lookupRegistrationsByNik", "lookup_registrations_by_nik"),
    ],
)
def test_operation_ids_map_to_snake_case(operation_id: str, name: str) -> None:
    assert _snake(operation_id) == name


def test_resolver_names_json_and_the_missing_handler() -> None:
    class Handlers:
        async def get_health(self) -> tuple[dict[str, str], int]:
            return {"status": "ok"}, 200

    resolver = method_resolver(Handlers())
    result = asyncio.run(resolver.function_resolver("getHealth")())
    assert result == ({"status": "ok"}, 200, {"Content-Type": "application/json"})
    with pytest.raises(LookupError, match="get_nothing"):
        resolver.function_resolver("getNothing")


def test_validation_messages_name_the_variant_field() -> None:
    schema = {
        "oneOf": [
            {
                "type": "object",
                "required": ["kind", "duration_ms"],
                "properties": {"kind": {"enum": ["down"]}, "duration_ms": {"type": "integer"}},
            },
            {"type": "object", "required": ["kind"], "properties": {"kind": {"enum": ["error"]}}},
        ],
        "discriminator": {"propertyName": "kind"},
    }
    errors = field_errors(Draft4Validator(schema).iter_errors({"kind": "down"}))
    assert [(e.name, e.message) for e in errors] == [
        ("(body)", "'duration_ms' is a required property")
    ]
    unknown = field_errors(Draft4Validator(schema).iter_errors({"kind": "up"}))
    assert unknown[0].message == "kind must be one of down, error, not 'up'"


def test_validation_messages_never_echo_personal_values() -> None:
    schema = {"type": "object", "properties": {"nik": {"type": "string", "pattern": "^[0-9]{16}$"}}}
    errors = field_errors(Draft4Validator(schema).iter_errors({"nik": "317101010190000X"}))
    assert errors[0].name == "nik"
    assert "317101010190000X" not in errors[0].message


def test_nullable_becomes_json_schema_null() -> None:
    schema = {
        "type": "object",
        "required": ["a", "b"],
        "properties": {
            "a": {"type": "string", "nullable": True, "enum": ["x"]},
            "b": {"type": "string", "format": "date-time"},
            "c": {"allOf": [{"type": "integer"}], "nullable": True},
        },
    }
    validator = compiled_validator(schema)
    assert validator.is_valid({"a": None, "b": "2026-01-01T00:00:00Z", "c": None})
    assert validator.is_valid({"a": "x", "b": "2026-01-01T00:00:00Z", "c": 3})
    assert not validator.is_valid({"a": "y", "b": "2026-01-01T00:00:00Z"})
    assert not validator.is_valid({"a": None, "b": None})
    assert not validator.is_valid({"a": None, "b": "yesterday"}), "formats are checked"
    assert compiled_validator(schema) is validator, "compiled once per schema"


def test_self_referencing_schema_falls_back_to_python_validation() -> None:
    node: dict[str, object] = {"type": "object", "properties": {}}
    node["properties"] = {"child": node}  # what $ref resolution makes of a recursive schema
    assert compiled_validator(node) is None
