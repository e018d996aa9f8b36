"""The test OpenID Connect provider (tools/node/test-idp.mjs) as a process, and real tokens from it.

It is configured from the Keycloak realm export, so client ids, secrets, scopes and audiences
here are the realm's. `IdpProcess.token(...)` gets a token over HTTP with client credentials.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from harness.processes import ManagedProcess, free_port, shared_verify

REPO = Path(__file__).resolve().parents[1]
NODE_TOOLS = REPO / "tools" / "node"
SCRIPT = NODE_TOOLS / "test-idp.mjs"
REALM_EXPORT = REPO / "deploy" / "keycloak" / "healthforce-realm.json"
# The test provider's resource indicators (a test-only knob; see test-idp.mjs).
RESOURCE_PREFIX = "urn:healthforce:audience:"
OIDC_PATH = "/protocol/openid-connect"
START_TIMEOUT_S = 30.0


class IdpUnavailable(RuntimeError):
    """Node.js or the oidc-provider package is missing: the test provider cannot run."""


class TokenRequestFailed(RuntimeError):
    """The provider refused a token request; the message has its status and error code."""


@dataclass(frozen=True)
class RealmClient:
    """A client of the realm export that can get tokens by client credentials."""

    client_id: str
    secret: str
    default_scopes: tuple[str, ...]
    audiences: tuple[str, ...]


def load_realm(realm_export: Path = REALM_EXPORT) -> dict[str, Any]:
    realm: dict[str, Any] = json.loads(realm_export.read_text(encoding="utf-8"))
    return realm


def realm_clients(realm_export: Path = REALM_EXPORT) -> dict[str, RealmClient]:
    """The confidential service-account clients of the realm, by client id."""
    realm = load_realm(realm_export)
    scopes = {scope["name"]: scope for scope in realm.get("clientScopes", [])}
    in_token = {
        name
        for name, scope in scopes.items()
        if scope.get("attributes", {}).get("include.in.token.scope") == "true"
    }
    clients = {}
    for client in realm.get("clients", []):
        if not client.get("serviceAccountsEnabled") or client.get("bearerOnly"):
            continue
        defaults = client.get("defaultClientScopes", [])
        mappers = [m for name in defaults for m in scopes[name].get("protocolMappers", [])]
        mappers += client.get("protocolMappers", [])
        audiences = [
            m["config"]["included.client.audience"]
            for m in mappers
            if m.get("protocolMapper") == "oidc-audience-mapper"
        ]
        clients[client["clientId"]] = RealmClient(
            client_id=client["clientId"],
            secret=client["secret"],
            default_scopes=tuple(name for name in defaults if name in in_token),
            audiences=tuple(audiences),
        )
    return clients


def node_command() -> list[str]:
    """`node` and the provider script; `IdpUnavailable` with what to do if either is missing."""
    node = shutil.which("node")
    if node is None:
        raise IdpUnavailable(
            "Node.js 20+ is needed for the test OpenID Connect provider (tools/node/test-idp.mjs) "
            "and `node` is not on PATH; install Node.js, then run ./scripts/bootstrap.sh"
        )
    if not (NODE_TOOLS / "node_modules" / "oidc-provider").is_dir():
        raise IdpUnavailable(
            "tools/node/node_modules/oidc-provider is missing; run ./scripts/bootstrap.sh "
            "(npm ci in tools/node)"
        )
    return [node, str(SCRIPT)]


def provider_config(realm_export: Path = REALM_EXPORT) -> dict[str, Any]:
    """What the test provider derives from the realm export (its ``--print-config``)."""
    completed = subprocess.run(  # noqa: S603 - argv built here
        [*node_command(), "--print-config", "--realm-export", str(realm_export)],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    config: dict[str, Any] = json.loads(completed.stdout)
    return config


def generate_signing_keys(
    *, rsa_kids: Sequence[str] = ("rsa-1",), ec_kids: Sequence[str] = ()
) -> dict[str, Any]:
    """A private JWKS for ``--keys``: RSA 2048 (RS256) and P-256 (ES256) keys, in this order."""
    keys: list[dict[str, Any]] = []
    for kid in rsa_kids:
        private_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(private_rsa))
        keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    for kid in ec_kids:
        private_ec = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(private_ec))
        keys.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
    return {"keys": keys}


class IdpProcess:
    """A running test provider on 127.0.0.1; restart it (same port, same issuer) to rotate keys."""

    def __init__(
        self,
        *,
        port: int | None = None,
        keys: Mapping[str, Any] | None = None,
        access_token_ttl_s: int | None = None,
        realm_export: Path = REALM_EXPORT,
    ) -> None:
        self.port = port or free_port()
        self.keys = keys
        self.access_token_ttl_s = access_token_ttl_s
        self.realm_export = realm_export
        self.realm = load_realm(realm_export)["realm"]
        self.clients = realm_clients(realm_export)
        self._process: ManagedProcess | None = None
        self._keys_dir = tempfile.TemporaryDirectory(prefix="hf-test-idp-")
        self._http = httpx.Client(timeout=10.0, verify=shared_verify(True))

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/realms/{self.realm}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}{OIDC_PATH}/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}{OIDC_PATH}/certs"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> IdpProcess:
        argv = [*node_command(), "--port", str(self.port), "--realm-export", str(self.realm_export)]
        if self.keys is not None:
            keys_file = Path(self._keys_dir.name) / "keys.json"
            keys_file.write_text(json.dumps(self.keys), encoding="utf-8")
            argv += ["--keys", str(keys_file)]
        if self.access_token_ttl_s is not None:
            argv += ["--access-token-ttl", str(self.access_token_ttl_s)]
        self._process = ManagedProcess("test-idp", argv, cwd=REPO)  # known to close() first
        self._process.start()
        self._process.wait_http(self.discovery_url, timeout_s=timeout_s)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None

    def restart(self, *, keys: Mapping[str, Any] | None = None) -> IdpProcess:
        """Stop and start again on the same port, with `keys` if given (key rotation)."""
        self.stop()
        if keys is not None:
            self.keys = keys
        return self.start()

    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running()

    def output(self) -> str:
        return self._process.output() if self._process is not None else ""

    def close(self) -> None:
        self.stop()
        self._http.close()
        self._keys_dir.cleanup()

    def __enter__(self) -> IdpProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def token_response(
        self,
        client_id: str,
        scopes: Sequence[str] | None = None,
        *,
        audience: str | Sequence[str] | None = None,
        alg: str | None = None,
        ttl_s: int | None = None,
        header_typ: str | None = None,
        secret: str | None = None,
    ) -> httpx.Response:
        """The raw answer of the token endpoint to a client-credentials request.

        `scopes` None asks for none (the provider then grants the client's default scopes,
        as Keycloak does). `audience`, `alg`, `ttl_s` and `header_typ` use the provider's
        test-only resource indicator.
        """
        client = self.clients.get(client_id)
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if scopes is not None:
            form["scope"] = " ".join(scopes)
        if audience is not None or alg or ttl_s or header_typ:
            form["resource"] = resource_indicator(
                audience if audience is not None else (client.audiences if client else ()),
                alg=alg,
                ttl_s=ttl_s,
                header_typ=header_typ,
            )
        if secret is None:
            secret = client.secret if client is not None else "unknown-client"
        return self._http.post(self.token_endpoint, data=form, auth=(client_id, secret))

    def token(
        self,
        client_id: str,
        scopes: Sequence[str] | None = None,
        *,
        audience: str | Sequence[str] | None = None,
        alg: str | None = None,
        ttl_s: int | None = None,
        header_typ: str | None = None,
    ) -> str:
        """A real access token for `client_id` (secret from the realm export)."""
        response = self.token_response(
            client_id, scopes, audience=audience, alg=alg, ttl_s=ttl_s, header_typ=header_typ
        )
        if response.status_code != 200:
            try:
                error = response.json().get("error")
            except ValueError:
                error = None
            raise TokenRequestFailed(
                f"token request for {client_id} answered HTTP {response.status_code} ({error})"
            )
        token: str = response.json()["access_token"]
        return token


def resource_indicator(
    audience: str | Sequence[str],
    *,
    alg: str | None = None,
    ttl_s: int | None = None,
    header_typ: str | None = None,
) -> str:
    audiences = [audience] if isinstance(audience, str) else list(audience)
    query = {
        name: str(value)
        for name, value in (("alg", alg), ("ttl", ttl_s), ("header_typ", header_typ))
        if value
    }
    return RESOURCE_PREFIX + ",".join(audiences) + (f"?{urlencode(query)}" if query else "")
