"""`hf-adapter` run in this process (`adapter.cli.main`) with only the environment a process of
its own would get: its exit code and what it wrote, without the second or so a Python start and
the adapter's imports cost per run."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping

import pytest

from adapter.cli import main
from adapter.settings import Settings
from tests.support.logging_state import logging_kept


def hf_adapter_in_process(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: Mapping[str, str],
    *args: str,
) -> subprocess.CompletedProcess[str]:
    """`hf-adapter ARGS` with `environment` (the settings of this test process unset first).
    An exception that escapes `main` (a traceback, from a process) fails the test."""
    for name in [*(field.upper() for field in Settings.model_fields), "OTEL_TRACES_EXPORTER"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        if name not in {"PATH", "PYTHONPATH"}:
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
