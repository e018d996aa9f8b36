"""A small OpenID provider we control, for the sso catalogue: discovery, JWKS and a
client-credentials token endpoint over HTTP, each of which a `StubBreakage` can get wrong.

Keycloak cannot be made to publish a symmetric key or an ID token as an access token; this can.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "stub-client"
CLIENT_SECRET = "stub-secret"
AUDIENCE = "hf-adapter"
SCOPE = "healthworkers:read"
KID = "stub-rsa-1"
LIFETIME_S = 300


@dataclass
class StubBreakage:
    """What the provider gets wrong; the default gets nothing wrong."""

    id_token_as_access_token: bool = False
    symmetric_key: bool = False
    private_parts: bool = False
    duplicate_kid: bool = False
    announced_issuer: str | None = None
    accepts_wrong_secret: bool = False
    missing_metadata: str | None = None
    without_iat: bool = False
    opaque_token: bool = False


class StubProvider:
    """Serves one realm at ``http://127.0.0.1:PORT/realms/stub`` until `close()`."""

    def __init__(self) -> None:
        self.breakage = StubBreakage()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.answer_get(self)

            def do_POST(self) -> None:
                provider.answer_post(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}/realms/stub"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def discovery(self) -> dict[str, Any]:
        oidc = f"{self.issuer}/protocol/openid-connect"
        document = {
            "issuer": self.breakage.announced_issuer or self.issuer,
            "authorization_endpoint": f"{oidc}/auth",
            "token_endpoint": f"{oidc}/token",
            "jwks_uri": f"{oidc}/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }
        if self.breakage.missing_metadata:
            document.pop(self.breakage.missing_metadata)
        return document

    def key_set(self) -> dict[str, Any]:
        private = json.loads(RSAAlgorithm.to_jwk(self._key))
        public = {k: v for k, v in private.items() if k in ("kty", "n", "e")}
        keys = [{**(private if self.breakage.private_parts else public), "kid": KID}]
        keys[0].update({"alg": "RS256", "use": "sig"})
        if self.breakage.symmetric_key:
            secret = base64.urlsafe_b64encode(b"0" * 32).decode().rstrip("=")
            keys.append({"kty": "oct", "kid": "stub-hmac", "alg": "HS256", "k": secret})
        if self.breakage.duplicate_kid:
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            other_jwk = json.loads(RSAAlgorithm.to_jwk(other.public_key()))
            keys.append({**other_jwk, "kid": KID, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def access_token(self) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "service-account-stub-client",
            "aud": [AUDIENCE],
            "azp": CLIENT_ID,
            "typ": "Bearer",
            "scope": SCOPE,
            "iat": now,
            "exp": now + LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        if self.breakage.id_token_as_access_token:
            # An ID token: for the client itself, with a nonce and auth_time, no scope.
            claims.update(typ="ID", aud=CLIENT_ID, nonce="n-0S6_WzA2Mj", auth_time=now)
            del claims["scope"]
        if self.breakage.without_iat:
            del claims["iat"]
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": KID})

    def answer_get(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.path == "/realms/stub/.well-known/openid-configuration":
            _send(handler, 200, self.discovery())
        elif handler.path == "/realms/stub/protocol/openid-connect/certs":
            _send(handler, 200, self.key_set())
        else:
            _send(handler, 404, {"error": "not_found"})

    def answer_post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        form = parse_qs(handler.rfile.read(length).decode())
        if handler.path != "/realms/stub/protocol/openid-connect/token":
            _send(handler, 404, {"error": "not_found"})
        elif form.get("grant_type") != ["client_credentials"]:
            _send(handler, 400, {"error": "unsupported_grant_type"})
        elif not self._authenticated(handler.headers.get("authorization", "")):
            _send(handler, 401, {"error": "invalid_client"})
        else:
            token = "opaque-" + uuid.uuid4().hex if self.breakage.opaque_token else None
            _send(
                handler,
                200,
                {
                    "access_token": token or self.access_token(),
                    "token_type": "Bearer",
                    "expires_in": LIFETIME_S,
                },
            )

    def _authenticated(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        if unquote_plus(client_id) != CLIENT_ID:
            return False
        return self.breakage.accepts_wrong_secret or unquote_plus(secret) == CLIENT_SECRET


def _send(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
