"""One cached access token shared by all threads, renewed shortly before it expires.

Used for the adapter's own SSO token (`ClientCredentialsToken`) and for SISDMK's token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

# A token its issuer says lives longer is still renewed after a day: an `expires_in` of years
# (a misconfigured realm, a huge number) would keep one token, and its rights, for ever.
MAX_TOKEN_LIFETIME_S: Final = 86_400


def usable_for(expires_in_s: float, renew_before_s: float) -> float:
    """How long to use a token that expires in `expires_in_s` seconds (a day at most).

    ``expires_in - renew_before``; for a token living under twice the margin (test setups) that
    would mean a new token per call, so such a token is used for half its life.
    """
    expires_in_s = min(expires_in_s, MAX_TOKEN_LIFETIME_S)
    if expires_in_s > 2 * renew_before_s:
        return expires_in_s - renew_before_s
    return expires_in_s / 2


class AccessTokenCache:
    """Holds the token `fetch` returns (with its `expires_in`) until it is due for renewal."""

    def __init__(
        self,
        fetch: Callable[[], tuple[str, float]],
        *,
        renew_before_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._renew_before_s = renew_before_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def get(self) -> str:
        """The cached token, or a new one when it is (nearly) expired; one fetch for all threads."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                token, expires_in = self._fetch()
                self._token = token
                self._renew_at = self._clock() + usable_for(expires_in, self._renew_before_s)
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget `token` (refused with 401), unless another thread has replaced it already."""
        with self._lock:
            if self._token == token:
                self._token = None
