"""`hf-conformance sso`: is this realm (Keycloak or any OIDC provider) configured the way the
adapter needs? Discovery, JWKS and client-credentials tokens, judged with adapter/auth's own code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote_plus, urlsplit

import httpx
import jwt

from adapter.auth.discovery import WELL_KNOWN_PATH, parse_metadata
from adapter.auth.errors import AuthError, ProviderError
from adapter.auth.jwks import ALLOWED_ALGORITHMS, JwksCache, parse_key_set
from adapter.auth.scopes import ALL_SCOPES
from adapter.auth.tokens import (
    KEYCLOAK_ACCESS_TOKEN_TYPE,
    RFC9068_HEADER_TYPES,
    TokenValidator,
)
from adapter.errors import ConfigurationError
from conformance.context import RunContext, RunOptions
from conformance.findings import Exchange
from conformance.oidc import OidcClient, OidcOptions, is_local, unverified_parts
from conformance.provider import CannotRun
from conformance.spec import Contract, Operation

if TYPE_CHECKING:
    from conformance.systems import SystemProfile

CONTRACT_NAME: Final = Path("OpenID Connect Discovery 1.0")
DISCOVERY: Final = "discovery"
JWKS: Final = "jwks"
# OpenID Connect Discovery 1.0 §3: the metadata every OpenID provider must publish.
REQUIRED_METADATA: Final = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
)
# RFC 7518 §6.2.2, §6.3.2, §6.4.1: members that only private (or symmetric) keys have.
PRIVATE_KEY_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# `expires_in` and exp - iat may differ by the time the answer took to arrive.
EXPIRES_IN_SLACK_S: Final = 60
# Claims only ID tokens carry (OpenID Connect Core §2, §3.1.3.6).
ID_TOKEN_CLAIMS: Final = ("nonce", "at_hash", "c_hash", "auth_time")


def token_operation(client: OidcClient) -> str:
    return f"token:{client.client_id}"


def oidc_options(options: RunOptions) -> OidcOptions:
    oidc = options.oidc
    if oidc is None or not oidc.issuer:
        raise CannotRun(f"{options.system} needs the realm's issuer: --issuer URL")
    return oidc


def contract(options: RunOptions) -> Contract:
    """The provider's surface as operations: discovery, JWKS, one token request per client."""
    oidc = oidc_options(options)
    if options.spec is not None:
        raise CannotRun("sso has no OpenAPI contract: --spec does not apply")
    if not oidc.clients:
        raise CannotRun(
            "sso needs the adapter's client credentials: --client-id ID --client-secret SECRET "
            "(or --client ID:SECRET)"
        )
    operations = [
        Operation(DISCOVERY, "GET", WELL_KNOWN_PATH, False, (), {}),
        Operation(JWKS, "GET", "{jwks_uri}", False, (), {}),
        *(
            Operation(token_operation(client), "POST", "{token_endpoint}", True, (), {})
            for client in oidc.clients
        ),
    ]
    return Contract(path=CONTRACT_NAME, document={}, operations=operations)


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + WELL_KNOWN_PATH


def probe(ctx: RunContext, profile: SystemProfile) -> None:
    """The discovery document answers and every client's credentials are accepted."""
    oidc = oidc_options(ctx.options)
    assert oidc.issuer is not None
    url = discovery_url(oidc.issuer)
    response = ctx.client.request(DISCOVERY, "GET", url, credentials="none")
    if response.status_code != 200:
        raise CannotRun(
            f"no OpenID discovery document at {url} (HTTP {response.status_code}); is "
            f"{oidc.issuer} the realm's issuer?"
        )
    document = _json_object(response)
    ctx.records[DISCOVERY] = [document] if document is not None else []
    if document is None or not isinstance(document.get("token_endpoint"), str):
        return  # a violation, reported by the discovery phase; nothing to log in with
    for client in oidc.clients:
        answer = _token_request(ctx, client, document["token_endpoint"], client.secret)
        if answer.status_code == 401 or _error(answer) == "invalid_client":
            raise CannotRun(
                f"credentials refused: the token endpoint answered {answer.status_code}"
                f"{_error_suffix(answer)} for client {client.client_id}"
            )


def check_discovery(ctx: RunContext, profile: SystemProfile) -> None:
    oidc = oidc_options(ctx.options)
    assert oidc.issuer is not None
    url = discovery_url(oidc.issuer)
    response = ctx.client.request(DISCOVERY, "GET", url, credentials="none")
    document = _json_object(response)
    for rule in ("sso/discovery-document", "sso/discovery-issuer", "sso/https"):
        ctx.ok(rule, DISCOVERY)
    if document is None:
        ctx.fail("sso/discovery-document", DISCOVERY, "the answer is not a JSON object", response)
        return
    missing = [name for name in REQUIRED_METADATA if not document.get(name)]
    if missing:
        ctx.fail(
            "sso/discovery-document",
            DISCOVERY,
            f"required metadata missing: {', '.join(missing)}",
            response,
        )
    if document.get("issuer") != oidc.issuer:
        ctx.fail(
            "sso/discovery-issuer",
            DISCOVERY,
            f"issuer is {document.get('issuer')!r}, not the URL it was fetched for "
            f"({oidc.issuer!r}); the adapter compares them exactly",
            response,
        )
    else:
        try:
            parse_metadata(document, oidc.issuer)
        except ProviderError as exc:
            ctx.fail(
                "sso/discovery-document", DISCOVERY, f"the adapter refuses it: {exc}", response
            )
    for field, listed, needed in (
        ("grant_types_supported", document.get("grant_types_supported"), "client_credentials"),
        (
            "token_endpoint_auth_methods_supported",
            document.get("token_endpoint_auth_methods_supported"),
            "client_secret_basic",
        ),
    ):
        # Optional metadata; when present it must offer what the adapter's clients use.
        if isinstance(listed, list) and needed not in listed:
            ctx.fail(
                "sso/discovery-document",
                DISCOVERY,
                f"{field} does not list {needed} (the adapter's clients use it)",
                response,
            )
    insecure = [
        name
        for name in ("issuer", "jwks_uri", "token_endpoint")
        if isinstance(document.get(name), str) and not _secure(document[name], oidc)
    ]
    if insecure:
        ctx.fail(
            "sso/https",
            DISCOVERY,
            f"{', '.join(insecure)} not https (only loopback hosts or --allow-http may use http)",
            response,
        )


def check_jwks(ctx: RunContext, profile: SystemProfile) -> None:
    document = _discovery(ctx)
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        ctx.notes.append("jwks: the discovery document names no jwks_uri; not checked")
        return
    response = ctx.client.request(JWKS, "GET", jwks_uri, credentials="none")
    key_set = _json_object(response)
    evidence = _redacted(response, key_set)
    rules = (
        "sso/jwks-asymmetric",
        "sso/jwks-no-private",
        "sso/jwks-unique-kid",
        "sso/jwks-usable-key",
    )
    for rule in rules:
        ctx.ok(rule, JWKS)
    keys = key_set.get("keys") if key_set is not None else None
    if response.status_code != 200 or not isinstance(keys, list):
        ctx.fail(
            "sso/jwks-usable-key",
            JWKS,
            f"jwks_uri answered {response.status_code} without a JSON keys array",
            evidence,
        )
        return
    assert key_set is not None
    ctx.records[JWKS] = [key_set]
    kids: dict[str, int] = {}
    for index, key in enumerate(keys):
        if not isinstance(key, dict):
            ctx.fail("sso/jwks-usable-key", JWKS, f"key #{index} is not a JSON object", evidence)
            continue
        name = f"key {key.get('kid')!r}" if key.get("kid") else f"key #{index}"
        if key.get("kty") not in ("RSA", "EC"):
            ctx.fail(
                "sso/jwks-asymmetric",
                JWKS,
                f"{name} has kty {key.get('kty')!r}: a published symmetric key is a shared "
                "secret anyone can sign tokens with",
                evidence,
            )
        private = sorted(PRIVATE_KEY_MEMBERS.intersection(key))
        if private:
            ctx.fail(
                "sso/jwks-no-private",
                JWKS,
                f"{name} publishes private key material ({', '.join(private)})",
                evidence,
            )
        kid = key.get("kid")
        if not isinstance(kid, str) or not kid:
            ctx.fail("sso/jwks-unique-kid", JWKS, f"{name} has no kid", evidence)
        else:
            kids[kid] = kids.get(kid, 0) + 1
    for kid, count in kids.items():
        if count > 1:
            ctx.fail(
                "sso/jwks-unique-kid",
                JWKS,
                f"kid {kid!r} names {count} keys: a token's kid could not pick one",
                evidence,
            )
    try:
        usable = parse_key_set(key_set)
    except ProviderError as exc:
        ctx.fail("sso/jwks-usable-key", JWKS, f"the adapter finds no key to use: {exc}", evidence)
        return
    ctx.stats["sso_signing_keys"] = sorted(
        f"{kid} ({key.algorithm_name})" for kid, key in usable.items()
    )


def check_tokens(ctx: RunContext, profile: SystemProfile) -> None:
    oidc = oidc_options(ctx.options)
    document = _discovery(ctx)
    endpoint = document.get("token_endpoint")
    if not isinstance(endpoint, str):
        ctx.notes.append("tokens: the discovery document names no token_endpoint; not checked")
        return
    if JWKS not in ctx.records:  # the jwks phase was left out (--phases)
        jwks_uri = document.get("jwks_uri")
        if isinstance(jwks_uri, str):
            answer = ctx.client.request(JWKS, "GET", jwks_uri, credentials="none")
            ctx.records[JWKS] = [_json_object(answer) or {}]
    key_set = ctx.records.get(JWKS, [{}])[0]
    selected = [client for client in oidc.clients if ctx.selected(token_operation(client))]
    for client in selected:
        _check_client(ctx, oidc, client, endpoint, key_set)
    if selected:
        _check_wrong_secret(ctx, selected[0], endpoint)


def _check_client(
    ctx: RunContext,
    oidc: OidcOptions,
    client: OidcClient,
    endpoint: str,
    key_set: Mapping[str, Any],
) -> None:
    operation = token_operation(client)
    response = _token_request(ctx, client, endpoint, client.secret)
    ctx.ok("sso/client-credentials", operation)
    answer = _json_object(response) or {}
    token = answer.get("access_token")
    token_type = answer.get("token_type")
    if response.status_code != 200 or not isinstance(token, str) or not token:
        ctx.fail(
            "sso/client-credentials",
            operation,
            f"no access token by client credentials: HTTP {response.status_code}"
            f"{_error_suffix(response)}",
            response,
        )
        return
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        ctx.fail(
            "sso/client-credentials",
            operation,
            f"token_type is {token_type!r}, not Bearer",
            response,
        )
    try:
        header, claims = unverified_parts(token)
    except jwt.PyJWTError:
        ctx.ok("sso/token-validates", operation)
        ctx.fail(
            "sso/token-validates",
            operation,
            "the access token is not a JWT (JWS compact): the adapter validates tokens locally "
            "against the JWKS and cannot use opaque ones",
            response,
        )
        return
    ctx.stats.setdefault("sso_tokens", {})[client.client_id] = _describe(header, claims)
    _check_algorithm(ctx, operation, header, key_set, response)
    _check_type(ctx, operation, header, claims, client, response)
    _check_audience(ctx, operation, claims, oidc.audience, response)
    _check_scopes(ctx, operation, claims, oidc.expected_scopes, response)
    _check_lifetime(ctx, operation, claims, answer.get("expires_in"), oidc, response)
    _check_validator(ctx, operation, token, oidc, key_set, response)


def _check_algorithm(
    ctx: RunContext,
    operation: str,
    header: Mapping[str, Any],
    key_set: Mapping[str, Any],
    response: httpx.Response,
) -> None:
    ctx.ok("sso/token-algorithm", operation)
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        allowed = " or ".join(sorted(ALLOWED_ALGORITHMS))
        ctx.fail(
            "sso/token-algorithm",
            operation,
            f"the token is signed with {alg!r}, not {allowed} (the adapter refuses it)",
            response,
        )
        return
    kid = header.get("kid")
    published = {key.get("kid") for key in key_set.get("keys", []) if isinstance(key, dict)}
    if not isinstance(kid, str) or kid not in published:
        ctx.fail(
            "sso/token-algorithm",
            operation,
            f"the token's kid {kid!r} names no key of the JWKS",
            response,
        )


def _check_type(
    ctx: RunContext,
    operation: str,
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    client: OidcClient,
    response: httpx.Response,
) -> None:
    ctx.ok("sso/token-type", operation)
    typ_claim = claims.get("typ")
    header_typ = header.get("typ")
    if typ_claim == KEYCLOAK_ACCESS_TOKEN_TYPE:
        return
    if (
        typ_claim is None
        and isinstance(header_typ, str)
        and header_typ.lower() in (RFC9068_HEADER_TYPES)
    ):
        return
    id_like = [name for name in ID_TOKEN_CLAIMS if name in claims]
    if claims.get("aud") == client.client_id:
        id_like.append("aud = the client's own id")
    shape = f"; it looks like an ID token ({', '.join(id_like)})" if id_like else ""
    ctx.fail(
        "sso/token-type",
        operation,
        f"the access token is not marked as one (typ claim {typ_claim!r}, JOSE typ "
        f"{header_typ!r}; expected typ Bearer or at+jwt){shape}",
        response,
    )


def _check_audience(
    ctx: RunContext,
    operation: str,
    claims: Mapping[str, Any],
    audience: str,
    response: httpx.Response,
) -> None:
    ctx.ok("sso/token-audience", operation)
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        ctx.fail(
            "sso/token-audience",
            operation,
            f"aud is {aud!r}, without {audience!r} (in Keycloak: an audience mapper for "
            f"{audience} on the client or one of its default client scopes)",
            response,
        )


def _check_scopes(
    ctx: RunContext,
    operation: str,
    claims: Mapping[str, Any],
    expected: tuple[str, ...],
    response: httpx.Response,
) -> None:
    ctx.ok("sso/token-scopes", operation)
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        ctx.fail(
            "sso/token-scopes",
            operation,
            f"scope is a {type(scope).__name__}, not a space-separated string",
            response,
        )
        return
    granted = set(scope.split())
    missing = [name for name in expected if name not in granted]
    if missing:
        ctx.fail(
            "sso/token-scopes",
            operation,
            f"the token lacks {', '.join(missing)} (it has: {scope or 'no scope'}); in "
            "Keycloak: a default client scope of the client, with 'Include in token scope' on",
            response,
        )
    elif not expected and not granted & ALL_SCOPES:
        ctx.fail(
            "sso/token-scopes",
            operation,
            f"the token holds none of the adapter's scopes ({', '.join(sorted(ALL_SCOPES))}); "
            f"every /api/v1 call would be 403 (it has: {scope or 'no scope'})",
            response,
        )


def _check_lifetime(
    ctx: RunContext,
    operation: str,
    claims: Mapping[str, Any],
    expires_in: Any,
    oidc: OidcOptions,
    response: httpx.Response,
) -> None:
    ctx.ok("sso/token-lifetime", operation)
    exp: Any = claims.get("exp")
    iat: Any = claims.get("iat")
    if not _number(exp) or not _number(iat):
        ctx.fail(
            "sso/token-lifetime",
            operation,
            f"exp and iat must both be numbers (exp {exp!r}, iat {iat!r})",
            response,
        )
        return
    lifetime = float(exp) - float(iat)
    if lifetime <= 0 or lifetime > oidc.max_token_lifetime_s:
        ctx.fail(
            "sso/token-lifetime",
            operation,
            f"the token lives {lifetime:.0f} s (exp - iat); at most "
            f"{oidc.max_token_lifetime_s} s is accepted (--max-token-lifetime)",
            response,
        )
    elif not _number(expires_in) or abs(expires_in - lifetime) > EXPIRES_IN_SLACK_S:
        ctx.fail(
            "sso/token-lifetime",
            operation,
            f"expires_in {expires_in!r} disagrees with the token's own lifetime ({lifetime:.0f} s)",
            response,
        )


def _check_validator(
    ctx: RunContext,
    operation: str,
    token: str,
    oidc: OidcOptions,
    key_set: Mapping[str, Any],
    response: httpx.Response,
) -> None:
    ctx.ok("sso/token-validates", operation)
    assert oidc.issuer is not None
    # The JWKS already fetched, so the verdict is about this key set and nothing fetched later.
    keys = JwksCache(lambda: key_set, cooldown_s=3600.0)
    try:
        TokenValidator(issuer=oidc.issuer, audience=oidc.audience, keys=keys).validate(token)
    except ConfigurationError as exc:
        raise CannotRun(f"--audience: {exc.message}") from None
    except AuthError as exc:
        ctx.fail(
            "sso/token-validates",
            operation,
            f"the adapter's TokenValidator refuses it: {exc.message} ({exc.cause})",
            response,
        )


def _check_wrong_secret(ctx: RunContext, client: OidcClient, endpoint: str) -> None:
    operation = token_operation(client)
    response = _token_request(ctx, client, endpoint, client.secret + "-not-the-secret")
    ctx.ok("sso/wrong-secret", operation)
    answer = _json_object(response) or {}
    if response.status_code not in (400, 401) or "access_token" in answer:
        ctx.fail(
            "sso/wrong-secret",
            operation,
            f"a wrong client secret got HTTP {response.status_code} (expected 400 or 401 with "
            "no token)",
            response,
        )


def _token_request(
    ctx: RunContext, client: OidcClient, endpoint: str, secret: str
) -> httpx.Response:
    # As the adapter asks (adapter/auth/client_credentials.py): client_secret_basic, form body.
    return ctx.client.request(
        token_operation(client),
        "POST",
        endpoint,
        credentials="none",
        data={"grant_type": "client_credentials"},
        auth=httpx.BasicAuth(quote_plus(client.client_id), quote_plus(secret)),
        headers={"Accept": "application/json"},
    )


def _discovery(ctx: RunContext) -> dict[str, Any]:
    found = ctx.records.get(DISCOVERY) or [{}]
    return found[0]


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error(response: httpx.Response) -> str | None:
    error = (_json_object(response) or {}).get("error")
    return error if isinstance(error, str) else None


def _error_suffix(response: httpx.Response) -> str:
    error = _error(response)
    return f" ({error})" if error else ""


def _secure(url: str, oidc: OidcOptions) -> bool:
    return urlsplit(url).scheme == "https" or oidc.allow_http or is_local(url)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(header: Mapping[str, Any], claims: Mapping[str, Any]) -> dict[str, Any]:
    """What the report shows of a token: its shape, not its identity."""
    exp: Any = claims.get("exp")
    iat: Any = claims.get("iat")
    return {
        "alg": header.get("alg"),
        "typ": claims.get("typ", header.get("typ")),
        "aud": claims.get("aud"),
        "scope": claims.get("scope"),
        "lifetime_s": float(exp) - float(iat) if _number(exp) and _number(iat) else None,
    }


def _redacted(response: httpx.Response, key_set: dict[str, Any] | None) -> Exchange:
    """The JWKS exchange with private key members blanked: a report must not leak them."""
    exchange = Exchange.from_response(response)
    if key_set is None or not isinstance(key_set.get("keys"), list):
        return exchange
    keys = [
        {name: "…" if name in PRIVATE_KEY_MEMBERS else value for name, value in key.items()}
        if isinstance(key, dict)
        else key
        for key in key_set["keys"]
    ]
    return exchange.with_changes(response_body=json.dumps({**key_set, "keys": keys}, indent=1))
