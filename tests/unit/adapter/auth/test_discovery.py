"""OIDC discovery: the document must be for our issuer, and its URLs must be usable."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from typing import Any

import httpx
import pytest

from adapter.auth import discovery
from adapter.auth.discovery import MAX_DOCUMENT_BYTES, OidcDiscovery, parse_metadata
from adapter.auth.errors import ProviderError
from adapter.auth.jwks import HttpJwksFetcher, JwksCache
from tests.unit.adapter.auth.auth_fakes import ISSUER, FakeClock, jwks, rsa_key

JWKS_URI = f"{ISSUER}/protocol/openid-connect/certs"


def document(**changes: Any) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "jwks_uri": JWKS_URI,
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        **changes,
    }


def http_serving(routes: dict[str, httpx.Response]) -> tuple[httpx.Client, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return routes.get(str(request.url), httpx.Response(404))

    return httpx.Client(transport=httpx.MockTransport(handle)), seen


def test_discovery_then_jwks_over_http() -> None:
    http, seen = http_serving(
        {
            f"{ISSUER}/.well-known/openid-configuration": httpx.Response(200, json=document()),
            JWKS_URI: httpx.Response(200, json=jwks(rsa_key("rsa-1"))),
        }
    )
    discovery = OidcDiscovery(ISSUER, http=http)
    cache = JwksCache(HttpJwksFetcher.from_discovery(discovery, http=http), clock=FakeClock())
    assert cache.refresh()
    assert cache.key_ids == {"rsa-1"}
    assert discovery.metadata().token_endpoint == f"{ISSUER}/protocol/openid-connect/token"
    assert seen == [f"{ISSUER}/.well-known/openid-configuration", JWKS_URI]


@pytest.mark.parametrize(
    "issuer",
    [
        "https://sso.example.go.id/realms/other",
        f"{ISSUER}/",
        "https://evil.example/realms/healthforce",
        None,
    ],
)
def test_document_for_another_issuer_refused(issuer: str | None) -> None:
    with pytest.raises(ProviderError, match="issuer"):
        parse_metadata(document(issuer=issuer), ISSUER)


@pytest.mark.parametrize(
    "jwks_uri", [None, "", "file:///etc/passwd", "http://sso.example.go.id/certs", 7]
)
def test_unusable_jwks_uri_refused(jwks_uri: object) -> None:
    with pytest.raises(ProviderError, match="jwks_uri"):
        parse_metadata(document(jwks_uri=jwks_uri), ISSUER)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500),
        httpx.Response(302, headers={"Location": "https://evil.example/"}),
        httpx.Response(200, content=b"<html>"),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, content=b" " * (MAX_DOCUMENT_BYTES + 1)),
        # Python's parser takes it; JSON has no NaN (the key set's parser would meet it).
        httpx.Response(200, content=json.dumps(document(max_age=float("nan"))).encode()),
    ],
    ids=["500", "redirect", "html", "array", "oversized", "NaN"],
)
def test_bad_discovery_answer_is_provider_error(response: httpx.Response) -> None:
    http, _ = http_serving({f"{ISSUER}/.well-known/openid-configuration": response})
    with pytest.raises(ProviderError):
        OidcDiscovery(ISSUER, http=http).metadata()


def test_unreachable_provider_is_provider_error_and_retried() -> None:
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, content=json.dumps(document()).encode())

    discovery = OidcDiscovery(ISSUER, http=httpx.Client(transport=httpx.MockTransport(handle)))
    with pytest.raises(ProviderError, match="unreachable"):
        discovery.metadata()
    assert discovery.metadata().jwks_uri == JWKS_URI
    discovery.metadata()
    assert calls == 2


def test_an_sso_certificate_outside_the_trust_is_named_not_called_unreachable() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        root = ssl.SSLCertVerificationError(1, "certificate verify failed")
        root.verify_message = "unable to get local issuer certificate"
        error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]", request=request)
        raise error from root

    discovery = OidcDiscovery(ISSUER, http=httpx.Client(transport=httpx.MockTransport(handle)))
    with pytest.raises(ProviderError) as info:
        discovery.metadata()
    assert "TLS certificate verify failed (unable to get local issuer certificate)" in str(
        info.value
    )
    assert "CA_BUNDLE" in str(info.value)


def test_a_key_set_sent_a_byte_at_a_time_is_given_up_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The read timeout bounds each chunk's wait only: a drip-fed body held the fetching thread
    (and, before the cache stopped waiting, every thread with an unknown kid) for ever."""
    clock = FakeClock()
    monkeypatch.setattr(discovery.time, "monotonic", clock)
    body = json.dumps(jwks(rsa_key())).encode()
    sent: list[int] = []

    def drip() -> Any:
        for byte in body:
            clock.advance(1.0)  # each byte within any read timeout
            sent.append(byte)
            yield bytes([byte])

    http = httpx.Client(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=drip()))
    )
    with pytest.raises(ProviderError, match="took longer than"):
        HttpJwksFetcher(JWKS_URI, http=http)()
    assert len(sent) < len(body)


def test_an_sso_that_never_finishes_its_headers_is_given_up_at_the_deadline() -> None:
    """The read timeout bounds each read only, and the body's deadline is checked between
    chunks: headers sent a byte at a time (h11 takes 16 KiB of them) kept the fetch, and the
    key cache's lock, for hours."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"HTTP/1.1 200 OK\\r\\n")
            while not stop.wait(0.2):  # a header byte now and then, never the end of them
                connection.sendall(b"X")

    server = threading.Thread(target=drip, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/certs"
    http = httpx.Client(timeout=5.0)
    try:
        with pytest.raises(ProviderError, match=r"no complete answer within 0\.5 s"):
            discovery.fetch_json(http, url, what="JWKS", deadline_s=0.5)
        # The given-up exchange still runs (its reads keep getting a byte): none other starts.
        with pytest.raises(ProviderError, match="still stalled after its deadline"):
            discovery.fetch_json(http, url, what="JWKS", deadline_s=0.5)
    finally:
        stop.set()
        server.join(timeout=10)
        listener.close()
    stalled = discovery._stalled[url]
    stalled.join(timeout=30)  # ends once the server hangs up
    assert not stalled.is_alive()
    with pytest.raises(ProviderError, match="unreachable"):  # asked again: nobody listens
        discovery.fetch_json(http, url, what="JWKS", deadline_s=0.5)


def test_a_compressed_key_set_is_refused_as_it_was_asked_for_uncompressed() -> None:
    """A gzip body whose blocks decode to nothing never reached the deadline's check."""
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers["accept-encoding"])
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"\x1f\x8b")

    http = httpx.Client(transport=httpx.MockTransport(handle))
    with pytest.raises(ProviderError, match="gzip-encoded, though asked for it uncompressed"):
        HttpJwksFetcher(JWKS_URI, http=http)()
    assert asked == ["identity"]
