"""KKI's static API tokens: a full token and a read-only one (which gets 403 on subscriptions)."""

from __future__ import annotations

import hmac
import inspect
from typing import Any

from starlette.requests import Request

FULL_SCOPES = ["registrations:read", "webhooks:manage"]
READ_SCOPES = ["registrations:read"]


def api_key_info(key: str, request: Request) -> dict[str, Any] | None:
    """connexion's `x-apikeyInfoFunc`: token info for a known token, None (→ 401) otherwise."""
    runtime = request.state.mock
    credentials = runtime.settings.credentials
    if hmac.compare_digest(key.encode(), credentials["api_token"].encode()):
        return {"sub": "kki-dev-client", "scope": FULL_SCOPES}
    if hmac.compare_digest(key.encode(), credentials["readonly_token"].encode()):
        return {"sub": "kki-dev-readonly-client", "scope": READ_SCOPES}
    return None


# connexion inspects this function's signature on every request: computed once here.
api_key_info.__signature__ = inspect.signature(api_key_info)  # type: ignore[attr-defined]
