"""Every scope x every realm client, with real tokens, through `require_scope` on a tiny app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from adapter.auth import scopes
from adapter.auth.tokens import TokenValidator
from adapter.auth.web import current_principal, init_app, require_scope
from harness.idp import IdpProcess, realm_clients
from tests.integration.adapter.auth.support import AUDIENCE

CLIENTS = sorted(realm_clients())
# One route per scope, plus the pair the personal-data read needs.
ROUTES = {f"/{scope}": (scope,) for scope in sorted(scopes.ALL_SCOPES)} | {
    "/pii": (scopes.HEALTHWORKERS_READ, scopes.HEALTHWORKERS_READ_PII)
}


@pytest.fixture(scope="module")
def client(idp: IdpProcess) -> Iterator[FlaskClient]:
    app = Flask("scope-matrix")
    init_app(app, TokenValidator.for_issuer(idp.issuer, AUDIENCE))
    for path, required in ROUTES.items():

        def view() -> object:
            return jsonify(client=current_principal().client_id)

        app.add_url_rule(path, endpoint=path, view_func=require_scope(*required)(view))
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tokens(idp: IdpProcess) -> dict[str, str]:
    """Each client's token with its default scopes, as Keycloak would grant them."""
    return {client_id: idp.token(client_id) for client_id in CLIENTS}


def expected_status(client_id: str, required: tuple[str, ...]) -> int:
    client = realm_clients()[client_id]
    if AUDIENCE not in client.audiences:
        return 401  # its token is for another service
    return 200 if set(required) <= set(client.default_scopes) else 403


@pytest.mark.parametrize("client_id", CLIENTS)
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_scope_matrix(
    client: FlaskClient, tokens: dict[str, str], client_id: str, path: str
) -> None:
    response = client.get(path, headers={"Authorization": f"Bearer {tokens[client_id]}"})
    expected = expected_status(client_id, ROUTES[path])
    assert response.status_code == expected, response.json
    if expected == 200:
        assert response.json == {"client": client_id}
    elif expected == 403:
        challenge = response.headers["WWW-Authenticate"]
        assert 'error="insufficient_scope"' in challenge
        assert f'scope="{" ".join(ROUTES[path])}"' in challenge
    else:
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_no_token_gets_401(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="healthforce"'
    assert response.mimetype == "application/problem+json"


def test_narrowed_token_loses_the_scopes_it_did_not_ask_for(
    client: FlaskClient, idp: IdpProcess
) -> None:
    token = idp.token("healthforce-portal", [scopes.HEALTHWORKERS_READ])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/{scopes.HEALTHWORKERS_READ}", headers=headers).status_code == 200
    assert client.get("/pii", headers=headers).status_code == 403


def test_client_without_api_scopes_cannot_ask_for_them(idp: IdpProcess) -> None:
    response = idp.token_response("hf-adapter-service", [scopes.HEALTHWORKERS_READ])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
