"""Assemble one mock as an ASGI app: connexion serving the public and admin specs, behind the
path guard, the runtime scope and the fault injector."""

from __future__ import annotations

import functools
import http
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
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
from mocks.core.faults import FaultMiddleware, RouteTable
from mocks.core.problems import FieldError, MockProblem, ProblemJson
from mocks.core.runtime import CONTRACTS_DIR, MockRuntime
from mocks.core.store import StoreError
from mocks.core.validation import PreciseJSONBodyValidator
from mocks.core.webhooks import WebhookConfigError

log = logging.getLogger("hf_mock")

ADMIN_PREFIX = "/__admin"
MAX_TARGET_LENGTH = 8192
# Control characters (including a percent-encoded newline) in a request target: connexion's
# router answers those with a 500 (see TOOLING.md), a mock must answer 400.
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

    return wrapper


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


class PathGuard:
    """Rejects request targets no real API accepts, before routing can trip over them."""

    def __init__(self, app: ASGIApp, render: Callable[[int, str, str], tuple[bytes, str]]) -> None:
        self.app = app
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode()
            target = raw.decode("latin-1") + "?" + scope.get("query_string", b"").decode("latin-1")
            problem: tuple[int, str] | None = None
            if len(target) > MAX_TARGET_LENGTH:
                problem = (414, f"request target longer than {MAX_TARGET_LENGTH} characters")
            elif _CONTROL.search(unquote(target)) or _CONTROL.search(scope["path"]):
                problem = (400, "the request path or query contains a control character")
            if problem is not None:
                status, detail = problem
                body, content_type = self.render(status, _title(status), detail)
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class RuntimeScope:
    """Puts the runtime in `scope["state"]` so security functions can reach it."""

    def __init__(self, app: ASGIApp, runtime: MockRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope.setdefault("state", {})["mock"] = self.runtime
        await self.app(scope, receive, send)


def _title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def create_asgi_app(runtime: MockRuntime) -> ASGIApp:
    system = runtime.system
    admin_format = ProblemJson()

    def render_for(path: str) -> Callable[[int, str, str, list[FieldError]], ConnexionResponse]:
        error_format = admin_format if path.startswith(ADMIN_PREFIX) else system.error_format

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

    def on_http(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, HTTPException)
        return render_for(request.url.path)(
            exc.status_code, _title(exc.status_code), str(exc.detail), []
        )

    def on_unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        log.error("unhandled error in the %s mock", system.name, exc_info=exc)
        return render_for(request.url.path)(
            500, "Internal Server Error", "the mock hit a bug; see its log", []
        )

    validators = {
        **VALIDATOR_MAP,
        "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": PreciseJSONBodyValidator}),
    }
    app = AsyncApp(__name__, specification_dir=str(CONTRACTS_DIR), validator_map=validators)
    ui = SwaggerUIOptions(swagger_ui=True, swagger_ui_path="/ui")
    app.add_api(
        runtime.public_spec,
        resolver=method_resolver(system.public_handlers(runtime)),
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

    def render_plain(status: int, title: str, detail: str) -> tuple[bytes, str]:
        return system.error_format.render(status, title, detail)

    faulted = FaultMiddleware(
        app,
        injector=runtime.injector,
        route_table=RouteTable.from_spec(runtime.public_spec),
        error_renderer=lambda status, title, detail, headers: render_plain(status, title, detail),
    )
    return PathGuard(RuntimeScope(faulted, runtime), render_plain)
