"""The adapter gets its own token from the real provider, caches it and renews it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapter.auth.client_credentials import ClientCredentialsToken
from adapter.auth.errors import ClientCredentialsError
from adapter.auth.tokens import TokenValidator
from harness.idp import IdpProcess, resource_indicator

CLIENT_ID = "hf-adapter-service"


def own_token(idp: IdpProcess, **kwargs: object) -> ClientCredentialsToken:
    return ClientCredentialsToken.for_issuer(
        idp.issuer,
        client_id=CLIENT_ID,
        client_secret=idp.clients[CLIENT_ID].secret,
        **kwargs,  # type: ignore[arg-type]
    )


def test_own_token_is_valid_for_the_other_service(idp: IdpProcess) -> None:
    tokens = own_token(idp)
    registry = TokenValidator.for_issuer(idp.issuer, "healthforce-registry")
    principal = registry.validate(tokens.token())
    assert principal.client_id == CLIENT_ID
    assert principal.realm_roles == {"healthforce-service"}


def test_own_token_cached_across_calls_and_threads(idp: IdpProcess) -> None:
    tokens = own_token(idp)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = set(pool.map(lambda _: tokens.token(), range(40)))
    assert len(results) == 1
    assert tokens.fetch_count == 1


def test_own_token_renewed_before_it_expires(idp: IdpProcess) -> None:
    # Discovery and the key set fetched first: the renewed token's second or so of life is
    # for its check alone, on a busy machine too.
    registry = TokenValidator.for_issuer(idp.issuer, "healthforce-registry", leeway_s=0)
    tokens = own_token(idp, resource=resource_indicator("healthforce-registry", ttl_s=2))
    first = tokens.token()
    assert tokens.token() == first
    assert registry.validate(first).subject == CLIENT_ID  # the key set, fetched now
    time.sleep(1.1)  # a 2 s token is used for half its life
    second = tokens.token()
    assert second != first
    assert tokens.fetch_count == 2
    assert registry.validate(second).subject == CLIENT_ID


def test_invalidated_token_replaced(idp: IdpProcess) -> None:
    tokens = own_token(idp)
    first = tokens.token()
    tokens.invalidate(first)
    assert tokens.token() != first


def test_wrong_secret_refused_without_leaking_it(idp: IdpProcess) -> None:
    tokens = ClientCredentialsToken.for_issuer(
        idp.issuer, client_id=CLIENT_ID, client_secret="wrong-secret-value"
    )
    with pytest.raises(ClientCredentialsError) as caught:
        tokens.token()
    assert caught.value.reason == "client_credentials_refused"
    assert "wrong-secret-value" not in str(caught.value)
