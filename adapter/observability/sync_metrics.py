"""Prometheus metrics of batch syncs, live look-ups and connection state.

Labels are system names, modes and outcome words only: never an id or personal data. The
external-call metrics (latency, status, retries, breaker) live with the clients
(`adapter.clients.policy.ClientMetrics`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapter.observability.metric_sets import MetricSet
from adapter.store.models import CONNECTION_STATUSES, SYNC_MODES

SYNC_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
# How a run ended (`hf_sync_runs_total{status}`) and what became of its records.
RUN_OUTCOMES: Final = ("succeeded", "failed")
RECORD_OUTCOMES: Final = ("created", "updated", "unchanged", "rejected")


@dataclass(frozen=True)
class SyncMetrics(MetricSet):
    runs: Counter
    records: Counter
    findings: Counter
    duration: Histogram
    last_success: Gauge
    connection_status: Gauge
    lookups: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> SyncMetrics:
        return cls(
            runs=Counter(
                "hf_sync_runs",
                "Batch sync runs by system, mode and final status.",
                ["system", "mode", "status"],
                registry=registry,
            ),
            records=Counter(
                "hf_sync_records",
                "Records handled by batch syncs, by outcome "
                "(created, updated, unchanged, rejected).",
                ["system", "outcome"],
                registry=registry,
            ),
            findings=Counter(
                "hf_sync_identity_findings",
                "Identity findings (KKI and SISDMK disagree) opened by batch syncs.",
                ["system"],
                registry=registry,
            ),
            duration=Histogram(
                "hf_sync_duration_seconds",
                "Wall time of batch sync runs.",
                ["system", "status"],
                buckets=SYNC_BUCKETS,
                registry=registry,
            ),
            last_success=Gauge(
                "hf_sync_last_success_timestamp_seconds",
                "Unix time the last successful batch sync of the system finished.",
                ["system"],
                registry=registry,
            ),
            connection_status=Gauge(
                "hf_connection_status",
                "1 for the current status of each external system's connection, 0 otherwise.",
                ["system", "status"],
                registry=registry,
            ),
            lookups=Counter(
                "hf_live_lookups",
                "Live look-ups by system and how they were answered "
                "(live, stale = stored copy because the system was unreachable, miss).",
                ["system", "answer"],
                registry=registry,
            ),
        )

    def start_at_zero(self, systems: Iterable[str]) -> None:
        """Expose the counters of `systems`' runs at 0 before any run ends.

        A counter series born at its first count hides that count from `increase()`: after a
        restart, the first successful run would not show in `HfSyncFailing`'s `unless` branch
        (nor the first failure in its count). The last success's timestamp is left unset: a 0
        there would read as a sync 56 years ago (`HfSyncStale`).
        """
        for system in systems:
            for mode in SYNC_MODES:
                for status in RUN_OUTCOMES:
                    self.runs.labels(system, mode, status)
            for status in RUN_OUTCOMES:
                self.duration.labels(system, status)
            for outcome in RECORD_OUTCOMES:
                self.records.labels(system, outcome)
            self.findings.labels(system)

    def set_connection_status(self, system: str, status: str) -> None:
        for candidate in CONNECTION_STATUSES:
            self.connection_status.labels(system, candidate).set(
                1.0 if candidate == status else 0.0
            )


@dataclass(frozen=True)
class ScheduleMetrics(MetricSet):
    """What `hf-adapter schedule` reports at each poll (its alerts: deploy/prometheus)."""

    polled: Gauge
    overdue: Gauge
    request_waiting: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> ScheduleMetrics:
        return cls(
            polled=Gauge(
                "hf_schedule_poll_timestamp_seconds",
                "Unix time the scheduler last checked for requested and due syncs.",
                registry=registry,
            ),
            overdue=Gauge(
                "hf_schedule_overdue_seconds",
                "Seconds a system's daily sync slot has passed with no run started (0 when "
                "none is waiting).",
                ["system"],
                registry=registry,
            ),
            request_waiting=Gauge(
                "hf_sync_request_waiting_seconds",
                "Seconds the oldest sync run requested through the API has waited for a "
                "scheduler to start it (0 when none is waiting).",
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class AuditMetrics(MetricSet):
    """The outcome of the last `hf-adapter audit verify` (for a textfile collector)."""

    intact: Gauge
    entries: Gauge
    verified: Gauge
    pending: Gauge
    oldest_pending_age: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> AuditMetrics:
        return cls(
            intact=Gauge(
                "hf_audit_chain_intact",
                "1 when the last verification found the audit chain intact, 0 when broken.",
                registry=registry,
            ),
            entries=Gauge(
                "hf_audit_chain_entries",
                "Entries the last verification of the audit chain checked.",
                registry=registry,
            ),
            verified=Gauge(
                "hf_audit_chain_verified_timestamp_seconds",
                "Unix time the audit chain was last verified.",
                registry=registry,
            ),
            pending=Gauge(
                "hf_audit_pending_entries",
                "Entries committed but not sealed into the chain when it was last verified.",
                registry=registry,
            ),
            oldest_pending_age=Gauge(
                "hf_audit_oldest_pending_age_seconds",
                "Age of the oldest unsealed entry when the chain was last verified (0: none).",
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class SealerMetrics(MetricSet):
    """What each long-running process's audit sealer sees as it works (`HfAuditSealingBehind`)."""

    lag: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> SealerMetrics:
        return cls(
            lag=Gauge(
                "hf_audit_sealing_lag_seconds",
                "Age of the oldest audit entry waiting to be sealed into the chain, as this "
                "process's sealer last looked (0: none waiting).",
                registry=registry,
                # Several processes (gunicorn workers, workers, schedulers): the worst seen.
                multiprocess_mode="livemax",
            )
        )
