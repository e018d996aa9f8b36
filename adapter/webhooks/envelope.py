"""The webhook envelope: checked against the `WebhookEvent` schema of the source's contract.

Only what the worker needs leaves this module (ids, type, version, time): the envelope's
``nik_hash`` is never kept.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import strict_json
from adapter.clients import kki, sisdmk
from adapter.clients.contract import contract_for
from adapter.merge.documents import MAX_SOURCE_VERSION
from adapter.webhooks.signature import WebhookRejected
from openapi_schemas import compiled_validator

SOURCES: Final = ("kki", "sisdmk")
# The resource an event is about, by source: the id the worker fetches.
FACILITY_EVENT: Final = "facility.updated"
# The contracts set no maximum on `data.version`; the inbox's `resource_version` column holds
# what the store's version columns hold.
MAX_RESOURCE_VERSION: Final = MAX_SOURCE_VERSION


@dataclass(frozen=True)
class EventEnvelope:
    """What the adapter keeps of one event: ids, type, version and when it happened."""

    source: str
    event_id: str
    event_type: str
    resource_id: str
    resource_version: int
    occurred_at: dt.datetime


def load_schemas() -> None:
    """Read and compile every source's schema now, before requests arrive.

    Read lazily, the contract's YAML took a second or more of CPU on the first webhook of each
    process, and every request thread arriving meanwhile parsed it too (`cache` does not make
    concurrent first callers wait for one another): that was the whole p99 of a short run.
    """
    for source in SOURCES:
        _event_validator(source)


def parse_envelope(source: str, webhook_id: str, body: bytes) -> EventEnvelope:
    """The envelope of a verified body, or `WebhookRejected` (400 not JSON, 422 not the schema)."""
    try:
        document = strict_json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookRejected(400, "json", "the body is not valid UTF-8 JSON") from None
    except strict_json.NotJson as exc:
        raise WebhookRejected(400, "json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise WebhookRejected(400, "json", "the body's JSON is nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise WebhookRejected(400, "json", "the body's JSON holds a number too long") from None
    validator = _event_validator(source)
    if not validator.is_valid(document):
        # Which rule failed, never the value: the body may carry a NIK by mistake.
        error = next(iter(validator.iter_errors(document)))
        where = "/".join(str(part) for part in error.instance_path) or "(root)"
        raise WebhookRejected(
            422,
            "schema",
            f"the body is not a {source} WebhookEvent: at {where}, rule "
            f"{'/'.join(str(part) for part in error.schema_path)} failed",
        )
    if document["event_id"] != webhook_id:
        raise WebhookRejected(422, "id_mismatch", "event_id differs from the webhook-id header")
    data = document["data"]
    version = int(data["version"])
    if version > MAX_RESOURCE_VERSION:
        raise WebhookRejected(
            422,
            "version_out_of_range",
            f"data.version is larger than {MAX_RESOURCE_VERSION} (2^31 - 1), the largest the "
            "inbox stores",
        )
    if source == "kki":
        resource_id = str(data["str_number"])
    elif document["type"] == FACILITY_EVENT:
        resource_id = str(data["facility_code"])
    else:
        resource_id = str(data["worker_id"])
    return EventEnvelope(
        source=source,
        event_id=str(document["event_id"]),
        event_type=str(document["type"]),
        resource_id=resource_id,
        resource_version=version,
        occurred_at=_instant(str(document["occurred_at"])),
    )


def _instant(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookRejected(422, "schema", "occurred_at is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise WebhookRejected(422, "schema", "occurred_at has no time zone")
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise WebhookRejected(
            422, "schema", "occurred_at is outside the years 1 to 9999 once in UTC"
        ) from None


@cache
def _event_schema(source: str) -> dict[str, Any]:
    # The contract the source's client loads too (`contract_for`, once per process).
    client = {"kki": kki, "sisdmk": sisdmk}[source]
    document = contract_for(client.SYSTEM, client.SPEC_FILE).document
    schema: dict[str, Any] = document["components"]["schemas"]["WebhookEvent"]
    return schema


@cache
def _event_validator(source: str) -> Any:
    validator = compiled_validator(_event_schema(source))
    if validator is None:  # the envelope schemas are not self-referencing
        raise RuntimeError(f"the {source} WebhookEvent schema could not be compiled")
    return validator
