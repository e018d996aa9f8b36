"""Running `hf-conformance sso` and `adapter` in this process for the tests, the adapter served
for any issuer, and a Keycloak admin that adds the misconfigured clients and keys the proofs need.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL
from werkzeug.serving import make_server

from adapter.app import create_app
from adapter.settings import load_settings
from conformance.cli import main
from harness.keycloak import ADMIN_PASSWORD, ADMIN_USER, KEY_PROVIDER_TYPE, KeycloakAdmin
from harness.processes import free_port
from tests.integration.adapter.sync.support import adapter_environment, migrated
from tests.integration.conformance.support import TODAY
from tests.support.keycloak import KeycloakRealm

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
    def of(cls, keycloak: KeycloakRealm) -> ConformanceAdmin:
        """Acting on `keycloak`'s realm."""
        return cls(keycloak.base_url, ADMIN_USER, ADMIN_PASSWORD, realm=keycloak.realm)

    def create_service_client(
        self,
        client_id: str,
        secret: str,
        default_scopes: Sequence[str],
        attributes: Mapping[str, str] | None = None,
        *,
        realm: str | None = None,
    ) -> None:
        """A confidential client with a service account and exactly these default scopes."""
        realm = realm or self.default_realm
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
        self,
        name: str,
        *,
        algorithm: str = "HS256",
        priority: int = 200,
        realm: str | None = None,
    ) -> None:
        """An active, generated HMAC key provider (Keycloak never publishes it in the JWKS)."""
        realm = realm or self.default_realm
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


@contextmanager
def adapter_for_issuer(issuer: str, database: URL, kki_url: str, sisdmk_url: str) -> Iterator[str]:
    """The adapter on a free port, trusting `issuer`'s tokens; yields its base URL.
    (tests/integration/adapter/api/stack.py does the same for the test IdP.)"""
    env = adapter_environment(database.render_as_string(hide_password=False), kki_url, sisdmk_url)
    engine = migrated(database)
    app = create_app(load_settings(env | {"OIDC_ISSUER": issuer}), engine=engine)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="adapter-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        engine.dispose()
