"""Why a request's token was refused, or why the adapter could not get one of its own.

`reason` is the RFC 6750 error code the `WWW-Authenticate` challenge carries; `cause` is a finer
slug for logs and metrics (``expired``, ``audience``, ``algorithm`` ...). No message ever holds
the token or a claim value from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from adapter.auth.principal import Principal
from adapter.errors import AdapterError


class AuthError(AdapterError):
    """Root of the errors a protected request can end with; `status` is the HTTP answer."""

    default_reason = "invalid_token"
    status: ClassVar[int] = 401

    def __init__(self, message: str, *, cause: str | None = None, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.cause = cause if cause is not None else self.reason


class MissingTokenError(AuthError):
    """The request carries no Bearer credentials at all (RFC 6750 §3.1: no error code)."""

    default_reason = "missing_token"


class InvalidRequestError(AuthError):
    """The Authorization header, or where the token was sent, breaks RFC 6750 §2."""

    default_reason = "invalid_request"
    status = 400


class InvalidTokenError(AuthError):
    """The token is malformed, forged, expired, meant for someone else, or not an access token.

    `holder`: whose token it is, when only its expiry refused it (its signature verified), for
    the log line; None otherwise.
    """

    default_reason = "invalid_token"
    holder: Principal | None = None


class InsufficientScopeError(AuthError):
    """A valid token whose scopes do not cover what the operation needs."""

    default_reason = "insufficient_scope"
    status = 403

    def __init__(self, required: Sequence[str], missing: Sequence[str]) -> None:
        super().__init__(
            f"this operation needs the scope(s) {' '.join(required)}; "
            f"the token lacks {' '.join(missing)}",
            cause="scope",
        )
        self.required = tuple(required)
        self.missing = tuple(missing)


class KeySetUnavailableError(AuthError):
    """No signing keys have ever been fetched from the SSO: tokens cannot be checked yet."""

    default_reason = "jwks_unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, cause="jwks_unavailable")
        self.retry_after_s = retry_after_s


class ProviderError(AdapterError):
    """The SSO's discovery document, key set or token endpoint could not be used."""

    default_reason = "sso_unavailable"


class ClientCredentialsError(ProviderError):
    """The SSO's token endpoint refused the adapter's own client credentials, or failed."""

    default_reason = "client_credentials_failed"
