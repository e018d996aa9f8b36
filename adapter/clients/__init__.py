"""Clients for the external systems (KKI, SISDMK), with all call policy in `policy`.

Each system has a `Protocol` port and an HTTP implementation; every error they raise is one of
`adapter.clients.errors`, rooted in `AdapterError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapter.clients.errors import (
    AuthenticationFailed,
    CircuitOpen,
    ContractViolation,
    NotFound,
    UntrustedCertificate,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from adapter.clients.http import Page, RejectedItem, Timeouts
from adapter.clients.kki import HttpKkiClient, KkiClient
from adapter.clients.policy import (
    ONE_QUICK_RETRY,
    BreakerState,
    CircuitBreaker,
    ClientMetrics,
    RetryPolicy,
    disable_retries,
)
from adapter.clients.sisdmk import HttpSisdmkClient, SisdmkClient

if TYPE_CHECKING:
    from adapter.settings import Settings


def client_from_settings(
    system: str, settings: Settings, *, metrics: ClientMetrics | None = None
) -> HttpKkiClient | HttpSisdmkClient:
    """The HTTP client of `system` (``kki`` or ``sisdmk``) as the settings describe it; its
    metrics in the default registry unless `metrics` are given."""
    if system == "kki":
        return HttpKkiClient.from_settings(settings, metrics=metrics)
    if system == "sisdmk":
        return HttpSisdmkClient.from_settings(settings, metrics=metrics)
    raise ValueError("system must be kki or sisdmk")


__all__ = [
    "ONE_QUICK_RETRY",
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
    "UntrustedCertificate",
    "UpstreamError",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "client_from_settings",
    "disable_retries",
]
