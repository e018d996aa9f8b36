"""What the consumer tests share: names, the adapter's clients (one attempt per call), the
records the pacts ask providers for (from the specs' examples) and matchers built from them:
by type for data, exact for what the adapter relies on (keys, paging flags)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache
from typing import Any, Final

import httpx
from pact import Pact, generate, match
from prometheus_client import CollectorRegistry

from adapter.clients import (
    CircuitBreaker,
    ClientMetrics,
    HttpKkiClient,
    HttpSisdmkClient,
    RetryPolicy,
)
from adapter.clients.contract import CONTRACTS_DIR
from conformance.pacts import CONSUMER, PROVIDERS
from openapi_schemas import load_yaml

__all__ = ["CONSUMER", "PROVIDERS"]

# `new_pact(provider)` (the fixture): a pact whose interactions are written after the test.
PactFactory = Callable[[str], Pact]

KKI_TOKEN: Final = "kki-dev-token"
SISDMK_CLIENT_ID: Final = "sisdmk-dev-client"
SISDMK_CLIENT_SECRET: Final = "sisdmk-dev-secret"
# What the pact's token answer hands the client; on a real provider the state issues a live one.
EXAMPLE_ACCESS_TOKEN: Final = "q1VfZ3xY8bT2mK9wR4sL7nP0cJ6hD5aE"
# A NIK that could exist (valid region, birth date and serial) but that no record carries.
UNKNOWN_NIK: Final = "3171014501950003"
EXAMPLE_INSTANT: Final = "2026-01-31T08:00:00.000000Z"
RFC3339_UTC: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"
# One attempt per call, so an interaction is one request; a breaker that never opens, so an
# error interaction cannot change how a later call behaves.
ONE_ATTEMPT: Final = RetryPolicy(max_attempts=1)
# Keys the store's upsert and paging rely on: compared exactly, at any depth.
EXACT_KEYS: Final = frozenset({"str_number", "worker_id", "code"})


def kki_client(
    base_url: str, api_token: str = KKI_TOKEN, *, transport: httpx.BaseTransport | None = None
) -> HttpKkiClient:
    return HttpKkiClient(
        base_url,
        api_token,
        transport=transport,
        policy=ONE_ATTEMPT,
        breaker=CircuitBreaker("KKI", failure_threshold=1_000),
        metrics=ClientMetrics.for_registry(CollectorRegistry()),
    )


def sisdmk_client(
    base_url: str,
    client_secret: str = SISDMK_CLIENT_SECRET,
    *,
    transport: httpx.BaseTransport | None = None,
) -> HttpSisdmkClient:
    return HttpSisdmkClient(
        base_url,
        SISDMK_CLIENT_ID,
        client_secret,
        transport=transport,
        policy=ONE_ATTEMPT,
        breaker=CircuitBreaker("SISDMK", failure_threshold=1_000),
        metrics=ClientMetrics.for_registry(CollectorRegistry()),
    )


# -- records --------------------------------------------------------------------------------


@cache
def _spec(filename: str) -> dict[str, Any]:
    with (CONTRACTS_DIR / filename).open(encoding="utf-8") as fh:
        spec: dict[str, Any] = load_yaml(fh)
    return spec


def _example(filename: str, path: str) -> Any:
    operation = _spec(filename)["paths"][path]["get"]
    return copy.deepcopy(operation["responses"]["200"]["content"]["application/json"]["example"])


def _stored_fields_dropped(document: dict[str, Any]) -> dict[str, Any]:
    """The document as a provider state creates it: the provider stamps version and time."""
    return {k: v for k, v in document.items() if k not in ("version", "updated_at")}


def event_types(spec_file: str) -> list[str]:
    """The webhook event types a system's contract says it sends (all of them the adapter takes)."""
    types: list[str] = _spec(spec_file)["components"]["schemas"]["EventType"]["enum"]
    return list(types)


def registrations() -> list[dict[str, Any]]:
    """Two registrations of two people, as the provider state creates them."""
    first = _stored_fields_dropped(_example("kki.yaml", "/v1/registrations/{str_number}"))
    second = copy.deepcopy(first)
    number = "QZ00011234567891"
    second.update(str_number=number, nik="3273011203850007", full_name="Budi Santoso")
    second["display_name"] = "dr. Budi Santoso, Sp.A"
    second["birth_date"], second["gender"] = "1985-03-12", "male"
    second["certification"]["str_number"] = number
    second["skp"]["str_number"] = number
    return [first, second]


def health_workers() -> list[dict[str, Any]]:
    first = _stored_fields_dropped(
        _example("sisdmk.yaml", "/v1/health-workers/{worker_id}")["data"]
    )
    second = copy.deepcopy(first)
    second.update(
        worker_id="5b0c2d7e-9f41-4a63-8e25-7c1d3f6a9b84",
        nik="3273011203850007",
        full_name="Budi Santoso",
        display_name="dr. Budi Santoso, Sp.A",
        birth_date="1985-03-12",
        gender="male",
    )
    return [first, second]


def facilities() -> list[dict[str, Any]]:
    first = _stored_fields_dropped(_example("sisdmk.yaml", "/v1/facilities")["data"][0])
    second = copy.deepcopy(first)
    second.update(code="3171015", name="RSUD Tanah Abang Sintetis", bpjs_code="3171R015")
    return [first, second]


# -- matchers -------------------------------------------------------------------------------


def served(document: dict[str, Any], *, version: int = 1) -> Any:
    """A response record: `document` as the provider serves it, matched by type."""
    stamped = {**document, "version": version, "updated_at": EXAMPLE_INSTANT}
    return _shaped(stamped)


def _shaped(value: Any, key: str | None = None) -> Any:
    if key in EXACT_KEYS:
        return value
    if key == "updated_at":
        return match.regex(value, regex=RFC3339_UTC)
    if key == "version":
        return match.int(value)
    if isinstance(value, dict):
        return {name: _shaped(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_shaped(item) for item in value]
    if value is None:
        return None  # the provider must send null where the record has none
    return match.like(value)


def page(limit: int, *, more: bool) -> dict[str, Any]:
    """The `page` object: whether there is more and the cursor are what paging relies on."""
    return {
        "limit": match.int(limit),
        "next_cursor": match.like("WyIyMDI2LTAxLTMxVDA4OjAwOjAwLjAwMDAwMFoiLCJRWjAwMSJd")
        if more
        else None,
        "has_more": more,
    }


def from_state(expression: str, example: str) -> Any:
    """A request value the provider state supplies (`${name}`), `example` in consumer tests."""
    return match.like(example, generator=generate.provider_state(expression))
