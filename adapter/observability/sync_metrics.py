"""Prometheus metrics of batch syncs, live look-ups and connection state.

Labels are system names, modes and outcome words only: never an id or personal data. The
external-call metrics (latency, status, retries, breaker) live with the clients
(`adapter.clients.policy.ClientMetrics`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from adapter.store.models import CONNECTION_STATUSES

SYNC_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


@dataclass(frozen=True)
class SyncMetrics:
    runs: Counter
    records: Counter
    findings: Counter
    duration: Histogram
    last_success: Gauge
    connection_status: Gauge
    lookups: Counter

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> SyncMetrics:
        """The metrics registered once per registry (the default one unless given)."""
        target = registry if registry is not None else REGISTRY
        with _registered_lock:
            existing = _registered.get(target)
            if existing is None:
                existing = _registered[target] = cls._create(target)
            return existing

    @classmethod
    def _create(cls, target: CollectorRegistry) -> SyncMetrics:
        return cls(
            runs=Counter(
                "hf_sync_runs",
                "Batch sync runs by system, mode and final status.",
                ["system", "mode", "status"],
                registry=target,
            ),
            records=Counter(
                "hf_sync_records",
                "Records handled by batch syncs, by outcome "
                "(created, updated, unchanged, rejected).",
                ["system", "outcome"],
                registry=target,
            ),
            findings=Counter(
                "hf_sync_identity_findings",
                "Identity findings (KKI and SISDMK disagree) opened by batch syncs.",
                ["system"],
                registry=target,
            ),
            duration=Histogram(
                "hf_sync_duration_seconds",
                "Wall time of batch sync runs.",
                ["system", "status"],
                buckets=SYNC_BUCKETS,
                registry=target,
            ),
            last_success=Gauge(
                "hf_sync_last_success_timestamp_seconds",
                "Unix time the last successful batch sync of the system finished.",
                ["system"],
                registry=target,
            ),
            connection_status=Gauge(
                "hf_connection_status",
                "1 for the current status of each external system's connection, 0 otherwise.",
                ["system", "status"],
                registry=target,
            ),
            lookups=Counter(
                "hf_live_lookups",
                "Live look-ups by system and how they were answered "
                "(live, stale = stored copy because the system was unreachable, miss).",
                ["system", "answer"],
                registry=target,
            ),
        )

    def set_connection_status(self, system: str, status: str) -> None:
        for candidate in CONNECTION_STATUSES:
            self.connection_status.labels(system, candidate).set(
                1.0 if candidate == status else 0.0
            )


_registered: dict[CollectorRegistry, SyncMetrics] = {}
_registered_lock = threading.Lock()
