"""KKI (Konsil Kesehatan Indonesia): the `KkiClient` port and its HTTP implementation.

Contract: contracts/openapi/kki.yaml. Authentication: the static token in `X-API-Key`.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote

import httpx

from adapter.clients.contract import contract_for
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

SYSTEM: Final = "KKI"
SPEC_FILE: Final = "kki.yaml"


class KkiClient(Protocol):
    """What the adapter needs from KKI. Records are the contract's JSON documents, validated."""

    def iter_registrations(
        self,
        updated_since: datetime | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Iterator[Page]:
        """Pages of registrations in `(updated_at, str_number)` order, from `cursor` if given."""
        ...

    def get_registration(self, str_number: str) -> dict[str, Any]:
        """One registration; `NotFound` when KKI has none with this STR number."""
        ...

    def lookup_by_nik(self, nik: str) -> list[dict[str, Any]]:
        """The registrations of one person; `NotFound` when there are none."""
        ...


class HttpKkiClient:
    """`KkiClient` over HTTP, with the shared retry, breaker and metrics policy."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        timeouts: Timeouts | None = None,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        metrics: ClientMetrics | None = None,
        verify: ssl.SSLContext | str | bool = True,
        transport: httpx.BaseTransport | None = None,
        event_hooks: EventHooks | None = None,
    ) -> None:
        self._api_token = api_token
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

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> HttpKkiClient:
        options: dict[str, Any] = {
            "timeouts": Timeouts.from_settings(settings),
            "verify": verify_from(settings.ca_bundle),
            **overrides,
        }
        return cls(settings.kki_base_url, settings.kki_api_token.get_secret_value(), **options)

    def close(self) -> None:
        self._exchange.close()

    def __enter__(self) -> HttpKkiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        return self._exchange.call(
            operation, method, path, headers={"X-API-Key": self._api_token}, **kwargs
        )

    def iter_registrations(
        self,
        updated_since: datetime | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Iterator[Page]:
        params: dict[str, str | int] = {"limit": check_page_size(page_size)}
        if updated_since is not None:
            params["updated_since"] = format_instant(updated_since)
        return self._exchange.pages(
            "listRegistrations", "/v1/registrations", params=params, cursor=cursor, call=self._call
        )

    def get_registration(self, str_number: str) -> dict[str, Any]:
        body: dict[str, Any] = self._call(
            "getRegistration", "GET", f"/v1/registrations/{quote(str_number, safe='')}"
        )
        return body

    def lookup_by_nik(self, nik: str) -> list[dict[str, Any]]:
        body = self._call(
            "lookupRegistrationsByNik", "POST", "/v1/registrations/lookup", json={"nik": nik}
        )
        items: list[dict[str, Any]] = body["data"]
        return items


__all__ = ["HttpKkiClient", "KkiClient", "Page"]
