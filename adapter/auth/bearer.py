"""The access token from an ``Authorization: Bearer`` header value, parsed strictly (RFC 6750 §2.1).

The header is the only place a token is taken from: never a query string or a form body, which
end up in logs and browser histories.
"""

from __future__ import annotations

import re
from typing import Final

from adapter.auth.errors import InvalidRequestError, InvalidTokenError, MissingTokenError

# Keycloak tokens with many roles run to a few KiB; 16 KiB leaves room and bounds the work.
MAX_TOKEN_LENGTH: Final = 16 * 1024
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def bearer_token(authorization: str | None) -> str:
    """The token in an Authorization header value, or the `AuthError` that says what is wrong."""
    if authorization is None or not authorization.strip():
        raise MissingTokenError("send the access token as `Authorization: Bearer <token>`")
    scheme, separator, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer":
        if authorization[:6].lower() == "bearer":
            raise InvalidRequestError(
                "malformed Authorization header; expected `Bearer <token>`", cause="header"
            )
        raise MissingTokenError(
            "the Authorization header does not use the Bearer scheme; send "
            "`Authorization: Bearer <token>`"
        )
    if len(credentials) > MAX_TOKEN_LENGTH:
        raise InvalidTokenError(
            f"the token is longer than {MAX_TOKEN_LENGTH} characters", cause="oversized"
        )
    if not separator or not _B64TOKEN.fullmatch(credentials):
        raise InvalidRequestError(
            "malformed Authorization header; expected `Bearer <token>` with one token of "
            "base64url characters and a single space",
            cause="header",
        )
    return credentials
