"""The key-set cache: rotation followed, withdrawn keys dropped, last good set kept when the SSO
is down or serves garbage, and only RS256/ES256 public signature keys ever admitted."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from adapter.auth import jwks as jwks_module
from adapter.auth.errors import InvalidTokenError, KeySetUnavailableError, ProviderError
from adapter.auth.jwks import MAX_KEYS, MAX_KID_WAITERS, JwksCache, parse_key_set
from adapter.auth.tokens import TokenValidator
from tests.unit.adapter.auth.auth_fakes import (
    COOLDOWN_S,
    FakeClock,
    FakeJwksEndpoint,
    SigningKey,
    ec_key,
    jwks,
    rsa_key,
    sign,
)


def test_rotated_key_found_by_refetch_after_cooldown(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, clock: FakeClock, rsa: SigningKey
) -> None:
    validator.validate(sign(rsa))
    rotated = rsa_key("rsa-2")
    endpoint.document = jwks(rotated, rsa)
    clock.advance(COOLDOWN_S)
    assert validator.validate(sign(rotated)).subject
    assert endpoint.calls == 2
    assert validator.validate(sign(rsa)).subject  # the previous key still verifies
    assert endpoint.calls == 2


def test_rotated_key_refused_within_cooldown_then_accepted(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, clock: FakeClock, rsa: SigningKey
) -> None:
    validator.validate(sign(rsa))
    rotated = rsa_key("rsa-2")
    endpoint.document = jwks(rotated, rsa)
    with pytest.raises(InvalidTokenError):
        validator.validate(sign(rotated))
    clock.advance(COOLDOWN_S)
    assert validator.validate(sign(rotated)).subject


def test_provider_down_keeps_last_good_keys(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, clock: FakeClock, rsa: SigningKey
) -> None:
    validator.validate(sign(rsa))
    endpoint.down = True
    clock.advance(3600)  # stale: a refresh is attempted and fails
    assert validator.validate(sign(rsa)).subject
    assert endpoint.calls == 2
    assert validator.keys.last_error is not None
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(sign(rsa_key("rsa-2")))
    assert caught.value.cause == "kid"


@pytest.mark.parametrize(
    "document",
    [{}, {"keys": []}, {"keys": "x"}, {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}],
)
def test_unusable_key_set_keeps_last_good_keys(
    validator: TokenValidator,
    endpoint: FakeJwksEndpoint,
    clock: FakeClock,
    rsa: SigningKey,
    document: dict[str, Any],
) -> None:
    validator.validate(sign(rsa))
    endpoint.document = document
    clock.advance(3600)
    assert validator.validate(sign(rsa)).subject
    assert validator.keys.key_ids == {"rsa-1", "ec-1"}


def test_withdrawn_key_dropped_when_key_set_ages(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, clock: FakeClock, rsa: SigningKey
) -> None:
    validator.validate(sign(rsa))
    endpoint.document = jwks(rsa_key("rsa-2"))
    clock.advance(validator.keys.max_age_s)
    with pytest.raises(InvalidTokenError):
        validator.validate(sign(rsa))


def test_no_key_set_ever_fetched_is_unavailable_not_invalid(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, clock: FakeClock, rsa: SigningKey
) -> None:
    endpoint.down = True
    for _ in range(20):
        with pytest.raises(KeySetUnavailableError) as caught:
            validator.validate(sign(rsa))
    assert caught.value.status == 503
    assert caught.value.retry_after_s == COOLDOWN_S
    assert endpoint.calls == 1
    endpoint.down = False
    clock.advance(COOLDOWN_S)
    assert validator.validate(sign(rsa)).subject


def test_refresh_respects_cooldown(cache: JwksCache, endpoint: FakeJwksEndpoint) -> None:
    assert cache.refresh()
    assert not cache.refresh()
    assert endpoint.calls == 1


def _entry(key: SigningKey, **changes: Any) -> dict[str, Any]:
    entry = {**key.public_jwk, **changes}
    return {name: value for name, value in entry.items() if value is not None}


def test_parse_key_set_admits_only_public_rs256_es256_signature_keys() -> None:
    rsa, es = rsa_key("rsa-1"), ec_key("ec-1")
    p384 = {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"}
    document = {
        "keys": [
            _entry(rsa),
            _entry(es),
            _entry(rsa, kid="rsa-no-alg", alg=None),
            _entry(rsa, kid="rsa-enc", use="enc"),
            _entry(rsa, kid="rsa-ps", alg="PS256"),
            _entry(rsa, kid="rsa-hs", alg="HS256"),
            _entry(rsa, kid=None),
            _entry(rsa, kid=""),
            {**rsa.private_jwk, "kid": "rsa-private"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac-no-alg"},
            p384,
            "not a key",
        ]
    }
    keys = parse_key_set(document)
    assert set(keys) == {"rsa-1", "ec-1", "rsa-no-alg"}
    assert {key.algorithm_name for key in keys.values()} == {"RS256", "ES256"}


def test_parse_key_set_first_of_duplicate_kids_wins() -> None:
    first, second = rsa_key("rsa-1"), rsa_key("rsa-other")
    keys = parse_key_set({"keys": [_entry(first), _entry(second, kid="rsa-1")]})
    assert keys["rsa-1"].key_id == "rsa-1"
    assert len(keys) == 1


def test_parse_key_set_refuses_huge_sets() -> None:
    entry = _entry(rsa_key("rsa-1"))
    with pytest.raises(ProviderError):
        parse_key_set({"keys": [entry] * (MAX_KEYS + 1)})


class SlowEndpoint(FakeJwksEndpoint):
    """A fetch that blocks until released (an SSO that accepted the connection and is slow)."""

    def __init__(self, document: Any) -> None:
        super().__init__(document)
        self.slow = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> Any:
        if self.slow:
            self.entered.set()
            self.release.wait(30)
        return super().__call__()


def _in_thread(call: Any, kid: str) -> tuple[threading.Thread, list[Any]]:
    """`call(kid)` on a thread of its own; its key or its exception lands in the list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call(kid))
        except (InvalidTokenError, KeySetUnavailableError) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_requests_with_a_rotated_kid_wait_for_the_fetch_another_started(
    clock: FakeClock, rsa: SigningKey
) -> None:
    """Key rotation: many requests with the new kid arrive together; one fetches, the others
    wait for that fetch rather than being refused with 401 while it runs."""
    endpoint = SlowEndpoint(jwks(rsa))
    cache = JwksCache(endpoint, cooldown_s=COOLDOWN_S, max_age_s=600.0, clock=clock)
    assert cache.signing_key(rsa.kid)
    rotated = rsa_key("rsa-2")
    endpoint.document = jwks(rotated, rsa)
    clock.advance(COOLDOWN_S)
    endpoint.slow = True
    fetching, fetched = _in_thread(cache.signing_key, rotated.kid)
    assert endpoint.entered.wait(30)
    waiting, waited = _in_thread(cache.signing_key, rotated.kid)
    endpoint.release.set()
    for thread in (fetching, waiting):
        thread.join(timeout=30)
    assert [key.key_id for key in (*fetched, *waited)] == [rotated.kid, rotated.kid]
    assert endpoint.calls == 2


def test_before_the_first_key_set_every_request_waits_for_the_fetch(rsa: SigningKey) -> None:
    """A process's first requests arrive together: they used to be answered 503 while the
    first of them fetched the key set."""
    endpoint = SlowEndpoint(jwks(rsa))
    endpoint.slow = True
    cache = JwksCache(endpoint, cooldown_s=COOLDOWN_S, max_age_s=600.0)
    fetching, fetched = _in_thread(cache.signing_key, rsa.kid)
    assert endpoint.entered.wait(30)
    others = [_in_thread(cache.signing_key, rsa.kid) for _ in range(MAX_KID_WAITERS + 2)]
    endpoint.release.set()
    for thread, _ in [(fetching, fetched), *others]:
        thread.join(timeout=30)
    answers = [*fetched, *(answer for _, outcome in others for answer in outcome)]
    assert [getattr(answer, "key_id", answer) for answer in answers] == [rsa.kid] * (
        MAX_KID_WAITERS + 3
    )
    assert endpoint.calls == 1


def test_forged_kids_beyond_a_few_waiters_are_refused_at_once_while_a_fetch_runs(
    clock: FakeClock, rsa: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forged kid costs nothing to send: each one used to queue on the fetch in progress,
    holding a request thread for as long as a slow SSO took. A few wait, briefly; the rest are
    answered at once."""
    # Waiters wait longer than the test looks: one not turned away would still be waiting.
    monkeypatch.setattr(jwks_module, "KID_WAIT_S", 60.0)
    endpoint = SlowEndpoint(jwks(rsa))
    cache = JwksCache(endpoint, cooldown_s=COOLDOWN_S, max_age_s=600.0, clock=clock)
    assert cache.signing_key(rsa.kid)
    clock.advance(COOLDOWN_S)
    endpoint.slow = True
    fetching, _ = _in_thread(cache.signing_key, "forged-0")
    assert endpoint.entered.wait(30)
    waiters = [_in_thread(cache.signing_key, f"forged-{n}") for n in range(1, MAX_KID_WAITERS + 1)]
    deadline = time.monotonic() + 30  # a guard against hanging the suite, not a timing check
    while cache._waiters._value > 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    late, outcome = _in_thread(cache.signing_key, "forged-late")
    late.join(timeout=10)
    answered_while_fetching = not late.is_alive() and not endpoint.release.is_set()
    endpoint.release.set()
    for thread, _ in [(fetching, None), *waiters]:
        thread.join(timeout=30)
    assert answered_while_fetching, "the request beyond the waiters waited for the fetch"
    assert [type(exc) for exc in outcome] == [InvalidTokenError]
    assert endpoint.calls == 2  # the first fetch and the slow one, nothing more


def test_the_cooldown_counts_from_the_end_of_a_failed_fetch(
    clock: FakeClock, rsa: SigningKey
) -> None:
    """A failed fetch that outlasts the cooldown must not leave the next caller free to fetch."""
    endpoint = FakeJwksEndpoint(jwks(rsa))
    cache = JwksCache(endpoint, cooldown_s=COOLDOWN_S, max_age_s=600.0, clock=clock)
    assert cache.signing_key(rsa.kid)
    clock.advance(COOLDOWN_S)
    endpoint.down = True
    slow_failure = endpoint.__call__

    def failing_slowly() -> Any:
        clock.advance(2 * COOLDOWN_S)
        return slow_failure()

    cache._fetch = failing_slowly  # type: ignore[method-assign]
    with pytest.raises(InvalidTokenError):
        cache.signing_key("forged-1")
    with pytest.raises(InvalidTokenError):
        cache.signing_key("forged-2")
    assert endpoint.calls == 2
