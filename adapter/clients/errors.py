"""Errors the external-system clients raise, one class per thing a caller can do about it.

Messages name the system, the operationId and the HTTP status, never a URL with an identifier,
a credential or a personal value from a request or response.
"""

from __future__ import annotations

from adapter.errors import AdapterError


class UpstreamError(AdapterError):
    """Root of the errors about a call to an external system (KKI, SISDMK)."""

    default_reason = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        system: str,
        operation: str,
        status: int | None = None,
        retry_after_s: float | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(f"{system} {operation}: {message}", reason=reason)
        self.system = system
        self.operation = operation
        self.status = status
        # What the system's `Retry-After` asked for, in seconds (429 and 503 may carry one).
        self.retry_after_s = retry_after_s


class UpstreamUnavailable(UpstreamError):
    """Connection refused or reset, a timeout, a cut-off body or a 5xx, after retries."""

    default_reason = "upstream_unavailable"


class CircuitOpen(UpstreamUnavailable):
    """The system's circuit breaker is open: the call was not attempted.

    A subclass of `UpstreamUnavailable`, so a caller that serves the local copy when the system
    is down does the same when the breaker spares it the wait.
    """

    default_reason = "circuit_open"

    def __init__(self, *, system: str, operation: str, retry_in_s: float) -> None:
        super().__init__(
            f"circuit open after repeated failures; next trial in {retry_in_s:.1f} s",
            system=system,
            operation=operation,
        )
        self.retry_in_s = retry_in_s


class UntrustedCertificate(UpstreamUnavailable):
    """The system's TLS certificate does not verify against ``CA_BUNDLE`` (or, unset, certifi's
    bundle): a wrong bundle or someone in the way. Not retried; the connection is never made.

    A subclass of `UpstreamUnavailable`: a look-up still serves the stored copy (stale)."""


class UpstreamRateLimited(UpstreamError):
    """`429` after retries, or a `Retry-After` longer than the policy is willing to wait."""

    default_reason = "upstream_rate_limited"

    def __init__(
        self, message: str, *, system: str, operation: str, retry_after_s: float | None
    ) -> None:
        super().__init__(
            message, system=system, operation=operation, status=429, retry_after_s=retry_after_s
        )


class UpstreamRejected(UpstreamError):
    """A 4xx other than 401, 404 and 429: the request was wrong, i.e. a bug on our side."""

    default_reason = "upstream_rejected"


class NotFound(UpstreamError):
    """`404`: the system holds no such record."""

    default_reason = "not_found"


class AuthenticationFailed(UpstreamError):
    """`401`: the credentials were refused (for SISDMK, even with a freshly issued token)."""

    default_reason = "authentication_failed"


class ContractViolation(UpstreamError):
    """The answer does not match the OpenAPI contract, or is not parseable JSON."""

    default_reason = "contract_violation"
