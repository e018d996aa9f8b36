"""Access-token validation per RFC 8725 (JWT best current practices) and RFC 9068.

Everything decided from the token's own header happens before any key is looked up: the
algorithm is allow-listed, headers that point at keys (``jku``, ``x5u``, ``jwk``, ``x5c``) are
refused rather than followed, and only then does the `kid` select a key from the SSO's key set.
Signature and claims are checked by PyJWT with every option spelled out.

A token that passed is remembered by its SHA-256 (never the token itself) until its `exp`, in a
bounded cache: the same caller's next requests skip the signature and claim checks, but only
while the key that signed it is still in the SSO's key set (a withdrawn key ends its tokens'
cache entries at the next key-set refresh, as it ends their validation).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx
import jwt
from cachetools import TLRUCache

from adapter.auth.bearer import MAX_TOKEN_LENGTH
from adapter.auth.discovery import OidcDiscovery, default_http_client
from adapter.auth.errors import InvalidTokenError
from adapter.auth.jwks import (
    ALLOWED_ALGORITHMS,
    JWKS_MAX_AGE_S,
    JWKS_REFETCH_COOLDOWN_S,
    HttpJwksFetcher,
    JwksCache,
)
from adapter.auth.principal import IDENTITY_CLAIMS, Principal
from adapter.errors import ConfigurationError

log = logging.getLogger("adapter.auth")

# Clock skew tolerated on exp, nbf and iat, in seconds: small against Keycloak's 5-minute tokens.
CLOCK_SKEW_LEEWAY_S: Final = 30
# Header parameters that tell the verifier where to find a key: never trusted (RFC 8725 §3.10).
KEY_LOCATING_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c"})
# JOSE `typ` values an access token may carry: Keycloak's "JWT", RFC 9068's "at+jwt".
ACCESS_TOKEN_HEADER_TYPES: Final = frozenset({"jwt", "at+jwt", "application/at+jwt"})
RFC9068_HEADER_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
# Keycloak's `typ` claim: "Bearer" for access tokens ("ID", "Refresh", "Logout" for others).
KEYCLOAK_ACCESS_TOKEN_TYPE: Final = "Bearer"  # noqa: S105 - a token type, not a secret
# Keycloak's account console audience: a token meant only for it is not meant for us.
KEYCLOAK_ACCOUNT_AUDIENCE: Final = "account"
# Validated tokens remembered (by hash, until their exp): a few per caller at any time.
VALIDATED_TOKEN_CACHE_SIZE: Final = 10_000
_JWS_COMPACT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# PyJWT exception -> (cause slug, message). Messages are ours: PyJWT's could name values.
_PYJWT_ERRORS: Final[tuple[tuple[type[jwt.PyJWTError], str, str], ...]] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet (nbf or iat)"),
    (jwt.InvalidAudienceError, "audience", "the token is not meant for this service (aud)"),
    (jwt.InvalidIssuerError, "issuer", "the token was issued by another issuer (iss)"),
    (jwt.InvalidIssuedAtError, "claims", "the token's iat is not a number"),
    (jwt.exceptions.InvalidSubjectError, "claims", "the token's sub is not a string"),
    (jwt.exceptions.InvalidJTIError, "claims", "the token's jti is not a string"),
    (jwt.InvalidSignatureError, "signature", "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "algorithm", "the token's algorithm does not match its key"),
    (jwt.InvalidKeyError, "key", "the SSO's key for this token is unusable"),
    (jwt.DecodeError, "malformed", "the token is malformed (its JSON, or a claim's type)"),
)


class AccessTokenValidator(Protocol):
    """Turns a bearer token into a `Principal`, or raises an `AuthError`."""

    def validate(self, token: str) -> Principal: ...


@dataclass(frozen=True)
class _Validated:
    """A token that passed: whom it speaks for, the key that signed it, when it expires."""

    principal: Principal
    kid: str
    expires_at: float


class TokenValidator:
    """Validates the SSO's access tokens for one issuer and one audience; remembers the valid
    ones by hash until they expire (`cache_size` of them at most, 0 for none)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: JwksCache,
        leeway_s: float = CLOCK_SKEW_LEEWAY_S,
        cache_size: int = VALIDATED_TOKEN_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer:
            raise ConfigurationError("OIDC_ISSUER is empty")
        if not audience or audience == KEYCLOAK_ACCOUNT_AUDIENCE:
            # Every Keycloak token for the account console carries `account`: it names no API.
            raise ConfigurationError(
                "OIDC_AUDIENCE must name the adapter (e.g. hf-adapter), not be empty or `account`"
            )
        if not 0 <= leeway_s <= 300:
            raise ConfigurationError("the token clock-skew leeway must be 0 to 300 seconds")
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.leeway_s = leeway_s
        # Entries live until the token's own exp (epoch seconds, hence a wall clock); cachetools'
        # caches are not thread-safe, and gunicorn's gthread workers share this one.
        self._validated: TLRUCache[bytes, _Validated] | None = (
            TLRUCache(
                maxsize=cache_size,
                ttu=lambda _digest, validated, _now: validated.expires_at,
                timer=clock,
            )
            if cache_size > 0
            else None
        )
        self._validated_lock = threading.Lock()

    @classmethod
    def for_issuer(
        cls,
        issuer: str,
        audience: str,
        *,
        http: httpx.Client | None = None,
        jwks_cooldown_s: float = JWKS_REFETCH_COOLDOWN_S,
        jwks_max_age_s: float = JWKS_MAX_AGE_S,
        leeway_s: float = CLOCK_SKEW_LEEWAY_S,
    ) -> TokenValidator:
        """A validator whose keys come from the issuer's discovery document, fetched lazily.

        Pass `http` to set TLS verification (e.g. ``httpx.Client(verify=ca_bundle)``).
        """
        http = http if http is not None else default_http_client()
        discovery = OidcDiscovery(issuer, http=http)
        keys = JwksCache(
            HttpJwksFetcher.from_discovery(discovery, http=http),
            cooldown_s=jwks_cooldown_s,
            max_age_s=jwks_max_age_s,
        )
        return cls(issuer=issuer, audience=audience, keys=keys, leeway_s=leeway_s)

    def validate(self, token: str) -> Principal:
        """The principal of a valid access token; `InvalidTokenError` (or
        `KeySetUnavailableError`) otherwise."""
        if self._validated is None:
            return self._validate(token)[0]
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._validated_lock:
            known = self._validated.get(digest)
        if known is not None:
            try:
                # The key set's own rules still apply to a remembered token: a stale set is
                # refreshed (and a refresh that fails is recorded), a withdrawn key ends it.
                self.keys.signing_key(known.kid)
            except InvalidTokenError:
                with self._validated_lock:
                    self._validated.pop(digest, None)
                raise
            return known.principal
        principal, kid = self._validate(token)
        if principal.expires_at is not None:
            with self._validated_lock:
                self._validated[digest] = _Validated(principal, kid, principal.expires_at)
        return principal

    def _validate(self, token: str) -> tuple[Principal, str]:
        """Every check, and the key id that verified the signature."""
        header = self._checked_header(token)
        key = self.keys.signing_key(header["kid"])
        try:
            claims = self._decode(token, key, verify_exp=True)
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(
                f"the token lacks the {exc.claim} claim", cause="missing_claim"
            ) from None
        except jwt.ExpiredSignatureError:
            raise self._expired(token, key, header) from None
        except jwt.PyJWTError as exc:
            raise _translated(exc) from None
        self._check_access_token_type(header, claims)
        return _principal(claims), header["kid"]

    def _expired(self, token: str, key: jwt.PyJWK, header: Mapping[str, Any]) -> InvalidTokenError:
        """The refusal of an expired token, naming its holder when every other check passes
        (the signature has been verified), so the log can say whose token it was."""
        refusal = InvalidTokenError("the token has expired", cause="expired")
        try:
            claims = self._decode(token, key, verify_exp=False)
            self._check_access_token_type(header, claims)
            refusal.holder = _principal(claims)
        except (jwt.PyJWTError, InvalidTokenError):
            pass  # not otherwise valid either: refused as expired, naming nobody
        return refusal

    def _decode(self, token: str, key: jwt.PyJWK, *, verify_exp: bool) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            # Hard-coded, never taken from the token: the key's own algorithm, which
            # `parse_key_set` only admits from ALLOWED_ALGORITHMS; PyJWT also checks that
            # the header's alg equals it, so an RSA key can never verify an HMAC.
            algorithms=[key.algorithm_name],
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway_s,
            options={
                "verify_signature": True,
                # "require" only checks presence; each claim's "verify_" option checks
                # its value. nbf is not required: neither Keycloak nor RFC 9068 sends it.
                "require": ["exp", "iat", "iss", "aud", "sub"],
                # Off only to name the holder of a token already refused as expired.
                "verify_exp": verify_exp,
                # Not before, checked whenever present.
                "verify_nbf": True,
                # iat must be a number and not in the future (beyond the leeway).
                "verify_iat": True,
                # Exact string comparison with OIDC_ISSUER: another realm is another issuer.
                "verify_iss": True,
                # aud (a string or a list) must contain OIDC_AUDIENCE; Keycloak sends lists.
                "verify_aud": True,
                "strict_aud": False,
                # sub and jti, when present, must be strings.
                "verify_sub": True,
                "verify_jti": True,
                # Refuse short RSA keys (< 2048 bits) instead of only warning.
                "enforce_minimum_key_length": True,
            },
        )
        return claims

    def _checked_header(self, token: str) -> dict[str, Any]:
        """The JOSE header, after every check that needs no key."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidTokenError(
                f"the token is longer than {MAX_TOKEN_LENGTH} characters", cause="oversized"
            )
        if token.count(".") == 4:
            raise InvalidTokenError("encrypted tokens (JWE) are not accepted", cause="malformed")
        if not _JWS_COMPACT.fullmatch(token):
            raise InvalidTokenError("the token is not a compact JWS", cause="malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError(
                "the token's header is malformed (JSON, kid or crit)", cause="malformed"
            ) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:  # a list is unhashable
            # Before any key lookup: `none`, HS256 with our public key as secret, PS/EdDSA ...
            allowed = ", ".join(sorted(ALLOWED_ALGORITHMS))
            raise InvalidTokenError(
                f"the token's algorithm is not accepted (only {allowed})", cause="algorithm"
            )
        carried = sorted(KEY_LOCATING_HEADERS.intersection(header))
        if carried:
            raise InvalidTokenError(
                f"the token carries key-locating header(s) {', '.join(carried)}; they are never "
                "trusted",
                cause="header_key",
            )
        if "crit" in header:
            raise InvalidTokenError("the token has critical header extensions", cause="header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise InvalidTokenError("the token's header has no usable kid", cause="kid")
        typ = header.get("typ")
        if typ is not None and (
            not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_HEADER_TYPES
        ):
            raise InvalidTokenError("the token's type (typ) is not an access token", cause="type")
        return header

    @staticmethod
    def _check_access_token_type(header: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
        """Access tokens only: Keycloak marks them ``typ: Bearer``, RFC 9068 ``at+jwt``.

        ID tokens (``typ: ID``) and refresh tokens (``typ: Refresh``) are signed by the same
        keys and may carry our audience; accepting them would let a login stand in for an API
        grant.
        """
        typ_claim = claims.get("typ")
        if typ_claim is not None:
            if typ_claim != KEYCLOAK_ACCESS_TOKEN_TYPE:
                raise InvalidTokenError(
                    "the token is not an access token (typ claim)", cause="type"
                )
            return
        header_typ = header.get("typ")
        if not isinstance(header_typ, str) or header_typ.lower() not in RFC9068_HEADER_TYPES:
            raise InvalidTokenError(
                "the token is not marked as an access token (typ Bearer or at+jwt)", cause="type"
            )


def _translated(exc: jwt.PyJWTError) -> InvalidTokenError:
    for exc_type, cause, message in _PYJWT_ERRORS:
        if isinstance(exc, exc_type):
            return InvalidTokenError(message, cause=cause)
    return InvalidTokenError("the token is invalid", cause="invalid")


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject = claims["sub"]
    if not subject:
        raise InvalidTokenError("the token's sub is empty", cause="missing_claim")
    client_id = claims.get("azp", claims.get("client_id"))
    if not isinstance(client_id, str) or not client_id:
        raise InvalidTokenError(
            "the token names no client (azp or client_id)", cause="missing_claim"
        )
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidTokenError("the token's scope claim is not a string", cause="claims")
    token_id = claims.get("jti")
    return Principal(
        subject=str(subject),
        client_id=client_id,
        scopes=frozenset(scope.split()),
        realm_roles=_roles(claims.get("realm_access")),
        client_roles=_client_roles(claims.get("resource_access")),
        token_id=token_id if isinstance(token_id, str) else None,
        expires_at=int(claims["exp"]),
        identity={
            name: value for name in IDENTITY_CLAIMS if isinstance(value := claims.get(name), str)
        },
    )


def _roles(access: Any) -> frozenset[str]:
    """Keycloak's ``{"roles": [...]}``; anything else shaped differently grants nothing."""
    if not isinstance(access, dict) or not isinstance(access.get("roles"), list):
        return frozenset()
    return frozenset(role for role in access["roles"] if isinstance(role, str))


def _client_roles(resource_access: Any) -> dict[str, frozenset[str]]:
    if not isinstance(resource_access, dict):
        return {}
    roles = {
        str(client): _roles(access)
        for client, access in resource_access.items()
        if isinstance(client, str)
    }
    return {client: found for client, found in roles.items() if found}
