"""Readiness answers are reused for their cache window (on a controlled clock), and the ops
routes leave the public app when asked."""

from __future__ import annotations

import threading

import pytest
from flask import Flask

from adapter import health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingCheck:
    def __init__(self, problem: str | None = None) -> None:
        self.calls = 0
        self.problem = problem

    def __call__(self) -> str | None:
        self.calls += 1
        return self.problem


def test_checks_run_once_per_window() -> None:
    clock, check = Clock(), CountingCheck()
    readiness = health.Readiness(5.0, clock=clock)
    readiness.add("database", check)

    for _ in range(10):
        assert readiness.results() == {"database": None}
        clock.now += 0.25  # ten calls over 2.5 s: all inside the 5 s window
    assert check.calls == 1

    clock.now += 2.5  # 5 s after the first answer
    readiness.results()
    assert check.calls == 2


def test_a_failing_answer_is_reused_too_and_then_rechecked() -> None:
    clock, check = Clock(), CountingCheck("unreachable (OperationalError)")
    readiness = health.Readiness(5.0, clock=clock)
    readiness.add("database", check)

    assert readiness.results() == {"database": "unreachable (OperationalError)"}
    check.problem = None
    assert readiness.results() == {"database": "unreachable (OperationalError)"}
    clock.now += 5.0
    assert readiness.results() == {"database": None}


def test_zero_runs_the_checks_on_every_call() -> None:
    check = CountingCheck()
    readiness = health.Readiness(0.0, clock=Clock())
    readiness.add("sso", check)

    for _ in range(3):
        readiness.results()

    assert check.calls == 3


def test_probes_arriving_during_a_round_share_it() -> None:
    started, release = threading.Event(), threading.Event()
    calls = 0

    def slow() -> None:
        nonlocal calls
        calls += 1
        started.set()
        release.wait(10)

    readiness = health.Readiness(60.0)
    readiness.add("sso", slow)
    first = threading.Thread(target=readiness.results)
    first.start()
    started.wait(10)
    others = [threading.Thread(target=readiness.results) for _ in range(5)]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(10)

    assert calls == 1


def test_ops_routes_can_be_left_off_an_app() -> None:
    readiness = health.Readiness(5.0)
    public, ops = Flask("public"), health.ops_app(readiness)
    health.init_app(public, readiness, ops_routes=False)

    with public.test_client() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 404
        assert client.get("/metrics").status_code == 404
    with ops.test_client() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("database", "broker", "status", "code"),
    [
        (None, None, "ready", 200),
        (None, "unreachable (ConnectionRefusedError)", "degraded", 200),
        ("unreachable (OperationalError)", None, "not_ready", 503),
    ],
)
def test_only_a_gating_check_makes_the_process_unready(
    database: str | None, broker: str | None, status: str, code: int
) -> None:
    """The broker and the SSO are shared by every replica and served around (the outbox, the
    cached keys): their failure answered 503 on every replica at once, and a load balancer
    took them all out, webhooks and API with them."""
    readiness = health.Readiness(0.0)
    readiness.add("database", lambda: database)
    readiness.add("broker", lambda: broker, gates=False)
    app = health.ops_app(readiness)

    with app.test_client() as client:
        answer = client.get("/readyz")

    assert answer.status_code == code
    assert answer.json["status"] == status
    assert answer.json["checks"] == {"database": database or "ok", "broker": broker or "ok"}
