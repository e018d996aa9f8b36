"""Running `hf-conformance sso` and `adapter` in this process for the tests, and a Keycloak admin
that can add the deliberately misconfigured clients and keys the sso proofs need.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.cli import main
from harness.keycloak import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    KEY_PROVIDER_TYPE,
    REALM,
    KeycloakAdmin,
    KeycloakServer,
)
from tests.integration.conformance.conftest import TODAY

COMMAND = Path(sys.executable).with_name("hf-conformance")


def run_in_process(system: str, url: str, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """`hf-conformance` in this process; its exit code and JSON report ({} if none)."""
    report = tmp_path / f"{system}-report.json"
    report.unlink(missing_ok=True)
    code = main(
        [system, "--base-url", url, "--quiet", "--json", str(report), *args],
        clock=lambda: TODAY,
    )
    return code, json.loads(report.read_text()) if report.exists() else {}


def run_command(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed command as QA runs it."""
    return subprocess.run(
        [str(COMMAND), *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def failing(report: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {
        (f["rule"], f["operation"])
        for f in report.get("findings", [])
        if f["severity"] == "error" and not f["accepted"]
    }


def client_args(clients: Sequence[tuple[str, str]]) -> list[str]:
    return [arg for client_id, secret in clients for arg in ("--client", f"{client_id}:{secret}")]


class ConformanceAdmin(KeycloakAdmin):
    """The bootstrap admin, plus the two calls that build broken realms: clients and keys."""

    @classmethod
    def of(cls, server: KeycloakServer) -> ConformanceAdmin:
        return cls(server.base_url, ADMIN_USER, ADMIN_PASSWORD)

    def create_service_client(
        self,
        client_id: str,
        secret: str,
        default_scopes: Sequence[str],
        attributes: Mapping[str, str] | None = None,
        *,
        realm: str = REALM,
    ) -> None:
        """A confidential client with a service account and exactly these default scopes."""
        self._request(
            "POST",
            f"/{realm}/clients",
            {
                "clientId": client_id,
                "enabled": True,
                "protocol": "openid-connect",
                "publicClient": False,
                "serviceAccountsEnabled": True,
                "standardFlowEnabled": False,
                "directAccessGrantsEnabled": False,
                "clientAuthenticatorType": "client-secret",
                "secret": secret,
                "defaultClientScopes": list(default_scopes),
                "optionalClientScopes": [],
                "attributes": dict(attributes or {}),
            },
        )

    def add_hmac_key(
        self, name: str, *, algorithm: str = "HS256", priority: int = 200, realm: str = REALM
    ) -> None:
        """An active, generated HMAC key provider (Keycloak never publishes it in the JWKS)."""
        self._request(
            "POST",
            f"/{realm}/components",
            {
                "name": name,
                "providerId": "hmac-generated",
                "providerType": KEY_PROVIDER_TYPE,
                "parentId": self.realm(realm)["id"],
                "config": {
                    "priority": [str(priority)],
                    "enabled": ["true"],
                    "active": ["true"],
                    "algorithm": [algorithm],
                    "secretSize": ["32"],
                },
            },
        )
