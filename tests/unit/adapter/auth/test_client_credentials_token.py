"""The adapter's own token: fetched once, shared by threads, renewed before expiry, never leaked."""

from __future__ import annotations

import base64
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import httpx
import pytest

from adapter.auth.client_credentials import RENEW_BEFORE_EXPIRY_S, ClientCredentialsToken
from adapter.auth.errors import ClientCredentialsError
from adapter.auth.token_cache import MAX_TOKEN_LIFETIME_S
from tests.unit.adapter.auth.auth_fakes import FakeClock

ENDPOINT = "https://sso.example.go.id/realms/healthforce/protocol/openid-connect/token"
SECRET = "s3cret:with/odd+chars"


class FakeTokenEndpoint:
    def __init__(self, expires_in: int = 300, delay_s: float = 0.0) -> None:
        self.expires_in = expires_in
        self.delay_s = delay_s
        self.requests: list[httpx.Request] = []
        self.status = 200
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
        time.sleep(self.delay_s)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "unauthorized_client"})
        return httpx.Response(
            200,
            json={
                "access_token": f"token-{number}",
                "token_type": "Bearer",
                "expires_in": self.expires_in,
            },
        )


def source(
    endpoint: FakeTokenEndpoint, clock: FakeClock | None = None, **kwargs: object
) -> ClientCredentialsToken:
    return ClientCredentialsToken(
        token_endpoint=ENDPOINT,
        client_id="hf-adapter-service",
        client_secret=SECRET,
        http=httpx.Client(transport=httpx.MockTransport(endpoint)),
        clock=clock or FakeClock(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_token_requested_with_basic_auth_scope_and_resource() -> None:
    endpoint = FakeTokenEndpoint()
    tokens = source(endpoint, scopes=["a:read", "b:write"], resource="urn:x")
    assert tokens.token() == "token-1"
    request = endpoint.requests[0]
    form = parse_qs(request.content.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "scope": ["a:read b:write"],
        "resource": ["urn:x"],
    }
    scheme, credentials = request.headers["Authorization"].split(" ")
    assert scheme == "Basic"
    # RFC 6749 §2.3.1: form-encoded before base64.
    assert (
        base64.b64decode(credentials).decode() == "hf-adapter-service:s3cret%3Awith%2Fodd%2Bchars"
    )


def test_token_cached_until_shortly_before_expiry() -> None:
    endpoint, clock = FakeTokenEndpoint(expires_in=300), FakeClock()
    tokens = source(endpoint, clock)
    assert tokens.token() == "token-1"
    clock.advance(300 - RENEW_BEFORE_EXPIRY_S - 1)
    assert tokens.token() == "token-1"
    clock.advance(1)
    assert tokens.token() == "token-2"
    assert len(endpoint.requests) == 2


def test_short_lived_token_used_for_half_its_life() -> None:
    endpoint, clock = FakeTokenEndpoint(expires_in=10), FakeClock()
    tokens = source(endpoint, clock)
    tokens.token()
    clock.advance(4.9)
    assert tokens.token() == "token-1"
    clock.advance(0.1)
    assert tokens.token() == "token-2"


def test_invalidate_forces_new_token_once() -> None:
    endpoint = FakeTokenEndpoint()
    tokens = source(endpoint)
    first = tokens.token()
    tokens.invalidate(first)
    assert tokens.token() == "token-2"
    tokens.invalidate(first)  # stale: someone already replaced it
    assert tokens.token() == "token-2"
    assert tokens.authorization_header() == {"Authorization": "Bearer token-2"}


def test_concurrent_callers_share_one_fetch() -> None:
    endpoint = FakeTokenEndpoint(delay_s=0.05)
    tokens = source(endpoint)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: tokens.token(), range(64)))
    assert set(results) == {"token-1"}
    assert len(endpoint.requests) == 1


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "client_credentials_refused"), (503, "sso_unavailable")]
)
def test_refusal_is_client_credentials_error_without_secret(status: int, reason: str) -> None:
    endpoint = FakeTokenEndpoint()
    endpoint.status = status
    with pytest.raises(ClientCredentialsError) as caught:
        source(endpoint).token()
    assert caught.value.reason == reason
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert "hf-adapter-service" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer", "expires_in": 300},
        {"access_token": "t", "token_type": "mac", "expires_in": 300},
        {"access_token": "t", "token_type": "Bearer"},
        {"access_token": "t", "token_type": "Bearer", "expires_in": 0},
        {"access_token": "t", "token_type": "Bearer", "expires_in": True},
    ],
)
def test_unusable_token_answer_refused(body: dict[str, object]) -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=body)))
    tokens = ClientCredentialsToken(
        token_endpoint=ENDPOINT, client_id="c", client_secret=SECRET, http=http
    )
    with pytest.raises(ClientCredentialsError):
        tokens.token()


def answering_expires_in(expires_in: str, clock: FakeClock | None = None) -> ClientCredentialsToken:
    """A token source whose endpoint answers a token with `expires_in` written as given (raw
    JSON text: `NaN`, `1e400`, an integer of hundreds of digits)."""
    body = f'{{"access_token": "t", "token_type": "Bearer", "expires_in": {expires_in}}}'
    answer = httpx.Response(200, content=body, headers={"Content-Type": "application/json"})
    http = httpx.Client(transport=httpx.MockTransport(lambda _: answer))
    return ClientCredentialsToken(
        token_endpoint=ENDPOINT,
        client_id="c",
        client_secret=SECRET,
        http=http,
        clock=clock or FakeClock(),
    )


@pytest.mark.parametrize(
    ("expires_in", "message"),
    [
        ("NaN", "not JSON (NaN is not a JSON number)"),
        ("Infinity", "not JSON (Infinity is not a JSON number)"),
        ("1e400", "no positive expires_in"),
        ("-1" + "0" * 400, "no positive expires_in"),
    ],
)
def test_a_lifetime_that_is_no_finite_number_is_refused(expires_in: str, message: str) -> None:
    """Python's parser takes NaN and Infinity (no JSON number) and makes 1e400 infinite: such a
    token was cached for ever (or its log line failed to format), and the calls failed with 401
    once the real token expired."""
    tokens = answering_expires_in(expires_in)
    with pytest.raises(ClientCredentialsError, match=re.escape(message)):
        tokens.token()


def test_unreachable_endpoint_is_client_credentials_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(refuse))
    tokens = ClientCredentialsToken(
        token_endpoint=ENDPOINT, client_id="c", client_secret=SECRET, http=http
    )
    with pytest.raises(ClientCredentialsError) as caught:
        tokens.token()
    assert caught.value.reason == "sso_unavailable"


def test_repr_hides_secret() -> None:
    assert SECRET not in repr(source(FakeTokenEndpoint()))


@pytest.mark.parametrize("expires_in", ["1" + "0" * 400, "1e300", "31536000"])
def test_a_lifetime_of_more_than_a_day_is_renewed_after_a_day(expires_in: str) -> None:
    """An integer of 401 digits raised OverflowError out of `token()`; 1e300 kept the token for
    ever."""
    clock = FakeClock()
    tokens = answering_expires_in(expires_in, clock)
    assert tokens.token() == "t"
    fetched = tokens.fetch_count
    clock.advance(MAX_TOKEN_LIFETIME_S - 31)
    tokens.token()
    assert tokens.fetch_count == fetched
    clock.advance(2)
    tokens.token()
    assert tokens.fetch_count == fetched + 1
