"""Constants and helpers the mock integration tests share."""

from __future__ import annotations

from typing import Any

import httpx

from adapter.clients.http import tls_context
from harness.processes import ManagedProcess

SIZE = 500
SEED = 42
KKI_TOKEN = "kki-dev-token"
KKI_READONLY_TOKEN = "kki-dev-readonly-token"
SISDMK_CLIENT = {"client_id": "sisdmk-dev-client", "client_secret": "sisdmk-dev-secret"}
SISDMK_READONLY = {
    "client_id": "sisdmk-dev-readonly",
    "client_secret": "sisdmk-dev-readonly-secret",
}
# Tests see webhook retries in seconds, not minutes.
FAST_WEBHOOKS = ["--webhook-base-delay-ms", "100", "--webhook-max-delay-ms", "2000"]
# A client kept for a whole session drops an idle connection well before the mock (uvicorn)
# closes it after 5 s: with httpx's default of the same 5 s, a request sent as the server closes
# the connection gets "Server disconnected without sending a response" (seen at load ~20, where
# a fixture's token fetch took longer than 5 s between two admin calls).
KEEPALIVE = httpx.Limits(keepalive_expiry=2.0)


class Mock:
    def __init__(self, process: ManagedProcess, url: str) -> None:
        self.process = process
        self.url = url
        self.admin = httpx.Client(
            base_url=f"{url}/__admin", timeout=10, limits=KEEPALIVE, verify=tls_context(None)
        )

    def reset(self) -> None:
        response = self.admin.post(
            "/reset", json={"faults": True, "subscriptions": True, "deliveries": True}
        )
        response.raise_for_status()

    def close(self) -> None:
        self.admin.close()
        self.process.close()


def sisdmk_token(url: str, credentials: dict[str, str] = SISDMK_CLIENT) -> str:
    response = httpx.post(
        f"{url}/oauth2/v1/accesstoken",
        params={"grant_type": "client_credentials"},
        data=credentials,
        timeout=10,
        verify=tls_context(None),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def all_pages(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a cursor-paged list (either mock's envelope), checking the page object."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body.get("status", 200) == 200  # SISDMK's envelope repeats the status
        items += body["data"]
        cursor = body["page"]["next_cursor"]
        assert body["page"]["has_more"] == (cursor is not None)
        if cursor is None:
            return items
    raise AssertionError("pagination never ended")
