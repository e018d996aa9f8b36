"""Clients for the external systems (KKI, SISDMK), with all call policy in `policy`.

Each system has a `Protocol` port and an HTTP implementation; every error they raise is one of
`adapter.clients.errors`, rooted in `AdapterError`.
"""

from adapter.clients.errors import (
    AuthenticationFailed,
    CircuitOpen,
    ContractViolation,
    NotFound,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from adapter.clients.http import Page, RejectedItem, Timeouts
from adapter.clients.kki import HttpKkiClient, KkiClient
from adapter.clients.policy import (
    BreakerState,
    CircuitBreaker,
    ClientMetrics,
    RetryPolicy,
    disable_retries,
)
from adapter.clients.sisdmk import HttpSisdmkClient, SisdmkClient

__all__ = [
    "AuthenticationFailed",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "ClientMetrics",
    "ContractViolation",
    "HttpKkiClient",
    "HttpSisdmkClient",
    "KkiClient",
    "NotFound",
    "Page",
    "RejectedItem",
    "RetryPolicy",
    "SisdmkClient",
    "Timeouts",
    "UpstreamError",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "disable_retries",
]
