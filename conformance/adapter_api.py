"""`hf-conformance adapter`: the adapter's own API (contracts/openapi/adapter.yaml) with tokens
from the realm: the scope matrix on every operation, then the credential and Schemathesis phases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import httpx

from adapter.auth import ClientCredentialsToken, TokenValidator
from adapter.auth.errors import AuthError
from adapter.clients.http import tls_verification
from conformance import protocol
from conformance.context import RunContext, needs_extra
from conformance.oidc import (
    TOKEN_HTTP_TIMEOUT_S,
    BearerTokenAuth,
    NoAuth,
    OidcClient,
    first_token,
    token_source,
)
from conformance.provider import Auth, CannotRun, ProviderClient
from conformance.spec import Contract, Operation
from conformance.sso import oidc_options

if TYPE_CHECKING:
    from conformance.systems import SystemProfile

HEALTH_PATH: Final = "/healthz"
CLIENTS: Final = "adapter-clients"  # ctx.records: each client's id and granted scopes
INTEGRATIONS: Final = "adapter-integrations"  # ctx.records: the integrations as found
# Where a real value for a path parameter is read: (list path, query, the item's field).
SAMPLE_SOURCES: Final = {
    "worker_id": ("/api/v1/health-workers", {"limit": "1"}, "id"),
    "run_id": ("/api/v1/sync-runs", {"limit": "1"}, "id"),
    "event_id": ("/api/v1/webhook-events", {"limit": "1", "state": "failed"}, "id"),
}
# Statuses a request with the right scope may get besides 2xx, when the contract documents
# them: an id that does not exist (404) or a state that conflicts (409: a sync already requested
# or running).
ALLOWED_REFUSALS: Final = frozenset({404, 409})
# Operations whose allowed request changes the target for good (purged events stay purged):
# their right scope is probed on an id that surely does not exist (the 404 counts), and one
# with no id in its path is neither probed with the right scope nor fuzzed.
IRREVERSIBLE: Final = frozenset({"purgeWebhookEvent", "purgeFailedWebhookEvents"})

# One token source per client for a run: the scope phase, credentials and Schemathesis reuse
# its token (renewed when it nears expiry, as the adapter does its own). Cleared by each probe:
# another run may meet another realm at the same URL (a restarted test server).
_SOURCES: dict[tuple[str, str, str, bool], ClientCredentialsToken] = {}


def required_scopes(contract: Contract, operation: Operation) -> tuple[str, ...]:
    """The scopes of the operation's first security requirement (adapter.yaml has one each)."""
    item = contract.document["paths"][operation.path][operation.method.lower()]
    security = item.get("security", contract.document.get("security", []))
    if not security:
        return ()
    first: dict[str, list[str]] = security[0]
    return tuple(scope for names in first.values() for scope in names)


def _source(ctx: RunContext, client: OidcClient) -> ClientCredentialsToken:
    oidc = oidc_options(ctx.options)
    assert oidc.issuer is not None
    key = (oidc.issuer, client.client_id, client.secret, ctx.options.tls_verify)
    if key not in _SOURCES:
        _SOURCES[key] = token_source(oidc.issuer, client, verify=ctx.options.tls_verify)
    return _SOURCES[key]


def probe(ctx: RunContext, profile: SystemProfile) -> None:
    """The adapter answers, and every client gets a token the adapter's validator accepts."""
    oidc = oidc_options(ctx.options)
    assert oidc.issuer is not None
    if not oidc.clients:
        raise CannotRun(
            "adapter needs clients of the realm: --client ID:SECRET (repeat it; the scope "
            "matrix needs a client with and one without each scope)"
        )
    _SOURCES.clear()
    health = ctx.client.request("getHealthz", "GET", HEALTH_PATH, credentials="none")
    if health.status_code != 200:
        raise CannotRun(
            f"{ctx.options.base_url} does not look like the adapter: {HEALTH_PATH} answered "
            f"{health.status_code}"
        )
    http = httpx.Client(
        timeout=TOKEN_HTTP_TIMEOUT_S,
        follow_redirects=False,
        verify=tls_verification(ctx.options.tls_verify),
    )
    validator = TokenValidator.for_issuer(oidc.issuer, oidc.audience, http=http)
    granted: list[dict[str, Any]] = []
    try:
        for client in oidc.clients:
            token = first_token(_source(ctx, client), oidc.issuer)
            try:
                principal = validator.validate(token)
            except AuthError as exc:
                raise CannotRun(
                    f"the realm's token for {client.client_id} is not one the adapter accepts "
                    f"({exc.message}); run hf-conformance sso --base-url {oidc.issuer} first"
                ) from None
            granted.append({"client": client, "scopes": principal.scopes})
    finally:
        http.close()
    ctx.records[CLIENTS] = granted
    ctx.stats["adapter_clients"] = {
        entry["client"].client_id: sorted(entry["scopes"]) for entry in granted
    }
    ctx.client.auth = BearerTokenAuth(_source(ctx, oidc.clients[0]))


def _holder(ctx: RunContext, scopes: tuple[str, ...], *, holds: bool) -> OidcClient | None:
    """The first client whose token holds all of `scopes` (or, `holds` False, lacks one)."""
    for entry in ctx.records.get(CLIENTS, []):
        has_all = all(scope in entry["scopes"] for scope in scopes)
        if has_all == holds:
            client: OidcClient = entry["client"]
            return client
    return None


def _auth(ctx: RunContext, client: OidcClient) -> Auth:
    return BearerTokenAuth(_source(ctx, client))


def _operation(ctx: RunContext, operation_id: str) -> Operation | None:
    """The operation, if the contract in use (`--spec` may give another) has it."""
    return next((op for op in ctx.contract.operations if op.id == operation_id), None)


def _read_as(ctx: RunContext, operation_id: str, path: str, query: dict[str, str]) -> Any:
    """A JSON answer to a GET made with a client that holds the operation's scope."""
    operation = _operation(ctx, operation_id)
    if operation is None:
        return None
    client = _holder(ctx, required_scopes(ctx.contract, operation), holds=True)
    if client is None:
        return None
    response = ctx.client.request(
        operation_id,
        "GET",
        path,
        credentials="none",
        params=query,
        headers=_auth_headers(ctx, client),
    )
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _auth_headers(ctx: RunContext, client: OidcClient) -> dict[str, str]:
    return _auth(ctx, client).headers(ctx.client.http)


def collect_samples(ctx: RunContext) -> None:
    """Real values for path parameters (a worker, a run, a dead letter, the integrations)."""
    by_path = {op.path: op.id for op in ctx.contract.operations if op.method == "GET"}
    for name, (path, query, field) in SAMPLE_SOURCES.items():
        if path not in by_path:
            continue
        answer = _read_as(ctx, by_path[path], path, query)
        items = answer.get("data") if isinstance(answer, dict) else None
        if isinstance(items, list) and items and isinstance(items[0], dict) and field in items[0]:
            ctx.samples[name] = str(items[0][field])
    answer = _read_as(ctx, "listIntegrations", "/api/v1/integrations", {})
    integrations = answer.get("data") if isinstance(answer, dict) else None
    if isinstance(integrations, list):
        ctx.records[INTEGRATIONS] = [item for item in integrations if isinstance(item, dict)]
        if ctx.records[INTEGRATIONS]:
            ctx.samples["system"] = str(ctx.records[INTEGRATIONS][0].get("system"))


def _right_body(ctx: RunContext, operation: Operation) -> dict[str, Any] | None:
    """A request body the contract documents; an integration is patched to its own state."""
    if operation.request_body is None:
        return None
    if operation.id == "updateIntegration":
        system = ctx.samples.get("system")
        for item in ctx.records.get(INTEGRATIONS, []):
            if item.get("system") == system and isinstance(item.get("enabled"), bool):
                return {"enabled": item["enabled"]}
        return None
    media = operation.request_body.get("content", {}).get("application/json", {})
    example = media.get("example")
    return dict(example) if isinstance(example, dict) else {}


def check_scope_matrix(ctx: RunContext, profile: SystemProfile) -> None:
    """Every secured operation: 403 to a token without its scope, let through with it."""
    collect_samples(ctx)
    for operation in ctx.operations():
        scopes = required_scopes(ctx.contract, operation)
        if not scopes:
            continue
        path = protocol.fill_path(ctx, operation) or protocol.fill_path(ctx, operation, absent=True)
        if path is None:
            ctx.notes.append(f"{operation.id}: no value for its path; scopes not probed")
            continue
        lacking = _holder(ctx, scopes, holds=False)
        if lacking is None:
            ctx.notes.append(
                f"{operation.id}: every client holds {' '.join(scopes)}; give one without it "
                "to check the 403"
            )
        else:
            _check_wrong_scope(ctx, operation, path, scopes, lacking)
        holder = _holder(ctx, scopes, holds=True)
        if holder is None:
            ctx.notes.append(
                f"{operation.id}: no client holds {' '.join(scopes)}; right scope not checked"
            )
            continue
        if operation.id in IRREVERSIBLE:
            path = None
            if operation.path_params:
                path = protocol.fill_path(ctx, operation, absent=True)
            if path is None:
                ctx.notes.append(f"{operation.id}: irreversible; right scope not checked")
                continue
        body = _right_body(ctx, operation)
        if operation.request_body is not None and body is None:
            ctx.notes.append(f"{operation.id}: no harmless body to send; right scope not checked")
            continue
        _check_right_scope(ctx, operation, path, scopes, holder, body)


def _check_wrong_scope(
    ctx: RunContext, operation: Operation, path: str, scopes: tuple[str, ...], client: OidcClient
) -> None:
    # An empty JSON object: past the scope check it would be refused as invalid input, so a
    # broken adapter never changes anything here.
    body: dict[str, Any] | None = {} if operation.request_body is not None else None
    response = ctx.client.request(
        operation.id,
        operation.method,
        path,
        credentials="none",
        headers=_auth_headers(ctx, client),
        json=body,
    )
    ctx.ok("scopes/wrong-scope", operation.id)
    challenge = response.headers.get("www-authenticate", "")
    if response.status_code != 403:
        ctx.fail(
            "scopes/wrong-scope",
            operation.id,
            f"answered {response.status_code} to {client.client_id}'s token, which lacks "
            f"{' '.join(scopes)} (expected 403)",
            response,
        )
    elif 'error="insufficient_scope"' not in challenge:
        ctx.fail(
            "scopes/wrong-scope",
            operation.id,
            f'the 403 has no WWW-Authenticate Bearer error="insufficient_scope" '
            f"(got {challenge or 'none'!r})",
            response,
        )
    else:
        protocol.check_error_body(ctx, operation, response)


def _check_right_scope(
    ctx: RunContext,
    operation: Operation,
    path: str,
    scopes: tuple[str, ...],
    client: OidcClient,
    body: dict[str, Any] | None,
) -> None:
    query = {"limit": "1"} if operation.query_param("limit") is not None else None
    response = ctx.client.request(
        operation.id,
        operation.method,
        path,
        credentials="none",
        headers=_auth_headers(ctx, client),
        params=query,
        json=body,
    )
    ctx.ok("scopes/right-scope", operation.id)
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in ALLOWED_REFUSALS and str(status) in operation.responses:
        ctx.notes.append(f"{operation.id}: let through with the scope, then {status}")
        return
    ctx.fail(
        "scopes/right-scope",
        operation.id,
        f"answered {status} to {client.client_id}'s token, which holds {' '.join(scopes)} "
        "(expected 2xx)",
        response,
    )


def run_schemathesis(ctx: RunContext, profile: SystemProfile) -> None:
    """Schemathesis once per client, on the operations its scopes open; once without a token
    on the open ones (no realm client holds every scope, by design)."""
    with needs_extra():
        from conformance import fuzzing  # Schemathesis and Hypothesis load only when used

    try:
        for client, operations in _coverage(ctx):
            auth: Auth = NoAuth() if client is None else _auth(ctx, client)
            sub_client = ProviderClient(
                ctx.options.base_url,
                auth,
                rate_limit=ctx.options.rate_limit,
                verify=ctx.options.tls_verify,
            )
            options = dataclasses.replace(ctx.options, include=tuple(operations), exclude=())
            sub = dataclasses.replace(ctx, options=options, client=sub_client)
            before = ctx.stats.get("schemathesis_scenarios", 0)
            try:
                fuzzing.run_schemathesis(sub, profile)
            finally:
                sub_client.close()
            ctx.stats["schemathesis_scenarios"] = before + sub.stats.get(
                "schemathesis_scenarios", 0
            )
    finally:
        restore_integrations(ctx)


def _coverage(ctx: RunContext) -> Iterator[tuple[OidcClient | None, list[str]]]:
    remaining = [op for op in ctx.operations()]
    unsafe = [op.id for op in remaining if op.id in IRREVERSIBLE and not op.path_params]
    if unsafe:
        ctx.notes.append(f"schemathesis: {', '.join(unsafe)} left out (irreversible)")
        remaining = [op for op in remaining if op.id not in unsafe]
    open_ops = [op.id for op in remaining if not required_scopes(ctx.contract, op)]
    if open_ops:
        yield None, open_ops
    for entry in ctx.records.get(CLIENTS, []):
        mine = [
            op.id
            for op in remaining
            if (scopes := required_scopes(ctx.contract, op))
            and all(scope in entry["scopes"] for scope in scopes)
        ]
        remaining = [op for op in remaining if op.id not in mine]
        if mine:
            yield entry["client"], mine
    left = [op.id for op in remaining if required_scopes(ctx.contract, op)]
    if left:
        ctx.notes.append(f"schemathesis: no client holds the scope of {', '.join(left)}")


def restore_integrations(ctx: RunContext) -> None:
    """Put every integration back as found: Schemathesis may have disabled one."""
    operation = _operation(ctx, "updateIntegration")
    if operation is None:
        return
    client = _holder(ctx, required_scopes(ctx.contract, operation), holds=True)
    if client is None:
        return
    for item in ctx.records.get(INTEGRATIONS, []):
        if isinstance(item.get("system"), str) and isinstance(item.get("enabled"), bool):
            ctx.client.request(
                operation.id,
                "PATCH",
                f"/api/v1/integrations/{item['system']}",
                credentials="none",
                headers=_auth_headers(ctx, client),
                json={"enabled": item["enabled"]},
            )
