"""`make demo` (the README's first command) runs end to end and says what it showed."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_brings_the_harness_up_and_ends_with_a_summary() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout[done.stdout.index("HealthForce harness — summary") :]
    assert "FAILED" not in summary
    assert "signatures verified" in summary
    assert "1,000 fetched, 1,000 created" in summary
    assert "identity findings" in summary
    assert "stale (upstream_unavailable)" in summary
    assert "KKI subscribed" in summary
    assert "DICABUT in the store" in summary
