"""What the `sso` and `adapter` targets share: their options (issuer, audience, clients) and
access tokens got by client credentials with the adapter's own token source.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import jwt

from adapter.auth import ClientCredentialsToken
from adapter.auth.errors import ClientCredentialsError, ProviderError
from adapter.clients.http import tls_verification
from conformance.provider import CannotRun

# The adapter's audience (OIDC_AUDIENCE in deploy/ and docs/auth.md).
DEFAULT_AUDIENCE: Final = "hf-adapter"
# Keycloak's default is 300 s; an hour is the longest a stolen token should stay usable.
DEFAULT_MAX_TOKEN_LIFETIME_S: Final = 3600
TOKEN_HTTP_TIMEOUT_S: Final = 15.0
CLIENTS_ENV: Final = "HF_CONFORMANCE_CLIENTS"
LOCAL_HOSTS: Final = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True, slots=True)
class OidcClient:
    client_id: str
    secret: str


@dataclass(frozen=True, slots=True)
class OidcOptions:
    """The realm (issuer), the audience the adapter requires, the clients to get tokens for."""

    issuer: str | None = None
    audience: str = DEFAULT_AUDIENCE
    clients: tuple[OidcClient, ...] = ()
    expected_scopes: tuple[str, ...] = ()
    max_token_lifetime_s: int = DEFAULT_MAX_TOKEN_LIFETIME_S
    allow_http: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "sso and adapter",
        "--client-id/--client-secret name one client; --client ID:SECRET adds more "
        "(HF_CONFORMANCE_CLIENTS: ID:SECRET ID:SECRET ...)",
    )
    group.add_argument(
        "--issuer", metavar="URL", help="the realm's issuer (adapter; sso: --base-url)"
    )
    group.add_argument(
        "--audience",
        default=os.environ.get("HF_CONFORMANCE_AUDIENCE", DEFAULT_AUDIENCE),
        help=f"the audience the adapter requires (default {DEFAULT_AUDIENCE})",
    )
    group.add_argument(
        "--client",
        dest="clients",
        action="append",
        type=_client,
        default=[],
        metavar="ID:SECRET",
        help="a client of the realm (repeat it: the adapter's scope matrix needs several)",
    )
    group.add_argument(
        "--expect-scopes",
        nargs="+",
        default=[],
        metavar="SCOPE",
        help="sso: scopes every client's token must carry",
    )
    group.add_argument(
        "--max-token-lifetime",
        type=int,
        default=DEFAULT_MAX_TOKEN_LIFETIME_S,
        metavar="S",
        help="sso: longest acceptable access-token lifetime in seconds "
        f"(default {DEFAULT_MAX_TOKEN_LIFETIME_S})",
    )
    group.add_argument(
        "--allow-http", action="store_true", help="sso: accept http URLs (development realms)"
    )


def _client(text: str) -> OidcClient:
    client_id, separator, secret = text.partition(":")
    if not separator or not client_id or not secret:
        raise argparse.ArgumentTypeError(f"{text.split(':')[0]!r}: give a client as ID:SECRET")
    return OidcClient(client_id, secret)


def options_from(args: argparse.Namespace) -> OidcOptions:
    clients = []
    if args.client_id and args.client_secret:
        clients.append(OidcClient(args.client_id, args.client_secret))
    clients += args.clients
    if not args.clients:
        try:
            clients += [_client(item) for item in os.environ.get(CLIENTS_ENV, "").split()]
        except argparse.ArgumentTypeError as exc:
            raise CannotRun(f"{CLIENTS_ENV}: {exc}") from None
    # The issuer is compared character for character (a trailing slash matters): kept as given.
    issuer = args.issuer or (args.base_url if args.system == "sso" else None)
    return OidcOptions(
        issuer=issuer,
        audience=args.audience,
        clients=tuple(dict.fromkeys(clients)),
        expected_scopes=tuple(args.expect_scopes),
        max_token_lifetime_s=args.max_token_lifetime,
        allow_http=args.allow_http,
    )


def is_local(url: str) -> bool:
    """A loopback host, where development realms run over plain http."""
    host = urlsplit(url).hostname or ""
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_source(
    issuer: str, client: OidcClient, *, verify: bool, scopes: tuple[str, ...] = ()
) -> ClientCredentialsToken:
    """The adapter's own client-credentials token source (discovery, then the token endpoint)."""
    http = httpx.Client(
        timeout=TOKEN_HTTP_TIMEOUT_S, follow_redirects=False, verify=tls_verification(verify)
    )
    return ClientCredentialsToken.for_issuer(
        issuer, client_id=client.client_id, client_secret=client.secret, scopes=scopes, http=http
    )


def first_token(source: ClientCredentialsToken, issuer: str) -> str:
    """A token from `source`, or `CannotRun` saying why the realm would not give one."""
    try:
        return source.token()
    except ClientCredentialsError as exc:
        if exc.reason == "client_credentials_refused":
            raise CannotRun(f"credentials refused: {exc.message}") from None
        raise CannotRun(f"no token from {issuer}: {exc.message}") from None
    except ProviderError as exc:
        raise CannotRun(f"cannot use the issuer {issuer}: {exc.message}") from None


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JOSE header and claims of a JWT, unverified (to describe it; never to trust it)."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return header, claims


class BearerTokenAuth:
    """`Auth` for the adapter's API: the client's token in `Authorization: Bearer`."""

    def __init__(self, source: ClientCredentialsToken) -> None:
        self.source = source

    def headers(self, client: httpx.Client) -> dict[str, str]:
        return self.source.authorization_header()

    def wrong_headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer hf-conformance-not-a-token-0000"}


class NoAuth:
    """`Auth` for requests that carry no credentials (the SSO's public documents)."""

    def headers(self, client: httpx.Client) -> dict[str, str]:
        return {}

    def wrong_headers(self) -> dict[str, str]:
        return {}
