"""Validated tokens are remembered by hash until their exp: the same token is not re-verified,
anything else (another token, a changed signature, an expired entry, a withdrawn key) is."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from adapter.auth.errors import InvalidTokenError
from adapter.auth.jwks import JwksCache
from adapter.auth.tokens import TokenValidator
from tests.unit.adapter.auth.auth_fakes import (
    AUDIENCE,
    COOLDOWN_S,
    ISSUER,
    FakeClock,
    FakeJwksEndpoint,
    SigningKey,
    access_claims,
    jwks,
    sign,
)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens PyJWT verified (signature and claims), in order."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr("adapter.auth.tokens.jwt.decode", counting)
    return seen


@pytest.fixture
def wall() -> FakeClock:
    """The cache's clock, starting at the real time (PyJWT checks exp against the real one)."""
    return FakeClock(time.time())


def _validator(cache: JwksCache, wall: FakeClock, size: int = 100) -> TokenValidator:
    return TokenValidator(issuer=ISSUER, audience=AUDIENCE, keys=cache, cache_size=size, clock=wall)


def test_the_same_token_is_verified_once_and_gives_the_same_principal(
    cache: JwksCache, wall: FakeClock, rsa: SigningKey, decodes: list[str]
) -> None:
    validator = _validator(cache, wall)
    alice = sign(rsa, access_claims(sub="alice"))
    bob = sign(rsa, access_claims(sub="bob"))

    first = [validator.validate(alice) for _ in range(5)]
    second = validator.validate(bob)

    assert {principal.subject for principal in first} == {"alice"}
    assert second.subject == "bob"
    assert decodes == [alice, bob]


def test_a_changed_signature_is_never_taken_for_the_cached_token(
    cache: JwksCache, wall: FakeClock, rsa: SigningKey, decodes: list[str]
) -> None:
    validator = _validator(cache, wall)
    token = sign(rsa, access_claims())
    validator.validate(token)
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"

    with pytest.raises(InvalidTokenError):
        validator.validate(forged)
    assert decodes == [token, forged]


def test_an_entry_ends_at_the_tokens_exp(
    cache: JwksCache, wall: FakeClock, rsa: SigningKey, decodes: list[str]
) -> None:
    validator = _validator(cache, wall)
    token = sign(rsa, access_claims(exp=int(wall.now) + 120))
    validator.validate(token)
    wall.advance(119)
    validator.validate(token)
    assert len(decodes) == 1
    wall.advance(2)  # past exp on the cache's clock: verified again (and PyJWT decides)
    validator.validate(token)
    assert len(decodes) == 2


def test_a_token_of_a_withdrawn_key_is_refused_once_the_key_set_is_refreshed(
    endpoint: FakeJwksEndpoint,
    cache: JwksCache,
    clock: FakeClock,
    wall: FakeClock,
    rsa: SigningKey,
    es: SigningKey,
) -> None:
    validator = _validator(cache, wall)
    token = sign(rsa, access_claims())
    assert validator.validate(token).subject
    endpoint.document = jwks(es)  # the SSO withdraws rsa-1
    clock.advance(COOLDOWN_S + 1)
    assert cache.refresh()

    with pytest.raises(InvalidTokenError, match="key id is not one of the SSO's keys"):
        validator.validate(token)


def test_the_cache_is_bounded(
    cache: JwksCache, wall: FakeClock, rsa: SigningKey, decodes: list[str]
) -> None:
    validator = _validator(cache, wall, size=2)
    tokens = [sign(rsa, access_claims(sub=f"user-{n}")) for n in range(3)]
    for token in tokens:
        validator.validate(token)
    validator.validate(tokens[2])  # still there
    validator.validate(tokens[0])  # pushed out by the third
    assert decodes == [*tokens, tokens[0]]


def test_a_refused_token_is_not_remembered(
    cache: JwksCache, wall: FakeClock, rsa: SigningKey, decodes: list[str]
) -> None:
    validator = _validator(cache, wall)
    token = sign(rsa, access_claims(aud="someone-else"))
    for _ in range(2):
        with pytest.raises(InvalidTokenError, match="aud"):
            validator.validate(token)
    assert decodes == [token, token]


def test_size_zero_turns_the_cache_off(
    cache: JwksCache, wall: FakeClock, rsa: SigningKey, decodes: list[str]
) -> None:
    validator = _validator(cache, wall, size=0)
    token = sign(rsa, access_claims())
    validator.validate(token)
    validator.validate(token)
    assert decodes == [token, token]
