"""The write-path tests' stack and readers: `hf-adapter serve` and `worker` processes (on
PostgreSQL with RabbitMQ, or on SQLite with the embedded queue), API tokens from the test IdP,
the real mocks; the audit trail and the worker's metrics as the tests read them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from adapter.clients.http import tls_context
from adapter.store.models import AuditEvent, SyncRun
from harness.idp import IdpProcess
from tests.integration.adapter.api.stack import AUDIENCE, OPS
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import Adapter, adapter_stack

# The actions `apply_documents` audits, one per door: batch sync, live look-up, webhook event.
WRITE_ACTIONS = ("sync.write", "lookup.refresh", "event.apply")


@dataclass(frozen=True)
class Entry:
    """One audit entry, its JSON columns decoded."""

    seq: int
    actor: tuple[str, str | None, str | None]
    action: str
    resource_type: str
    fields: list[str]
    detail: dict[str, Any]
    outcome: str

    @property
    def written(self) -> list[str]:
        ids: list[str] = self.detail.get("written_ids", [])
        return ids


@dataclass
class Stack:
    adapter: Adapter
    kki: Mock
    sisdmk: Mock
    idp: IdpProcess

    def api(self, client_id: str) -> httpx.Client:
        """An HTTP client of the served adapter with a real token of `client_id`."""
        token = self.idp.token(client_id)
        return httpx.Client(
            base_url=self.adapter.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
            verify=tls_context(None),
        )

    def sync(self, system: str) -> dict[str, Any]:
        """A sync run requested through the API, as an operator does, and started by the
        scheduler (`hf-adapter schedule --once`); its document once ended."""
        with self.api(OPS) as ops:
            started = ops.post("/api/v1/sync-runs", json={"system": system})
            assert started.status_code == 202, started.text
            location = started.headers["Location"]
            status, output = self.adapter.cli("schedule", "--once")
            assert status == 0, output
            run: dict[str, Any] = ops.get(location).json()
        return run

    def entries(self, *actions: str) -> list[Entry]:
        """The audit trail in order, only `actions` when given."""
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if actions:
            query = query.where(AuditEvent.action.in_(actions))
        with Session(self.adapter.engine) as session:
            return [
                Entry(
                    seq=row.seq,
                    actor=(row.actor_kind, row.actor_subject, row.actor_client),
                    action=row.action,
                    resource_type=row.resource_type,
                    fields=json.loads(row.fields or "[]"),
                    detail=json.loads(row.detail or "{}"),
                    outcome=row.outcome,
                )
                for row in session.scalars(query)
            ]

    def audit_count(self) -> int:
        with Session(self.adapter.engine) as session:
            return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)

    def sync_runs(self, system: str) -> list[SyncRun]:
        with Session(self.adapter.engine) as session:
            query = select(SyncRun).where(SyncRun.system == system).order_by(SyncRun.started_at)
            return list(session.scalars(query))


@contextmanager
def write_stack(
    database_url: URL,
    mocks: tuple[Mock, Mock],
    idp: IdpProcess,
    *,
    broker: str | None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """`adapter_stack` with the API's tokens checked against `idp`; workers are the test's."""
    kki, sisdmk = mocks
    environment = {"OIDC_ISSUER": idp.issuer, "OIDC_AUDIENCE": AUDIENCE, **(extra_env or {})}
    with adapter_stack(database_url, kki, sisdmk, broker=broker, extra_env=environment) as adapter:
        yield Stack(adapter, kki, sisdmk, idp)


# One client for every scrape: a new one per call (its TLS context) costs ~45 ms of CPU, and a
# test polls the metrics several times a second. No kept-alive connections: the scraped worker
# may be another process by the next call.
_SCRAPER = httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0))


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`, read from `url`."""
    text = _SCRAPER.get(url).raise_for_status().text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
