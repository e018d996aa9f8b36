"""deploy/prometheus/alerts.yml: promtool accepts it, its unit tests (alerts.test.yml) pass, and
every alert the issue of record asks for is there. That each query names a metric the adapter
really exports is checked against live processes (tests/integration/deploy/)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from harness.services import promtool_path

PROMETHEUS = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"

# What operators are paged or ticketed for (docs/operations.md#alerts).
EXPECTED = {
    "HfWebhookEventsDeadLettered",  # dead letters
    "HfWebhookEndToEndLagHigh",  # lag
    "HfWebhookQueueBacklog",
    "HfWebhookOutboxStuck",
    "HfWebhooksRejectedSpike",  # webhook rejections spike
    "HfNikQueriesRefused",
    "HfStrLookupsRefused",
    "HfTokenRefusalsSpike",  # token validation failures spike
    "HfSyncFailing",  # sync failing
    "HfSyncStale",
    "HfScheduledSyncMissed",  # scheduler missed its slot
    "HfSchedulerDown",
    "HfSchedulerAbsent",
    "HfSyncRequestWaiting",  # a requested run held up behind a long one
    "HfConnectionDown",
    "HfCircuitBreakerOpen",  # breaker open
    "HfAuditChainBroken",  # audit chain broken
    "HfAuditChainUnverified",
    "HfAuditChainVerificationAbsent",
    "HfAuditSealingStalled",
    "HfAuditSealingBehind",  # sealers sealing but not keeping up (live)
}


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = promtool_path()
    if tool is None:
        pytest.fail(
            "promtool is not installed: run `make services` (it installs Debian's prometheus "
            "package as root) or set PROMTOOL to its path",
            pytrace=False,
        )
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False)


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_when_it_should_and_not_before() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_there_with_severity_summary_and_a_unit_test() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED
    for rule in rules():
        assert str(rule["expr"]).strip()
        assert rule["labels"]["severity"] in {"page", "ticket"}  # type: ignore[index]
        assert rule["annotations"]["summary"]  # type: ignore[index]
        assert rule["annotations"]["description"]  # type: ignore[index]
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    firing = {
        case["alertname"]
        for group in tests
        for case in group["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert firing == EXPECTED, "every alert has a case where it fires"
