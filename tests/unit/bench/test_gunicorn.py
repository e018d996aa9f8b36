"""The benchmarks' rule for a wrk run that one gunicorn worker served alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench import gunicorn
from bench.gunicorn import balanced


def test_a_run_is_balanced_while_no_worker_did_more_than_three_quarters() -> None:
    assert balanced([8.9, 8.4])
    assert balanced([7.5, 2.5])  # exactly three quarters
    assert not balanced([10.5, 0.1])
    assert not balanced([7.6, 2.4])


def test_a_lone_worker_or_an_idle_run_counts_as_balanced() -> None:
    assert balanced([9.0])
    assert balanced([])
    assert balanced([0.0, 0.0])


def counters(*splits: tuple[float, float]) -> Iterator[dict[int, float]]:
    """What `workers_cpu_s` reads before and after each run, for runs with these splits."""
    total = {1: 0.0, 2: 0.0}
    for first, second in splits:
        yield dict(total)
        total = {1: total[1] + first, 2: total[2] + second}
        yield dict(total)


def test_a_lopsided_run_is_run_again_and_set_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = counters((10.5, 0.1), (5.0, 4.0))
    monkeypatch.setattr(gunicorn, "workers_cpu_s", lambda _master: next(reads))
    runs = iter(["first", "second"])
    served = gunicorn.served_evenly(99, lambda: next(runs))
    assert served.result == "second"
    assert (served.workers_cpu_s, served.balanced) == ([5.0, 4.0], True)
    assert served.unbalanced_runs == [[10.5, 0.1]]
    assert served.figures({"requests_per_s": 1.0})["unbalanced_runs"] == [[10.5, 0.1]]


def test_the_last_attempt_is_kept_marked_when_every_run_was_lopsided(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = counters((0.1, 9.0), (8.0, 0.2), (7.0, 0.1))
    monkeypatch.setattr(gunicorn, "workers_cpu_s", lambda _master: next(reads))
    runs = iter([1, 2, 3])
    served = gunicorn.served_evenly(99, lambda: next(runs))
    assert (served.result, served.balanced) == (3, False)
    assert served.unbalanced_runs == [[9.0, 0.1], [8.0, 0.2]]


def test_a_run_that_cannot_be_repeated_runs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = counters((9.0, 0.1))
    monkeypatch.setattr(gunicorn, "workers_cpu_s", lambda _master: next(reads))
    served = gunicorn.served_evenly(99, lambda: "only", attempts=1)
    assert (served.result, served.balanced, served.unbalanced_runs) == ("only", False, [])
