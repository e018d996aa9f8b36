"""A short path for the requests a load test and a sync repeat most: GET one stored record by
its key, and GET a page of a stored collection.

connexion answers such a request through ~10 middleware layers (routing, security, parameter
validation, response-validation plumbing, handler decoration with `inspect.signature` and a
jsonschema validator built per request); under `wrk` those took ~80 % of the server's CPU,
the dict lookup and the stored bytes almost nothing (docs/benchmarks.md, "GET by id").

`StoredReadShortcut` sits between the fault injector and connexion. It answers a request
itself only when connexion would answer it 200 with exactly these bytes, and hands everything
else to connexion unchanged, so every error (400, 401, 403, 404, 405, 500) keeps its one
source of truth:

- the method is GET, there is no query string (so connexion's strict query validation has
  nothing to say), the raw path has no percent-escapes, and the request declares no body
  (no `content-type`, `transfer-encoding` or non-zero `content-length`: connexion reads a
  form or multipart body even on a GET, and refuses a malformed one with 400);
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

A page (`StoredReadShortcut`'s page routes: the list operations a public API names in
`stored_pages()`) is answered only when, besides the method, path, escapes and credentials
above:

- every query parameter is one the operation declares, given once, with a non-empty value made
  only of characters a query carries unescaped (so the value connexion reads is the raw text):
  an unknown parameter, a repeat, `%`, `+` or an empty value go to connexion;
- an integer is plain digits without a leading zero (connexion's `int()` also takes `+5`,
  `1_0`, ` 5`: those go to connexion), and each value passes its parameter's schema with the
  very validator connexion's parameter check uses (jsonschema's Draft 4, formats included);
- the handler's own page function returns without raising (an unknown cursor, a date the
  pattern lets through but the calendar does not: connexion asks the handler again and words
  the error) and the page's envelope passes the operation's 200 schema, as the response
  validator checks a stored page's envelope (its records were checked when stored).

The answer has the same status, headers (`content-length`, `content-type: application/json`,
then uvicorn's own) and bytes as connexion's. Faults, the path guard and the runtime scope
are outside this layer and apply as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from connexion.utils import get_function_from_name
from jsonschema import Draft4Validator
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mocks.core.store import RecordStore, StoredRecord
from mocks.core.validation import PARAMETER_FORMATS, StoredAnswer
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
class StoredPage:
    """What a public API says about one list operation answered from stored bodies: `answer`
    takes the operation's query parameters as keyword arguments, as connexion passes them to
    the handler (integers as `int`, the rest as `str`, defaults for those not given), and
    returns the page the handler would answer, or raises what the handler would raise."""

    answer: Callable[..., StoredAnswer]


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


@dataclass(frozen=True, slots=True)
class _QueryParameter:
    integer: bool
    is_valid: Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class _PageRoute:
    path: str
    parameters: Mapping[str, _QueryParameter]
    defaults: Mapping[str, Any]
    credentials: _Credentials
    envelope_is_valid: Callable[[Any], bool]
    page: StoredPage


_HEADERS_JSON = (b"content-type", b"application/json")
# A query value read as written: no escapes (`%`), no `+` (a space once decoded), nothing a
# query string would need to escape. Anything else is connexion's to decode and check.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._~:-]+")
_PLAIN_INTEGER = re.compile(r"[1-9][0-9]{0,8}")


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


_Named = TypeVar("_Named")


def _named_gets(
    resolved: Mapping[str, Any], named: Mapping[str, _Named]
) -> Iterator[tuple[str, Mapping[str, Any], _Named]]:
    """(path template, path item, what `named` holds) for each GET whose operationId it names."""
    for template, item in (resolved.get("paths") or {}).items():
        operation = item.get("get") if isinstance(item, Mapping) else None
        if not isinstance(operation, Mapping):
            continue
        found = named.get(str(operation.get("operationId")))
        if found is not None:
            yield str(template), item, found


def shortcut_routes(spec: Mapping[str, Any], reads: Mapping[str, StoredRead]) -> list[_Route]:
    """Routes of `spec` whose GET operation (by operationId) is one of `reads`."""
    resolved = resolve_local_refs(spec)
    routes: list[_Route] = []
    for template, item, read in _named_gets(resolved, reads):
        route = _route(resolved, template, item, read)
        if route is None:
            raise ValueError(f"GET {template} can't be a stored read: see mocks/core/fast_read.py")
        siblings = {
            str(other)[len(route.prefix) :].split("/", 1)[0]
            for other in resolved.get("paths") or {}
            if str(other).startswith(route.prefix)
        }
        routes.append(replace(route, reserved=frozenset(s for s in siblings if "{" not in s)))
    return routes


def _page_route(
    spec: Mapping[str, Any], template: str, item: Mapping[str, Any], page: StoredPage
) -> _PageRoute | None:
    """The shortcut for the list `GET template`, or None when its parameters or its answer
    are more than this layer checks the way connexion does."""
    operation = item.get("get")
    if not isinstance(operation, Mapping) or "{" in template or "requestBody" in operation:
        return None
    parameters: dict[str, _QueryParameter] = {}
    defaults: dict[str, Any] = {}
    for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
        schema = parameter.get("schema")
        if (
            parameter.get("in") != "query"
            or parameter.get("required")
            or not isinstance(schema, dict)
            # connexion reads "null" as None for these, and a parameter's own default first
            or parameter.get("nullable")
            or schema.get("nullable")
            or "default" in parameter
        ):
            return None
        kind = schema.get("type")
        if kind not in ("integer", "string") or parameter.get("style", "form") != "form":
            return None
        name = str(parameter["name"])
        # The validator connexion's parameter check builds (mocks/core/validation.py).
        validator = Draft4Validator(schema, format_checker=PARAMETER_FORMATS)
        parameters[name] = _QueryParameter(kind == "integer", validator.is_valid)
        if "default" in schema:
            defaults[name] = schema["default"]
    response = (operation.get("responses") or {}).get("200") or {}
    if response.get("headers"):  # connexion checks declared response headers; none are sent
        return None
    envelope = ((response.get("content") or {}).get("application/json") or {}).get("schema")
    validator = compiled_validator(envelope) if isinstance(envelope, dict) else None
    credentials = _credentials(spec, operation)
    if validator is None or credentials is None:
        return None
    return _PageRoute(template, parameters, defaults, credentials, validator.is_valid, page)


def page_routes(spec: Mapping[str, Any], pages: Mapping[str, StoredPage]) -> list[_PageRoute]:
    """Routes of `spec` whose GET operation (by operationId) is one of `pages`."""
    resolved = resolve_local_refs(spec)
    routes: list[_PageRoute] = []
    for template, item, page in _named_gets(resolved, pages):
        route = _page_route(resolved, template, item, page)
        if route is None:
            raise ValueError(f"GET {template} can't be a stored page: see mocks/core/fast_read.py")
        routes.append(route)
    return routes


class StoredReadShortcut:
    """Answers GET-one-stored-record requests connexion would answer 200; passes on the rest."""

    def __init__(
        self, app: ASGIApp, routes: list[_Route], pages: list[_PageRoute] | None = None
    ) -> None:
        self.app = app
        self.routes = routes
        self.pages = {route.path: route for route in pages or []}

    def _answer(self, scope: Scope) -> bytes | None:
        if scope["method"] != "GET" or _declares_a_body(scope):
            return None
        raw = scope.get("raw_path")
        if raw is not None and b"%" in raw:
            return None
        path: str = scope["path"]
        page = self.pages.get(path)
        if page is not None:
            return _page(page, scope)
        if scope.get("query_string"):
            return None
        for route in self.routes:
            if not path.startswith(route.prefix):
                continue
            key = path[len(route.prefix) :]
            if not key or "/" in key or key in route.reserved or not route.key_is_valid(key):
                return None
            if not _authorised(route.credentials, scope):
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


def _declares_a_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name in (b"content-type", b"transfer-encoding"):
            return True
        if name == b"content-length" and value.strip() != b"0":
            return True
    return False


def _authorised(credentials: _Credentials, scope: Scope) -> bool:
    """Whether the request's credentials pass, read and checked as connexion does."""
    value = _header(scope, credentials.header)
    if value is None:
        return False
    if credentials.bearer:
        # connexion: `authorization.split(maxsplit=1)`, the type compared in lower case
        parts = value.split(maxsplit=1)
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return False
        value = parts[1]
    return credentials.info(value, Request(scope)) is not None


def _page(route: _PageRoute, scope: Scope) -> bytes | None:
    """The page connexion would answer 200 with, or None to leave the request to it."""
    arguments = dict(route.defaults)
    given: set[str] = set()
    query = bytes(scope.get("query_string") or b"")
    for part in query.split(b"&") if query else ():
        name_bytes, equals, value_bytes = part.partition(b"=")
        try:
            name, value = name_bytes.decode("ascii"), value_bytes.decode("ascii")
        except UnicodeDecodeError:
            return None
        parameter = route.parameters.get(name)
        if not equals or parameter is None or name in given or not _PLAIN_VALUE.fullmatch(value):
            return None
        given.add(name)
        if parameter.integer:
            if not _PLAIN_INTEGER.fullmatch(value):
                return None
            typed: Any = int(value)
        else:
            typed = value
        if not parameter.is_valid(typed):
            return None
        arguments[name] = typed
    if not _authorised(route.credentials, scope):
        return None
    answer = route.page.answer(**arguments)
    if answer.envelope is None or not route.envelope_is_valid(answer.envelope):
        return None
    return answer.body


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name`, as Starlette's `Headers.get` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
