"""Every metric set is registered once per Prometheus registry, each set on its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from adapter.api.observability import RequestMetrics
from adapter.clients.policy import ClientMetrics
from adapter.observability.event_metrics import EventMetrics
from adapter.observability.sync_metrics import SyncMetrics


def test_same_set_returned_for_the_same_registry() -> None:
    registry = CollectorRegistry()
    for kind in (ClientMetrics, EventMetrics, RequestMetrics, SyncMetrics):
        assert kind.for_registry(registry) is kind.for_registry(registry)


def test_sets_share_a_registry_without_clashing() -> None:
    registry = CollectorRegistry()
    sets = [kind.for_registry(registry) for kind in (ClientMetrics, EventMetrics, SyncMetrics)]
    assert [type(made) for made in sets] == [ClientMetrics, EventMetrics, SyncMetrics]
    names = {metric.name for metric in registry.collect()}
    assert {"hf_external_calls", "hf_events_processed", "hf_sync_runs"} <= names


def test_another_registry_gets_its_own_set() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    assert SyncMetrics.for_registry(first) is not SyncMetrics.for_registry(second)


def test_a_sync_systems_counters_start_at_zero_and_no_other_systems() -> None:
    # increase() misses a series' first count: after a restart the first success would not
    # reach HfSyncFailing's `unless` branch. The last success is left unset (0 = 1970).
    registry = CollectorRegistry()
    SyncMetrics.for_registry(registry).start_at_zero(["kki"])

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    for mode in ("full", "incremental"):
        for status in ("succeeded", "failed"):
            assert value("hf_sync_runs_total", system="kki", mode=mode, status=status) == 0.0
    for outcome in ("created", "updated", "unchanged", "rejected"):
        assert value("hf_sync_records_total", system="kki", outcome=outcome) == 0.0
    assert value("hf_sync_identity_findings_total", system="kki") == 0.0
    assert value("hf_sync_duration_seconds_count", system="kki", status="failed") == 0.0
    assert value("hf_sync_last_success_timestamp_seconds", system="kki") is None
    assert value("hf_sync_runs_total", system="sisdmk", mode="full", status="failed") is None
