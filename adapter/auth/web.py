"""Flask integration: `init_app(app, validator)` and the `require_scope(...)` view decorator.

The one module of `adapter.auth` that imports Flask. A refused request gets RFC 6750's
`WWW-Authenticate` challenge and an RFC 9457 ``application/problem+json`` body; the principal of
an accepted one is on ``flask.g.principal``. A valid token refused for a missing scope is
logged with its subject and client, and handed to the app's `on_scope_denied` hook (the API
audits it); an expired one whose signature verifies is logged with them too.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, cast

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.http import HTTP_STATUS_CODES

from adapter.auth.bearer import bearer_token
from adapter.auth.errors import (
    AuthError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    KeySetUnavailableError,
    MissingTokenError,
)
from adapter.auth.principal import Principal
from adapter.auth.scopes import ALL_SCOPES
from adapter.auth.tokens import AccessTokenValidator

log = logging.getLogger("adapter.auth")

EXTENSION: Final = "hf_auth"
SCOPE_DENIED: Final = "hf_auth_scope_denied"
REALM: Final = "healthforce"
PROBLEM_JSON: Final = "application/problem+json"
# RFC 6750 §3: error_description may only hold %x20-21 / %x23-5B / %x5D-7E.
_UNSAFE_IN_QUOTED: Final = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")

View = TypeVar("View", bound=Callable[..., Any])
# Called with the caller and the refusal when a valid token lacks a scope a view requires.
ScopeDeniedHook = Callable[[Principal, InsufficientScopeError], None]


def init_app(app: Flask, validator: AccessTokenValidator) -> None:
    """Make `validator` the one `require_scope` uses in this app."""
    app.extensions[EXTENSION] = validator


def on_scope_denied(app: Flask, hook: ScopeDeniedHook) -> None:
    """Have `hook` called (before the 403 is sent) whenever a valid token lacks a scope."""
    app.extensions[SCOPE_DENIED] = hook


def require_scope(*scopes: str) -> Callable[[View], View]:
    """Only callers whose access token holds every one of `scopes` reach the view.

    With no scopes, any valid access token will do. The principal is put on
    ``flask.g.principal`` (see `current_principal`).
    """
    unknown = sorted(set(scopes) - ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; add them to adapter/auth/scopes.py first")
    required = tuple(scopes)

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def protected(*args: Any, **kwargs: Any) -> Any:
            try:
                principal = authenticate()
            except AuthError as error:
                _log_refusal(error)
                return challenge(error, required)
            missing = principal.missing_scopes(required)
            if missing:
                return _refuse_scope(principal, InsufficientScopeError(required, missing))
            g.principal = principal
            return view(*args, **kwargs)

        return cast(View, protected)

    return decorate


def _log_refusal(error: AuthError) -> None:
    holder = error.holder if isinstance(error, InvalidTokenError) else None
    if holder is None:
        log.info("request refused: %s (%s)", error.reason, error.cause)
        return
    log.info(
        "request refused: %s (%s) for %s of client %s",
        error.reason,
        error.cause,
        holder.subject,
        holder.client_id,
        extra={"subject": holder.subject, "client": holder.client_id},
    )


def _refuse_scope(principal: Principal, error: InsufficientScopeError) -> Response:
    """The 403 for a caller the token names: logged with who asked, reported to the hook."""
    log.info(
        "request refused: %s (%s) for %s of client %s, lacking %s",
        error.reason,
        error.cause,
        principal.subject,
        principal.client_id,
        " ".join(error.missing),
        extra={
            "subject": principal.subject,
            "client": principal.client_id,
            "missing_scopes": list(error.missing),
            "endpoint": request.endpoint,
        },
    )
    hook = current_app.extensions.get(SCOPE_DENIED)
    if hook is not None:
        cast(ScopeDeniedHook, hook)(principal, error)
    return challenge(error, error.required)


def authenticate() -> Principal:
    """The principal of the current request's bearer token, or the `AuthError` that refuses it."""
    if "access_token" in request.args:
        # RFC 6750 §2.3 lets us refuse it: URLs with tokens end up in logs and proxies.
        raise InvalidRequestError(
            "access tokens are accepted only in the Authorization header, never in the URL",
            cause="token_in_query",
        )
    values = request.headers.getlist("Authorization")
    if len(values) > 1:
        raise InvalidRequestError("more than one Authorization header", cause="header")
    token = bearer_token(values[0] if values else None)
    validator = cast(AccessTokenValidator, current_app.extensions[EXTENSION])
    return validator.validate(token)


def current_principal() -> Principal:
    """The principal `require_scope` put on this request; a `RuntimeError` outside one."""
    principal = g.get("principal")
    if not isinstance(principal, Principal):
        raise RuntimeError("no principal: the view is not wrapped in require_scope(...)")
    return principal


def challenge(error: AuthError, required: Sequence[str] = ()) -> Response:
    """The 400/401/403/503 answer to `error`: problem+json with RFC 6750's challenge."""
    status = error.status
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": error.message,
        "reason": error.reason,
    }
    params = [f'realm="{REALM}"']
    if not isinstance(error, MissingTokenError | KeySetUnavailableError):
        # RFC 6750 §3.1: a request without credentials gets the bare challenge, no error code.
        params.append(f'error="{error.reason}"')
        params.append(f'error_description="{_quotable(error.message)}"')
    if isinstance(error, InsufficientScopeError):
        params.append(f'scope="{" ".join(required)}"')
        body["required_scopes"] = list(required)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    response.headers["Cache-Control"] = "no-store"
    if isinstance(error, KeySetUnavailableError):
        response.headers["Retry-After"] = str(math.ceil(error.retry_after_s))
    else:
        response.headers["WWW-Authenticate"] = "Bearer " + ", ".join(params)
    return response


def _quotable(text: str) -> str:
    return _UNSAFE_IN_QUOTED.sub("'", text.replace('"', "'").replace("\\", "/"))
