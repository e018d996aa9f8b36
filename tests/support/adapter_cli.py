"""`hf-adapter` run in this process (`adapter.cli.main`) with only the environment a process of
its own would get: its exit code and what it wrote, without the second or so a Python start and
the adapter's imports cost per run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Final

import pytest

from adapter.cli import main
from tests.support.logging_state import logging_kept

# The interpreter's search paths, which cannot change for a running interpreter; pytest's and
# xdist's own PYTEST_* variables (set and cleared around each test) stay as well.
_KEPT: Final = frozenset({"PATH", "PYTHONPATH"})


def hf_adapter_in_process(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: Mapping[str, str],
    *args: str,
) -> subprocess.CompletedProcess[str]:
    """`hf-adapter ARGS` with `environment` and nothing else of this test process's (LOGNAME,
    SSL_CERT_FILE, OTEL_*, settings...), as a process of its own given `environment` would see
    (pytest's PYTEST_* variables, PATH and PYTHONPATH aside). An exception that escapes `main`
    (a traceback, from a process) fails the test."""
    for name in list(os.environ):
        if name not in environment and name not in _KEPT and not name.startswith("PYTEST_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        if name not in _KEPT:
            monkeypatch.setenv(name, value)
    capsys.readouterr()  # what came before is not the command's
    with logging_kept():
        code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["hf-adapter", *args], code, captured.out, captured.err)


InProcess = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def hf_adapter_here(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> InProcess:
    """`hf_adapter_here(environment, *args)`: `hf_adapter_in_process` with this test's
    `monkeypatch` and `capsys`, for the modules' fixtures that say how their environment is
    built."""

    def run(environment: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return hf_adapter_in_process(monkeypatch, capsys, environment, *args)

    return run
