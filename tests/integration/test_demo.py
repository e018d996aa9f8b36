"""`make demo` (the README's first command) runs end to end and says what it showed."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import port_accepts

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}


def test_demo_brings_the_harness_up_and_ends_with_a_summary() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=ENV,
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
    assert "personal fields masked; without a token: HTTP 401" in summary
    assert re.search(r"kki healthy, breaker closed, last success \d+ s ago", summary)
    assert re.search(r"sisdmk healthy, breaker closed, last success \d+ s ago", summary)
    conformance = summary[summary.index("conformance — summary") :]
    rows = re.findall(
        r"│ (kki|sisdmk|sso) \S+\s+│\s+(\d+) │ (\w+)\s+│\s+(\d+) │\s+(\d+) │", conformance
    )
    assert {(name, status, verdict) for name, status, verdict, _, _ in rows} == {
        ("kki", "0", "conforming"),
        ("sisdmk", "0", "conforming"),
        ("sso", "0", "conforming"),
    }
    assert all(int(checks) > 0 and errors == "0" for _, _, _, checks, errors in rows)
    assert "still running" not in done.stdout


def test_keep_leaves_the_stack_up_with_a_working_token_command_until_ctrl_c() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "harness.demo", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    # A demo that hangs before its endpoints are printed must not hang the suite.
    watchdog = threading.Timer(300, os.killpg, (demo.pid, signal.SIGKILL))
    watchdog.start()
    try:
        lines: list[str] = []
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        output = "".join(lines)
        assert demo.poll() is None, output
        token_command = next(line.strip() for line in lines if line.strip().startswith("TOKEN="))
        api_call = next(line.strip() for line in lines if line.strip().startswith("curl -s -H"))
        # The printed commands work as printed: a realm token, then the API with it.
        answer = subprocess.run(
            ["bash", "-c", f"set -e; {token_command}; {api_call}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=ENV,
        )
        assert answer.returncode == 0, answer.stderr
        assert '"data"' in answer.stdout
        assert '"masked":true' in answer.stdout.replace(" ", "")
        ports = [int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)", output)]
        adapter_port = int(re.findall(r"127\.0\.0\.1:(\d+)/api/v1", api_call)[0])
        assert adapter_port in ports
        assert len(set(ports)) >= 4
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 130
        rest = demo.stdout.read()
        assert "every process the demo started has been stopped" in rest
        deadline = time.monotonic() + 10
        while any(port_accepts("127.0.0.1", port) for port in set(ports)):
            assert time.monotonic() < deadline, "a process the demo started is still listening"
            time.sleep(0.2)
    finally:
        watchdog.cancel()
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "children").read_text()
        except FileNotFoundError:
            continue  # a thread that ended after the listing (its children went to another)
        found |= {int(child) for child in text.split()}
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@contextlib.contextmanager
def killable(argv: list[str], **options: Any) -> Iterator[tuple[subprocess.Popen[str], set[int]]]:
    """`argv` in a session of its own, SIGKILLed with its group after 120 s or at the end if
    still running, and the set the test fills with the processes it started: those that
    outlive it (in sessions of their own) are killed too."""
    process = subprocess.Popen(argv, env=ENV, start_new_session=True, text=True, **options)
    watchdog = threading.Timer(120, os.killpg, (process.pid, signal.SIGKILL))
    watchdog.start()
    started: set[int] = set()
    try:
        yield process, started
    finally:
        watchdog.cancel()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in started:
            if alive(pid):  # left running (a failure above): not for the next tests
                os.kill(pid, signal.SIGKILL)


def all_gone(pids: set[int], what: str) -> None:
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"a process {what} started is still running"
        time.sleep(0.2)


def test_sigterm_while_the_demo_starts_stops_what_it_had_started() -> None:
    argv = [sys.executable, "-m", "harness.demo", "--keep"]
    with killable(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as (demo, started):
        assert demo.stdout is not None
        line = ""
        while "start the KKI mock" not in line:
            line = demo.stdout.readline()
            assert line, "the demo ended before starting the KKI mock"
        # The KKI mock is up; catch the SISDMK mock on its way up too.
        started |= children(demo.pid)
        deadline = time.monotonic() + 5
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            started |= children(demo.pid)
        assert started
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 130
        assert "every process the demo started has been stopped" in demo.stdout.read()
        all_gone(started, "the demo")


def test_sigterm_to_make_conformance_stops_the_mocks_it_started() -> None:
    # The mocks run in sessions of their own and were stopped only by `finally` blocks, which
    # a SIGTERM (a CI job's timeout, `kill`) never ran: both were left holding their ports.
    argv = [sys.executable, "-m", "harness.conformance_run", "--size", "30"]
    with killable(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as (run, started):
        deadline = time.monotonic() + 60
        while not started:
            assert run.poll() is None, "make conformance ended before starting a mock"
            assert time.monotonic() < deadline, "no mock started within 60 s"
            time.sleep(0.05)
            started |= children(run.pid)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) != 0
        all_gone(started, "make conformance")
