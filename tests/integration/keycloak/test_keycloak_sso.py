"""The adapter's SSO path against a real Keycloak, in the module's own copy of the realm export
on the run's shared server (tests/support/keycloak.py). Key rotation changes only that realm;
"Keycloak stopped" is a relay in front of the server closed, so the server stays up for the rest.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, jsonify
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

from adapter.app import create_app
from adapter.auth import scopes
from adapter.auth.client_credentials import ClientCredentialsToken
from adapter.auth.discovery import OidcDiscovery
from adapter.auth.errors import InvalidTokenError, KeySetUnavailableError
from adapter.auth.jwks import HttpJwksFetcher, parse_key_set
from adapter.auth.tokens import TokenValidator
from adapter.auth.web import EXTENSION, current_principal, init_app, require_scope
from adapter.settings import load_settings
from harness.idp import load_realm, realm_clients
from harness.keycloak import LOGIN_CLIENT, OIDC_PATH, TEST_USER
from tests.integration.adapter.sync.support import adapter_environment, migrated
from tests.support.keycloak import KeycloakRealm, TcpRelay, imported_realm

pytestmark = [pytest.mark.integration, pytest.mark.keycloak]

AUDIENCE = "hf-adapter"
API_CLIENTS = ("healthforce-portal", "hf-ops", "hf-readonly")
# One route per scope, plus the pair the personal-data read needs (as require_scope is used).
ROUTES = {f"/{scope}": (scope,) for scope in sorted(scopes.ALL_SCOPES)} | {
    "/pii": (scopes.HEALTHWORKERS_READ, scopes.HEALTHWORKERS_READ_PII)
}
COOLDOWN_S = 0.5
MAX_AGE_S = 1.0


def secret(client_id: str) -> str:
    """A client's secret as the realm export holds it (test stacks only)."""
    for client in load_realm()["clients"]:
        if client["clientId"] == client_id:
            return str(client["secret"])
    raise KeyError(client_id)


def user_password(username: str) -> str:
    for user in load_realm()["users"]:
        if user["username"] == username:
            return str(user["credentials"][0]["value"])
    raise KeyError(username)


def cc_token(keycloak: KeycloakRealm, client_id: str, realm: str | None = None) -> str:
    answer = keycloak.client_credentials(client_id, secret(client_id), realm=realm)
    return str(answer["access_token"])


def login(keycloak: KeycloakRealm) -> dict[str, Any]:
    return keycloak.password_grant(
        LOGIN_CLIENT, secret(LOGIN_CLIENT), TEST_USER, user_password(TEST_USER)
    )


def validator_for(
    keycloak: KeycloakRealm, *, audience: str = AUDIENCE, leeway_s: float = 30
) -> TokenValidator:
    """A fresh validator (empty key cache) finding its keys through Keycloak's discovery."""
    return TokenValidator.for_issuer(
        keycloak.issuer(),
        audience,
        jwks_cooldown_s=COOLDOWN_S,
        jwks_max_age_s=MAX_AGE_S,
        leeway_s=leeway_s,
    )


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return header, claims


def body(response: TestResponse) -> dict[str, Any]:
    answer = response.get_json()
    assert isinstance(answer, dict), response.data
    return answer


def refused_cause(validator: TokenValidator, token: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)
    return caught.value.cause


# Discovery and keys ---------------------------------------------------------------------------


def test_discovery_names_the_realm_issuer_and_its_endpoints(keycloak: KeycloakRealm) -> None:
    metadata = OidcDiscovery(keycloak.issuer()).metadata()
    assert metadata.issuer == keycloak.issuer()
    assert metadata.jwks_uri == keycloak.issuer() + OIDC_PATH + "/certs"
    assert metadata.token_endpoint == keycloak.token_endpoint()


def test_jwks_keeps_the_rs256_signing_key_and_drops_the_encryption_key(
    keycloak: KeycloakRealm,
) -> None:
    discovery = OidcDiscovery(keycloak.issuer())
    document = HttpJwksFetcher.from_discovery(discovery)()
    published = {key["kid"]: key for key in document["keys"]}
    # Keycloak publishes an RSA-OAEP encryption key beside the signing key, never HS512/AES keys.
    assert {(key["alg"], key["use"]) for key in published.values()} == {
        ("RS256", "sig"),
        ("RSA-OAEP", "enc"),
    }
    kept = parse_key_set(document)
    assert set(kept) == {kid for kid, key in published.items() if key["use"] == "sig"}
    assert all(key.algorithm_name == "RS256" for key in kept.values())
    with keycloak.admin() as admin:
        active_rs256 = {k["kid"] for k in admin.realm_keys() if k["algorithm"] == "RS256"}
    assert set(kept) == active_rs256


# Client-credentials tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("client_id", API_CLIENTS)
def test_client_credentials_token_accepted_with_its_default_scopes_and_roles(
    keycloak: KeycloakRealm, client_id: str
) -> None:
    answer = keycloak.client_credentials(client_id, secret(client_id))
    expected_scopes = set(realm_clients()[client_id].default_scopes)
    assert set(answer["scope"].split()) == expected_scopes
    principal = validator_for(keycloak).validate(answer["access_token"])
    assert principal.client_id == client_id
    assert principal.scopes == expected_scopes
    user = next(u for u in load_realm()["users"] if u.get("serviceAccountClientId") == client_id)
    assert principal.realm_roles == set(user["realmRoles"])
    assert dict(principal.client_roles) == {
        client: set(roles) for client, roles in user["clientRoles"].items()
    }
    header, claims = unverified(answer["access_token"])
    # What docs/auth.md says Keycloak sends: RS256, JOSE typ JWT, typ claim Bearer, no nbf.
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    assert claims["typ"] == "Bearer"
    assert claims["aud"] == AUDIENCE
    assert claims["azp"] == client_id
    assert "nbf" not in claims
    assert claims["exp"] - claims["iat"] == 300  # the realm's access-token lifespan


def test_asking_for_fewer_scopes_still_grants_all_default_scopes(
    keycloak: KeycloakRealm,
) -> None:
    # Keycloak always adds a client's default client scopes; only optional ones are asked for.
    answer = keycloak.client_credentials(
        "healthforce-portal", secret("healthforce-portal"), [scopes.HEALTHWORKERS_READ]
    )
    principal = validator_for(keycloak).validate(answer["access_token"])
    assert scopes.HEALTHWORKERS_READ_PII in principal.scopes


def test_scope_the_client_lacks_refused_by_keycloak(keycloak: KeycloakRealm) -> None:
    response = keycloak.token_response(
        {"grant_type": "client_credentials", "scope": scopes.SYNC_RUN},
        client_id="hf-readonly",
        secret=secret("hf-readonly"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


@pytest.mark.parametrize("client_id", ["hf-adapter", "healthforce-registry"])
def test_resource_server_clients_get_no_token(keycloak: KeycloakRealm, client_id: str) -> None:
    response = keycloak.token_response(
        {"grant_type": "client_credentials"}, client_id=client_id, secret="anything"
    )
    assert response.status_code in {400, 401}
    assert "access_token" not in response.json()


@pytest.fixture(scope="module")
def scope_app(keycloak: KeycloakRealm) -> Iterator[FlaskClient]:
    app = Flask("keycloak-scope-matrix")
    init_app(app, validator_for(keycloak))
    for path, required in ROUTES.items():

        def view() -> Response:
            return jsonify(client=current_principal().client_id)

        app.add_url_rule(path, endpoint=path, view_func=require_scope(*required)(view))
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture(scope="module")
def matrix_tokens(keycloak: KeycloakRealm) -> dict[str, str]:
    return {client_id: cc_token(keycloak, client_id) for client_id in realm_clients()}


@pytest.mark.parametrize("client_id", sorted(realm_clients()))
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_require_scope_matrix_with_keycloak_tokens(
    scope_app: FlaskClient, matrix_tokens: dict[str, str], client_id: str, path: str
) -> None:
    client = realm_clients()[client_id]
    required = ROUTES[path]
    if AUDIENCE not in client.audiences:
        expected = 401  # a token for another service
    else:
        expected = 200 if set(required) <= set(client.default_scopes) else 403
    response = scope_app.get(path, headers={"Authorization": f"Bearer {matrix_tokens[client_id]}"})
    assert response.status_code == expected, response.json
    if expected == 200:
        assert response.json == {"client": client_id}
    elif expected == 403:
        assert f'scope="{" ".join(required)}"' in response.headers["WWW-Authenticate"]
    else:
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# Tokens that must be refused ----------------------------------------------------------------------


def test_token_for_another_services_audience_refused(keycloak: KeycloakRealm) -> None:
    # The adapter's own identity, through the adapter's own token source, is for the registry.
    own = ClientCredentialsToken.for_issuer(
        keycloak.issuer(),
        client_id="hf-adapter-service",
        client_secret=secret("hf-adapter-service"),
    )
    token = own.token()
    assert unverified(token)[1]["aud"] == "healthforce-registry"
    assert refused_cause(validator_for(keycloak), token) == "audience"
    registry = validator_for(keycloak, audience="healthforce-registry")
    assert registry.validate(token).client_id == "hf-adapter-service"


def test_user_access_token_from_password_login_accepted(keycloak: KeycloakRealm) -> None:
    principal = validator_for(keycloak).validate(login(keycloak)["access_token"])
    assert principal.client_id == LOGIN_CLIENT
    assert scopes.HEALTHWORKERS_READ in principal.scopes
    assert principal.realm_roles == {"healthforce-reader"}


def test_password_login_refused_for_a_user_without_a_complete_profile(
    keycloak: KeycloakRealm,
) -> None:
    # Why the realm export gives hf-test-user an e-mail address and a first and last name.
    with keycloak.admin() as admin:
        admin.create_user("bare-user", "bare-user-password")
    response = keycloak.token_response(
        {"grant_type": "password", "username": "bare-user", "password": "bare-user-password"},
        client_id=LOGIN_CLIENT,
        secret=secret(LOGIN_CLIENT),
    )
    assert response.status_code == 400
    assert response.json()["error_description"] == "Account is not fully set up"


def test_id_token_refused_even_with_the_adapter_audience(keycloak: KeycloakRealm) -> None:
    id_token = login(keycloak)["id_token"]
    header, claims = unverified(id_token)
    # Signed by the same RS256 key and naming hf-adapter: only its typ tells it apart.
    assert header["alg"] == "RS256"
    assert AUDIENCE in claims["aud"]
    assert claims["typ"] == "ID"
    assert refused_cause(validator_for(keycloak), id_token) == "type"


def test_refresh_token_refused(keycloak: KeycloakRealm) -> None:
    refresh_token = login(keycloak)["refresh_token"]
    header, claims = unverified(refresh_token)
    assert header["alg"] == "HS512"
    assert claims["typ"] == "Refresh"
    assert refused_cause(validator_for(keycloak), refresh_token) == "algorithm"


@pytest.fixture(scope="module")
def other_realm(keycloak: KeycloakRealm) -> Iterator[str]:
    """A second realm made from the same export: same clients and secrets, another issuer."""
    with imported_realm(keycloak.base_url, f"{keycloak.realm}-other") as other:
        yield other.realm


def test_token_from_another_realm_refused(keycloak: KeycloakRealm, other_realm: str) -> None:
    token = cc_token(keycloak, "hf-readonly", realm=other_realm)
    assert unverified(token)[1]["iss"] == keycloak.issuer(other_realm)
    assert refused_cause(validator_for(keycloak), token) == "kid"


def test_token_from_another_realm_refused_even_when_both_share_a_key(
    keycloak: KeycloakRealm,
) -> None:
    # The same RSA key in both realms (Keycloak derives the kid from the key, so the kid is the
    # same): the signature verifies, and only the issuer check is left to refuse the token.
    # A realm of this test's own: the shared key signing in `other_realm` would make the test
    # above see a known kid when it runs after this one.
    with imported_realm(keycloak.base_url, f"{keycloak.realm}-shared") as shared:
        token = _token_signed_with_a_key_both_realms_have(keycloak, shared.realm)
    assert refused_cause(validator_for(keycloak), token) == "issuer"


def _token_signed_with_a_key_both_realms_have(keycloak: KeycloakRealm, other_realm: str) -> str:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    with keycloak.admin() as admin:
        admin.add_rsa_key("shared", priority=500, realm=other_realm, private_key_pem=pem)
        admin.add_rsa_key("shared-passive", priority=10, private_key_pem=pem, active=False)
        shared_kids = {k["kid"] for k in admin.realm_keys() if k["providerPriority"] == 10}
    token = cc_token(keycloak, "hf-readonly", realm=other_realm)
    assert unverified(token)[0]["kid"] in shared_kids
    return token


# Key rotation (changes the signing key of this module's realm) ---------------------------------


def test_key_rotation_followed_with_one_fetch_and_old_tokens_valid_until_they_expire(
    keycloak: KeycloakRealm,
) -> None:
    # Long enough for the rotation steps on a loaded machine (4 s was not), short enough to wait
    # for the old token's expiry.
    lifespan_s = 15
    validator = validator_for(keycloak, leeway_s=0)
    with keycloak.admin() as admin:
        admin.set_client_attributes("hf-readonly", {"access.token.lifespan": str(lifespan_s)})
        try:
            old_token = cc_token(keycloak, "hf-readonly")
            old_kid = unverified(old_token)[0]["kid"]
            validator.validate(old_token)
            assert validator.keys.fetch_count == 1
            old_provider = next(
                p
                for p in admin.key_providers()
                if p["providerId"] == "rsa-generated" and p["config"]["priority"] == ["100"]
            )
            admin.add_rsa_key("rotated", priority=200)
            admin.set_key_active(old_provider["id"], False)
            status = {k["kid"]: k["status"] for k in admin.realm_keys() if k["kid"]}
            new_token = cc_token(keycloak, "hf-readonly")
        finally:
            admin.set_client_attributes("hf-readonly", {"access.token.lifespan": "300"})
    new_kid = unverified(new_token)[0]["kid"]
    assert new_kid != old_kid
    assert status[new_kid] == "ACTIVE"
    assert status[old_kid] == "PASSIVE"
    time.sleep(COOLDOWN_S)  # the cooldown since the first fetch, not a wait for Keycloak
    assert validator.validate(new_token).client_id == "hf-readonly"
    assert validator.keys.fetch_count == 2  # the unknown kid cost exactly one fetch
    assert validator.validate(old_token).client_id == "hf-readonly"  # the passive key verifies
    assert {old_kid, new_kid} <= validator.keys.key_ids
    expires_at = unverified(old_token)[1]["exp"]
    time.sleep(max(0.0, expires_at + 1 - time.time()))
    assert refused_cause(validator, old_token) == "expired"
    assert validator.validate(cc_token(keycloak, "hf-readonly")).client_id == "hf-readonly"


# Keycloak unreachable (a relay in front of it closed; the shared server stays up) ---------------


def _token_with_kid(token: str, kid: str) -> str:
    """The same token with another kid in its header (its signature no longer matters)."""
    header_b64, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    header["kid"] = kid
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


def test_keycloak_stopped_last_good_keys_serve_and_readyz_reports_sso_unreachable(
    keycloak: KeycloakRealm, tmp_path: Path
) -> None:
    # The adapter reaches Keycloak only through the relay (issuer, discovery, keys and tokens
    # all name its address); closing it is, to the adapter, Keycloak stopped.
    database = make_url(f"sqlite:///{tmp_path / 'adapter.sqlite3'}")
    engine = migrated(database)
    relay = TcpRelay(keycloak.base_url)
    try:
        door = keycloak.through(relay.base_url)
        env = adapter_environment(
            database.render_as_string(hide_password=False),
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
        ) | {
            "OIDC_ISSUER": door.issuer(),
            "OIDC_AUDIENCE": AUDIENCE,
            "OIDC_JWKS_COOLDOWN_S": str(COOLDOWN_S),
            "OIDC_JWKS_MAX_AGE_S": str(MAX_AGE_S),
            "READINESS_CACHE_S": "0",  # the test reads readiness again within seconds
        }
        app = create_app(load_settings(env), engine=engine)
        token = cc_token(door, "hf-readonly")
        assert unverified(token)[1]["iss"] == door.issuer()
        headers = {"Authorization": f"Bearer {token}"}
        with app.test_client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.data
            assert body(ready)["checks"]["sso"] == "ok"
            assert client.get("/api/v1/health-workers", headers=headers).status_code == 200

            relay.close()
            time.sleep(MAX_AGE_S)  # the key set is now stale: the next request tries a refresh
            served = client.get("/api/v1/health-workers", headers=headers)
            assert served.status_code == 200, served.data
            keys = app.extensions[EXTENSION].keys
            assert keys.last_error is not None
            assert "unreachable" in keys.last_error
            time.sleep(COOLDOWN_S)
            unknown = client.get(
                "/api/v1/health-workers",
                headers={"Authorization": f"Bearer {_token_with_kid(token, 'unknown-kid')}"},
            )
            assert unknown.status_code == 401
            assert client.get("/api/v1/health-workers", headers=headers).status_code == 200

            # Reported, but still ready: the cached keys serve (every replica shares the SSO).
            degraded = client.get("/readyz")
            assert degraded.status_code == 200
            assert body(degraded)["status"] == "degraded"
            assert body(degraded)["checks"]["sso"] == "unreachable (ConnectError)"
            assert body(degraded)["checks"]["database"] == "ok"
    finally:
        relay.close()
        engine.dispose()
    # A validator that never saw a key set cannot check tokens: 503 with Retry-After, not 401.
    with pytest.raises(KeySetUnavailableError):
        validator_for(door).validate(token)
