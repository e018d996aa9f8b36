"""SISDMK (Kemenkes): the `SisdmkClient` port and its HTTP implementation.

Contract: contracts/openapi/sisdmk.yaml. Authentication: a client-credentials bearer token,
cached until shortly before it expires and fetched again once when a call answers `401`.
Answers come in an envelope `{status, message, data[, page]}`; the client returns `data`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote

import httpx

from adapter.auth.token_cache import AccessTokenCache
from adapter.clients.contract import contract_for
from adapter.clients.errors import AuthenticationFailed, ContractViolation
from adapter.clients.http import (
    DEFAULT_PAGE_SIZE,
    EventHooks,
    JsonExchange,
    Page,
    Timeouts,
    check_page_size,
    format_instant,
    verify_from,
)
from adapter.clients.policy import CircuitBreaker, ClientMetrics, ResilientCaller, RetryPolicy

if TYPE_CHECKING:
    from adapter.settings import Settings

SYSTEM: Final = "SISDMK"
SPEC_FILE: Final = "sisdmk.yaml"
TOKEN_OPERATION: Final = "issueAccessToken"  # noqa: S105 - an operationId
# Renew a token this long before SISDMK says it expires (its contract asks for 60 s).
TOKEN_EXPIRY_MARGIN_S: Final = 60.0


class SisdmkClient(Protocol):
    """What the adapter needs from SISDMK. Records are the envelope's `data`, validated."""

    def iter_health_workers(
        self,
        updated_since: datetime | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Iterator[Page]:
        """Pages of health workers in `(updated_at, worker_id)` order, from `cursor` if given."""
        ...

    def get_health_worker(self, worker_id: str) -> dict[str, Any]:
        """One health worker; `NotFound` when SISDMK has none with this id."""
        ...

    def lookup_by_nik(self, nik: str) -> dict[str, Any]:
        """The health worker with this NIK; `NotFound` when there is none."""
        ...

    def iter_facilities(
        self,
        updated_since: datetime | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Iterator[Page]:
        """Pages of the facility register in `(updated_at, code)` order."""
        ...


class HttpSisdmkClient:
    """`SisdmkClient` over HTTP, with the shared retry, breaker and metrics policy."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeouts: Timeouts | None = None,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        metrics: ClientMetrics | None = None,
        verify: ssl.SSLContext | str | bool = True,
        transport: httpx.BaseTransport | None = None,
        event_hooks: EventHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self.breaker = breaker if breaker is not None else CircuitBreaker(SYSTEM)
        caller = ResilientCaller(SYSTEM, policy=policy, breaker=self.breaker, metrics=metrics)
        self._exchange = JsonExchange(
            SYSTEM,
            base_url,
            contract_for(SYSTEM, SPEC_FILE),
            caller,
            timeouts=timeouts if timeouts is not None else Timeouts(),
            verify=verify,
            transport=transport,
            event_hooks=event_hooks,
        )
        self._tokens = AccessTokenCache(
            self._issue_token, renew_before_s=TOKEN_EXPIRY_MARGIN_S, clock=clock
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> HttpSisdmkClient:
        options: dict[str, Any] = {
            "timeouts": Timeouts.from_settings(settings),
            "verify": verify_from(settings.ca_bundle),
            **overrides,
        }
        return cls(
            settings.sisdmk_base_url,
            settings.sisdmk_client_id,
            settings.sisdmk_client_secret.get_secret_value(),
            **options,
        )

    def close(self) -> None:
        self._exchange.close()

    def __enter__(self) -> HttpSisdmkClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _issue_token(self) -> tuple[str, float]:
        body = self._exchange.call(
            TOKEN_OPERATION,
            "POST",
            "/oauth2/v1/accesstoken",
            params={"grant_type": "client_credentials"},
            data={"client_id": self._client_id, "client_secret": self._client_secret},
        )
        expires_in = str(body["expires_in"]).strip()
        # A string of digits, per the contract (ASCII: "²".isdigit() is true too); a huge one
        # reads as infinity, which the token cache caps at a day.
        if not (expires_in.isascii() and expires_in.isdigit()):
            raise ContractViolation(
                "200 response field expires_in is not a whole number of seconds",
                system=SYSTEM,
                operation=TOKEN_OPERATION,
                status=200,
            )
        return str(body["access_token"]), float(expires_in)

    def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        token = self._tokens.get()
        try:
            return self._exchange.call(operation, method, path, headers=_bearer(token), **kwargs)
        except AuthenticationFailed:
            # Revoked or expired early (clock skew, a restarted gateway): one new token, once.
            self._tokens.invalidate(token)
        token = self._tokens.get()
        return self._exchange.call(operation, method, path, headers=_bearer(token), **kwargs)

    def _pages(
        self,
        operation: str,
        path: str,
        updated_since: datetime | str | None,
        page_size: int,
        cursor: str | None,
    ) -> Iterator[Page]:
        params: dict[str, str | int] = {"limit": check_page_size(page_size)}
        if updated_since is not None:
            params["updated_since"] = format_instant(updated_since)
        return self._exchange.pages(operation, path, params=params, cursor=cursor, call=self._call)

    def iter_health_workers(
        self,
        updated_since: datetime | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Iterator[Page]:
        return self._pages(
            "listHealthWorkers", "/v1/health-workers", updated_since, page_size, cursor
        )

    def iter_facilities(
        self,
        updated_since: datetime | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Iterator[Page]:
        return self._pages("listFacilities", "/v1/facilities", updated_since, page_size, cursor)

    def get_health_worker(self, worker_id: str) -> dict[str, Any]:
        body = self._call(
            "getHealthWorker", "GET", f"/v1/health-workers/{quote(worker_id, safe='')}"
        )
        data: dict[str, Any] = body["data"]
        return data

    def lookup_by_nik(self, nik: str) -> dict[str, Any]:
        body = self._call(
            "lookupHealthWorkerByNik", "POST", "/v1/health-workers/lookup", json={"nik": nik}
        )
        data: dict[str, Any] = body["data"]
        return data


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


__all__ = ["HttpSisdmkClient", "SisdmkClient"]
