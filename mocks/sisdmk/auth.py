"""SISDMK bearer tokens, issued by the mock's own client-credentials token endpoint."""

from __future__ import annotations

import inspect
from typing import Any

from starlette.requests import Request


def bearer_info(token: str, request: Request) -> dict[str, Any] | None:
    """connexion's `x-bearerInfoFunc`: token info for a live token, None (→ 401) otherwise."""
    issued = request.state.mock.token_info(token)
    if issued is None:
        return None
    return {"sub": issued.client_id, "scope": sorted(issued.scopes)}


# connexion inspects this function's signature on every request: computed once here.
bearer_info.__signature__ = inspect.signature(bearer_info)  # type: ignore[attr-defined]
