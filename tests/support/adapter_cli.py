"""`hf-adapter` run in this process (`adapter.cli.main`) with the environment a process of its
own would get, as far as the adapter reads it: its exit code and what it wrote, without the
second or so a Python start and the adapter's imports cost per run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Final

import pytest

from adapter.cli import main
from adapter.settings import Settings
from tests.support.logging_state import logging_kept

# The interpreter's search paths, which cannot change for a running interpreter.
_KEPT: Final = frozenset({"PATH", "PYTHONPATH"})
# What the adapter's code and libraries read besides its settings (and libpq's PG* and
# OpenTelemetry's OTEL_*), which a process given `environment` would not have: the user's name
# (libraries may read it; the CLI's audit actor is the real uid's), TLS trust, proxies, the
# metrics' shared folder, the terminal rich draws tables for.
_READ_BESIDES_SETTINGS: Final = (
    "LOGNAME",
    "USER",
    "LNAME",
    "USERNAME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "PROMETHEUS_MULTIPROC_DIR",
    "FORCE_COLOR",
    "NO_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "COLUMNS",
    "LINES",
    "TERM",
    "COLORTERM",
)
_READ_BY_PREFIX: Final = ("OTEL_", "PG")


def hf_adapter_in_process(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: Mapping[str, str],
    *args: str,
) -> subprocess.CompletedProcess[str]:
    """`hf-adapter ARGS` with `environment`, put back as soon as the command returns. Unset
    meanwhile, in any spelling `environment` does not give: the adapter's settings and what
    else it and its libraries read (`_READ_BESIDES_SETTINGS`, `_READ_BY_PREFIX`), which a
    process of its own would not have had from this test process. Nothing else is touched:
    `os.environ` is the whole process's, and other threads (the Keycloak start) read it
    meanwhile. Not a new process either: what was read at the interpreter's start or at an
    import (TMPDIR, the locale, TZ, structlog's colours, kombu's and prometheus_client's
    switches) stays this process's. An exception that escapes `main` (a traceback, from a
    process) fails the test."""
    named = {field.upper() for field in Settings.model_fields} | set(_READ_BESIDES_SETTINGS)
    unset = {spelling for name in named for spelling in (name, name.lower())}
    unset |= {name for name in os.environ if name.upper().startswith(_READ_BY_PREFIX)}
    capsys.readouterr()  # what came before is not the command's
    with monkeypatch.context() as patch:
        for name in sorted(unset - set(environment)):
            patch.delenv(name, raising=False)
        for name, value in environment.items():
            if name not in _KEPT:
                patch.setenv(name, value)
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
