"""`create_app(settings)`: the adapter's Flask service, one blueprint per module.

Errors leave as RFC 9457 ``application/problem+json``: an `AdapterError` with its status and
reason, anything else as a logged 500 that says nothing about the request. Every answer says
``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff`` (docs/security.md).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from flask import Flask, Response, jsonify
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from adapter import health
from adapter.api import views as api_views
from adapter.auth import web as auth_web
from adapter.auth.jwks import JwksCache
from adapter.clients.http import verify_from
from adapter.composition import build_services
from adapter.errors import AdapterError
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.messages import EventPublisher
from adapter.queue.rabbit import CONNECTION_ERRORS, open_connection
from adapter.settings import Settings
from adapter.store.database import PG_POOL_SIZE
from adapter.webhooks import views as webhook_views
from adapter.webhooks.receiver import WebhookUnavailable
from adapter.webhooks.signature import WebhookRejected

log = logging.getLogger("adapter.app")

PROBLEM_JSON = "application/problem+json"
# A readiness probe must answer quickly; an SSO slower than this counts as not reachable.
SSO_PROBE_TIMEOUT_S = 2.0


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    publisher: EventPublisher | None = None,
    metrics: EventMetrics | None = None,
    seal: bool = False,
    pool_size: int = PG_POOL_SIZE,
) -> Flask:
    """The WSGI app; `engine`, `publisher` and `metrics` default to what the settings say.

    Its services come from the composition root (`adapter.composition.build_services`). With
    `seal` (each served process) it seals the audit trail in a thread of its own. `pool_size`:
    PostgreSQL connections kept open when the app makes its engine (`serve_pool_size`).
    """
    app = Flask("adapter")
    services = build_services(settings, engine=engine, publisher=publisher, pool_size=pool_size)
    if seal:
        services.start_sealer()
    engine = services.engine
    metrics = metrics if metrics is not None else EventMetrics.for_registry()
    app.extensions["hf_services"] = services
    app.extensions["hf_engine"] = engine
    app.extensions["hf_publisher"] = services.publisher
    app.extensions[webhook_views.EXTENSION] = services.webhook_receiver(metrics)

    readiness = health.Readiness(settings.readiness_cache_s)
    readiness.add("database", lambda: _database_problem(engine))
    broker_url = settings.broker_url.get_secret_value() if settings.broker_url else None
    # Reported, not gating: webhooks wait in the outbox while the broker is away, and tokens
    # are checked with the cached keys while the SSO is; every replica shares both.
    readiness.add("broker", lambda: _broker_problem(broker_url), gates=False)
    readiness.add("sso", lambda: _sso_problem(settings), gates=False)
    # But a process that has never had the SSO's keys cannot check a single token (a new
    # replica during an SSO outage, a wrong CA_BUNDLE or OIDC_ISSUER in a rollout): not ready.
    readiness.add("signing_keys", lambda: _signing_keys_problem(app))
    # With OPS_BIND, /readyz and /metrics are answered only there (`serve` wires the listener).
    separate_ops = settings.ops_bind is not None
    health.init_app(app, readiness, ops_routes=not separate_ops)
    if separate_ops:
        app.extensions[health.OPS_APP] = health.ops_app(readiness, after_request=[no_store])
    app.register_blueprint(webhook_views.blueprint)
    api_views.init_app(app, services, services.event_admin(metrics))
    app.after_request(no_store)

    app.register_error_handler(AdapterError, _adapter_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def no_store(response: Response) -> Response:
    """No cache (browser, proxy) keeps an answer, and no browser guesses its type.

    On every answer, not only those with personal data: simpler to check, and nothing here
    is meant to be cached.
    """
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    response = jsonify(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    )
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    return response


def _adapter_error(error: AdapterError) -> Response:
    if isinstance(error, WebhookUnavailable):
        # Logged where it happened, once per batch of waiting requests.
        response = problem(503, error.reason.replace("_", " "), error.message, reason=error.reason)
        response.headers["Retry-After"] = str(error.retry_after_s)
        return response
    status = error.status if isinstance(error, WebhookRejected) else 500
    if status >= 500:
        log.error("request failed: %r", error)
    return problem(status, error.reason.replace("_", " "), error.message, reason=error.reason)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    response = problem(status, error.name, error.description or error.name)
    if status == 405 and error.get_response().headers.get("Allow"):
        response.headers["Allow"] = error.get_response().headers["Allow"]
    return response


def _unexpected_error(error: Exception) -> Response:
    log.exception("unexpected error while handling a request")
    return problem(500, "Internal Server Error", "the adapter failed; the log has the details")


def _database_problem(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return f"unreachable ({type(exc).__name__})"
    return None


def _sso_problem(settings: Settings) -> str | None:
    """Whether the SSO answers its discovery document (tokens can't be checked without it)."""
    url = settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = httpx.get(
            url, timeout=SSO_PROBE_TIMEOUT_S, verify=verify_from(settings.ca_bundle)
        )
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return f"discovery answered {response.status_code}"
    return None


def _signing_keys_problem(app: Flask) -> str | None:
    """Whether this process holds a key set to check tokens with; fetched now if it has none
    yet (the probes at start-up warm it), within the cooldown and the fetch's deadline."""
    keys = getattr(app.extensions.get(auth_web.EXTENSION), "keys", None)
    if not isinstance(keys, JwksCache) or keys.key_ids:
        return None
    keys.refresh()
    if keys.key_ids:
        return None
    return f"none fetched yet ({keys.last_error or 'the SSO gave no usable key'})"


def _broker_problem(url: str | None) -> str | None:
    if url is None:
        return None  # the embedded queue lives in the database
    connection = open_connection(url)
    try:
        connection.ensure_connection(max_retries=1)  # type: ignore[no-untyped-call]
    except CONNECTION_ERRORS as exc:
        return f"unreachable ({type(exc).__name__})"
    finally:
        connection.release()  # type: ignore[no-untyped-call]
    return None
