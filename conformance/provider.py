"""The HTTP side of a run: credentials per system, a request rate limit, and 429 handling.

Every 429 is checked for a valid `Retry-After` and then honoured before the request is retried.
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from adapter.clients.http import tls_verification
from retry_after import parse_retry_after

# How long one 429 may hold the run up, and how often one request is retried after a 429.
MAX_RETRY_WAIT_S = 30.0
MAX_429_RETRIES = 3
# Without (or with an unreadable) Retry-After, wait this long before retrying.
FALLBACK_RETRY_S = 1.0
# A client-credentials token is renewed this long before it expires (or at half its life).
REFRESH_BEFORE_S = 30.0


class CannotRun(Exception):
    """The run cannot start or go on (unreachable, TLS, credentials refused); one-line reason."""


class RequestFailed(CannotRun):
    """A request of a phase got no answer (timed out, connection dropped or refused): that
    phase stops there, partly run; what it and the phases before found is kept."""


class Auth(Protocol):
    def headers(self, client: httpx.Client) -> dict[str, str]:
        """Headers that authenticate a request."""

    def wrong_headers(self) -> dict[str, str]:
        """Headers with credentials the provider never issued."""


@dataclass
class ApiKeyAuth:
    header: str
    key: str

    def headers(self, client: httpx.Client) -> dict[str, str]:
        return {self.header: self.key}

    def wrong_headers(self) -> dict[str, str]:
        return {self.header: "hf-conformance-not-a-key"}


@dataclass
class ClientCredentialsAuth:
    """SATUSEHAT-style: `POST {token_path}?grant_type=client_credentials` with a form body."""

    token_path: str
    client_id: str
    client_secret: str
    _token: str | None = field(default=None, repr=False)
    # When the token stops being used (time.monotonic()): `REFRESH_BEFORE_S` before it expires
    # by its `expires_in`; never, when the answer gives no usable lifetime.
    _renew_at: float = field(default=math.inf, repr=False)
    # The token's lifetime in seconds by its answer's `expires_in`, when it gives one.
    lifetime_s: float | None = None

    def remaining_s(self) -> float | None:
        """Seconds the token in hand is still used for (None: no lifetime was given)."""
        if self._token is None or self.lifetime_s is None:
            return None
        return max(0.0, self._renew_at - time.monotonic())

    def headers(self, client: httpx.Client) -> dict[str, str]:
        if self._token is None or time.monotonic() >= self._renew_at:
            self._token = self.fetch_token(client)
        return {"Authorization": f"Bearer {self._token}"}

    def wrong_headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer hf-conformance-not-a-token-0000"}

    def fetch_token(self, client: httpx.Client) -> str:
        response = send(
            client,
            "POST",
            self.token_path,
            params={"grant_type": "client_credentials"},
            data={"client_id": self.client_id, "client_secret": self.client_secret},
        )
        if response.status_code in (400, 401, 403):
            raise CannotRun(
                f"credentials refused: the token endpoint answered {response.status_code} "
                f"for client {self.client_id}"
            )
        if response.status_code != 200:
            raise CannotRun(f"the token endpoint answered {response.status_code}")
        try:
            document = response.json()
            token = str(document["access_token"])
        except (ValueError, KeyError, TypeError):
            raise CannotRun("the token endpoint's answer has no access_token") from None
        # SATUSEHAT gives `expires_in` as a string ("14399"); the token rules judge its form.
        lifetime = _seconds(document.get("expires_in") if isinstance(document, dict) else None)
        self.lifetime_s = lifetime
        self._renew_at = (
            math.inf
            if lifetime is None
            else time.monotonic() + max(lifetime - REFRESH_BEFORE_S, lifetime / 2)
        )
        return token


def _seconds(value: Any) -> float | None:
    """A positive number of seconds from an int, float or numeric string; None otherwise."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def send(
    client: httpx.Client, method: str, url: str, *, where: str | None = None, **kwargs: Any
) -> httpx.Response:
    """One request; network failures become `CannotRun` with a one-line reason naming `where`
    (the client's base URL unless said: a mock's admin API may be another server)."""
    server = where or str(client.base_url)
    try:
        return client.request(method, url, **kwargs)
    except httpx.ConnectError as exc:
        if _is_tls(exc):
            raise CannotRun(f"TLS failure talking to {server}: {_reason(exc)}") from None
        raise CannotRun(f"cannot reach {server}: {_reason(exc)}") from None
    except httpx.TimeoutException as exc:
        raise CannotRun(f"{server} did not answer in time ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise CannotRun(f"talking to {server} failed: {_reason(exc)}") from None


@contextmanager
def _phase_failure(operation: str) -> Iterator[None]:
    """A request of a phase that gets no answer: `RequestFailed` naming the operation (the
    phase stops there, partly run; the run goes on)."""
    try:
        yield
    except RequestFailed:
        raise
    except CannotRun as exc:
        raise RequestFailed(f"{exc} ({operation})") from None


def _is_tls(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, ssl.SSLError) or "SSL" in str(exc) or "CERTIFICATE" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


TooManyRequests = Callable[[str, httpx.Response, float | None], None]


class ProviderClient:
    """Requests to the system under test, authenticated, rate-limited, 429s honoured."""

    def __init__(
        self,
        base_url: str,
        auth: Auth,
        *,
        rate_limit: float | None = None,
        verify: bool | str = True,
        timeout_s: float = 30.0,
        on_429: TooManyRequests | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # One TLS context per process and CA bundle: httpx would load the bundle for every client.
        self.http = httpx.Client(
            base_url=base_url, verify=tls_verification(verify), timeout=timeout_s
        )
        self.auth = auth
        self.min_interval = 1.0 / rate_limit if rate_limit else 0.0
        self.on_429 = on_429
        self.sleep = sleep
        self.retry_waits: list[float] = []
        self.requests = 0
        # The run's deadline (time.monotonic()), when it has one: waits after a 429 end there.
        self.deadline: float | None = None
        self._last = 0.0

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        credentials: str = "valid",
        **kwargs: Any,
    ) -> httpx.Response:
        """`credentials` is `valid`, `none` or `wrong`."""
        headers = dict(kwargs.pop("headers", None) or {})
        if credentials == "valid":
            with _phase_failure(operation):  # a token renewed mid-run may fail too
                headers.update(self.auth.headers(self.http))
        elif credentials == "wrong":
            headers.update(self.auth.wrong_headers())
        for attempt in range(MAX_429_RETRIES + 1):
            self._pace()
            with _phase_failure(operation):
                response = send(self.http, method, path, headers=headers, **kwargs)
            self.requests += 1
            if response.status_code != 429:
                return response
            delay = parse_retry_after(response.headers.get("retry-after"))
            if self.on_429 is not None:
                self.on_429(operation, response, delay)
            left = self.deadline - time.monotonic() if self.deadline is not None else math.inf
            if attempt == MAX_429_RETRIES or left <= 0:
                return response
            # Never past the run's time budget.
            wait = min(MAX_RETRY_WAIT_S, FALLBACK_RETRY_S if delay is None else delay, left)
            self.retry_waits.append(wait)
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pace(self) -> None:
        if self.min_interval:
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._last = time.monotonic()
