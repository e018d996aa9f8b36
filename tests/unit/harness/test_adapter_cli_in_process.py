"""`hf_adapter_in_process` gives the command the environment a process of its own would have, as
far as the adapter reads it, and puts the test process's back as soon as the command returns."""

from __future__ import annotations

import os

import pytest

from tests.support import adapter_cli


def test_the_command_sees_its_environment_and_not_the_test_processs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, str] = {}

    def main(args: list[str]) -> int:
        seen.update(os.environ)
        print("ran", *args)
        return 3

    monkeypatch.setattr(adapter_cli, "main", main)
    leaking = {
        "LOGNAME": "someone-else",
        "SSL_CERT_FILE": "/elsewhere/ca.pem",
        "OTEL_SERVICE_NAME": "the-tests",
        "https_proxy": "http://proxy.invalid:3128",
        "KKI_API_TOKEN": "the-tests-token",
        "PGOPTIONS": "-c role=someone_else",
        "FORCE_COLOR": "1",
        "DATABASE_URL": "sqlite:///the-tests.db",
        "JAVA_HOME": "/usr/lib/jvm/the-tests",
    }
    for name, value in leaking.items():
        monkeypatch.setenv(name, value)
    log_level = os.environ.get("LOG_LEVEL")

    done = adapter_cli.hf_adapter_in_process(
        monkeypatch, capsys, {"DATABASE_URL": "sqlite:///mine.db", "LOG_LEVEL": "DEBUG"}, "db"
    )

    assert (done.returncode, done.stdout) == (3, "ran db\n")
    assert seen["DATABASE_URL"] == "sqlite:///mine.db"
    assert seen["LOG_LEVEL"] == "DEBUG"
    for name in (
        "LOGNAME",
        "SSL_CERT_FILE",
        "OTEL_SERVICE_NAME",
        "https_proxy",
        "KKI_API_TOKEN",
        "PGOPTIONS",
        "FORCE_COLOR",
    ):
        assert name not in seen, name
    # What the adapter never reads is left alone: other threads of the test process read it.
    assert seen["JAVA_HOME"] == "/usr/lib/jvm/the-tests"
    # And all is back once the command returned.
    for name, value in leaking.items():
        assert os.environ[name] == value
    assert os.environ.get("LOG_LEVEL") == log_level
