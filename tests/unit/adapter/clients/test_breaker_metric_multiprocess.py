"""`hf_circuit_breaker_state` under PROMETHEUS_MULTIPROC_DIR (`serve` with several gunicorn
workers): the scrape adds up the processes' files, so the state must be written there."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    from prometheus_client import CollectorRegistry, multiprocess
    from adapter.clients.policy import CircuitBreaker, ClientMetrics

    import time

    metrics = ClientMetrics(CollectorRegistry())
    # Long enough that the scrape right after the failures sees it open on a busy machine.
    breaker = CircuitBreaker("kki", failure_threshold=2, reset_timeout_s=2.0)
    metrics.track_breaker(breaker)

    def scraped():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry.get_sample_value("hf_circuit_breaker_state", {"system": "kki"})

    print(scraped())
    breaker.record_failure()
    breaker.record_failure()
    print(scraped())
    # No call comes: the reset timeout alone turns it half-open, and the scrape says so.
    deadline = time.monotonic() + 20
    while scraped() != 1.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    print(scraped())
    breaker.record_success()
    print(scraped())
    """
)


def test_the_breakers_state_reaches_the_multiprocess_scrape(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.0", "2.0", "1.0", "0.0"]  # closed, open, half-open, closed
