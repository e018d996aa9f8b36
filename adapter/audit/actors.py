"""Who acts, as the audit trail records them: an SSO token's holder (a person or a service
account), the console's operator, or the adapter itself."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Final

from adapter.auth.principal import Principal

# Keycloak names a client's service-account user "service-account-<client id>".
SERVICE_ACCOUNT_PREFIX: Final = "service-account-"
# The claims Keycloak's `service_account` client scope maps from a session's notes: the client's
# id and where it called from. Keycloak writes those notes for a client-credentials grant only.
SERVICE_ACCOUNT_CLAIM: Final = "client_id"
SERVICE_ACCOUNT_ORIGIN_CLAIMS: Final = ("clientAddress", "clientHost")


@dataclass(frozen=True)
class Actor:
    """Who acts: a person or service with an SSO token, or the adapter itself."""

    kind: str  # user | service | system
    subject: str | None = None
    client: str | None = None

    @classmethod
    def from_principal(cls, principal: Principal) -> Actor:
        """The holder of a validated access token: subject and client from the token, the kind
        from `is_service_account`. Every door that takes SSO tokens records callers this way."""
        kind = "service" if is_service_account(principal) else "user"
        return cls(kind, principal.subject, principal.client_id)


def is_service_account(principal: Principal) -> bool:
    """Whether the token speaks for a client's service account rather than for a person.

    Keycloak gives a service account's token the account's UUID as ``sub`` (never the client's
    id) and says what it is in claims a person's token never carries: ``preferred_username``
    "service-account-<the token's client>" (with a ``profile``-style username mapper), and
    ``client_id`` with ``clientAddress``/``clientHost`` (its ``service_account`` client scope;
    the realm export gives it to every service-account client). An issuer whose
    client-credentials tokens name the client as ``sub`` (RFC 9068 §2.2, the test IdP) is read
    by that.
    """
    identity = principal.identity
    # Only the username Keycloak gives the token's own client's account: a person whose
    # username merely starts with the prefix (an editable or brokered username) stays a person.
    if identity.get("preferred_username") == SERVICE_ACCOUNT_PREFIX + principal.client_id:
        return True
    # RFC 9068 puts client_id in every token, a person's too: alone it says nothing, only with
    # the origin claims that Keycloak's service_account scope adds beside it.
    if SERVICE_ACCOUNT_CLAIM in identity and any(
        claim in identity for claim in SERVICE_ACCOUNT_ORIGIN_CLAIMS
    ):
        return True
    return principal.subject == principal.client_id


SYSTEM_SYNC: Final = Actor("system", "hf-adapter sync")
WORKER: Final = Actor("system", "hf-adapter worker")
# The audit trail's client for actions taken at the console (beside SSO clients' ids).
CLI_CLIENT: Final = "hf-adapter-cli"


def command_line_operator() -> Actor:
    """Who runs an ``hf-adapter`` command by hand: the OS user of the process's real uid (its
    uid when the system has no name for it). Never LOGNAME/USER, which anyone may set
    (`getpass.getuser` reads them first)."""
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (some containers)
        name = f"uid:{uid}"
    return Actor("user", name, CLI_CLIENT)
