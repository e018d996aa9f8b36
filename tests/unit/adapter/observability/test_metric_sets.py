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
