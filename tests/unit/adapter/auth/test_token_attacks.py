"""The RFC 8725 / OWASP JWT attack table: every forgery is refused, and those decided from the
header are refused before any key is looked up (no JWKS fetch)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from adapter.auth.bearer import MAX_TOKEN_LENGTH
from adapter.auth.errors import InvalidTokenError
from adapter.auth.jwks import JwksCache
from adapter.auth.tokens import TokenValidator
from tests.unit.adapter.auth.auth_fakes import (
    AUDIENCE,
    COOLDOWN_S,
    FakeClock,
    FakeJwksEndpoint,
    SigningKey,
    access_claims,
    b64url,
    ec_key,
    hand_made,
    hmac_signed,
    jwks,
    rsa_key,
    sign,
)


def refused(validator: TokenValidator, token: str) -> InvalidTokenError:
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)
    error = caught.value
    assert error.reason == "invalid_token"
    if token:
        assert token not in error.message
        assert token not in repr(error)
    return error


def refused_before_key_lookup(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, token: str
) -> InvalidTokenError:
    error = refused(validator, token)
    assert endpoint.calls == 0, "the token made the validator fetch keys"
    return error


# --- algorithm -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
def test_alg_none_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey, alg: str
) -> None:
    token = hand_made({"alg": alg, "kid": rsa.kid, "typ": "JWT"}, access_claims())
    assert refused_before_key_lookup(validator, endpoint, token).cause == "algorithm"


def test_missing_alg_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey
) -> None:
    token = hand_made({"kid": rsa.kid}, access_claims(), b"sig")
    assert refused_before_key_lookup(validator, endpoint, token).cause == "algorithm"


@pytest.mark.parametrize("alg", [["RS256"], {"RS256": True}, 256, True])
def test_an_alg_that_is_not_a_string_is_refused_not_a_server_error(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey, alg: object
) -> None:
    """A list or an object raised TypeError (unhashable) out of the validator: a 500 and a
    logged traceback for a request without any valid token."""
    token = hand_made({"alg": alg, "kid": rsa.kid}, access_claims(), b"sig")
    assert refused_before_key_lookup(validator, endpoint, token).cause == "algorithm"


def _public_key_forms(key: SigningKey) -> dict[str, bytes]:
    return {
        "pem": key.public_pem(),
        "pem-stripped": key.public_pem().strip(),
        "der": key.public_der(),
        "jwk": json.dumps(key.public_jwk).encode(),
        "jwks": json.dumps(jwks(key)).encode(),
    }


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("form", ["pem", "pem-stripped", "der", "jwk", "jwks"])
def test_rs_to_hs_key_confusion_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey, alg: str, form: str
) -> None:
    secret = _public_key_forms(rsa)[form]
    token = hmac_signed(secret, {"alg": alg, "kid": rsa.kid, "typ": "JWT"}, access_claims())
    assert refused_before_key_lookup(validator, endpoint, token).cause == "algorithm"


@pytest.mark.parametrize("form", ["pem", "der", "jwk"])
def test_es_to_hs_key_confusion_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, es: SigningKey, form: str
) -> None:
    secret = _public_key_forms(es)[form]
    token = hmac_signed(secret, {"alg": "HS256", "kid": es.kid}, access_claims())
    assert refused_before_key_lookup(validator, endpoint, token).cause == "algorithm"


@pytest.mark.parametrize("alg", ["PS256", "RS512", "ES384", "EdDSA", "RSA-OAEP"])
def test_algorithms_outside_allow_list_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey, alg: str
) -> None:
    token = hand_made({"alg": alg, "kid": rsa.kid}, access_claims(), b"x" * 256)
    assert refused_before_key_lookup(validator, endpoint, token).cause == "algorithm"


def test_rs256_header_on_ec_key_refused(
    validator: TokenValidator, rsa: SigningKey, es: SigningKey
) -> None:
    # Signed by the RSA key but naming the EC key: the key's algorithm decides, not the header.
    token = sign(rsa, headers={"kid": es.kid})
    assert refused(validator, token).cause == "algorithm"


def test_es256_header_on_rsa_key_refused(
    validator: TokenValidator, rsa: SigningKey, es: SigningKey
) -> None:
    token = sign(es, headers={"kid": rsa.kid})
    assert refused(validator, token).cause == "algorithm"


# --- signature -------------------------------------------------------------------------------


def test_signature_by_another_key_with_our_kid_refused(validator: TokenValidator) -> None:
    impostor = rsa_key("impostor")
    token = sign(impostor, headers={"kid": "rsa-1"})
    assert refused(validator, token).cause == "signature"


def test_altered_payload_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    header, _, signature = sign(rsa).split(".")
    elevated = access_claims(scope="healthworkers:read:pii integrations:admin")
    token = f"{header}.{b64url(json.dumps(elevated).encode())}.{signature}"
    assert refused(validator, token).cause == "signature"


def test_stripped_signature_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    header, payload, _ = sign(rsa).split(".")
    assert refused(validator, f"{header}.{payload}.").cause == "signature"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_weak_rsa_key_in_key_set_refused() -> None:
    weak = rsa_key("weak-1024", bits=1024)
    cache = JwksCache(FakeJwksEndpoint(jwks(weak)), clock=FakeClock())
    validator = TokenValidator(issuer=access_claims()["iss"], audience=AUDIENCE, keys=cache)
    assert refused(validator, sign(weak)).cause == "key"


# --- issuer and audience ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "issuer",
    [
        "https://evil.example/realms/healthforce",
        "https://sso.example.go.id/realms/other",
        "https://sso.example.go.id/realms/healthforce/",
        "http://sso.example.go.id/realms/healthforce",
        "https://SSO.example.go.id/realms/healthforce",
        "https://sso.example.go.id/realms/healthforce-evil",
    ],
)
def test_foreign_or_near_miss_issuer_refused(
    validator: TokenValidator, rsa: SigningKey, issuer: str
) -> None:
    assert refused(validator, sign(rsa, access_claims(iss=issuer))).cause == "issuer"


def test_issuer_as_list_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    claims = access_claims(iss=[access_claims()["iss"]])
    assert refused(validator, sign(rsa, claims)).cause == "issuer"


@pytest.mark.parametrize(
    "aud",
    ["account", ["account"], "other-service", ["healthforce-registry", "account"], "HF-ADAPTER"],
)
def test_wrong_audience_refused(validator: TokenValidator, rsa: SigningKey, aud: object) -> None:
    assert refused(validator, sign(rsa, access_claims(aud=aud))).cause == "audience"


@pytest.mark.parametrize("aud", [[], ""])
def test_empty_audience_refused(validator: TokenValidator, rsa: SigningKey, aud: object) -> None:
    assert refused(validator, sign(rsa, access_claims(aud=aud))).cause == "missing_claim"


def test_audience_with_non_string_member_refused(
    validator: TokenValidator, rsa: SigningKey
) -> None:
    assert refused(validator, sign(rsa, access_claims(aud=[AUDIENCE, 7]))).cause == "audience"


# --- token type ------------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["ID", "Refresh", "Offline", "Logout", "bearer", "BEARER", ""])
def test_non_access_token_typ_claim_refused(
    validator: TokenValidator, rsa: SigningKey, typ: str
) -> None:
    # Keycloak signs ID tokens with the realm key and may give them our audience.
    assert refused(validator, sign(rsa, access_claims(typ=typ))).cause == "type"


def test_keycloak_id_token_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    claims = access_claims(typ="ID", aud=AUDIENCE, azp=AUDIENCE, scope=None, nonce="n-0S6_WzA2Mj")
    assert refused(validator, sign(rsa, claims)).cause == "type"


def test_keycloak_refresh_token_refused(validator: TokenValidator, rsa: SigningKey) -> None:
    # Keycloak signs refresh tokens with HS512 (realm secret): refused for the algorithm.
    claims = access_claims(typ="Refresh", aud=access_claims()["iss"])
    token = hmac_signed(b"realm-hmac-secret", {"alg": "HS512", "kid": "hmac-1"}, claims)
    assert refused(validator, token).cause == "algorithm"
    # An RS256-signed one is refused for its type.
    claims = access_claims(typ="Refresh")
    assert refused(validator, sign(rsa, claims)).cause == "type"


def test_token_without_any_access_token_marker_refused(
    validator: TokenValidator, rsa: SigningKey
) -> None:
    assert refused(validator, sign(rsa, access_claims(typ=None))).cause == "type"


@pytest.mark.parametrize("typ", ["logout+jwt", "dpop+jwt", "secevent+jwt", "JWE", "id_token+jwt"])
def test_non_access_token_header_typ_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey, typ: str
) -> None:
    token = sign(rsa, headers={"typ": typ})
    assert refused_before_key_lookup(validator, endpoint, token).cause == "type"


# --- header key injection --------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"jku": "https://evil.example/jwks.json"},
        {"x5u": "https://evil.example/cert.pem"},
        {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
        {"jku": "https://sso.example.go.id/realms/healthforce/protocol/openid-connect/certs"},
    ],
    ids=["jku", "x5u", "x5c", "jku-same-host"],
)
def test_key_locating_header_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, header: dict[str, object]
) -> None:
    attacker = rsa_key("attacker")
    token = sign(attacker, headers={**header, "kid": "rsa-1"})
    assert refused_before_key_lookup(validator, endpoint, token).cause == "header_key"


def test_embedded_jwk_header_refused(validator: TokenValidator, endpoint: FakeJwksEndpoint) -> None:
    # CVE-2018-0114 style: the token carries the attacker's own public key and is signed by it.
    attacker = rsa_key("attacker")
    token = sign(attacker, headers={"jwk": attacker.public_jwk, "kid": attacker.kid})
    assert refused_before_key_lookup(validator, endpoint, token).cause == "header_key"


def test_crit_header_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey
) -> None:
    token = sign(rsa, headers={"crit": ["exp"], "exp": 1})
    # PyJWT's header parser already refuses unknown critical extensions as malformed.
    assert refused_before_key_lookup(validator, endpoint, token).cause in {"header", "malformed"}


@pytest.mark.parametrize("kid", [None, "", 7, ["rsa-1"], "k" * 300])
def test_unusable_kid_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey, kid: object
) -> None:
    header = {"alg": "RS256", "typ": "JWT"} | ({} if kid is None else {"kid": kid})
    token = hand_made(header, access_claims(), b"s" * 256)
    # A kid that is not a string is already refused by PyJWT's header parser (malformed).
    assert refused_before_key_lookup(validator, endpoint, token).cause in {"kid", "malformed"}


# --- malformed and oversized -----------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        "eyJhbGciOiJSUzI1NiJ9.eyJ9.sig!",
        f"{b64url(b'not json')}.{b64url(b'{}')}.c2ln",
        f"{b64url(b'[1,2]')}.{b64url(b'{}')}.c2ln",
        "..",
        "",
    ],
)
def test_malformed_token_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, token: str
) -> None:
    assert refused_before_key_lookup(validator, endpoint, token).cause == "malformed"


def test_signed_payload_that_is_not_json_refused(
    validator: TokenValidator, rsa: SigningKey
) -> None:
    import jwt as pyjwt

    token = pyjwt.api_jws.encode(b"not json", rsa.private_key, "RS256", {"kid": rsa.kid})
    assert refused(validator, token).cause == "malformed"


def test_oversized_token_refused(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey
) -> None:
    padding = "x" * MAX_TOKEN_LENGTH
    token = sign(rsa, access_claims(padding=padding))
    assert len(token) > MAX_TOKEN_LENGTH
    assert refused_before_key_lookup(validator, endpoint, token).cause == "oversized"


# --- unknown kid flood -----------------------------------------------------------------------


def test_unknown_kid_flood_fetches_at_most_once_per_cooldown(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, clock: FakeClock, rsa: SigningKey
) -> None:
    validator.validate(sign(rsa))  # the first use loads the key set
    assert endpoint.calls == 1
    attacker = rsa_key("attacker")

    def flood() -> None:
        for _ in range(200):
            token = sign(attacker, headers={"kid": f"kid-{uuid.uuid4()}"})
            assert refused(validator, token).cause == "kid"

    flood()
    assert endpoint.calls == 1, "a refetch happened within the cooldown of the first fetch"
    clock.advance(COOLDOWN_S)
    flood()
    assert endpoint.calls == 2, "exactly one refetch per cooldown"
    clock.advance(COOLDOWN_S / 2)
    flood()
    assert endpoint.calls == 2
    # Genuine tokens keep working throughout.
    assert validator.validate(sign(rsa)).subject


def test_unknown_kid_flood_from_threads_fetches_once(
    validator: TokenValidator, endpoint: FakeJwksEndpoint, rsa: SigningKey
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    attacker = ec_key("attacker-ec")
    tokens = [sign(attacker, headers={"kid": f"kid-{n}"}) for n in range(64)]

    def attempt(token: str) -> str:
        try:
            validator.validate(token)
        except InvalidTokenError as error:
            return error.cause
        return "accepted"

    with ThreadPoolExecutor(max_workers=8) as pool:
        causes = list(pool.map(attempt, tokens))
    assert set(causes) == {"kid"}
    assert endpoint.calls == 1


def test_forged_tokens_refused_with_time_claims_intact(
    validator: TokenValidator, rsa: SigningKey
) -> None:
    # A sanity check of the fixtures: the same claims, honestly signed, are accepted.
    now = int(time.time())
    assert validator.validate(sign(rsa, access_claims(iat=now, exp=now + 60))).subject
