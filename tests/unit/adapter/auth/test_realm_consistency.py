"""scopes.py, the Keycloak realm export and the test provider's configuration agree."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.auth import scopes
from harness.idp import IdpUnavailable, load_realm, provider_config, realm_clients

READ_SCOPES = {scopes.HEALTHWORKERS_READ, scopes.HEALTHWORKERS_READ_PII, scopes.AUDIT_READ}
ADMIN_SCOPES = {scopes.SYNC_RUN, scopes.INTEGRATIONS_ADMIN, scopes.EVENTS_ADMIN}


@pytest.fixture(scope="module")
def realm() -> dict[str, Any]:
    return load_realm()


@pytest.fixture(scope="module")
def idp_config() -> dict[str, Any]:
    try:
        return provider_config()
    except IdpUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def clients_by_id(realm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {client["clientId"]: client for client in realm["clients"]}


def test_realm_client_scopes_are_exactly_scopes_py(realm: dict[str, Any]) -> None:
    in_token = {
        scope["name"]: scope["description"]
        for scope in realm["clientScopes"]
        if scope["attributes"].get("include.in.token.scope") == "true"
    }
    assert in_token == scopes.DESCRIPTIONS


def test_every_assigned_client_scope_is_defined(realm: dict[str, Any]) -> None:
    defined = {scope["name"] for scope in realm["clientScopes"]}
    for client in realm["clients"]:
        assigned = set(client["defaultClientScopes"]) | set(client["optionalClientScopes"])
        assert assigned <= defined, client["clientId"]


def test_every_assigned_role_is_defined(realm: dict[str, Any]) -> None:
    realm_roles = {role["name"] for role in realm["roles"]["realm"]}
    client_roles = {
        client: {role["name"] for role in roles}
        for client, roles in realm["roles"]["client"].items()
    }
    for user in realm["users"]:
        assert set(user["realmRoles"]) <= realm_roles, user["username"]
        for client, roles in user["clientRoles"].items():
            assert set(roles) <= client_roles[client], user["username"]


def test_adapter_is_a_bearer_only_resource_server(realm: dict[str, Any]) -> None:
    adapter = clients_by_id(realm)["hf-adapter"]
    assert adapter["bearerOnly"] is True
    assert adapter["serviceAccountsEnabled"] is False
    assert not adapter.get("secret")


def test_api_clients_get_the_adapter_audience_and_their_scopes() -> None:
    clients = realm_clients()
    expected = {
        "healthforce-portal": READ_SCOPES,
        "hf-ops": ADMIN_SCOPES | {scopes.AUDIT_READ},
        "hf-readonly": {scopes.HEALTHWORKERS_READ},
    }
    for client_id, client_scopes in expected.items():
        assert clients[client_id].audiences == ("hf-adapter",), client_id
        assert set(clients[client_id].default_scopes) == client_scopes, client_id


def test_adapter_service_account_targets_another_service() -> None:
    own = realm_clients()["hf-adapter-service"]
    assert own.audiences == ("healthforce-registry",)
    assert own.default_scopes == ()


def test_test_provider_config_matches_realm_export(idp_config: dict[str, Any]) -> None:
    assert set(idp_config["tokenScopes"]) == scopes.ALL_SCOPES
    assert idp_config["realm"] == "healthforce"
    provider_clients = {client["clientId"]: client for client in idp_config["clients"]}
    assert set(provider_clients) == set(realm_clients())
    for client_id, client in realm_clients().items():
        seen = provider_clients[client_id]
        assert seen["secret"] == client.secret
        assert tuple(seen["defaultScopes"]) == client.default_scopes
        assert tuple(seen["audiences"]) == client.audiences
    assert set(idp_config["audiences"]) == {"hf-adapter", "healthforce-registry", "account"}


def test_test_provider_roles_match_service_accounts(
    idp_config: dict[str, Any], realm: dict[str, Any]
) -> None:
    users = {
        user["serviceAccountClientId"]: user
        for user in realm["users"]
        if "serviceAccountClientId" in user
    }
    for client in idp_config["clients"]:
        user = users[client["clientId"]]
        assert client["realmRoles"] == user["realmRoles"]
        assert client["clientRoles"] == user["clientRoles"]


def test_only_the_test_login_client_takes_passwords(realm: dict[str, Any]) -> None:
    password_clients = [
        client["clientId"] for client in realm["clients"] if client["directAccessGrantsEnabled"]
    ]
    assert password_clients == ["hf-test-login"]
    login = clients_by_id(realm)["hf-test-login"]
    assert login["serviceAccountsEnabled"] is False
    assert login["secret"].startswith("dev-only-")


def test_test_user_has_a_complete_profile(realm: dict[str, Any]) -> None:
    # Keycloak 24+ refuses a password login ("Account is not fully set up") to a user whose
    # profile lacks a required attribute: email, first name and last name by default.
    (user,) = [u for u in realm["users"] if "serviceAccountClientId" not in u]
    assert user["username"] == "hf-test-user"
    assert all(user.get(attribute) for attribute in ("email", "firstName", "lastName"))
    assert user["credentials"][0]["temporary"] is False
