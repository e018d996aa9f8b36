"""What both HTTP clients share: timeouts, headers, the JSON exchange and cursor paging."""

from __future__ import annotations

import importlib.metadata
import os
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from adapter.clients.contract import OpenApiContract, decode_json
from adapter.clients.errors import ContractViolation
from adapter.clients.policy import ResilientCaller
from adapter.observability.tracing import SpanKind, inject, start_span

if TYPE_CHECKING:
    from adapter.settings import Settings

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 500
# Empty pages in a row, each with a next cursor, after which a list walk is refused: a source
# handing out fresh cursors over nothing would keep a sync walking for ever.
MAX_EMPTY_PAGES: Final = 100
# One answer may take this many read timeouts to arrive in full (`Timeouts.answer_s`): 2 min by
# default, for pages of at most 500 records (about 1 MB).
ANSWER_READ_TIMEOUTS: Final = 4
# A page of 500 records is ~1.5 MB; anything near this limit is a broken or hostile answer.
MAX_RESPONSE_BYTES: Final = 32 * 1024 * 1024

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

    @property
    def answer_s(self) -> float:
        """How long one answer may take to arrive in full. The read timeout bounds each wait
        for bytes, not the answer: a server dripping a byte at a time held a thread for ever."""
        return ANSWER_READ_TIMEOUTS * self.read_s


def verify_from(ca_bundle: Path | str | None) -> ssl.SSLContext:
    """TLS verification for httpx: on by default, against `ca_bundle` when one is configured."""
    return tls_context(str(ca_bundle) if ca_bundle is not None else None)


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The process's verifying TLS context for `ca_bundle`, shared by every client built with
    it: httpx otherwise builds one for each client, loading the whole bundle (about 40 ms of
    CPU), even for a client that only ever speaks plain http. `None`: httpx's default
    (certifi's bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set); a directory is read
    as a hashed certificate directory, a file as a bundle, as httpx reads them. A bundle
    changed in place (a renewed, mounted secret) is loaded again by the next call. Shared
    between clients and threads: nothing here changes it, and httpcore sets on it, for each new
    TLS connection, the same ALPN list every time (no client here speaks HTTP/2) — the same
    sharing a single httpx client used from several threads has."""
    source = ca_bundle or os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")
    return _tls_context(ca_bundle, _file_version(source))


def _file_version(path: str | None) -> tuple[str, int, int] | None:
    if path is None:
        return None
    try:
        status = os.stat(path)
    except OSError:
        return (path, 0, 0)  # let the context's own load say what is wrong with it
    return (path, status.st_mtime_ns, status.st_size)


@lru_cache(maxsize=8)
def _tls_context(ca_bundle: str | None, version: tuple[str, int, int] | None) -> ssl.SSLContext:
    # `version` (the bundle file's path, mtime and size) is only part of the cache key.
    if ca_bundle is None:
        return httpx.create_ssl_context()
    if os.path.isdir(ca_bundle):
        return ssl.create_default_context(capath=ca_bundle)
    return ssl.create_default_context(cafile=ca_bundle)


def tls_verification(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    """`verify` as httpx takes it, with ``True`` and a CA bundle's path turned into the
    process's shared context (`tls_context`)."""
    if verify is True:
        return tls_context(None)
    if isinstance(verify, str):
        return tls_context(verify)
    return verify


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """A record of a page that breaks the contract: set aside with the reason, never used."""

    index: int
    reason: str  # names the field and the rule, never the value
    item: Any  # the record as received, for an encrypted quarantine copy


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a cursor-paginated list. Store `next_cursor` as the checkpoint once the
    items are committed; passing it back as `cursor` resumes right after this page.

    `items` are the records that match the contract; `rejected` those that don't."""

    items: tuple[dict[str, Any], ...]
    next_cursor: str | None
    cursor: str | None = None  # the cursor this page was fetched with (None: the first page)
    rejected: tuple[RejectedItem, ...] = ()

    @property
    def received(self) -> int:
        return len(self.items) + len(self.rejected)

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
        verify: ssl.SSLContext | str | bool,
        transport: httpx.BaseTransport | None,
        event_hooks: EventHooks | None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.system = system
        self.max_response_bytes = max_response_bytes
        self.answer_s = timeouts.answer_s
        self.contract = contract
        self.caller = caller
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeouts.to_httpx(),
            verify=tls_verification(verify),
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
        items_unchecked: bool = False,
    ) -> Any:
        """The validated JSON body of the 2xx answer, or an error from `errors`.

        With `items_unchecked` (list answers) the records under ``data`` are left for the
        caller to check one by one; everything around them is validated as usual.
        """

        def send() -> httpx.Response:
            # Each attempt is a client span of the current trace, its `traceparent` sent along.
            with start_span(f"{self.system} {operation}", kind=SpanKind.CLIENT):
                request = self.http.build_request(
                    method,
                    path,
                    headers=inject({**(headers or {})}),
                    params=dict(params) if params else None,
                    json=json,
                    data=data,
                )
                return self._bounded(operation, self.http.send(request, stream=True))

        response = self.caller.call(operation, send)
        # JSON under another label (text/plain, text/html from a proxy) is refused, not guessed.
        self.contract.check_media_type(
            operation, response.status_code, response.headers.get("Content-Type")
        )
        body = decode_json(self.system, operation, response)
        if items_unchecked:
            self.contract.validate_envelope(operation, response.status_code, body)
        else:
            self.contract.validate(operation, response.status_code, body)
        return body

    def _bounded(self, operation: str, response: httpx.Response) -> httpx.Response:
        """The response read in full, refused once it passes `max_response_bytes`."""
        limit = self.max_response_bytes
        # From the headers on (the read timeout bounded the wait for them).
        deadline = time.monotonic() + self.answer_s
        try:
            header = response.headers.get("Content-Length")
            declared = int(header) if header is not None and header.isdigit() else None
            if declared is not None and declared > limit:
                raise self._too_large(operation, response.status_code)
            received = bytearray()
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) > limit:
                    raise self._too_large(operation, response.status_code)
                # Bytes as sent (Content-Length counts them compressed), not as decoded.
                whole = declared is not None and response.num_bytes_downloaded >= declared
                if time.monotonic() > deadline and not whole:
                    # A transport timeout: retried, and counted against the breaker.
                    raise httpx.ReadTimeout(
                        f"the answer took longer than {self.answer_s:g} s to arrive",
                        request=response.request,
                    )
        finally:
            response.close()
        headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-encoding"]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=bytes(received),
            request=response.request,
            extensions=response.extensions,
        )

    def _too_large(self, operation: str, status: int) -> ContractViolation:
        return ContractViolation(
            f"{status} response is larger than {self.max_response_bytes:,} bytes; not read",
            system=self.system,
            operation=operation,
            status=status,
        )

    def page(self, operation: str, body: Any, cursor: str | None) -> Page:
        """A `Page` from a list answer whose envelope is valid (`{data, page}`, SISDMK's in its
        envelope); each record is checked on its own and the bad ones set aside."""
        items: list[dict[str, Any]] = []
        rejected: list[RejectedItem] = []
        for index, item in enumerate(body["data"]):
            reason = self.contract.item_error(operation, 200, index, item)
            if reason is None:
                items.append(item)
            else:
                rejected.append(RejectedItem(index, reason, item))
        page = body["page"]
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
        return Page(
            items=tuple(items), next_cursor=next_cursor, cursor=cursor, rejected=tuple(rejected)
        )

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
        seen: set[str] = set()
        empty_in_a_row = 0
        while True:
            page_params = {**params, **({"cursor": cursor} if cursor is not None else {})}
            body = send(operation, "GET", path, params=page_params, items_unchecked=True)
            page = self.page(operation, body, cursor)
            if page.next_cursor is not None and page.next_cursor in seen:
                # A → B → A: the list loops and would never end.
                raise ContractViolation(
                    "page.next_cursor points back to a page already read (paging would never end)",
                    system=self.system,
                    operation=operation,
                )
            empty_in_a_row = 0 if page.items or page.rejected else empty_in_a_row + 1
            if page.next_cursor is not None and empty_in_a_row >= MAX_EMPTY_PAGES:
                # A fresh cursor each time and nothing on the pages: it would never end either.
                raise ContractViolation(
                    f"{empty_in_a_row} empty pages in a row, each saying there is more "
                    "(paging would never end)",
                    system=self.system,
                    operation=operation,
                )
            yield page
            if page.next_cursor is None:
                return
            seen.add(page.next_cursor)
            cursor = page.next_cursor
