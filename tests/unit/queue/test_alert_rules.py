"""deploy/prometheus/alerts.yml: promtool accepts it (when installed) and it uses our metrics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from adapter.observability.event_metrics import EventMetrics

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "alerts.yml"


def test_alert_rules_are_well_formed() -> None:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {
        "HfWebhookEventsDeadLettered",
        "HfWebhookEndToEndLagHigh",
        "HfWebhooksRejectedSpike",
    }
    for rule in rules:
        assert rule["expr"].strip()
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]
    if shutil.which("promtool"):
        checked = subprocess.run(
            ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alert_rules_name_only_metrics_the_adapter_exports() -> None:
    registry = CollectorRegistry()
    EventMetrics.for_registry(registry)
    exported = {metric.name for metric in registry.collect()}
    text = RULES.read_text(encoding="utf-8")
    for name in (
        "hf_event_dead_letters",
        "hf_event_end_to_end_lag_seconds",
        "hf_event_queue_depth",
        "hf_webhooks_rejected",
        "hf_webhooks_received",
    ):
        assert name in exported
        assert name in text
