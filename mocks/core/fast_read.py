"""A short path for the one request a load test repeats most: GET one stored record by its key.

connexion answers such a request through ~10 middleware layers (routing, security, parameter
validation, response-validation plumbing, handler decoration with `inspect.signature` and a
jsonschema validator built per request); under `wrk` those took ~80 % of the server's CPU,
the dict lookup and the stored bytes almost nothing (docs/benchmarks.md, "GET by id").

`StoredReadShortcut` sits between the fault injector and connexion. It answers a request
itself only when connexion would answer it 200 with exactly these bytes, and hands everything
else to connexion unchanged, so every error (400, 401, 403, 404, 405, 500) keeps its one
source of truth:

- the method is GET, there is no query string (so connexion's strict query validation has
  nothing to say) and the raw path has no percent-escapes;
- the path is `prefix/{key}` of an operation whose handler is a stored read (the public API
  names them in `stored_reads()`), the operation takes no other parameter and no body;
- the key passes the parameter's schema (jsonschema-rs, never looser than connexion's check:
  anything it refuses goes to connexion);
- the credentials pass the operation's only security scheme, checked by the same function
  connexion calls (`x-apikeyInfoFunc` / `x-bearerInfoFunc`), read from the header the way
  connexion reads it; no scopes are required (connexion checks none for these schemes);
- the record exists. Its body was checked against the contract when it was stored, and the
  answer's envelope is fixed, so the per-request response validation of a stored answer
  (`FastJSONResponseBodyValidator`) has nothing to check here either.

The answer has the same status, headers (`content-length`, `content-type: application/json`,
then uvicorn's own) and bytes as connexion's. Faults, the path guard and the runtime scope
are outside this layer and apply as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from connexion.utils import get_function_from_name
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mocks.core.store import RecordStore, StoredRecord
from openapi_schemas import compiled_validator, resolve_local_refs

# (credential value, request) -> token info or None, as connexion's security functions.
InfoFunc = Callable[[str, Request], Any]
# The public API's answer for one stored record: the bytes of the whole body.
BodyFunc = Callable[[RecordStore, StoredRecord], bytes]


@dataclass(frozen=True, slots=True)
class StoredRead:
    """What a public API says about one stored-read operation."""

    store: Callable[[], RecordStore]
    body: BodyFunc


@dataclass(frozen=True, slots=True)
class _Credentials:
    header: bytes  # lower-case header name
    bearer: bool  # `Authorization: Bearer <token>` rather than the header's whole value
    info: InfoFunc


@dataclass(frozen=True, slots=True)
class _Route:
    prefix: str
    key_is_valid: Callable[[str], bool]
    credentials: _Credentials
    read: StoredRead
    # Literal path segments beside the key (`/v1/registrations/lookup`): their own routes,
    # never a key, whatever the key's schema allows.
    reserved: frozenset[str] = frozenset()


_HEADERS_JSON = (b"content-type", b"application/json")


def _credentials(spec: Mapping[str, Any], operation: Mapping[str, Any]) -> _Credentials | None:
    requirements = operation.get("security", spec.get("security"))
    if not isinstance(requirements, list) or len(requirements) != 1:
        return None
    requirement = requirements[0]
    if not isinstance(requirement, Mapping) or len(requirement) != 1:
        return None
    ((name, scopes),) = requirement.items()
    if scopes:
        return None
    scheme = spec.get("components", {}).get("securitySchemes", {}).get(name)
    if not isinstance(scheme, Mapping):
        return None
    if scheme.get("type") == "apiKey" and scheme.get("in") == "header":
        function = scheme.get("x-apikeyInfoFunc")
        header, bearer = str(scheme["name"]).lower().encode("latin-1"), False
    elif scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == "bearer":
        function = scheme.get("x-bearerInfoFunc")
        header, bearer = b"authorization", True
    else:
        return None
    if not isinstance(function, str):
        return None
    return _Credentials(header, bearer, get_function_from_name(function))


def _route(
    spec: Mapping[str, Any], template: str, item: Mapping[str, Any], read: StoredRead
) -> _Route | None:
    """The shortcut for `GET template`, or None when it takes more than one path key."""
    operation = item.get("get")
    match = re.fullmatch(r"([^{}]*/)\{([^{}/]+)\}", template)
    if not isinstance(operation, Mapping) or match is None or "requestBody" in operation:
        return None
    parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
    if len(parameters) != 1:
        return None
    (parameter,) = parameters
    if parameter.get("in") != "path" or parameter.get("name") != match.group(2):
        return None
    schema = parameter.get("schema")
    validator = compiled_validator(schema) if isinstance(schema, dict) else None
    if validator is None or schema.get("type") != "string":
        return None
    credentials = _credentials(spec, operation)
    if credentials is None:
        return None
    return _Route(match.group(1), validator.is_valid, credentials, read)


def shortcut_routes(spec: Mapping[str, Any], reads: Mapping[str, StoredRead]) -> list[_Route]:
    """Routes of `spec` whose GET operation (by operationId) is one of `reads`."""
    resolved = resolve_local_refs(spec)
    routes: list[_Route] = []
    for template, item in (resolved.get("paths") or {}).items():
        operation = item.get("get") if isinstance(item, Mapping) else None
        if not isinstance(operation, Mapping):
            continue
        read = reads.get(str(operation.get("operationId")))
        if read is None:
            continue
        route = _route(resolved, str(template), item, read)
        if route is None:
            raise ValueError(f"GET {template} can't be a stored read: see mocks/core/fast_read.py")
        siblings = {
            str(other)[len(route.prefix) :].split("/", 1)[0]
            for other in resolved.get("paths") or {}
            if str(other).startswith(route.prefix)
        }
        routes.append(replace(route, reserved=frozenset(s for s in siblings if "{" not in s)))
    return routes


class StoredReadShortcut:
    """Answers GET-one-stored-record requests connexion would answer 200; passes on the rest."""

    def __init__(self, app: ASGIApp, routes: list[_Route]) -> None:
        self.app = app
        self.routes = routes

    def _answer(self, scope: Scope) -> bytes | None:
        if scope["method"] != "GET" or scope.get("query_string") or not self.routes:
            return None
        raw = scope.get("raw_path")
        if raw is not None and b"%" in raw:
            return None
        path: str = scope["path"]
        for route in self.routes:
            if not path.startswith(route.prefix):
                continue
            key = path[len(route.prefix) :]
            if not key or "/" in key or key in route.reserved or not route.key_is_valid(key):
                return None
            credentials = route.credentials
            value = _header(scope, credentials.header)
            if value is None:
                return None
            if credentials.bearer:
                # connexion: `authorization.split(maxsplit=1)`, the type compared in lower case
                parts = value.split(maxsplit=1)
                if len(parts) != 2 or parts[0].lower() != "bearer":
                    return None
                value = parts[1]
            if credentials.info(value, Request(scope)) is None:
                return None
            store = route.read.store()
            record = store.record(key)
            if record is None:
                return None
            return route.read.body(store, record)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = None
        if scope["type"] == "http":
            try:
                body = self._answer(scope)
            except Exception:  # noqa: BLE001 - connexion words any error: ask it instead
                body = None
        if body is None:
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), _HEADERS_JSON],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name`, as Starlette's `Headers.get` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
