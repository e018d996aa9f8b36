"""The run's one Keycloak (tests/support/keycloak.py: started once, shared with the other modules
and xdist workers), with a copy of the realm export of the module's own; without the install the
tests fail with what to run, they are never skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.keycloak import KeycloakRealm, module_realm


@pytest.fixture(scope="module")
def keycloak(request: pytest.FixtureRequest, keycloak_server: str) -> Iterator[KeycloakRealm]:
    """The module's own realm (``healthforce-<module>``), imported from the realm export."""
    with module_realm(request, keycloak_server) as realm:
        yield realm
