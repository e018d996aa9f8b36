"""A real Keycloak for a test module; without its install the test fails saying what to run."""

from __future__ import annotations

import pytest

from harness.keycloak import KeycloakServer, KeycloakUnavailable


def new_keycloak() -> KeycloakServer:
    """A Keycloak server (not started); a missing install fails the test, never skips it."""
    try:
        server = KeycloakServer()
    except KeycloakUnavailable as exc:
        message = str(exc)
    else:
        return server
    # Outside the except block: the failure shows the one line, not a chained traceback.
    pytest.fail(message, pytrace=False)
