"""What the load users send and keep: Standard Webhooks deliveries shaped like the sources' own
(`WebhookEvent` of contracts/openapi/{kki,sisdmk}.yaml) and the log of every event id sent.

No Locust here: the runner, the report and the unit tests import this module too.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from standardwebhooks import Webhook

SOURCES: Final = ("kki", "sisdmk")
# The event types the worker fetches and applies (a facility event is only acknowledged).
EVENT_TYPES: Final = {"kki": "registration.corrected", "sisdmk": "worker.updated"}
# Above any version a source holds, so the worker always fetches and applies (the heavy path)
# instead of answering "superseded" from the store.
EVENT_VERSION: Final = 1_000_000
SENT_PREFIX: Final = "sent-"
SYNC_PREFIX: Final = "sync-run-"


@dataclass(frozen=True)
class Delivery:
    """One webhook request: its event id, body and the Standard Webhooks headers."""

    source: str
    event_id: str
    body: bytes
    headers: dict[str, str]


def new_event(source: str, resource_id: str, *, now: dt.datetime) -> tuple[str, bytes]:
    """A new event about `resource_id` (an STR number or a SISDMK worker id): id and body."""
    event_id = str(uuid.uuid4())
    # The sources send an HMAC of the NIK; the adapter never keeps it. Ours is of the event id,
    # so no NIK is ever involved.
    nik_hash = hashlib.sha256(event_id.encode()).hexdigest()
    if source == "kki":
        subject: dict[str, Any] = {"nik_hash": nik_hash, "str_number": resource_id}
        data: dict[str, Any] = {
            "str_number": resource_id,
            "version": EVENT_VERSION,
            "status": "AKTIF",
        }
    else:
        subject = {"nik_hash": nik_hash, "worker_id": resource_id}
        data = {"worker_id": resource_id, "version": EVENT_VERSION}
    document = {
        "event_id": event_id,
        "type": EVENT_TYPES[source],
        "occurred_at": now.astimezone(dt.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        "source": source,
        "subject": subject,
        "data": data,
        "version": "1",
    }
    return event_id, json.dumps(document, separators=(",", ":")).encode()


def signed(source: str, event_id: str, body: bytes, secret: str, *, now: dt.datetime) -> Delivery:
    """The delivery of `body` signed with `secret` (``whsec_…``) at `now`, as a source sends it."""
    signature = Webhook(secret).sign(event_id, now, body.decode())
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    return Delivery(source, event_id, body, headers)


def forged_secret() -> str:
    """A secret the adapter does not hold: deliveries signed with it must be refused (401)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True)
class Resources:
    """The source ids the events may name: they must exist at the sources, or the worker
    dead-letters the event (not found)."""

    kki: Sequence[str]
    sisdmk: Sequence[str]

    def of(self, source: str) -> Sequence[str]:
        return self.kki if source == "kki" else self.sisdmk

    @classmethod
    def read(cls, path: Path) -> Resources:
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls(kki=list(document["kki"]), sisdmk=list(document["sisdmk"]))

    def write(self, path: Path) -> None:
        path.write_text(
            json.dumps({"kki": list(self.kki), "sisdmk": list(self.sisdmk)}), encoding="utf-8"
        )


class SentLog:
    """Every event id sent by one Locust process, one JSON line each, in its own file.

    ``{"s": source, "id": event id, "k": new|duplicate|forged, "st": HTTP status (0: no
    answer), "t": unix time sent}``. One file per process (master, each worker), so
    distributed runs never share a file; the report reads them all.
    """

    def __init__(self, folder: Path, process: str | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        process = process or f"{socket.gethostname()}-{os.getpid()}"
        self.path = folder / f"{SENT_PREFIX}{process}.jsonl"
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def record(self, source: str, event_id: str, kind: str, status: int, sent_at: float) -> None:
        if self._file is not None:
            line = {"s": source, "id": event_id, "k": kind, "st": status, "t": round(sent_at, 3)}
            self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_sent(folder: Path) -> Iterator[dict[str, Any]]:
    """Every line of every process's sent log in `folder`."""
    for path in sorted(folder.glob(f"{SENT_PREFIX}*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)
