"""Valid access tokens become principals; the claims that make a token valid are enforced."""

from __future__ import annotations

import time

import pytest

from adapter.auth.errors import InvalidTokenError
from adapter.auth.tokens import CLOCK_SKEW_LEEWAY_S, TokenValidator
from adapter.errors import AdapterError, ConfigurationError
from tests.unit.adapter.auth.auth_fakes import (
    AUDIENCE,
    ISSUER,
    FakeJwksEndpoint,
    SigningKey,
    access_claims,
    sign,
)


def refused(validator: TokenValidator, token: str) -> InvalidTokenError:
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)
    error = caught.value
    assert isinstance(error, AdapterError)
    assert error.reason == "invalid_token"
    assert token not in error.message
    assert token not in repr(error)
    return error


def test_rs256_access_token_gives_principal(validator: TokenValidator, rsa: SigningKey) -> None:
    claims = access_claims()
    principal = validator.validate(sign(rsa, claims))
    assert principal.subject == claims["sub"]
    assert principal.client_id == "healthforce-portal"
    assert principal.scopes == {"healthworkers:read", "audit:read"}
    assert principal.realm_roles == {"healthforce-reader"}
    assert principal.has_role("api-reader", client="hf-adapter")
    assert not principal.has_role("api-reader")
    assert principal.token_id == claims["jti"]
    assert principal.expires_at == claims["exp"]


def test_es256_access_token_gives_principal(validator: TokenValidator, es: SigningKey) -> None:
    assert validator.validate(sign(es)).client_id == "healthforce-portal"


def test_rfc9068_token_without_typ_claim_accepted_by_header(
    validator: TokenValidator, rsa: SigningKey
) -> None:
    token = sign(
        rsa, access_claims(typ=None, azp=None, client_id="hf-ops"), headers={"typ": "at+jwt"}
    )
    principal = validator.validate(token)
    assert principal.client_id == "hf-ops"


def test_audience_as_plain_string_accepted(validator: TokenValidator, rsa: SigningKey) -> None:
    assert validator.validate(sign(rsa, access_claims(aud=AUDIENCE))).subject


def test_scopes_empty_without_scope_claim(validator: TokenValidator, rsa: SigningKey) -> None:
    assert validator.validate(sign(rsa, access_claims(scope=None))).scopes == frozenset()


def test_malformed_roles_grant_nothing(validator: TokenValidator, rsa: SigningKey) -> None:
    claims = access_claims(realm_access={"roles": "admin"}, resource_access={"x": ["admin"]})
    principal = validator.validate(sign(rsa, claims))
    assert principal.realm_roles == frozenset()
    assert principal.client_roles == {}


def test_expired_within_leeway_accepted(validator: TokenValidator, rsa: SigningKey) -> None:
    now = int(time.time())
    claims = access_claims(iat=now - 600, exp=now - CLOCK_SKEW_LEEWAY_S // 2)
    assert validator.validate(sign(rsa, claims)).subject


def test_expired_beyond_leeway_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    now = int(time.time())
    claims = access_claims(iat=now - 600, exp=now - CLOCK_SKEW_LEEWAY_S - 5)
    assert refused(validator, sign(rsa, claims)).cause == "expired"


def test_expired_long_ago_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    now = int(time.time())
    claims = access_claims(iat=now - 7200, exp=now - 3600)
    assert refused(validator, sign(rsa, claims)).cause == "expired"


def test_expired_token_otherwise_valid_names_its_holder(
    validator: TokenValidator, rsa: SigningKey
) -> None:
    now = int(time.time())
    error = refused(validator, sign(rsa, access_claims(iat=now - 7200, exp=now - 3600)))
    assert error.holder is not None
    assert (error.holder.subject, error.holder.client_id) == (
        access_claims()["sub"],
        "healthforce-portal",
    )


@pytest.mark.parametrize(
    "other",
    [{"aud": "another-service"}, {"iss": "https://sso.example/realms/other"}, {"typ": "ID"}],
)
def test_expired_token_invalid_otherwise_names_nobody(
    validator: TokenValidator, rsa: SigningKey, other: dict[str, str]
) -> None:
    now = int(time.time())
    error = refused(validator, sign(rsa, access_claims(iat=now - 7200, exp=now - 3600, **other)))
    assert error.cause == "expired"
    assert error.holder is None


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid_refused(validator: TokenValidator, rsa: SigningKey, claim: str) -> None:
    now = int(time.time())
    claims = access_claims(**{claim: now + 3600}, exp=now + 7200)
    assert refused(validator, sign(rsa, claims)).cause == "not_yet_valid"


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
def test_missing_required_claim_refused(
    validator: TokenValidator, rsa: SigningKey, claim: str
) -> None:
    error = refused(validator, sign(rsa, access_claims(**{claim: None})))
    assert error.cause == "missing_claim"
    assert claim in error.message


def test_missing_client_id_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    error = refused(validator, sign(rsa, access_claims(azp=None)))
    assert error.cause == "missing_claim"


def test_empty_subject_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    assert refused(validator, sign(rsa, access_claims(sub=""))).cause == "missing_claim"


@pytest.mark.parametrize("exp", ["tomorrow", [1], {"at": 1}])
def test_non_numeric_exp_refused(validator: TokenValidator, rsa: SigningKey, exp: object) -> None:
    assert refused(validator, sign(rsa, access_claims(exp=exp))).cause == "malformed"


def test_scope_claim_as_list_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    claims = access_claims(scope=["healthworkers:read"])
    assert refused(validator, sign(rsa, claims)).cause == "claims"


@pytest.mark.parametrize("audience", ["", "account"])
def test_validator_refuses_meaningless_audience(
    endpoint: FakeJwksEndpoint, audience: str, validator: TokenValidator
) -> None:
    with pytest.raises(ConfigurationError):
        TokenValidator(issuer=ISSUER, audience=audience, keys=validator.keys)
