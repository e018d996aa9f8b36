"""The SSO's signing keys: a JWKS cache that follows key rotation without letting tokens drive it.

A token naming an unknown `kid` may trigger a refetch, but at most one fetch happens per
cooldown however many such tokens arrive, and only a few requests wait, briefly, for another's
fetch; when the SSO is down the last good key set stays.
Only public signature keys for the allowed algorithms are kept (never ``oct`` / HMAC keys).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import httpx
import jwt

from adapter.auth.discovery import (
    FETCH_DEADLINE_S,
    OidcDiscovery,
    default_http_client,
    fetch_json,
)
from adapter.auth.errors import InvalidTokenError, KeySetUnavailableError, ProviderError

log = logging.getLogger("adapter.auth")

# RFC 8725 §3.1: a fixed allow-list. RS256 is Keycloak's default, ES256 its usual alternative.
ALLOWED_ALGORITHMS: Final = frozenset({"RS256", "ES256"})
# At most one key-set fetch per this many seconds, whatever the tokens say (unknown-kid floods).
JWKS_REFETCH_COOLDOWN_S: Final = 30.0
# A key set older than this is refreshed on next use (so a key the SSO withdrew stops working).
JWKS_MAX_AGE_S: Final = 600.0
# A real key set holds a handful of keys; a huge one is a mistake or an attack.
MAX_KEYS: Final = 50
# Requests with an unknown kid waiting for another's fetch once a key set is known (a rotation:
# a fetch takes milliseconds), at most this many at once and for this long; before the first
# key set every request waits, up to the fetch's own deadline.
MAX_KID_WAITERS: Final = 4
KID_WAIT_S: Final = 2.0
# Discovery then the key set, each within its fetch deadline.
FIRST_FETCH_WAIT_S: Final = 2 * FETCH_DEADLINE_S + 5.0


class JwksFetcher(Protocol):
    """Gets the current JWKS document; raises `ProviderError` when it cannot."""

    def __call__(self) -> Mapping[str, Any]: ...


class HttpJwksFetcher:
    """`JwksFetcher` over HTTP; the key set's URL comes from discovery (or is given)."""

    def __init__(
        self, jwks_uri: str | Callable[[], str], *, http: httpx.Client | None = None
    ) -> None:
        self._jwks_uri = jwks_uri
        self._http = http if http is not None else default_http_client()

    @classmethod
    def from_discovery(
        cls, discovery: OidcDiscovery, *, http: httpx.Client | None = None
    ) -> HttpJwksFetcher:
        return cls(lambda: discovery.metadata().jwks_uri, http=http)

    def __call__(self) -> Mapping[str, Any]:
        uri = self._jwks_uri if isinstance(self._jwks_uri, str) else self._jwks_uri()
        return fetch_json(self._http, uri, what="JWKS")


def parse_key_set(document: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
    """The usable verification keys of a JWKS document by `kid`; `ProviderError` if none."""
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise ProviderError("JWKS: no keys array")
    if len(entries) > MAX_KEYS:
        raise ProviderError(f"JWKS: more than {MAX_KEYS} keys")
    candidates: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or kid in seen:
            continue  # without a unique kid a token could not name it unambiguously
        if entry.get("use", "sig") != "sig" or entry.get("kty") not in {"RSA", "EC"}:
            continue  # encryption keys and symmetric (oct) keys never verify our tokens
        if "alg" in entry and entry["alg"] not in ALLOWED_ALGORITHMS:
            continue
        if "d" in entry:
            continue  # a private key has no business in a published key set
        seen.add(kid)
        candidates.append(entry)
    if not candidates:
        raise ProviderError("JWKS: no RS256/ES256 signature key with a kid")
    try:
        key_set = jwt.PyJWKSet(candidates)
    except jwt.PyJWTError as exc:
        raise ProviderError(f"JWKS: unusable keys ({type(exc).__name__})") from exc
    # PyJWK infers the algorithm when `alg` is absent (RSA -> RS256, P-384 -> ES384): re-check.
    keys = {str(key.key_id): key for key in key_set if key.algorithm_name in ALLOWED_ALGORITHMS}
    if not keys:
        raise ProviderError("JWKS: no RS256/ES256 signature key with a kid")
    return keys


class JwksCache:
    """Signing keys by `kid`, refetched on an unknown kid or when old, under a cooldown."""

    def __init__(
        self,
        fetch: JwksFetcher,
        *,
        cooldown_s: float = JWKS_REFETCH_COOLDOWN_S,
        max_age_s: float = JWKS_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.cooldown_s = cooldown_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._waiters = threading.BoundedSemaphore(MAX_KID_WAITERS)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # when the current key set arrived
        self._attempted_at: float | None = None  # when a fetch was last tried
        self.fetch_count = 0  # fetch attempts, for tests and metrics
        self.last_error: str | None = None

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def signing_key(self, kid: str) -> jwt.PyJWK:
        """The key named `kid`; `InvalidTokenError` if the SSO has no such key."""
        key = self._keys.get(kid)
        if key is not None:
            if self._is_stale() and self._lock.acquire(blocking=False):
                # Refresh in this request but never make others wait for it: they use this key.
                try:
                    self._refresh_if_allowed()
                finally:
                    self._lock.release()
                key = self._keys.get(kid)  # a withdrawn key is gone after the refresh
            if key is not None:
                return key
        else:
            if self._acquire_for_unknown_kid():
                try:
                    if kid not in self._keys:  # another thread may have fetched meanwhile
                        self._refresh_if_allowed()
                finally:
                    self._lock.release()
            key = self._keys.get(kid)
            if key is not None:
                return key
        if self._fetched_at is None:
            raise KeySetUnavailableError(
                "the SSO's signing keys could not be fetched yet; try again shortly",
                retry_after_s=self.cooldown_s,
            )
        raise InvalidTokenError("the token's key id is not one of the SSO's keys", cause="kid")

    def _acquire_for_unknown_kid(self) -> bool:
        """The lock, to fetch or to see another thread's fetch, waiting only as long as is safe.

        Before the first key set, every request needs it: each waits for the fetch (which
        gives up within its deadline). After, an unknown kid is a key rotation or a forged
        header, which costs nothing to send: at most `MAX_KID_WAITERS` threads wait, and for
        `KID_WAIT_S` at most, so a slow SSO cannot hold every request thread; the others are
        answered at once, as within the cooldown.
        """
        if self._lock.acquire(blocking=False):
            return True
        if self._fetched_at is None:
            return self._lock.acquire(timeout=FIRST_FETCH_WAIT_S)
        if not self._waiters.acquire(blocking=False):
            return False
        try:
            return self._lock.acquire(timeout=KID_WAIT_S)
        finally:
            self._waiters.release()

    def refresh(self) -> bool:
        """Fetch now unless within the cooldown (e.g. at start-up); True if a new set arrived."""
        with self._lock:
            return self._refresh_if_allowed()

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self.max_age_s

    def _refresh_if_allowed(self) -> bool:
        """Fetch and replace the key set, unless a fetch was tried within the cooldown.

        Called with the lock held. A failed fetch or an unusable document keeps the last good set.
        """
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < self.cooldown_s:
            return False
        self._attempted_at = now
        self.fetch_count += 1
        try:
            keys = parse_key_set(self._fetch())
        except ProviderError as exc:
            self.last_error = exc.message
            log.warning(
                "JWKS refresh failed, keeping %d known key(s): %s", len(self._keys), exc.message
            )
            return False
        finally:
            # The cooldown counts from the fetch's end: one slower than the cooldown would
            # otherwise leave the next caller free to start another at once.
            self._attempted_at = self._clock()
        self._keys = keys
        self._fetched_at = now
        self.last_error = None
        log.info("JWKS refreshed: %d key(s)", len(keys))
        return True
