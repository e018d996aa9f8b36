"""Assemble one mock as an ASGI app: connexion serving the public and admin specs, behind the
path guard, the runtime scope and the fault injector."""

from __future__ import annotations

import functools
import http
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

from connexion import AsyncApp
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from connexion.validators import VALIDATOR_MAP
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from mocks.core.admin import AdminHandlers
from mocks.core.fast_read import StoredReadShortcut, page_routes, shortcut_routes
from mocks.core.faults import FaultMiddleware, RouteTable
from mocks.core.problems import ErrorFormat, FieldError, MockProblem
from mocks.core.public_api import PublicApi
from mocks.core.runtime import CONTRACTS_DIR, MockRuntime
from mocks.core.store import StoreError
from mocks.core.validation import (
    FastJSONResponseBodyValidator,
    PreciseFormDataValidator,
    PreciseJSONBodyValidator,
    PreciseParameterValidator,
)
from mocks.core.webhooks import WebhookConfigError

log = logging.getLogger("hf_mock")
F = TypeVar("F", bound=Callable[..., Any])

ADMIN_PREFIX = "/__admin"
MAX_TARGET_LENGTH = 8192
# Control characters (including a percent-encoded newline) in a request target: connexion's
# router answers those with a 500 (checked on connexion 3), a mock must answer 400.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _snake(operation_id: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


def json_by_default(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Name the content type of a `(body, status)` result.

    Operations declare JSON for success and problem+json for errors; with several media types
    connexion needs the handler to say which one it sends, and success is always JSON.
    """

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = await function(*args, **kwargs)
        if isinstance(result, tuple) and len(result) == 2 and result[0] is not None:
            return result[0], result[1], {"Content-Type": "application/json"}
        return result

    return with_signature(wrapper, function)


def with_signature(function: F, signature_of: Callable[..., Any] | None = None) -> F:
    """`function` with its signature computed once: connexion inspects the signature of a
    handler and of a security function on every request (~7% of a GET by id)."""
    function.__signature__ = inspect.signature(signature_of or function)  # type: ignore[attr-defined]
    return function


def method_resolver(*handler_objects: object) -> Resolver:
    """Map `listRegistrations` to the first object with a `list_registrations` method."""

    def resolve(operation_id: str) -> Callable[..., Any]:
        name = _snake(operation_id)
        for handlers in handler_objects:
            function = getattr(handlers, name, None)
            if callable(function):
                return json_by_default(function)
        raise LookupError(f"no handler implements operationId {operation_id!r} ({name})")

    return Resolver(function_resolver=resolve)


class RequestGuard:
    """Rejects what no real API accepts before routing can trip over it: over-long targets,
    control characters (connexion's router answers those 500), and methods a path doesn't
    declare (405 with every allowed method, the concrete path winning over a template)."""

    def __init__(
        self,
        app: ASGIApp,
        format_for: Callable[[str], ErrorFormat],
        route_tables: Sequence[RouteTable],
    ) -> None:
        self.app = app
        self.format_for = format_for
        self.route_tables = route_tables

    def _problem(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        target = raw + "?" + scope.get("query_string", b"").decode("latin-1")
        if len(target) > MAX_TARGET_LENGTH:
            return 414, f"request target longer than {MAX_TARGET_LENGTH} characters", {}
        if _CONTROL.search(unquote(target)) or _CONTROL.search(scope["path"]):
            return 400, "the request path or query contains a control character", {}
        routed = False
        for table in self.route_tables:
            allowed = table.allowed_methods(raw)
            if allowed and scope["method"] not in allowed:
                detail = f"{scope['method']} is not allowed here; use {', '.join(allowed)}"
                return 405, detail, {"allow": ", ".join(allowed)}
            routed = routed or bool(allowed)
        if routed and _has_body(scope) and not _header(scope, b"content-type"):
            # connexion skips the body's validation then and hands the handler raw bytes.
            return (
                415,
                "the request has a body but no Content-Type; name its media type as the "
                "contract documents it for this operation (e.g. application/json)",
                {},
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = self._problem(scope) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, detail, headers = problem
        body, content_type = self.format_for(scope["path"]).render(status, _title(status), detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *((k.encode(), v.encode()) for k, v in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RuntimeScope:
    """Puts the runtime in `scope["state"]` so security functions can reach it."""

    def __init__(self, app: ASGIApp, runtime: MockRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope.setdefault("state", {})["mock"] = self.runtime
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope.get("headers", ()) if key.lower() == name), None)


def _has_body(scope: Scope) -> bool:
    """Whether the request declares a body: a Content-Length over 0, or chunked."""
    if _header(scope, b"transfer-encoding"):
        return True
    length = _header(scope, b"content-length")
    return length is not None and length.strip() not in (b"", b"0")


def _title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def create_asgi_app(runtime: MockRuntime, *, shortcut: bool = True) -> ASGIApp:
    """The mock's ASGI app; `shortcut=False` leaves every request to connexion (the tests
    compare both: mocks/core/fast_read.py must answer exactly as connexion does)."""
    system = runtime.system

    def render_for(path: str) -> Callable[[int, str, str, list[FieldError]], ConnexionResponse]:
        error_format = system.error_format_for(path)

        def render(
            status: int, title: str, detail: str, errors: list[FieldError]
        ) -> ConnexionResponse:
            body, content_type = error_format.render(status, title, detail, errors)
            return ConnexionResponse(
                status_code=status, body=body, content_type=content_type, mimetype=content_type
            )

        return render

    def on_mock_problem(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, MockProblem)
        response = render_for(request.url.path)(
            exc.status, exc.title or _title(exc.status), exc.detail, list(exc.errors)
        )
        response.headers = dict(exc.headers)
        return response

    def on_store_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, StoreError)
        return render_for(request.url.path)(exc.status, _title(exc.status), exc.message, [])

    def on_webhook_config(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        return render_for(request.url.path)(422, "Unprocessable Entity", str(exc), [])

    def on_problem(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, ProblemException)
        status = int(exc.status)
        detail = str(exc.detail or exc.title or _title(status))
        response = render_for(request.url.path)(status, exc.title or _title(status), detail, [])
        if exc.headers:
            response.headers = dict(exc.headers)
        return response

    routes = RouteTable.from_spec(runtime.public_spec)
    admin_routes = RouteTable.from_spec(runtime.admin_spec, base_path=ADMIN_PREFIX)

    def on_http(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, HTTPException)
        response = render_for(request.url.path)(
            exc.status_code, _title(exc.status_code), str(exc.detail), []
        )
        response.headers = dict(exc.headers or {})
        return response

    def on_unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        log.error("unhandled error in the %s mock", system.name, exc_info=exc)
        return render_for(request.url.path)(
            500, "Internal Server Error", "the mock hit a bug; see its log", []
        )

    validators = {
        **VALIDATOR_MAP,
        "parameter": PreciseParameterValidator,
        "body": MediaTypeDict(
            {
                **VALIDATOR_MAP["body"],
                "*/*json": PreciseJSONBodyValidator,
                "application/x-www-form-urlencoded": PreciseFormDataValidator,
            }
        ),
        "response": MediaTypeDict(
            {**VALIDATOR_MAP["response"], "*/*json": FastJSONResponseBodyValidator}
        ),
    }
    public_handlers = system.public_handlers(runtime)
    app = AsyncApp(__name__, specification_dir=str(CONTRACTS_DIR), validator_map=validators)
    ui = SwaggerUIOptions(swagger_ui=True, swagger_ui_path="/ui")
    app.add_api(
        runtime.public_spec,
        resolver=method_resolver(public_handlers),
        validate_responses=True,
        strict_validation=True,
        swagger_ui_options=ui,
        name="public",
    )
    admin_handlers: list[object] = [AdminHandlers(runtime)]
    extension = system.admin_extension_handlers(runtime)
    if extension is not None:
        admin_handlers.append(extension)
    app.add_api(
        runtime.admin_spec,
        base_path=ADMIN_PREFIX,
        resolver=method_resolver(*admin_handlers),
        validate_responses=True,
        strict_validation=True,
        swagger_ui_options=ui,
        name="admin",
    )
    app.add_error_handler(MockProblem, on_mock_problem)
    app.add_error_handler(StoreError, on_store_error)
    app.add_error_handler(WebhookConfigError, on_webhook_config)
    app.add_error_handler(ProblemException, on_problem)
    app.add_error_handler(HTTPException, on_http)
    app.add_error_handler(Exception, on_unexpected)

    api = public_handlers if shortcut and isinstance(public_handlers, PublicApi) else None
    reads = api.stored_reads() if api is not None else {}
    pages = api.stored_pages() if api is not None else {}
    faulted = FaultMiddleware(
        StoredReadShortcut(
            app,
            shortcut_routes(runtime.public_spec, reads),
            page_routes(runtime.public_spec, pages),
        ),
        injector=runtime.injector,
        route_table=routes,
        error_renderer=lambda path, status, title, detail, _headers: system.error_format_for(
            path
        ).render(status, title, detail),
    )
    return RequestGuard(
        RuntimeScope(faulted, runtime), system.error_format_for, [routes, admin_routes]
    )
