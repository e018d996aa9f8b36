"""Who a validated access token speaks for, and what it may do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

# The claims besides `sub` and `azp` that say who holds a token, kept (when strings) for
# `adapter.audit.actors`: Keycloak's username, and the three claims of Keycloak's
# ``service_account`` client scope, whose values only a service account's session carries.
IDENTITY_CLAIMS: Final = ("preferred_username", "client_id", "clientHost", "clientAddress")


@dataclass(frozen=True)
class Principal:
    """The caller behind a validated access token.

    `scopes` come from the token's space-separated ``scope`` claim and are what `require_scope`
    checks. Keycloak roles (``realm_access.roles``, ``resource_access.<client>.roles``) are
    carried for callers that want them; they grant no scope. `identity` holds the token's
    `IDENTITY_CLAIMS` (those it carries), from which the audit trail tells a service account
    from a person (`adapter.audit.actors.Actor.from_principal`).
    """

    subject: str
    client_id: str
    scopes: frozenset[str]
    realm_roles: frozenset[str] = frozenset()
    client_roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    token_id: str | None = None
    expires_at: int | None = None
    identity: Mapping[str, str] = field(default_factory=dict)

    def has_scopes(self, *scopes: str) -> bool:
        return all(scope in self.scopes for scope in scopes)

    def missing_scopes(self, scopes: Iterable[str]) -> tuple[str, ...]:
        return tuple(scope for scope in scopes if scope not in self.scopes)

    def has_role(self, role: str, *, client: str | None = None) -> bool:
        """A realm role, or with `client` a role of that client (``resource_access``)."""
        if client is None:
            return role in self.realm_roles
        return role in self.client_roles.get(client, frozenset())
