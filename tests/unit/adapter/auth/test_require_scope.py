"""`require_scope` on a tiny Flask app: RFC 6750 challenges, problem+json bodies, principal on g."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from adapter.auth import scopes
from adapter.auth.errors import InsufficientScopeError
from adapter.auth.principal import Principal
from adapter.auth.tokens import TokenValidator
from adapter.auth.web import current_principal, init_app, on_scope_denied, require_scope
from tests.unit.adapter.auth.auth_fakes import FakeJwksEndpoint, SigningKey, access_claims, sign


@pytest.fixture
def app(validator: TokenValidator) -> Flask:
    app = Flask("auth-test")
    init_app(app, validator)

    @app.get("/workers")
    @require_scope(scopes.HEALTHWORKERS_READ)
    def workers() -> object:
        principal = current_principal()
        return jsonify(subject=principal.subject, client=principal.client_id)

    @app.get("/workers-pii")
    @require_scope(scopes.HEALTHWORKERS_READ, scopes.HEALTHWORKERS_READ_PII)
    def workers_pii() -> object:
        return jsonify(ok=True)

    @app.get("/me")
    @require_scope()
    def me() -> object:
        return jsonify(scopes=sorted(current_principal().scopes))

    return app


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_sufficient_scope_reaches_view_with_principal(client: FlaskClient, rsa: SigningKey) -> None:
    response = client.get("/workers", headers=bearer(sign(rsa)))
    assert response.status_code == 200
    assert response.json == {"subject": access_claims()["sub"], "client": "healthforce-portal"}


def test_no_scope_required_needs_only_a_valid_token(client: FlaskClient, rsa: SigningKey) -> None:
    response = client.get("/me", headers=bearer(sign(rsa, access_claims(scope=None))))
    assert response.status_code == 200
    assert response.json == {"scopes": []}


def test_missing_token_gets_bare_challenge(client: FlaskClient) -> None:
    response = client.get("/workers")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="healthforce"'
    assert response.mimetype == "application/problem+json"
    assert response.json is not None
    assert response.json["status"] == 401
    assert response.json["title"] == "Unauthorized"
    assert response.json["type"] == "about:blank"
    assert response.json["detail"]


def test_invalid_token_gets_invalid_token_challenge(client: FlaskClient, rsa: SigningKey) -> None:
    token = sign(rsa, access_claims(aud="account"))
    response = client.get("/workers", headers=bearer(token))
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="healthforce", error="invalid_token", ')
    assert 'error_description="the token is not meant for this service (aud)"' in challenge
    assert response.json is not None
    assert response.json["reason"] == "invalid_token"
    assert token not in response.get_data(as_text=True)
    assert token not in challenge


def test_insufficient_scope_gets_403_naming_the_scopes(
    client: FlaskClient, rsa: SigningKey
) -> None:
    token = sign(rsa, access_claims(scope="healthworkers:read"))
    response = client.get("/workers-pii", headers=bearer(token))
    assert response.status_code == 403
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="healthworkers:read healthworkers:read:pii"' in challenge
    assert response.mimetype == "application/problem+json"
    assert response.json is not None
    assert response.json["required_scopes"] == ["healthworkers:read", "healthworkers:read:pii"]
    assert response.json["title"] == "Forbidden"


def test_scope_denial_reaches_the_hook_and_the_log_with_the_caller(
    app: Flask, rsa: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    denied: list[tuple[str, str, tuple[str, ...]]] = []

    def hook(principal: Principal, error: InsufficientScopeError) -> None:
        denied.append((principal.subject, principal.client_id, error.missing))

    on_scope_denied(app, hook)
    caplog.set_level(logging.INFO, logger="adapter.auth")
    with app.test_client() as client:
        refused = client.get("/workers-pii", headers=bearer(sign(rsa)))
        expired = client.get("/workers-pii", headers=bearer(sign(rsa, access_claims(exp=1))))
        anonymous = client.get("/workers-pii")
    assert (refused.status_code, expired.status_code, anonymous.status_code) == (403, 401, 401)
    subject = access_claims()["sub"]
    # Only the refusal of a caller the token names reaches the hook (the API audits it).
    assert denied == [(subject, "healthforce-portal", ("healthworkers:read:pii",))]
    (line,) = [record for record in caplog.records if "lacking" in record.getMessage()]
    assert (line.__dict__["subject"], line.__dict__["client"]) == (subject, "healthforce-portal")
    assert line.__dict__["missing_scopes"] == ["healthworkers:read:pii"]
    # An expired token whose signature verifies is only logged, with whose it was.
    (stale,) = [record for record in caplog.records if "(expired)" in record.getMessage()]
    assert (stale.__dict__["subject"], stale.__dict__["client"]) == (subject, "healthforce-portal")


def test_scope_from_roles_alone_is_not_enough(client: FlaskClient, rsa: SigningKey) -> None:
    claims = access_claims(scope="", realm_access={"roles": ["healthworkers:read"]})
    assert client.get("/workers", headers=bearer(sign(rsa, claims))).status_code == 403


def test_token_in_query_string_not_accepted(client: FlaskClient, rsa: SigningKey) -> None:
    token = sign(rsa)
    response = client.get("/workers", query_string={"access_token": token})
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]
    # Not even together with a valid header: the URL has leaked the token already.
    response = client.get("/workers", query_string={"access_token": token}, headers=bearer(token))
    assert response.status_code == 400


def test_token_in_form_body_not_accepted(client: FlaskClient, rsa: SigningKey) -> None:
    app_response = client.get("/workers", data={"access_token": sign(rsa)})
    assert app_response.status_code == 401


def test_two_authorization_headers_refused(client: FlaskClient, rsa: SigningKey) -> None:
    token = sign(rsa)
    response = client.get(
        "/workers", headers=[("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x")]
    )
    assert response.status_code == 400


@pytest.mark.parametrize("value", ["Bearer", "Bearer  x.y.z", "Bearer a b", 'Bearer "x"'])
def test_malformed_header_gets_invalid_request(client: FlaskClient, value: str) -> None:
    response = client.get("/workers", headers={"Authorization": value})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_other_scheme_gets_bare_challenge(client: FlaskClient) -> None:
    response = client.get("/workers", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="healthforce"'


def test_keys_never_fetched_gets_503_with_retry_after(
    client: FlaskClient, endpoint: FakeJwksEndpoint, rsa: SigningKey
) -> None:
    endpoint.down = True
    response = client.get("/workers", headers=bearer(sign(rsa)))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert response.mimetype == "application/problem+json"


def test_error_description_holds_only_allowed_characters(
    client: FlaskClient, rsa: SigningKey
) -> None:
    response = client.get("/workers", headers=bearer(sign(rsa, access_claims(exp=None))))
    challenge = response.headers["WWW-Authenticate"]
    description = challenge.split('error_description="', 1)[1].rsplit('"', 1)[0]
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description)


def test_unknown_scope_in_decorator_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="healthworkers:write"):
        require_scope("healthworkers:write")


def test_current_principal_outside_protected_view_fails(app: Flask) -> None:
    with app.test_request_context("/"), pytest.raises(RuntimeError):
        current_principal()
