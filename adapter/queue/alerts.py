"""Dead-letter alerts: a log line always, a JSON POST to ``ALERT_WEBHOOK_URL`` when it is set.

The metric that alert rules use (`hf_event_dead_letters`) is counted by the processor; this
module only tells people. Alerts carry ids, the event type and the reason, never personal data.
"""

from __future__ import annotations

import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Final
from urllib.parse import urlsplit

import httpx

from adapter.clients.http import tls_verification
from adapter.observability.event_metrics import EventMetrics

log = logging.getLogger("adapter.alerts")

ALERT_TIMEOUT_S: Final = 5.0
# Alerts waiting to be posted at most: beyond it (an endpoint down during a mass dead-lettering)
# each is logged and counted as dropped instead; the log line is the alert of record anyway.
MAX_QUEUED_ALERTS: Final = 1_000


@dataclass(frozen=True)
class DeadLetterAlert:
    event_id: str
    source: str
    event_type: str
    reason: str
    attempts: int
    last_error: str

    def to_document(self) -> dict[str, object]:
        return {"alert": "webhook_event_dead_lettered", **asdict(self)}


class DeadLetterAlerts:
    """Sends alerts off the worker's thread, so a slow alert endpoint never slows the queue."""

    def __init__(
        self,
        url: str | None,
        metrics: EventMetrics,
        *,
        verify: ssl.SSLContext | str | bool = True,
        max_queued: int = MAX_QUEUED_ALERTS,
    ) -> None:
        """`verify`: TLS verification of an https `url` (`CA_BUNDLE`'s path, or, unset,
        certifi's bundle), through the process's shared context; never off."""
        self._url = url
        # What the log names: the receiver's scheme and host, never its path or query (a chat
        # webhook's secret).
        parts = urlsplit(url or "")
        self._shown = f"{parts.scheme}://{parts.hostname}"
        self._metrics = metrics
        self._verify = tls_verification(verify)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-alerts")
        self._queued = 0
        self._lock = threading.Lock()
        self._max_queued = max_queued

    def raise_alert(self, alert: DeadLetterAlert) -> None:
        log.error(
            "ALERT event dead-lettered: event_id=%s source=%s type=%s reason=%s attempts=%d "
            "last_error=%s; see `hf-adapter events show %s`, replay with `hf-adapter events "
            "replay %s`",
            alert.event_id,
            alert.source,
            alert.event_type,
            alert.reason,
            alert.attempts,
            alert.last_error,
            alert.event_id,
            alert.event_id,
        )
        if self._url is None:
            return
        with self._lock:
            full = self._queued >= self._max_queued
            if not full:
                self._queued += 1
        if full:
            self._metrics.alerts.labels("dropped").inc()
            log.warning(
                "alert webhook: %d alerts are waiting to be posted to %s; this one is not "
                "posted (the line above is its record)",
                self._max_queued,
                self._shown,
            )
            return
        self._pool.submit(self._post, alert)

    def _post(self, alert: DeadLetterAlert) -> None:
        try:
            self._send(alert)
        finally:
            with self._lock:
                self._queued -= 1

    def _send(self, alert: DeadLetterAlert) -> None:
        assert self._url is not None
        try:
            httpx.post(
                self._url,
                json=alert.to_document(),
                timeout=ALERT_TIMEOUT_S,
                verify=self._verify,
            ).raise_for_status()
        except httpx.HTTPStatusError as exc:
            self._metrics.alerts.labels("failed").inc()
            log.warning(
                "alert webhook failed: %s answered %d", self._shown, exc.response.status_code
            )
            return
        except httpx.HTTPError as exc:
            self._metrics.alerts.labels("failed").inc()
            # The exception's text (a refused certificate says so: "certificate verify
            # failed"), with the URL, if it quotes it, cut to its host.
            detail = str(exc).replace(self._url, self._shown)
            log.warning("alert webhook failed: %s: %s: %s", self._shown, type(exc).__name__, detail)
            return
        self._metrics.alerts.labels("sent").inc()

    def close(self) -> None:
        """Finish the post under way (up to `ALERT_TIMEOUT_S`); drop those still queued, which
        were logged when raised: a shutdown never waits for a thousand posts to a dead host."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:  # what is still counted never ran: cancelled
            waiting, self._queued = self._queued, 0
        if waiting:
            self._metrics.alerts.labels("dropped").inc(waiting)
            log.warning("alert webhook: %d queued alerts not posted at shutdown", waiting)
