"""`Actor.from_principal`: a service account or a person, from the claims of a validated token
shaped as Keycloak 26 issues them (and as an RFC 9068 issuer does)."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.audit import Actor
from adapter.auth.jwks import JwksCache
from adapter.auth.tokens import TokenValidator
from tests.unit.adapter.auth.auth_fakes import (
    AUDIENCE,
    ISSUER,
    FakeJwksEndpoint,
    access_claims,
    jwks,
    rsa_key,
    sign,
)

KEY = rsa_key()
SERVICE_SUB = "19008b0a-7af8-430f-be56-5dc47de62a03"  # a service-account user's UUID
PERSON_SUB = "e90bc907-9404-4799-b842-614b7483a604"


def actor_of(**claims: Any) -> Actor:
    validator = TokenValidator(
        issuer=ISSUER, audience=AUDIENCE, keys=JwksCache(FakeJwksEndpoint(jwks(KEY)))
    )
    return Actor.from_principal(validator.validate(sign(KEY, access_claims(**claims))))


def test_keycloak_client_credentials_token_with_the_service_account_scope_is_a_service() -> None:
    actor = actor_of(
        sub=SERVICE_SUB,
        azp="hf-readonly",
        client_id="hf-readonly",
        clientHost="10.0.0.7",
        clientAddress="10.0.0.7",
    )
    assert actor == Actor("service", SERVICE_SUB, "hf-readonly")


def test_keycloak_service_account_username_makes_a_service() -> None:
    actor = actor_of(sub=SERVICE_SUB, azp="hf-ops", preferred_username="service-account-hf-ops")
    assert actor == Actor("service", SERVICE_SUB, "hf-ops")


def test_client_credentials_token_naming_the_client_as_subject_is_a_service() -> None:
    # RFC 9068 §2.2 and the test IdP: no resource owner, so the client is the subject.
    actor = actor_of(sub="hf-readonly", azp="hf-readonly", client_id="hf-readonly")
    assert actor == Actor("service", "hf-readonly", "hf-readonly")


@pytest.mark.parametrize(
    "extra",
    [
        # Keycloak's password or code login: a session id, the person's username.
        {"sid": "1611020d-44bf-6c0f-522d-5a709ed774c6", "preferred_username": "hf-test-user"},
        # An RFC 9068 issuer puts client_id in a person's token too: alone it says nothing.
        {"client_id": "hf-test-login"},
        # A username that merely contains the prefix is a person's.
        {"preferred_username": "dr-service-account-admin"},
        # So is one that starts with it but names another client than the token's (a person
        # who chose the username, or one brokered from another identity provider).
        {"preferred_username": "service-account-hf-ops"},
    ],
)
def test_a_persons_token_is_a_user(extra: dict[str, Any]) -> None:
    actor = actor_of(sub=PERSON_SUB, azp="hf-test-login", **extra)
    assert actor == Actor("user", PERSON_SUB, "hf-test-login")


def test_a_token_that_says_nothing_of_a_service_account_is_taken_for_a_person() -> None:
    # What Keycloak issues to a client without the service_account scope (and no username
    # mapper): a UUID subject and azp only. Why the realm export gives every service-account
    # client that scope.
    actor = actor_of(sub=SERVICE_SUB, azp="hf-readonly")
    assert actor.kind == "user"
