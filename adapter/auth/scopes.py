"""The OAuth scopes the adapter's API knows, one constant each, with what each one allows.

The OpenAPI spec and the Keycloak realm export (deploy/keycloak/healthforce-realm.json) are
checked against `DESCRIPTIONS`; add a scope here first, then to both of them.
"""

from __future__ import annotations

from typing import Final

HEALTHWORKERS_READ: Final = "healthworkers:read"
HEALTHWORKERS_READ_PII: Final = "healthworkers:read:pii"
SYNC_RUN: Final = "sync:run"
INTEGRATIONS_ADMIN: Final = "integrations:admin"
AUDIT_READ: Final = "audit:read"
EVENTS_ADMIN: Final = "events:admin"

DESCRIPTIONS: Final[dict[str, str]] = {
    HEALTHWORKERS_READ: "Read health workers, findings and look-ups, with personal fields masked",
    HEALTHWORKERS_READ_PII: "See NIK, names and other personal fields in clear",
    SYNC_RUN: "List sync runs and start a batch sync",
    INTEGRATIONS_ADMIN: "Manage the integrations: status, enable or disable each, recent logs",
    AUDIT_READ: "Query the audit trail",
    EVENTS_ADMIN: "List webhook events and dead letters, replay and purge them",
}

ALL_SCOPES: Final[frozenset[str]] = frozenset(DESCRIPTIONS)
