"""What both HTTP clients share: timeouts, headers, the JSON exchange and cursor paging."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from adapter.clients.contract import OpenApiContract, decode_json
from adapter.clients.errors import ContractViolation
from adapter.clients.policy import ResilientCaller
from adapter.clients.tracing import active_or_new_trace_id, traceparent

if TYPE_CHECKING:
    from adapter.settings import Settings

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 500

EventHooks = Mapping[str, Sequence[Callable[..., Any]]]
Params = Mapping[str, str | int]


@cache
def user_agent() -> str:
    try:
        version = importlib.metadata.version("healthforce-integration")
    except importlib.metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"hf-adapter/{version}"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Connect and read timeouts; writes get the read timeout, pool waits the connect one."""

    connect_s: float = 5.0
    read_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        return cls(settings.http_connect_timeout_s, settings.http_read_timeout_s)

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_s, read=self.read_s, write=self.read_s, pool=self.connect_s
        )


def verify_from(ca_bundle: Path | str | None) -> str | bool:
    """TLS verification for httpx: on by default, against `ca_bundle` when one is configured."""
    return str(ca_bundle) if ca_bundle is not None else True


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a cursor-paginated list. Store `next_cursor` as the checkpoint once the
    items are committed; passing it back as `cursor` resumes right after this page."""

    items: tuple[dict[str, Any], ...]
    next_cursor: str | None
    cursor: str | None = None  # the cursor this page was fetched with (None: the first page)

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def format_instant(value: datetime | str) -> str:
    """An `updated_since` value: RFC 3339 in UTC with microseconds, as the systems write it."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("updated_since must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_page_size(page_size: int) -> int:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
    return page_size


class JsonExchange:
    """Sends JSON requests to one system through its `ResilientCaller` and checks the answers
    against its contract."""

    def __init__(
        self,
        system: str,
        base_url: str,
        contract: OpenApiContract,
        caller: ResilientCaller,
        *,
        timeouts: Timeouts,
        verify: str | bool,
        transport: httpx.BaseTransport | None,
        event_hooks: EventHooks | None,
    ) -> None:
        self.system = system
        self.contract = contract
        self.caller = caller
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeouts.to_httpx(),
            verify=verify,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": user_agent(), "Accept": "application/json"},
            event_hooks={name: list(hooks) for name, hooks in (event_hooks or {}).items()},
        )

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Params | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
    ) -> Any:
        """The validated JSON body of the 2xx answer, or an error from `errors`."""
        trace_id = active_or_new_trace_id()

        def send() -> httpx.Response:
            # Built per attempt: each attempt is its own span of the same trace.
            request = self.http.build_request(
                method,
                path,
                headers={**(headers or {}), "traceparent": traceparent(trace_id)},
                params=dict(params) if params else None,
                json=json,
                data=data,
            )
            return self.http.send(request)

        response = self.caller.call(operation, send)
        body = decode_json(self.system, operation, response)
        self.contract.validate(operation, response.status_code, body)
        return body

    def page(self, operation: str, body: Any, cursor: str | None) -> Page:
        """A `Page` from a validated list answer (`{data, page}`, SISDMK's in its envelope)."""
        items, page = body["data"], body["page"]
        next_cursor = page.get("next_cursor")
        if bool(page.get("has_more")) != (next_cursor is not None):
            raise ContractViolation(
                "page.has_more disagrees with page.next_cursor",
                system=self.system,
                operation=operation,
            )
        if next_cursor is not None and next_cursor == cursor:
            raise ContractViolation(
                "page.next_cursor repeats the cursor sent (paging would never end)",
                system=self.system,
                operation=operation,
            )
        return Page(items=tuple(items), next_cursor=next_cursor, cursor=cursor)

    def pages(
        self,
        operation: str,
        path: str,
        *,
        params: Params,
        cursor: str | None,
        call: Callable[..., Any] | None = None,
    ) -> Iterator[Page]:
        """Walk a list from `cursor` (the start when ``None``) to its end, page by page.

        `call` replaces `self.call` (SISDMK wraps it to add its bearer token).
        """
        send = call if call is not None else self.call
        while True:
            page_params = {**params, **({"cursor": cursor} if cursor is not None else {})}
            body = send(operation, "GET", path, params=page_params)
            page = self.page(operation, body, cursor)
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
