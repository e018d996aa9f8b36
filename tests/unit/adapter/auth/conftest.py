"""A validator for the test issuer whose key set comes from a fake JWKS endpoint."""

from __future__ import annotations

import pytest

from adapter.auth.jwks import JwksCache
from adapter.auth.tokens import TokenValidator
from tests.unit.adapter.auth.auth_fakes import (
    AUDIENCE,
    COOLDOWN_S,
    ISSUER,
    FakeClock,
    FakeJwksEndpoint,
    SigningKey,
    ec_key,
    jwks,
    rsa_key,
)


@pytest.fixture
def rsa() -> SigningKey:
    return rsa_key("rsa-1")


@pytest.fixture
def es() -> SigningKey:
    return ec_key("ec-1")


@pytest.fixture
def endpoint(rsa: SigningKey, es: SigningKey) -> FakeJwksEndpoint:
    return FakeJwksEndpoint(jwks(rsa, es))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(endpoint: FakeJwksEndpoint, clock: FakeClock) -> JwksCache:
    return JwksCache(endpoint, cooldown_s=COOLDOWN_S, max_age_s=600.0, clock=clock)


@pytest.fixture
def validator(cache: JwksCache) -> TokenValidator:
    return TokenValidator(issuer=ISSUER, audience=AUDIENCE, keys=cache)
