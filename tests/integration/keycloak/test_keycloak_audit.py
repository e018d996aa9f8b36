"""Who the audit trail says called, with tokens a real Keycloak issues (the module's own copy of
the realm export, on the run's shared server): a client-credentials token is its client's service
account, a password login a person, each under the token's subject and client; a refused read is
audited the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL, make_url

from adapter.app import create_app
from adapter.settings import load_settings
from adapter.store.models import AuditEvent
from harness.keycloak import LOGIN_CLIENT, TEST_USER
from tests.integration.adapter.sync.support import adapter_environment, migrated
from tests.integration.keycloak.test_keycloak_sso import AUDIENCE, secret, user_password
from tests.support.databases import BACKENDS, PostgresServer
from tests.support.keycloak import KeycloakRealm

pytestmark = [pytest.mark.integration, pytest.mark.keycloak]

# No registry is called: the reads here are of the store.
NOWHERE = "http://127.0.0.1:9"


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


@pytest.fixture(scope="module")
def keycloak_tokens(keycloak: KeycloakRealm) -> dict[str, str]:
    """A service account's tokens (client credentials) and a person's (password login)."""
    tokens = {
        client: str(keycloak.client_credentials(client, secret(client))["access_token"])
        for client in ("hf-readonly", "hf-ops")
    }
    login = keycloak.password_grant(
        LOGIN_CLIENT, secret(LOGIN_CLIENT), TEST_USER, user_password(TEST_USER)
    )
    tokens[LOGIN_CLIENT] = str(login["access_token"])
    return tokens


@dataclass(frozen=True)
class Served:
    app: Flask
    engine: Engine


@pytest.fixture(params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_server: PostgresServer,
    keycloak: KeycloakRealm,
) -> Iterator[Served]:
    database: URL = (
        postgres_server.create_database()
        if request.param == "postgresql"
        else make_url(f"sqlite:///{tmp_path / 'adapter.sqlite3'}")
    )
    env = adapter_environment(database.render_as_string(hide_password=False), NOWHERE, NOWHERE)
    env |= {"OIDC_ISSUER": keycloak.issuer(), "OIDC_AUDIENCE": AUDIENCE}
    engine = migrated(database)
    try:
        yield Served(create_app(load_settings(env), engine=engine), engine)
    finally:
        engine.dispose()


def trail(engine: Engine) -> list[tuple[str, str, str | None, str | None, str, dict[str, Any]]]:
    with engine.connect() as connection:
        rows = connection.execute(select(AuditEvent).order_by(AuditEvent.seq)).all()
    return [
        (
            row.action,
            row.actor_kind,
            row.actor_subject,
            row.actor_client,
            row.outcome,
            json.loads(row.detail or "{}"),
        )
        for row in rows
    ]


def test_keycloak_issues_a_service_account_token_the_uuid_subject_and_its_scope_claims(
    keycloak_tokens: dict[str, str],
) -> None:
    # What the classification reads: the subject is the service-account user's UUID, never the
    # client id; the service_account scope's claims are there, and not in a person's token.
    service = claims(keycloak_tokens["hf-readonly"])
    person = claims(keycloak_tokens[LOGIN_CLIENT])
    assert service["sub"] != "hf-readonly"
    assert (service["azp"], service["client_id"]) == ("hf-readonly", "hf-readonly")
    assert "clientAddress" in service
    assert person["azp"] == LOGIN_CLIENT
    assert {"client_id", "clientAddress", "clientHost"}.isdisjoint(person)


def test_reads_with_keycloak_tokens_are_audited_as_service_and_as_person(
    served: Served, keycloak_tokens: dict[str, str]
) -> None:
    service_subject = claims(keycloak_tokens["hf-readonly"])["sub"]
    person_subject = claims(keycloak_tokens[LOGIN_CLIENT])["sub"]
    ops_subject = claims(keycloak_tokens["hf-ops"])["sub"]
    with served.app.test_client() as client:
        for caller in ("hf-readonly", LOGIN_CLIENT):
            response = client.get(
                "/api/v1/health-workers",
                headers={"Authorization": f"Bearer {keycloak_tokens[caller]}"},
            )
            assert response.status_code == 200, response.data
        refused = client.get(
            "/api/v1/health-workers",
            headers={"Authorization": f"Bearer {keycloak_tokens['hf-ops']}"},
        )
        assert refused.status_code == 403
    assert trail(served.engine) == [
        ("healthworker.list", "service", service_subject, "hf-readonly", "success", trail_list()),
        ("healthworker.list", "user", person_subject, LOGIN_CLIENT, "success", trail_list()),
        (
            "healthworker.list",
            "service",
            ops_subject,
            "hf-ops",
            "denied",
            {"reason": "insufficient_scope", "missing_scopes": ["healthworkers:read"]},
        ),
    ]


def trail_list() -> dict[str, Any]:
    """The detail of a list read of the empty store, masked."""
    return {"count": 0, "masked": True, "worker_ids": []}
