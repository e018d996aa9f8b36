"""A real Keycloak (fetched by scripts/keycloak.sh) per test module that asks for it; without it
the tests fail with what to run, they are never skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.keycloak import KeycloakServer
from tests.support.keycloak import new_keycloak


@pytest.fixture(scope="module")
def keycloak() -> Iterator[KeycloakServer]:
    """Keycloak with the realm export imported, started once for the module."""
    server = new_keycloak()
    try:
        yield server.start()
    finally:
        server.close()
