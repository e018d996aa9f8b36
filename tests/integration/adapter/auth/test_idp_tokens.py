"""Real tokens from the test provider: discovery, the happy path, and what must be refused."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest

from adapter.auth import scopes
from adapter.auth.discovery import OidcDiscovery
from adapter.auth.errors import InvalidTokenError
from adapter.auth.tokens import TokenValidator
from harness.idp import IdpProcess
from tests.integration.adapter.auth.support import AUDIENCE
from tests.unit.adapter.auth.auth_fakes import access_claims, rsa_key, sign


def test_discovery_looks_like_keycloak(idp: IdpProcess) -> None:
    metadata = OidcDiscovery(idp.issuer).metadata()
    assert metadata.issuer == idp.issuer
    assert idp.issuer.endswith("/realms/healthforce")
    assert metadata.jwks_uri == f"{idp.issuer}/protocol/openid-connect/certs"
    assert metadata.token_endpoint == f"{idp.issuer}/protocol/openid-connect/token"
    document = httpx.get(idp.discovery_url).json()
    assert set(scopes.ALL_SCOPES) <= set(document["scopes_supported"])


def test_key_set_publishes_rs256_and_es256_public_keys(idp: IdpProcess) -> None:
    keys = httpx.get(idp.jwks_uri).json()["keys"]
    assert {(key["kid"], key["alg"]) for key in keys} == {("rsa-1", "RS256"), ("ec-1", "ES256")}
    assert all("d" not in key for key in keys)


def test_portal_token_gives_principal_with_scopes_and_roles(
    idp: IdpProcess, validator: TokenValidator
) -> None:
    principal = validator.validate(idp.token("healthforce-portal"))
    assert principal.client_id == "healthforce-portal"
    assert principal.subject == "healthforce-portal"
    assert principal.scopes == {
        scopes.HEALTHWORKERS_READ,
        scopes.HEALTHWORKERS_READ_PII,
        scopes.AUDIT_READ,
    }
    assert principal.realm_roles == {"healthforce-reader", "healthforce-auditor"}
    assert principal.has_role("api-reader", client=AUDIENCE)
    assert principal.token_id


def test_requested_subset_of_scopes_granted(idp: IdpProcess, validator: TokenValidator) -> None:
    token = idp.token("healthforce-portal", [scopes.HEALTHWORKERS_READ])
    assert validator.validate(token).scopes == {scopes.HEALTHWORKERS_READ}


def test_scope_the_client_lacks_is_refused_by_the_provider(idp: IdpProcess) -> None:
    response = idp.token_response("hf-readonly", [scopes.SYNC_RUN])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_wrong_client_secret_refused_by_the_provider(idp: IdpProcess) -> None:
    response = idp.token_response("hf-ops", secret="not-the-secret")
    assert response.status_code == 401


def test_es256_token_accepted(idp: IdpProcess, validator: TokenValidator) -> None:
    token = idp.token("hf-ops", alg="ES256")
    assert validator.validate(token).scopes >= {scopes.SYNC_RUN, scopes.EVENTS_ADMIN}


def test_keycloak_style_header_typ_jwt_accepted_by_typ_claim(
    idp: IdpProcess, validator: TokenValidator
) -> None:
    token = idp.token("hf-readonly", header_typ="JWT")
    assert validator.validate(token).client_id == "hf-readonly"


def test_audience_list_containing_the_adapter_accepted(
    idp: IdpProcess, validator: TokenValidator
) -> None:
    token = idp.token("hf-readonly", audience=[AUDIENCE, "account"])
    assert validator.validate(token).scopes == {scopes.HEALTHWORKERS_READ}


@pytest.mark.parametrize("audience", ["account", ["account"], "healthforce-registry"])
def test_token_for_another_audience_refused(
    idp: IdpProcess, validator: TokenValidator, audience: str | list[str]
) -> None:
    token = idp.token("healthforce-portal", audience=audience)
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)
    assert caught.value.cause == "audience"


def test_adapter_service_token_is_not_for_the_adapter(
    idp: IdpProcess, validator: TokenValidator
) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(idp.token("hf-adapter-service"))
    assert caught.value.cause == "audience"


def test_validator_for_another_issuer_refuses(idp: IdpProcess) -> None:
    # Same keys, but configured for realm `other`: the discovery document is for another issuer.
    other = TokenValidator(
        issuer=idp.issuer.replace("/realms/healthforce", "/realms/other"),
        audience=AUDIENCE,
        keys=TokenValidator.for_issuer(idp.issuer, AUDIENCE).keys,
    )
    with pytest.raises(InvalidTokenError) as caught:
        other.validate(idp.token("healthforce-portal"))
    assert caught.value.cause == "issuer"


def test_expired_real_token_refused(idp: IdpProcess) -> None:
    strict = TokenValidator.for_issuer(idp.issuer, AUDIENCE, leeway_s=0)
    # The same issuer's long-lived token is taken (the keys fetched, the claims right); the
    # short one was asserted valid too, which a busy machine could not always do within its
    # second of life (its `exp` is whole seconds: as little as a few ms).
    assert strict.validate(idp.token("hf-readonly")).subject
    token = idp.token("hf-readonly", ttl_s=1)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    with pytest.raises(InvalidTokenError) as caught:
        strict.validate(token)
    assert caught.value.cause == "expired"


def test_unknown_kid_flood_makes_no_fetch_beyond_the_first(
    idp: IdpProcess, validator: TokenValidator
) -> None:
    validator.validate(idp.token("hf-readonly"))
    assert validator.keys.fetch_count == 1
    attacker = rsa_key("attacker")
    claims = access_claims(iss=idp.issuer, aud=AUDIENCE)
    for _ in range(100):
        with pytest.raises(InvalidTokenError):
            validator.validate(sign(attacker, claims, headers={"kid": str(uuid.uuid4())}))
    assert validator.keys.fetch_count == 1


def test_forged_token_with_the_providers_kid_refused(
    idp: IdpProcess, validator: TokenValidator
) -> None:
    claims = access_claims(iss=idp.issuer, aud=AUDIENCE, scope="integrations:admin")
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(sign(rsa_key("attacker"), claims, headers={"kid": "rsa-1"}))
    assert caught.value.cause == "signature"
