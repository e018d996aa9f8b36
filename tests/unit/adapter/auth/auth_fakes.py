"""Locally generated signing keys, a fake JWKS endpoint and a token forger for the auth tests.

Tokens are signed with `cryptography` keys through PyJWT, or by hand for the forgeries PyJWT
refuses to produce (alg none, HMAC keyed with a public key).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from adapter.auth.errors import ProviderError

ISSUER = "https://sso.example.go.id/realms/healthforce"
AUDIENCE = "hf-adapter"
# The JWKS cache's cool-down between refetches in the tests.
COOLDOWN_S = 30.0


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        to_jwk = RSAAlgorithm.to_jwk if self.alg.startswith("RS") else ECAlgorithm.to_jwk
        jwk = json.loads(to_jwk(public))  # type: ignore[arg-type]
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    @property
    def private_jwk(self) -> dict[str, Any]:
        to_jwk = RSAAlgorithm.to_jwk if self.alg.startswith("RS") else ECAlgorithm.to_jwk
        jwk = json.loads(to_jwk(self.private_key))  # type: ignore[arg-type]
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_der(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@functools.cache
def _rsa_private(label: str, bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def rsa_key(kid: str = "rsa-1", *, bits: int = 2048) -> SigningKey:
    """An RSA key; the same kid gives the same key within a test run (generation is slow)."""
    return SigningKey(kid, "RS256", _rsa_private(kid, bits))


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk for key in keys]}


class FakeJwksEndpoint:
    """A `JwksFetcher` serving a document we control, counting calls, able to be down."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document: Mapping[str, Any] = document
        self.calls = 0
        self.down = False

    def __call__(self) -> Mapping[str, Any]:
        self.calls += 1
        if self.down:
            raise ProviderError("JWKS: the SSO is unreachable (ConnectError)")
        return self.document


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def access_claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a Keycloak access token for the adapter; an override of None drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "sub": "3f1c2f0e-5b5e-4a53-9a34-0f6c8c1d2e77",
        "azp": "healthforce-portal",
        "typ": "Bearer",
        "scope": "healthworkers:read audit:read",
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "realm_access": {"roles": ["healthforce-reader"]},
        "resource_access": {"hf-adapter": {"roles": ["api-reader"]}},
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def sign(
    key: SigningKey,
    claims: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, Any] | None = None,
    alg: str | None = None,
) -> str:
    """A token signed by `key` (its kid in the header unless `headers` says otherwise)."""
    header = {"kid": key.kid, "typ": "JWT", **(headers or {})}
    # PyJWS, not PyJWT: the latter refuses to encode some of the malformed claims we need.
    payload = json.dumps(dict(claims if claims is not None else access_claims())).encode()
    return jwt.api_jws.PyJWS().encode(payload, key.private_key, alg or key.alg, header)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand, for forgeries PyJWT would refuse to make."""
    return ".".join(
        [
            b64url(json.dumps(dict(header)).encode()),
            b64url(json.dumps(dict(claims)).encode()),
            b64url(signature),
        ]
    )


def hmac_signed(secret: bytes, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """An HS256/384/512 token keyed with `secret`, e.g. the SSO's public key (key confusion)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[
        header["alg"]
    ]
    signing_input = ".".join(
        [b64url(json.dumps(dict(header)).encode()), b64url(json.dumps(dict(claims)).encode())]
    )
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"
