"""The OpenAPI contracts in contracts/openapi/: valid 3.0.3, the outline's operations, documented
errors, constrained inputs, and examples that validate — also through connexion itself."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from connexion import AsyncApp
from connexion.json_schema import (
    Draft4RequestValidator,
    Draft4ResponseValidator,
    resolve_refs,
)
from connexion.lifecycle import ConnexionResponse
from connexion.resolver import Resolver
from jsonschema import FormatChecker
from openapi_schema_validator import (
    OAS30ReadValidator,
    OAS30Validator,
    OAS30WriteValidator,
    oas30_format_checker,
)
from openapi_spec_validator import OpenAPIV30SpecValidator
from starlette.types import ASGIApp, Receive, Scope, Send

from mocks.kki.system import EVENT_TYPES as KKI_EVENT_TYPES
from mocks.sisdmk.system import EVENT_TYPES as SISDMK_EVENT_TYPES
from openapi_schemas import load_yaml

SPECS = Path(__file__).resolve().parents[3] / "contracts" / "openapi"
PUBLIC = ("kki.yaml", "sisdmk.yaml")
ADMIN = ("mock-admin.yaml", "kki-admin.yaml")
ALL = PUBLIC + ADMIN
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
TOKEN_OPERATION = "issueAccessToken"

WEBHOOK_OPERATIONS = {
    "listWebhookSubscriptions",
    "createWebhookSubscription",
    "getWebhookSubscription",
    "deleteWebhookSubscription",
}
OUTLINE_OPERATIONS = {
    "kki.yaml": {
        "listRegistrations",
        "lookupRegistrationsByNik",
        "getRegistration",
        "getCertificationStatus",
        "getSkpSummary",
        "listTrainings",
        "listPracticeLicenses",
        *WEBHOOK_OPERATIONS,
    },
    "sisdmk.yaml": {
        "issueAccessToken",
        "listHealthWorkers",
        "lookupHealthWorkerByNik",
        "getHealthWorker",
        "listEmployments",
        "listEducations",
        "listCertifications",
        "listFacilities",
        "getFacility",
        "listFacilityHealthWorkers",
        *WEBHOOK_OPERATIONS,
    },
    "mock-admin.yaml": {
        "getHealth",
        "resetState",
        "listRecords",
        "createRecord",
        "getRecord",
        "replaceRecord",
        "patchRecord",
        "deleteRecord",
        "listSnapshots",
        "createSnapshot",
        "restoreSnapshot",
        "deleteSnapshot",
        "listFaults",
        "createFault",
        "getFault",
        "deleteFault",
        "clearFaults",
        "listDeliveries",
        "clearDeliveries",
        "getDelivery",
        "redeliver",
        "emitEvents",
        "getWebhookPolicy",
        "putWebhookPolicy",
        "setProviderState",
    },
    "kki-admin.yaml": {"changeRegistrationStatus"},
}
# The mocks send exactly these; the specs' enums must list the same, in the same order.
KKI_EVENTS = list(KKI_EVENT_TYPES)
SISDMK_EVENTS = list(SISDMK_EVENT_TYPES)
# Error schema and media type per spec (the SISDMK token endpoint answers FHIR OperationOutcome).
ERROR_FORMAT = {
    "kki.yaml": ("application/problem+json", "Problem"),
    "sisdmk.yaml": ("application/json", "ErrorEnvelope"),
    "mock-admin.yaml": ("application/problem+json", "Problem"),
    "kki-admin.yaml": ("application/problem+json", "Problem"),
}
# Request bodies that are free-form on purpose (the mock validates records itself).
FREE_FORM_BODIES = {"Record", "MergePatch"}
# A valid value for every path parameter, to probe its pattern.
PATH_SAMPLES = {
    "str_number": "QZ00011234567890",
    "subscription_id": "7d9f3c1e-2a4b-4c5d-8e6f-0a1b2c3d4e5f",
    "worker_id": "0f8e6a52-3b1d-4c4e-9a7f-2d6b8c1e4f30",
    "facility_code": "3171014",
    "collection": "registrations",
    "key": "QZ00011234567890",
    "name": "before-sync",
    "fault_id": "f-1",
    "delivery_id": "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6",
}


def load(name: str) -> dict[str, Any]:
    with (SPECS / name).open(encoding="utf-8") as fh:
        spec: dict[str, Any] = load_yaml(fh)
    return spec


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def callback_operations(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for _, _, operation in operations(spec):
        for callback in operation.get("callbacks", {}).values():
            for item in callback.values():
                for method in METHODS:
                    if method in item:
                        yield item[method]


def deref(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        parts = node["$ref"].removeprefix("#/").split("/")
        target: Any = spec
        for part in parts:
            target = target[part]
        node = target
    return node


def ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    return str(ref).rsplit("/", 1)[-1] if ref else None


def path_parameters(spec: dict[str, Any], path: str, operation: dict[str, Any]) -> list[Any]:
    params = [*spec["paths"][path].get("parameters", []), *operation.get("parameters", [])]
    return [deref(spec, p) for p in params]


def walk(schema: Any) -> Iterator[dict[str, Any]]:
    """Every (sub)schema of an already resolved schema."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key in ("properties",):
        for sub in schema.get(key, {}).values():
            yield from walk(sub)
    for key in ("items", "not", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from walk(schema[key])
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(key, []):
            yield from walk(sub)


def walk_all_schemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "type" in node and isinstance(node.get("type"), str | list):
            yield node
        for value in node.values():
            yield from walk_all_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_all_schemas(value)


# -- validity -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_spec_is_valid_openapi_3_0_3(name: str) -> None:
    spec = load(name)
    assert spec["openapi"] == "3.0.3"
    errors = list(OpenAPIV30SpecValidator(spec).iter_errors())
    assert errors == []


@pytest.mark.parametrize("name", ALL)
def test_spec_uses_no_openapi_3_1_type_lists(name: str) -> None:
    resolved = resolve_refs(load(name))
    for schema in walk_all_schemas(resolved):
        assert not isinstance(schema.get("type"), list), schema


@pytest.mark.parametrize("name", ALL)
def test_operation_ids_are_the_outlines(name: str) -> None:
    found = [op["operationId"] for _, _, op in operations(load(name))]
    assert len(found) == len(set(found))
    assert set(found) == OUTLINE_OPERATIONS[name]


@pytest.mark.parametrize("name", ALL)
def test_every_operation_is_documented(name: str) -> None:
    spec = load(name)
    declared_tags = {t["name"] for t in spec.get("tags", [])}
    all_ops = [op for _, _, op in operations(spec)] + list(callback_operations(spec))
    for operation in all_ops:
        where = operation.get("operationId")
        assert operation.get("operationId"), operation
        assert operation.get("summary"), where
        assert operation.get("description"), where
        assert operation.get("tags"), where
        assert set(operation["tags"]) <= declared_tags, where


def test_admin_servers_use_the_admin_base_path() -> None:
    for name in ADMIN:
        assert load(name)["servers"] == [{"url": "/__admin"}]
    for name in PUBLIC:
        assert load(name)["servers"] == [{"url": "/"}]


# -- errors ---------------------------------------------------------------------------------


def expected_error_statuses(name: str, path: str, operation: dict[str, Any]) -> set[str]:
    has_key = "{" in path
    has_body = "requestBody" in operation
    if name in PUBLIC:
        if operation["operationId"] == TOKEN_OPERATION:
            return {"400", "401", "429", "500", "503"}
        statuses = {"400", "401", "403", "429", "500", "503"}
        if has_key or operation["operationId"].startswith("lookup"):
            statuses.add("404")
        if has_body:
            statuses.add("422")
        return statuses
    statuses = {"400", "500"}
    if has_key:
        statuses.add("404")
    if has_body and operation["operationId"] != "resetState":
        statuses.add("422")
    return statuses


@pytest.mark.parametrize("name", ALL)
def test_operations_document_the_outlines_error_responses(name: str) -> None:
    spec = load(name)
    for path, _, operation in operations(spec):
        documented = {code for code in operation["responses"] if code >= "400"}
        missing = expected_error_statuses(name, path, operation) - documented
        assert not missing, f"{operation['operationId']} lacks {sorted(missing)}"


@pytest.mark.parametrize("name", ALL)
def test_error_responses_use_the_documented_error_schema(name: str) -> None:
    spec = load(name)
    for _, _, operation in operations(spec):
        media_type, schema_name = ERROR_FORMAT[name]
        if operation["operationId"] == TOKEN_OPERATION:
            media_type, schema_name = "application/json", "OperationOutcome"
        for code, response in operation["responses"].items():
            if not code.startswith(("4", "5")):
                continue
            content = deref(spec, response)["content"]
            assert list(content) == [media_type], (operation["operationId"], code)
            assert ref_name(content[media_type]["schema"]) == schema_name


@pytest.mark.parametrize("name", ALL)
def test_429_and_503_document_retry_after(name: str) -> None:
    spec = load(name)
    for _, _, operation in operations(spec):
        for code in ("429", "503"):
            if code in operation["responses"]:
                response = deref(spec, operation["responses"][code])
                header = deref(spec, response["headers"]["Retry-After"])
                assert header["schema"]["type"] == "integer"


# -- inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_path_parameters_are_constrained_and_reject_newlines(name: str) -> None:
    spec = load(name)
    for path, _, operation in operations(spec):
        for param in path_parameters(spec, path, operation):
            if param["in"] != "path":
                continue
            schema = deref(spec, param["schema"])
            sample = PATH_SAMPLES[param["name"]]
            if "enum" in schema:
                assert sample in schema["enum"]
                continue
            pattern = schema["pattern"]
            assert pattern.startswith("^"), pattern
            assert pattern.endswith("$"), pattern
            assert schema["maxLength"] >= len(sample)
            assert re.fullmatch(pattern, sample), (pattern, sample)
            for bad in (sample + "\n", "\n" + sample, sample[:2] + "\n" + sample[2:], ""):
                assert not re.fullmatch(pattern, bad), (param["name"], bad)


def request_schemas(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    resolved = resolve_refs(spec)
    for path, _, operation in operations(resolved):
        for param in path_parameters(resolved, path, operation):
            yield f"{operation['operationId']} {param['name']}", param["schema"]
        body = operation.get("requestBody")
        if body:
            for media in body["content"].values():
                yield f"{operation['operationId']} body", media["schema"]


@pytest.mark.parametrize("name", ALL)
def test_request_strings_are_bounded(name: str) -> None:
    for where, schema in request_schemas(load(name)):
        for sub in walk(schema):
            if sub.get("type") == "string" and "enum" not in sub:
                assert "maxLength" in sub, (where, sub)


@pytest.mark.parametrize("name", ALL)
def test_request_bodies_forbid_unknown_properties(name: str) -> None:
    spec = load(name)
    resolved = resolve_refs(spec)
    for path, method, operation in operations(spec):
        body = operation.get("requestBody")
        if not body:
            continue
        for media_type, media in body["content"].items():
            if ref_name(media["schema"]) in FREE_FORM_BODIES:
                continue
            schema = resolved["paths"][path][method]["requestBody"]["content"][media_type]
            schema = schema["schema"]
            variants = schema.get("oneOf", [schema])
            for variant in variants:
                assert variant.get("additionalProperties") is False, operation["operationId"]


# -- examples -------------------------------------------------------------------------------

Check = tuple[str, str, dict[str, Any], Any, str]


def example_checks(name: str) -> Iterator[Check]:
    """(spec, where, resolved schema, example, direction) for every example in a spec."""
    spec = load(name)
    resolved = resolve_refs(spec)
    for schema_name, schema in resolved["components"]["schemas"].items():
        yield name, f"schema {schema_name}", schema, schema["example"], "any"
    for _, _, operation in operations(resolved):
        op_id = operation["operationId"]
        body = operation.get("requestBody")
        for media_type, media in (body or {}).get("content", {}).items():
            yield name, f"{op_id} request {media_type}", media["schema"], media["example"], "write"
        for code, response in operation["responses"].items():
            for media_type, media in response.get("content", {}).items():
                where = f"{op_id} {code} {media_type}"
                yield name, where, media["schema"], media["example"], "read"
        for callback in operation.get("callbacks", {}).values():
            for item in callback.values():
                for cb_method in METHODS:
                    if cb_method in item:
                        media = item[cb_method]["requestBody"]["content"]["application/json"]
                        where = f"{op_id} callback body"
                        yield name, where, media["schema"], media["example"], "read"


ALL_CHECKS = [check for name in ALL for check in example_checks(name)]
COMPONENTS = {name: load(name)["components"] for name in ALL}


@pytest.mark.parametrize("name", ALL)
def test_every_component_schema_and_media_type_has_an_example(name: str) -> None:
    spec = load(name)
    for schema_name, schema in spec["components"]["schemas"].items():
        assert "example" in schema, schema_name
    for _, _, operation in operations(spec):
        for response in operation["responses"].values():
            for media in deref(spec, response).get("content", {}).values():
                assert "example" in media, operation["operationId"]
        for media in operation.get("requestBody", {}).get("content", {}).values():
            assert "example" in media, operation["operationId"]


@pytest.mark.parametrize(
    ("name", "where", "schema", "example", "direction"),
    ALL_CHECKS,
    ids=[f"{c[0]}:{c[1]}" for c in ALL_CHECKS],
)
def test_example_validates_against_its_schema(
    name: str, where: str, schema: dict[str, Any], example: Any, direction: str
) -> None:
    oas_validator = {
        "any": OAS30Validator,
        "read": OAS30ReadValidator,
        "write": OAS30WriteValidator,
    }[direction]
    # The spec's components travel along so that discriminator mappings resolve.
    rooted = {**schema, "components": COMPONENTS[name]}
    validator = oas_validator(rooted, format_checker=oas30_format_checker)
    errors = [e.message for e in validator.iter_errors(example)]
    assert errors == [], f"{name} {where}"
    # What connexion (and the mock's record validation) will apply at run time.
    runtime_validator = Draft4RequestValidator if direction == "write" else Draft4ResponseValidator
    errors = [
        e.message
        for e in runtime_validator(schema, format_checker=FormatChecker()).iter_errors(example)
    ]
    assert errors == [], f"{name} {where}"


# -- cross-spec consistency -----------------------------------------------------------------


def test_kki_admin_copies_of_kki_schemas_are_identical() -> None:
    kki, extension = load("kki.yaml"), load("kki-admin.yaml")
    for name, schema in extension["components"]["schemas"].items():
        if name in kki["components"]["schemas"]:
            assert schema == kki["components"]["schemas"][name], name
    assert (
        extension["components"]["parameters"]["StrNumber"]
        == (kki["components"]["parameters"]["StrNumber"])
    )


def test_kki_admin_components_merge_cleanly_into_the_admin_spec() -> None:
    # The mock merges both files into one admin spec: shared names must mean the same thing.
    base, extension = load("mock-admin.yaml"), load("kki-admin.yaml")
    for section, entries in extension["components"].items():
        for name, value in entries.items():
            if name in base["components"].get(section, {}):
                assert value == base["components"][section][name], (section, name)
    assert not set(base["paths"]) & set(extension["paths"])


def test_event_types_are_the_domains() -> None:
    kki = load("kki.yaml")["components"]["schemas"]["EventType"]["enum"]
    sisdmk = load("sisdmk.yaml")["components"]["schemas"]["EventType"]["enum"]
    admin = load("mock-admin.yaml")["components"]["schemas"]["EventType"]["enum"]
    assert kki == KKI_EVENTS
    assert sisdmk == SISDMK_EVENTS
    assert admin == KKI_EVENTS + SISDMK_EVENTS


def test_fault_routes_are_exactly_the_public_routes() -> None:
    expected = {"*"}
    for name in PUBLIC:
        for path, method, operation in operations(load(name)):
            expected |= {operation["operationId"], f"{method.upper()} {path}"}
    routes = load("mock-admin.yaml")["components"]["schemas"]["FaultRoute"]["enum"]
    assert len(routes) == len(set(routes))
    assert set(routes) == expected


def test_common_schemas_are_the_same_in_every_spec() -> None:
    specs = {name: load(name)["components"]["schemas"] for name in ALL}
    for schema_name in ("FieldError", "Nik", "FacilityCode", "Profession", "StrNumber"):
        copies = [s[schema_name] for s in specs.values() if schema_name in s]
        assert len(copies) >= 2, schema_name
        descriptions_ignored = [{k: v for k, v in c.items() if k != "description"} for c in copies]
        examples_ignored = [
            {k: v for k, v in c.items() if k != "example"} for c in descriptions_ignored
        ]
        assert all(c == examples_ignored[0] for c in examples_ignored), schema_name
    kki, sisdmk = load("kki.yaml")["components"], load("sisdmk.yaml")["components"]
    for section, name in [
        ("parameters", "Limit"),
        ("parameters", "Cursor"),
        ("parameters", "UpdatedSince"),
        ("parameters", "SubscriptionId"),
        ("schemas", "WebhookSecret"),
        ("schemas", "NikLookup"),
    ]:
        assert kki[section][name] == sisdmk[section][name], name


# -- connexion ------------------------------------------------------------------------------


class FakeRuntimeScope:
    """What the mock's RuntimeScope provides to the security functions: `request.state.mock`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.runtime = SimpleNamespace(
            settings=SimpleNamespace(
                credentials={"api_token": "test-token", "readonly_token": "test-readonly"}
            ),
            token_info=lambda token: (
                SimpleNamespace(client_id="test", scopes=frozenset({"webhooks:manage"}))
                if token == "test-bearer"
                else None
            ),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope.setdefault("state", {})["mock"] = self.runtime
        await self.app(scope, receive, send)


def success(operation: dict[str, Any]) -> tuple[int, Any]:
    code = next(c for c in operation["responses"] if c.startswith("2"))
    content = operation["responses"][code].get("content")
    example = next(iter(content.values()))["example"] if content else None
    return int(code), example


def stub_resolver(spec: dict[str, Any]) -> Resolver:
    """Each operation answers its documented success example."""
    answers = {op["operationId"]: success(op) for _, _, op in operations(spec)}

    def resolve(operation_id: str) -> Callable[..., Any]:
        status, example = answers[operation_id]

        def handler(**_: Any) -> Any:
            if example is None:
                return ConnexionResponse(status_code=status)
            # Success and error media types differ (JSON vs problem+json), and connexion can't
            # pick between them: a handler names the content type.
            return copy.deepcopy(example), status, {"Content-Type": "application/json"}

        return handler

    return Resolver(function_resolver=resolve)


@pytest.mark.parametrize("name", ALL)
def test_connexion_serves_every_documented_example(name: str) -> None:
    """Requests built from the request examples pass connexion's validation, and the success
    examples pass its response validation (a mismatch would be a 500)."""
    from starlette.testclient import TestClient

    spec = load(name)
    app = AsyncApp(__name__)
    app.add_api(
        spec,
        base_path="/__admin" if name in ADMIN else None,
        resolver=stub_resolver(spec),
        validate_responses=True,
        strict_validation=True,
    )
    auth = {
        "kki.yaml": {"X-API-Key": "test-token"},
        "sisdmk.yaml": {"Authorization": "Bearer test-bearer"},
    }.get(name, {})
    prefix = "/__admin" if name in ADMIN else ""
    with TestClient(FakeRuntimeScope(app)) as client:
        for path, method, operation in operations(spec):
            url = prefix + path
            query: dict[str, str] = {}
            for param in path_parameters(spec, path, operation):
                if param["in"] == "path":
                    url = url.replace("{" + param["name"] + "}", PATH_SAMPLES[param["name"]])
                elif param["in"] == "query" and param.get("required"):
                    query[param["name"]] = deref(spec, param["schema"])["enum"][0]
            kwargs: dict[str, Any] = {"params": query, "headers": dict(auth)}
            body = operation.get("requestBody")
            if body:
                media_type, media = next(iter(body["content"].items()))
                if media_type == "application/x-www-form-urlencoded":
                    kwargs["data"] = media["example"]
                else:
                    kwargs["json"] = media["example"]
                    kwargs["headers"]["content-type"] = media_type
            response = client.request(method.upper(), url, **kwargs)
            status, example = success(operation)
            assert response.status_code == status, (operation["operationId"], response.text)
            if example is not None:
                assert response.json() == example


def test_kki_rejects_a_request_without_api_key_as_401() -> None:
    from starlette.testclient import TestClient

    spec = load("kki.yaml")
    app = AsyncApp(__name__)
    app.add_api(spec, resolver=stub_resolver(spec), strict_validation=True)
    with TestClient(FakeRuntimeScope(app)) as client:
        assert client.get("/v1/registrations").status_code == 401
        assert client.get("/v1/registrations", headers={"X-API-Key": "nope"}).status_code == 401


def test_patch_accepts_merge_patch_and_plain_json() -> None:
    from starlette.testclient import TestClient

    spec = load("mock-admin.yaml")
    app = AsyncApp(__name__)
    app.add_api(spec, base_path="/__admin", resolver=stub_resolver(spec), strict_validation=True)
    with TestClient(FakeRuntimeScope(app)) as client:
        for content_type in ("application/merge-patch+json", "application/json"):
            response = client.patch(
                "/__admin/records/registrations/QZ00011234567890",
                content=b'{"kompetensi": "Dokter Umum"}',
                headers={"content-type": content_type},
            )
            assert response.status_code == 200, (content_type, response.text)
