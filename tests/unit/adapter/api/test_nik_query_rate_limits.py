"""The per-caller limits on NIK queries and on look-ups by STR: a moving window per subject and
client, refusals counted by client and logged once per burst."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from adapter.api.rate_limits import (
    NIK_QUERIES,
    STR_LOOKUPS,
    LimitedQuery,
    QueryLimiter,
    RateLimited,
    RateLimitMetrics,
)

# Windows of an hour and a day: no test here can outlive one, whatever the machine's speed.
HOURLY = "3/hour"


def limiter(
    limits: str = HOURLY, query: LimitedQuery = NIK_QUERIES
) -> tuple[QueryLimiter, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = RateLimitMetrics.for_registry(registry)
    return QueryLimiter(limits, query=query, metrics=metrics), registry


def refused(registry: CollectorRegistry, client: str, counter: str = "hf_nik_queries") -> float:
    value = registry.get_sample_value(f"{counter}_refused_total", {"client": client})
    return 0.0 if value is None else value


def test_queries_within_the_limit_pass_and_the_next_is_refused_with_retry_after() -> None:
    limits, registry = limiter()
    for _ in range(3):
        limits.hit("user-1", "healthforce-portal")

    with pytest.raises(RateLimited) as caught:
        limits.hit("user-1", "healthforce-portal")

    assert caught.value.reason == "rate_limited"
    assert 1 <= caught.value.retry_after_s <= 3600
    assert refused(registry, "healthforce-portal") == 1


def test_each_subject_and_each_client_has_its_own_window() -> None:
    limits, _ = limiter()
    for _ in range(3):
        limits.hit("user-1", "healthforce-portal")

    limits.hit("user-2", "healthforce-portal")  # another person, same client
    limits.hit("user-1", "hf-readonly")  # the same person through another client
    with pytest.raises(RateLimited):
        limits.hit("user-1", "healthforce-portal")


def test_every_refusal_is_counted_by_client() -> None:
    limits, registry = limiter()
    for _ in range(3):
        limits.hit("user-1", "portal")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limits.hit("user-1", "portal")

    assert refused(registry, "portal") == 5
    assert refused(registry, "hf-readonly") == 0


def test_every_limit_holds_the_tightest_wins() -> None:
    limits, _ = limiter("10/hour;2/day")
    limits.hit("user-1", "portal")
    limits.hit("user-1", "portal")

    with pytest.raises(RateLimited) as caught:
        limits.hit("user-1", "portal")

    assert 3600 < caught.value.retry_after_s <= 86_400  # the daily window decides


def test_a_burst_logs_one_warning_naming_the_caller_not_the_nik(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits, _ = limiter("1/hour")
    limits.hit("user-1", "portal")
    with caplog.at_level(logging.WARNING, logger="adapter.api.rate_limits"):
        for _ in range(4):
            with pytest.raises(RateLimited):
                limits.hit("user-1", "portal")

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "user-1" in warnings[0].getMessage()
    assert "portal" in warnings[0].getMessage()
    assert "1 per 1 hour" in warnings[0].getMessage()


def alert_rule(name: str) -> dict[str, Any]:
    rules = Path(__file__).resolve().parents[4] / "deploy" / "prometheus" / "alerts.yml"
    document = yaml.safe_load(rules.read_text(encoding="utf-8"))
    (rule,) = [
        rule for group in document["groups"] for rule in group["rules"] if rule["alert"] == name
    ]
    return dict(rule)


@pytest.mark.parametrize(
    ("alert", "counter"),
    [("HfNikQueriesRefused", "hf_nik_queries"), ("HfStrLookupsRefused", "hf_str_lookups")],
)
def test_each_alert_rule_watches_its_refusal_counter_by_client_only(
    alert: str, counter: str
) -> None:
    rule = alert_rule(alert)
    _, registry = limiter()
    exported = {metric.name for metric in registry.collect()}

    assert exported == {"hf_nik_queries_refused", "hf_str_lookups_refused"}
    assert f"{counter}_refused_total" in rule["expr"]
    assert "by (client)" in rule["expr"]  # the only label: never a subject, NIK or STR


def test_str_look_ups_have_their_own_window_counter_and_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = RateLimitMetrics.for_registry(registry)
    niks = QueryLimiter("1/hour", metrics=metrics)
    strs = QueryLimiter("2/hour", query=STR_LOOKUPS, metrics=metrics)
    niks.hit("user-1", "portal")
    strs.hit("user-1", "portal")
    strs.hit("user-1", "portal")

    with (
        caplog.at_level(logging.WARNING, logger="adapter.api.rate_limits"),
        pytest.raises(RateLimited) as caught,
    ):
        strs.hit("user-1", "portal")

    assert str(caught.value).startswith("too many STR look-ups; try again in ")
    assert refused(registry, "portal", "hf_str_lookups") == 1
    assert refused(registry, "portal") == 0
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("STR look-ups refused: caller over the rate limit 2 per 1 hour")
    assert "live KKI call" in warning
