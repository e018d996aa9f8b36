"""The ``/api/v1`` blueprint (contracts/openapi/adapter.yaml): check the request, call a service,
map the answer. Scopes per operation are the spec's; errors leave as problem+json."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import TYPE_CHECKING, Any, Final, cast

import httpx
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.http import HTTP_STATUS_CODES

from adapter.api import observability
from adapter.api.listings import AuditFilter
from adapter.api.rate_limits import STR_LOOKUPS, QueryLimiter, RateLimited
from adapter.api.services import (
    FINDING_LIST,
    REGISTRATION_LOOKUP,
    WORKER_BY_NIK,
    WORKER_DETAIL,
    WORKER_LIST,
    ApiServices,
    Caller,
    Read,
    SyncInProgress,
)
from adapter.api.spec import RequestChecker, RequestProblem
from adapter.apply import RecordRefused
from adapter.audit import Actor
from adapter.auth import scopes
from adapter.auth import web as auth_web
from adapter.auth.errors import InsufficientScopeError
from adapter.auth.principal import Principal
from adapter.auth.tokens import TokenValidator
from adapter.clients.errors import (
    ContractViolation,
    NotFound,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from adapter.clients.http import verify_from
from adapter.errors import AdapterError
from adapter.sdmk_integration_manager import ConnectionDisabled
from adapter.settings import Settings
from adapter.webhooks.event_admin import (
    EventFilter,
    EventNotFailed,
    EventNotFound,
    InvalidPurgeReason,
    Purged,
    Replayed,
    WebhookEventAdmin,
)
from adapter.workforce.directory import InvalidQuery, Page, WorkerFilter, WorkerNotFound

if TYPE_CHECKING:
    from adapter.composition import Services

log = logging.getLogger("adapter.api")

EXTENSION: Final = "hf_api"
EVENTS: Final = "hf_webhook_event_admin"
CHECKER: Final = "hf_api_checker"
NIK_QUERIES: Final = "hf_nik_query_limiter"
STR_LOOKUP_LIMITER: Final = "hf_str_lookup_limiter"
PROBLEM_JSON: Final = "application/problem+json"
# Every request body of this API is a few fields; anything bigger is refused unread.
MAX_BODY_BYTES: Final = 16 * 1024

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

READ = scopes.HEALTHWORKERS_READ


def token_validator(settings: Settings) -> TokenValidator:
    """The SSO's access-token validator as the settings describe it (CA bundle included)."""
    http = httpx.Client(
        verify=verify_from(settings.ca_bundle),
        timeout=httpx.Timeout(
            settings.http_read_timeout_s, connect=settings.http_connect_timeout_s
        ),
        follow_redirects=False,
    )
    return TokenValidator.for_issuer(
        settings.oidc_issuer,
        settings.oidc_audience,
        http=http,
        jwks_cooldown_s=settings.oidc_jwks_cooldown_s,
        jwks_max_age_s=settings.oidc_jwks_max_age_s,
        leeway_s=settings.oidc_leeway_s,
    )


def init_app(app: Flask, services: Services, events: WebhookEventAdmin) -> None:
    """Register the API on `app`, with the SSO's token validator unless one is already set."""
    if auth_web.EXTENSION not in app.extensions:
        auth_web.init_app(app, token_validator(services.settings))
    app.extensions[EXTENSION] = services.api
    app.extensions[EVENTS] = events
    app.extensions[CHECKER] = RequestChecker()
    app.extensions[NIK_QUERIES] = QueryLimiter(services.settings.nik_search_rate_limit)
    app.extensions[STR_LOOKUP_LIMITER] = QueryLimiter(
        services.settings.str_lookup_rate_limit, query=STR_LOOKUPS
    )
    auth_web.on_scope_denied(app, _audit_scope_denial)
    observability.init_app(app)
    app.register_blueprint(blueprint)


# -- health workers -------------------------------------------------------------------------


@blueprint.get("/health-workers")
@auth_web.require_scope(READ)
def list_health_workers() -> Response:
    query = _query("listHealthWorkers")
    where = WorkerFilter(
        str_number=query["str_number"],
        facility_code=query["facility_code"],
        profession=query["profession"],
        regency_code=query["regency_code"],
        active=query["active"],
    )
    page = _services().search_workers(
        _caller(), where, cursor=query["cursor"], limit=query["limit"]
    )
    return _page(page, query["limit"])


@blueprint.post("/health-workers/search-by-nik")
@auth_web.require_scope(READ)
def search_health_workers_by_nik() -> Response:
    body = _body("searchHealthWorkersByNik")
    caller = _limited_caller(WORKER_BY_NIK)
    return jsonify(data=_services().find_worker_by_nik(caller, body["nik"]))


@blueprint.get("/health-workers/<uuid:worker_id>")
@auth_web.require_scope(READ)
def get_health_worker(worker_id: uuid.UUID) -> Response:
    _query("getHealthWorker")
    return jsonify(_services().worker(_caller(), worker_id))


@blueprint.get("/identity-findings")
@auth_web.require_scope(READ)
def list_identity_findings() -> Response:
    query = _query("listIdentityFindings")
    page = _services().findings(
        _caller(),
        cursor=query["cursor"],
        limit=query["limit"],
        open_only=query["open_only"],
        rule=query["rule"],
    )
    return _page(page, query["limit"])


@blueprint.post("/registrations/lookup")
@auth_web.require_scope(READ)
def lookup_registration() -> Response:
    body = _body("lookupRegistration")
    # Either way a live KKI call: by NIK it counts as a NIK query, by STR as an STR look-up.
    limiter = NIK_QUERIES if body.get("nik") is not None else STR_LOOKUP_LIMITER
    caller = _limited_caller(REGISTRATION_LOOKUP, limiter)
    result = _services().lookup(caller, str_number=body.get("str_number"), nik=body.get("nik"))
    age = result.answer.age_s()
    return jsonify(
        live=result.answer.live,
        stale=result.answer.stale,
        stale_reason=result.answer.stale_reason,
        age_s=None if age is None else round(age, 3),
        registrations=result.documents,
    )


# -- sync runs ------------------------------------------------------------------------------


@blueprint.get("/sync-runs")
@auth_web.require_scope(scopes.SYNC_RUN)
def list_sync_runs() -> Response:
    query = _query("listSyncRuns")
    page = _services().sync_runs(
        system=query["system"], cursor=query["cursor"], limit=query["limit"]
    )
    return _page(page, query["limit"])


@blueprint.post("/sync-runs")
@auth_web.require_scope(scopes.SYNC_RUN)
def start_sync_run() -> tuple[Response, int, dict[str, str]]:
    body = _body("startSyncRun")
    run = _services().start_sync(_caller(), body["system"], full=bool(body.get("full", False)))
    return jsonify(run), 202, {"Location": f"{blueprint.url_prefix}/sync-runs/{run['id']}"}


@blueprint.get("/sync-runs/<uuid:run_id>")
@auth_web.require_scope(scopes.SYNC_RUN)
def get_sync_run(run_id: uuid.UUID) -> Response:
    _query("getSyncRun")
    run = _services().sync_run(run_id)
    if run is None:
        raise RequestProblem(404, f"no sync run {run_id}", reason="not_found")
    return jsonify(run)


# -- integrations ---------------------------------------------------------------------------


@blueprint.get("/integrations")
@auth_web.require_scope(scopes.INTEGRATIONS_ADMIN)
def list_integrations() -> Response:
    _query("listIntegrations")
    return jsonify(data=_services().integrations())


@blueprint.patch("/integrations/<any(kki, sisdmk):system>")
@auth_web.require_scope(scopes.INTEGRATIONS_ADMIN)
def update_integration(system: str) -> Response:
    body = _body("updateIntegration")
    return jsonify(_services().set_integration(_caller(), system, enabled=body["enabled"]))


@blueprint.get("/integrations/<any(kki, sisdmk):system>/logs")
@auth_web.require_scope(scopes.INTEGRATIONS_ADMIN)
def get_integration_logs(system: str) -> Response:
    query = _query("getIntegrationLogs")
    return jsonify(_services().integration_logs(system, limit=query["limit"]))


# -- webhook events -------------------------------------------------------------------------


@blueprint.get("/webhook-events")
@auth_web.require_scope(scopes.EVENTS_ADMIN)
def list_webhook_events() -> Response:
    query = _query("listWebhookEvents")
    where = EventFilter(state=query["state"], source=query["source"])
    page = _events().list(where, cursor=query["cursor"], limit=query["limit"])
    return _page(page, query["limit"])


@blueprint.post("/webhook-events/replay")
@auth_web.require_scope(scopes.EVENTS_ADMIN)
def replay_failed_webhook_events() -> Response:
    _query("replayFailedWebhookEvents")
    return jsonify(_replayed(_events().replay(_caller().actor, None)))


@blueprint.post("/webhook-events/<uuid:event_id>/replay")
@auth_web.require_scope(scopes.EVENTS_ADMIN)
def replay_webhook_event(event_id: uuid.UUID) -> Response:
    _query("replayWebhookEvent")
    return jsonify(_replayed(_events().replay(_caller().actor, [event_id])))


@blueprint.post("/webhook-events/purge")
@auth_web.require_scope(scopes.EVENTS_ADMIN)
def purge_failed_webhook_events() -> Response:
    body = _body("purgeFailedWebhookEvents")
    return jsonify(_purged(_events().purge(_caller().actor, None, reason=body["reason"])))


@blueprint.post("/webhook-events/<uuid:event_id>/purge")
@auth_web.require_scope(scopes.EVENTS_ADMIN)
def purge_webhook_event(event_id: uuid.UUID) -> Response:
    body = _body("purgeWebhookEvent")
    return jsonify(_purged(_events().purge(_caller().actor, [event_id], reason=body["reason"])))


def _replayed(result: Replayed) -> dict[str, Any]:
    return {
        "replayed": [str(event_id) for event_id in result.replayed],
        "skipped": result.skipped,
        "published": result.published,
    }


def _purged(result: Purged) -> dict[str, Any]:
    return {"purged": [str(event_id) for event_id in result.purged], "skipped": result.skipped}


# -- audit trail ----------------------------------------------------------------------------


@blueprint.get("/audit-events")
@auth_web.require_scope(scopes.AUDIT_READ)
def list_audit_events() -> Response:
    query = _query("listAuditEvents")
    since = query["since"]
    where = AuditFilter(
        action=query["action"],
        resource_type=query["resource_type"],
        resource_id=query["resource_id"],
        actor_subject=query["actor_subject"],
        outcome=query["outcome"],
        since=None if since is None else _instant("since", since),
    )
    page, pending = _services().audit_events(where, cursor=query["cursor"], limit=query["limit"])
    response = _page(page, query["limit"])
    # Committed entries not sealed yet, so not listed: the sealer threads chain them shortly.
    response.headers["X-Audit-Pending"] = str(pending)
    return response


# -- plumbing -------------------------------------------------------------------------------


def _services() -> ApiServices:
    return cast(ApiServices, current_app.extensions[EXTENSION])


def _events() -> WebhookEventAdmin:
    return cast(WebhookEventAdmin, current_app.extensions[EVENTS])


def _caller() -> Caller:
    principal = auth_web.current_principal()
    return Caller(
        Actor.from_principal(principal),
        pii=principal.has_scopes(scopes.HEALTHWORKERS_READ_PII),
    )


def _limited_caller(read: Read, limiter_name: str = NIK_QUERIES) -> Caller:
    """The caller of a rate-limited query (by NIK, or a look-up by STR), once its per-caller
    limit lets it through (a refusal is audited as a denied `read`)."""
    caller = _caller()
    limiter = cast(QueryLimiter, current_app.extensions[limiter_name])
    try:
        limiter.hit(caller.subject, caller.client_id)
    except RateLimited as refused:
        _services().refused(caller.actor, read, {"reason": refused.reason})
        raise
    return caller


# The views that read personal data, by endpoint: a caller refused one is audited under its read.
_PERSONAL_READS: Final[dict[str, Read]] = {
    f"{blueprint.name}.{view.__name__}": read
    for view, read in (
        (list_health_workers, WORKER_LIST),
        (search_health_workers_by_nik, WORKER_BY_NIK),
        (get_health_worker, WORKER_DETAIL),
        (list_identity_findings, FINDING_LIST),
        (lookup_registration, REGISTRATION_LOOKUP),
    )
}


def _audit_scope_denial(principal: Principal, error: InsufficientScopeError) -> None:
    """A valid token without a scope a personal-data view needs: one denied entry."""
    read = _PERSONAL_READS.get(request.endpoint or "")
    if read is not None:
        _services().refused(
            Actor.from_principal(principal),
            read,
            {"reason": error.reason, "missing_scopes": list(error.missing)},
        )


def _query(operation_id: str) -> dict[str, Any]:
    checker = cast(RequestChecker, current_app.extensions[CHECKER])
    return checker.query(operation_id, request.args.to_dict(flat=False))


def _body(operation_id: str) -> dict[str, Any]:
    _query(operation_id)  # the body operations take no query parameters: refuse strays
    if request.mimetype != "application/json":
        raise RequestProblem(415, "send the body as application/json", reason="content_type")
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise RequestProblem(413, f"the body is over {MAX_BODY_BYTES} bytes", reason="too_large")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise RequestProblem(413, f"the body is over {MAX_BODY_BYTES} bytes", reason="too_large")
    checker = cast(RequestChecker, current_app.extensions[CHECKER])
    return checker.body(operation_id, raw)


def _page(page: Page, limit: int) -> Response:
    return jsonify(data=page.items, page={"next_cursor": page.next_cursor, "limit": limit})


def _instant(name: str, text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RequestProblem(
            400, f"{name}: must be a date-time", reason="invalid_parameter"
        ) from None
    if value.tzinfo is None:
        raise RequestProblem(400, f"{name}: needs a time zone", reason="invalid_parameter")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first instant UTC holds
        raise RequestProblem(
            400, f"{name}: outside the years 1-9999 once in UTC", reason="invalid_parameter"
        ) from None


# Status and a fixed detail for errors whose own message may name an upstream URL.
_UPSTREAM: Final[tuple[tuple[type[UpstreamError], int, str], ...]] = (
    (NotFound, 404, "KKI has no such registration"),
    (UpstreamUnavailable, 503, "KKI is unreachable and the store holds no copy; try again later"),
    (UpstreamRateLimited, 503, "KKI is rate limiting the adapter and the store holds no copy"),
    (ContractViolation, 502, "KKI answered outside its contract"),
    (UpstreamRejected, 422, "KKI refused the look-up as invalid (e.g. a NIK that cannot exist)"),
    (UpstreamError, 502, "KKI refused the look-up"),
)
_STATUS: Final[tuple[tuple[type[AdapterError], int], ...]] = (
    (InvalidQuery, 400),
    (WorkerNotFound, 404),
    (EventNotFound, 404),
    (EventNotFailed, 409),
    (InvalidPurgeReason, 422),
    (SyncInProgress, 409),
    (ConnectionDisabled, 409),
    (RecordRefused, 502),
    (RateLimited, 429),
)


@blueprint.errorhandler(AdapterError)
def _problem_of(error: AdapterError) -> Response:
    detail, errors = error.message, None
    status = 500
    if isinstance(error, RequestProblem):
        status, errors = error.status, error.errors or None
    elif isinstance(error, UpstreamError) and error.reason == "connection_disabled":
        # Not an outage: retrying does nothing until someone enables the connection.
        status = 503
        detail = (
            "the KKI connection is disabled and the store holds no copy; an operator enables "
            "it (PATCH /api/v1/integrations/kki)"
        )
    elif isinstance(error, UpstreamError):
        status, detail = next((s, d) for kind, s, d in _UPSTREAM if isinstance(error, kind))
    else:
        status = next((s for kind, s in _STATUS if isinstance(error, kind)), 500)
    if status == 500:
        # The adapter's own fault (a key retired too early, a setting): the log says which and
        # what to do; an AdapterError's message never holds personal data or key material.
        log.error("api request failed: %s (%s): %s", error.reason, type(error).__name__, detail)
        detail = "the adapter failed; the log has the details"
    elif status > 500 and error.reason == "connection_disabled":  # an operator's choice
        log.info("api request answered 503: the kki connection is disabled, nothing stored")
    elif status > 500:
        log.error("api request failed: %s (%s)", error.reason, type(error).__name__)
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "reason": error.reason,
    }
    if errors:
        body["errors"] = errors
    if isinstance(error, SyncInProgress):  # the run that answers the request instead
        body["run_id"] = str(error.run_id)
        body["run_status"] = error.status
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response
