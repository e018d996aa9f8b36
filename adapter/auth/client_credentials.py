"""The adapter's own access token from the SSO (OAuth 2.0 client credentials, RFC 6749 §4.4).

For calling other HealthForce services. One token is shared by all threads and renewed shortly
before it expires, or at once after the callee refused it (`invalidate`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Final
from urllib.parse import quote_plus

import httpx

import strict_json
from adapter.auth.discovery import OidcDiscovery, default_http_client
from adapter.auth.errors import ClientCredentialsError, ProviderError
from adapter.auth.token_cache import MAX_TOKEN_LIFETIME_S, AccessTokenCache
from adapter.observability.tracing import inject

log = logging.getLogger("adapter.auth")

# Renew this long before the SSO says the token expires (clock skew, time in flight).
RENEW_BEFORE_EXPIRY_S: Final = 30.0
TOKEN_TIMEOUT_S: Final = 10.0


class ClientCredentialsToken:
    """A client-credentials token source for one client, scope set and (optionally) resource."""

    def __init__(
        self,
        *,
        token_endpoint: str | Callable[[], str],
        client_id: str,
        client_secret: str,
        scopes: Sequence[str] = (),
        resource: str | None = None,
        http: httpx.Client | None = None,
        renew_before_s: float = RENEW_BEFORE_EXPIRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_endpoint = token_endpoint
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = tuple(scopes)
        self.resource = resource
        self._http = http if http is not None else httpx.Client(timeout=TOKEN_TIMEOUT_S)
        self._cache = AccessTokenCache(
            self._request_token, renew_before_s=renew_before_s, clock=clock
        )
        self.fetch_count = 0

    @classmethod
    def for_issuer(
        cls,
        issuer: str,
        *,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str] = (),
        resource: str | None = None,
        http: httpx.Client | None = None,
    ) -> ClientCredentialsToken:
        """A source whose token endpoint comes from the issuer's discovery document."""
        http = http if http is not None else default_http_client()
        discovery = OidcDiscovery(issuer, http=http)

        def token_endpoint() -> str:
            endpoint = discovery.metadata().token_endpoint
            if endpoint is None:
                raise ProviderError("OIDC discovery: the SSO announces no token_endpoint")
            return endpoint

        return cls(
            token_endpoint=token_endpoint,
            client_id=client_id,
            client_secret=client_secret,
            scopes=scopes,
            resource=resource,
            http=http,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id={self.client_id!r}, scopes={self.scopes!r})"

    def token(self) -> str:
        """A valid access token: the cached one, or a new one when it is (nearly) expired."""
        return self._cache.get()

    def authorization_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def invalidate(self, token: str) -> None:
        """Forget `token` (a callee answered 401), unless another thread replaced it already."""
        self._cache.invalidate(token)

    def _request_token(self) -> tuple[str, float]:
        endpoint = (
            self._token_endpoint
            if isinstance(self._token_endpoint, str)
            else self._token_endpoint()
        )
        form = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        if self.resource is not None:
            form["resource"] = self.resource
        self.fetch_count += 1
        try:
            response = self._http.post(
                endpoint,
                data=form,
                # RFC 6749 §2.3.1: client_secret_basic is the method every server supports.
                auth=httpx.BasicAuth(
                    _form_encode(self.client_id), _form_encode(self._client_secret)
                ),
                headers=inject({"Accept": "application/json"}),
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise ClientCredentialsError(
                f"token endpoint unreachable ({type(exc).__name__})", reason="sso_unavailable"
            ) from exc
        body, unreadable = _json_object(response)
        if response.status_code != 200:
            error = body.get("error") if isinstance(body.get("error"), str) else None
            raise ClientCredentialsError(
                f"token endpoint answered HTTP {response.status_code}"
                + (f" ({error})" if error else "")
                + f" for client {self.client_id}",
                reason="client_credentials_refused"
                if response.status_code in {400, 401, 403}
                else "sso_unavailable",
            )
        if unreadable is not None:
            raise ClientCredentialsError(f"token endpoint answer is {unreadable}")
        token = body.get("access_token")
        token_type = body.get("token_type")
        expires_in = body.get("expires_in")
        if not isinstance(token, str) or not token:
            raise ClientCredentialsError("token endpoint answer has no access_token")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ClientCredentialsError("token endpoint answer is not a Bearer token")
        if (
            not isinstance(expires_in, int | float)
            or isinstance(expires_in, bool)
            or (isinstance(expires_in, float) and not math.isfinite(expires_in))  # 1e400: inf
            or expires_in <= 0
        ):
            raise ClientCredentialsError("token endpoint answer has no positive expires_in")
        # Capped before any conversion: an integer of hundreds of digits is no float.
        lifetime = float(min(expires_in, MAX_TOKEN_LIFETIME_S))
        log.info("new access token for client %s, valid %d s", self.client_id, lifetime)
        return token, lifetime


def _form_encode(value: str) -> str:
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before going into Basic credentials.
    return quote_plus(value)


def _json_object(response: httpx.Response) -> tuple[dict[str, Any], str | None]:
    """The answer's JSON object, and what is wrong with it when it is none (``{}`` then)."""
    try:
        body = strict_json.loads(response.content)
    except strict_json.NotJson as exc:
        return {}, f"not JSON ({exc})"
    except (ValueError, RecursionError):
        return {}, "not JSON"
    return (body, None) if isinstance(body, dict) else ({}, "not a JSON object")
