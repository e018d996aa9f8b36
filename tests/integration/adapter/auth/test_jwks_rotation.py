"""Key rotation at the real provider is followed; when the provider is down the last good keys
keep working; a key the provider withdrew stops working once the key set is refreshed."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from adapter.auth.errors import InvalidTokenError, KeySetUnavailableError
from adapter.auth.tokens import TokenValidator
from harness.idp import IdpProcess, generate_signing_keys
from tests.integration.adapter.auth.support import AUDIENCE, started

COOLDOWN_S = 0.3
MAX_AGE_S = 1.0


@pytest.fixture
def rotating_idp() -> Iterator[IdpProcess]:
    provider = started(IdpProcess(keys=generate_signing_keys(rsa_kids=["key-a"])))
    try:
        yield provider
    finally:
        provider.close()


def quick_validator(idp: IdpProcess) -> TokenValidator:
    return TokenValidator.for_issuer(
        idp.issuer, AUDIENCE, jwks_cooldown_s=COOLDOWN_S, jwks_max_age_s=MAX_AGE_S
    )


def test_rotation_followed_and_old_tokens_still_accepted(rotating_idp: IdpProcess) -> None:
    validator = quick_validator(rotating_idp)
    token_a = rotating_idp.token("hf-readonly")
    assert validator.validate(token_a).subject
    assert rotating_idp.keys is not None
    key_a = rotating_idp.keys["keys"][0]
    new_b = generate_signing_keys(rsa_kids=["key-b"])["keys"][0]
    rotating_idp.restart(keys={"keys": [new_b, key_a]})  # B signs, A still published
    token_b = rotating_idp.token("hf-readonly")
    time.sleep(COOLDOWN_S)
    assert validator.validate(token_b).subject
    assert validator.validate(token_a).subject
    assert validator.keys.key_ids == {"key-a", "key-b"}


def test_provider_down_keeps_last_good_keys(rotating_idp: IdpProcess) -> None:
    validator = quick_validator(rotating_idp)
    token = rotating_idp.token("healthforce-portal")
    validator.validate(token)
    rotating_idp.stop()
    time.sleep(MAX_AGE_S)  # the key set is stale: the next use tries a refresh, which fails
    assert validator.validate(token).client_id == "healthforce-portal"
    assert validator.keys.last_error is not None
    assert "unreachable" in validator.keys.last_error
    time.sleep(COOLDOWN_S)
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(_token_with_kid(token, "key-unknown"))
    assert caught.value.cause == "kid"
    assert validator.validate(token).subject


def test_withdrawn_key_refused_after_refresh(rotating_idp: IdpProcess) -> None:
    validator = quick_validator(rotating_idp)
    token_a = rotating_idp.token("hf-readonly")
    validator.validate(token_a)
    rotating_idp.restart(keys=generate_signing_keys(rsa_kids=["key-c"]))
    time.sleep(MAX_AGE_S)
    with pytest.raises(InvalidTokenError):
        validator.validate(token_a)
    assert validator.validate(rotating_idp.token("hf-readonly")).subject


def test_provider_down_at_start_is_unavailable_then_recovers(rotating_idp: IdpProcess) -> None:
    token = rotating_idp.token("hf-readonly")
    rotating_idp.stop()
    validator = quick_validator(rotating_idp)
    with pytest.raises(KeySetUnavailableError):
        validator.validate(token)
    rotating_idp.start()
    time.sleep(COOLDOWN_S)
    assert validator.validate(token).subject


def _token_with_kid(token: str, kid: str) -> str:
    """The same token with another kid in its header (its signature no longer matters)."""
    header_b64, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    header["kid"] = kid
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"
