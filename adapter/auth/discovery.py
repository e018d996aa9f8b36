"""OpenID Connect discovery: the SSO's metadata from its ``/.well-known/openid-configuration``.

Fetched once, when first needed, and kept: an issuer's endpoints do not move while we run.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

import strict_json
from adapter.auth.errors import ProviderError
from adapter.clients.http import tls_context
from adapter.clients.policy import certificate_refusal
from adapter.observability.tracing import SpanKind, inject, start_span

log = logging.getLogger("adapter.auth")

WELL_KNOWN_PATH: Final = "/.well-known/openid-configuration"
HTTP_TIMEOUT_S: Final = 5.0
# Discovery documents and key sets are a few KiB; anything far larger is not one.
MAX_DOCUMENT_BYTES: Final = 256 * 1024
# The whole answer, however slowly it arrives: the read timeout bounds only the wait for each
# chunk, so a body sent a byte at a time would otherwise hold the fetching thread for ever.
FETCH_DEADLINE_S: Final = 3 * HTTP_TIMEOUT_S


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document the adapter uses."""

    issuer: str
    jwks_uri: str
    token_endpoint: str | None


def fetch_json(
    http: httpx.Client, url: str, *, what: str, deadline_s: float = FETCH_DEADLINE_S
) -> Mapping[str, Any]:
    """GET `url` and return its JSON object; `ProviderError` for anything else, and when the
    whole exchange takes longer than `deadline_s`.

    Redirects are not followed, the body is asked for uncompressed and read up to
    `MAX_DOCUMENT_BYTES` only. The exchange runs on a thread of its own, so the caller gives
    up at the deadline however the server stalls (a status line or headers sent a byte at a
    time). The body's reads stop at the deadline too; a stall before the body ends only with
    the client's read timeouts, so while one such exchange to `url` is still running no other
    is started (one thread and one connection at most, whatever the SSO does).
    """
    with _stalled_guard:
        stalled = _stalled.get(url)
        if stalled is not None and stalled.is_alive():
            raise ProviderError(
                f"{what}: the last request to the SSO is still stalled after its deadline; "
                "not asking again until it ends"
            )
    outcome: Future[Mapping[str, Any]] = Future()
    context = contextvars.copy_context()  # the caller's trace, for the exchange's span

    def exchange() -> None:
        try:
            outcome.set_result(context.run(_fetch_json, http, url, what, deadline_s))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.set_exception(exc)

    thread = threading.Thread(target=exchange, name=f"sso-{what}", daemon=True)
    try:
        thread.start()
        return outcome.result(timeout=deadline_s)
    except FutureTimeout:
        with _stalled_guard:
            _stalled[url] = thread
        raise ProviderError(
            f"{what}: no complete answer within {deadline_s:g} s; the SSO is too slow"
        ) from None
    except (RuntimeError, RecursionError) as exc:  # no thread to be had; JSON nested too deep
        raise ProviderError(f"{what}: the answer could not be read ({type(exc).__name__})") from exc


# Exchanges given up at their deadline and perhaps still running, by URL.
_stalled: dict[str, threading.Thread] = {}
_stalled_guard = threading.Lock()


def _fetch_json(http: httpx.Client, url: str, what: str, deadline_s: float) -> Mapping[str, Any]:
    deadline = time.monotonic() + deadline_s
    headers = inject({"Accept": "application/json", "Accept-Encoding": "identity"})
    try:
        with (
            start_span(f"sso {what}", kind=SpanKind.CLIENT),
            http.stream("GET", url, headers=headers) as response,
        ):
            if response.status_code != 200:
                raise ProviderError(f"{what}: the SSO answered HTTP {response.status_code}")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                raise ProviderError(
                    f"{what}: the SSO sent its answer {encoding}-encoded, though asked for it "
                    "uncompressed"
                )
            body = bytearray()
            for chunk in response.iter_bytes():  # uncompressed: each read is a chunk, checked
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ProviderError(f"{what}: the answer exceeds {MAX_DOCUMENT_BYTES} bytes")
                if time.monotonic() > deadline:  # the caller has given up: stop reading
                    raise ProviderError(f"{what}: the answer took longer than {deadline_s:g} s")
    except httpx.HTTPError as exc:
        refusal = certificate_refusal(exc)
        if refusal is not None:
            raise ProviderError(
                f"{what}: TLS certificate verify failed ({refusal}): the SSO's certificate does "
                "not chain to CA_BUNDLE (or, unset, the default CA bundle)"
            ) from exc
        raise ProviderError(f"{what}: the SSO is unreachable ({type(exc).__name__})") from exc
    try:
        document = strict_json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ProviderError(f"{what}: the answer is not JSON") from exc
    if not isinstance(document, dict):
        raise ProviderError(f"{what}: the answer is not a JSON object")
    return document


def parse_metadata(document: Mapping[str, Any], issuer: str) -> ProviderMetadata:
    """Check the document against `issuer` (OpenID Connect Discovery §4.3) and pick our fields."""
    if document.get("issuer") != issuer:
        # A provider answering for another issuer would have us trust its keys for ours.
        raise ProviderError(
            "OIDC discovery: the document's issuer differs from OIDC_ISSUER; set OIDC_ISSUER to "
            "the exact issuer the SSO announces"
        )
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not _same_security(jwks_uri, issuer):
        raise ProviderError("OIDC discovery: jwks_uri is missing or not an http(s) URL")
    token_endpoint = document.get("token_endpoint")
    if token_endpoint is not None and (
        not isinstance(token_endpoint, str) or not _same_security(token_endpoint, issuer)
    ):
        raise ProviderError("OIDC discovery: token_endpoint is not an http(s) URL")
    return ProviderMetadata(issuer=issuer, jwks_uri=jwks_uri, token_endpoint=token_endpoint)


def _same_security(url: str, issuer: str) -> bool:
    """An http(s) URL, and https whenever the issuer is https."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return False
    return parts.scheme == "https" or urlsplit(issuer).scheme == "http"


class OidcDiscovery:
    """The issuer's metadata, fetched on first use and cached; thread-safe."""

    def __init__(self, issuer: str, *, http: httpx.Client | None = None) -> None:
        self.issuer = issuer
        self._http = http if http is not None else default_http_client()
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None

    @property
    def url(self) -> str:
        return self.issuer.rstrip("/") + WELL_KNOWN_PATH

    def metadata(self) -> ProviderMetadata:
        """The metadata; `ProviderError` if it cannot be fetched (tried again on the next call)."""
        with self._lock:
            if self._metadata is None:
                document = fetch_json(self._http, self.url, what="OIDC discovery")
                self._metadata = parse_metadata(document, self.issuer)
                log.info("OIDC discovery done for %s", self.issuer)
            return self._metadata


def default_http_client() -> httpx.Client:
    return httpx.Client(timeout=HTTP_TIMEOUT_S, follow_redirects=False, verify=tls_context(None))
