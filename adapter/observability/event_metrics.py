"""Prometheus metrics of the real-time path: webhooks in, the event queue, the worker, alerts.

Labels are source systems, event types, reason slugs, outcome words and queue names only: never
an id or personal data. deploy/prometheus/alerts.yml alerts on these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapter.observability.metric_sets import MetricSet

# From "a few milliseconds behind" to "an hour late" (retries and outages sit in the tail).
LAG_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RECEIVE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass(frozen=True)
class EventMetrics(MetricSet):
    received: Counter
    rejected: Counter
    unavailable: Counter
    receive_duration: Histogram
    published: Counter
    publish_failures: Counter
    processed: Counter
    retries: Counter
    dead_letters: Counter
    alerts: Counter
    queue_depth: Gauge
    event_age: Histogram
    end_to_end_lag: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry) -> EventMetrics:
        return cls(
            received=Counter(
                "hf_webhooks_received",
                "Webhooks accepted, by source and result (accepted = new event, "
                "duplicate = an event id already in the inbox, answered 2xx with no effect).",
                ["source", "result"],
                registry=registry,
            ),
            rejected=Counter(
                "hf_webhooks_rejected",
                "Webhooks refused with a 4xx, by source and reason (signature, timestamp, "
                "too_large, content_type, headers, json, schema, ...). Nothing was stored.",
                ["source", "reason"],
                registry=registry,
            ),
            unavailable=Counter(
                "hf_webhooks_unavailable",
                "Webhooks answered 503 with Retry-After, by source and reason "
                "(database_unavailable, commit_timeout, receiver_busy, receiver_stopped); "
                "the sender retries.",
                ["source", "reason"],
                registry=registry,
            ),
            receive_duration=Histogram(
                "hf_webhook_receive_duration_seconds",
                "Time to verify one webhook and commit it to the inbox (the receiver's answer "
                "time; the publish is handed to its own thread, not waited for).",
                ["source"],
                buckets=RECEIVE_BUCKETS,
                registry=registry,
            ),
            published=Counter(
                "hf_events_published",
                "Event messages the broker confirmed, by path (receiver = right after the "
                "inbox commit, relay = the outbox relay, replay = an operator's replay).",
                ["path"],
                registry=registry,
            ),
            publish_failures=Counter(
                "hf_event_publish_failures",
                "Event messages not published (broker unreachable, no confirm, an error, or "
                "the receiver's publish queue full); the outbox relay publishes them later.",
                ["path"],
                registry=registry,
            ),
            processed=Counter(
                "hf_events_processed",
                "Events the worker finished, by source, event type and outcome (created, "
                "updated, unchanged, ignored, retry, held, failed, skipped).",
                ["source", "type", "outcome"],
                registry=registry,
            ),
            retries=Counter(
                "hf_event_retries",
                "Event attempts that failed transiently and were scheduled again, by reason.",
                ["source", "reason"],
                registry=registry,
            ),
            dead_letters=Counter(
                "hf_event_dead_letters",
                "Events dead-lettered (state failed): retries exhausted, a permanent error, or "
                "the delivery limit reached. Alert rules fire on its increase.",
                ["source", "reason"],
                registry=registry,
            ),
            alerts=Counter(
                "hf_event_alerts",
                "Dead-letter alerts sent to ALERT_WEBHOOK_URL, by result (sent, failed, "
                "dropped: more than 1,000 waiting, or queued at shutdown).",
                ["result"],
                registry=registry,
            ),
            queue_depth=Gauge(
                "hf_event_queue_depth",
                "Events waiting, by queue: inbox_pending, outbox_unpublished, failed (the "
                "dead letters in the inbox), and the broker's own queues when it reports them.",
                ["queue"],
                registry=registry,
            ),
            event_age=Histogram(
                "hf_event_age_seconds",
                "Time from receiving a webhook to a worker starting on it (queueing delay).",
                ["source"],
                buckets=LAG_BUCKETS,
                registry=registry,
            ),
            end_to_end_lag=Histogram(
                "hf_event_end_to_end_lag_seconds",
                "Time from the change at the source (occurred_at) to its commit in the store.",
                ["source"],
                buckets=LAG_BUCKETS,
                registry=registry,
            ),
        )
