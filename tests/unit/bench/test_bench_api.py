"""The API bench's rule for a wrk run that one gunicorn worker served alone."""

from __future__ import annotations

from bench.bench_api import balanced


def test_a_run_is_balanced_while_no_worker_did_more_than_three_quarters() -> None:
    assert balanced([8.9, 8.4])
    assert balanced([7.5, 2.5])  # exactly three quarters
    assert not balanced([10.5, 0.1])
    assert not balanced([7.6, 2.4])


def test_a_lone_worker_or_an_idle_run_counts_as_balanced() -> None:
    assert balanced([9.0])
    assert balanced([])
    assert balanced([0.0, 0.0])
