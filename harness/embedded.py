"""The adapter's configuration for the embedded default: a SQLite file, no broker, fresh keys.

`embedded_environment` gives the environment variables a local `hf-adapter` needs to talk to
the mocks, with keys and webhook secrets generated for this run (never reuse them elsewhere).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from adapter.store.crypto import KeyRing

# The mocks' documented development credentials (docs/mocks.md), not secrets.
KKI_TOKEN = "kki-dev-token"  # noqa: S105
SISDMK_CLIENT_ID, SISDMK_CLIENT_SECRET = "sisdmk-dev-client", "sisdmk-dev-secret"
# Where the test OpenID Connect provider serves the realm (Keycloak's layout).
DEFAULT_ISSUER = "http://127.0.0.1:8080/realms/healthforce"


def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def embedded_environment(
    workdir: Path,
    *,
    kki_url: str,
    sisdmk_url: str,
    issuer: str = DEFAULT_ISSUER,
    kki_webhook_secret: str | None = None,
    sisdmk_webhook_secret: str | None = None,
) -> dict[str, str]:
    """Variables for an adapter whose store is `workdir`/adapter.sqlite3 and that has no broker."""
    workdir.mkdir(parents=True, exist_ok=True)
    return {
        "DATABASE_URL": f"sqlite:///{workdir / 'adapter.sqlite3'}",
        # The mocks and the test IdP speak plain http on this machine.
        "ALLOW_INSECURE_HTTP": "true",
        "OIDC_ISSUER": issuer,
        "OIDC_AUDIENCE": "hf-adapter",
        "KKI_BASE_URL": kki_url,
        "KKI_API_TOKEN": KKI_TOKEN,
        "SISDMK_BASE_URL": sisdmk_url,
        "SISDMK_CLIENT_ID": SISDMK_CLIENT_ID,
        "SISDMK_CLIENT_SECRET": SISDMK_CLIENT_SECRET,
        "KKI_WEBHOOK_SECRET": kki_webhook_secret or webhook_secret(),
        "SISDMK_WEBHOOK_SECRET": sisdmk_webhook_secret or webhook_secret(),
        "ENCRYPTION_KEYS": KeyRing.generate_key_entry("demo-1"),
        "BLIND_INDEX_KEY": KeyRing.generate_key_entry("demo-bidx"),
        "AUDIT_KEYS": KeyRing.generate_key_entry("demo-audit"),
    }
