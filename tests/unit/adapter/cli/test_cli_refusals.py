"""`hf-adapter` refuses what it cannot do before doing any work: exit 2 and one line naming the
option or input, no traceback, and a NIK never repeated."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.cli import main
from adapter.cli.events import parse_ids
from adapter.errors import AdapterError
from tests.support.logging_state import logging_kept
from tests.unit.adapter.test_settings import valid_env


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name, value in valid_env().items():
        monkeypatch.setenv(name, value)
    # Nothing may be created: every case is refused before the store is opened.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'untouched' / 'store.sqlite3'}")
    # `main` sets up logging for its process; the next tests in this worker keep theirs.
    with logging_kept():
        yield


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "--system", "kki", "--metrics-file", "/nonexistent/x.prom"],
        ["audit", "verify", "--metrics-file", "/nonexistent/x.prom"],
        ["audit", "anchor", "--out", "/nonexistent/x.prom"],
    ],
    ids=["sync", "audit-verify", "audit-anchor"],
)
def test_output_file_in_a_missing_folder_is_refused_before_the_work(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = _usage_error(argv, capsys)

    option = argv[-2]
    assert f"error: argument {option}: no folder /nonexistent; create it" in err
    assert "Traceback" not in err
    assert not (tmp_path / "untouched").exists()


def test_output_file_that_is_a_folder_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = _usage_error(["audit", "verify", "--metrics-file", str(tmp_path)], capsys)

    assert f"argument --metrics-file: {tmp_path} is a folder; name a file in it" in err


@pytest.mark.parametrize("command", [["worker"], ["schedule"]])
def test_metrics_port_in_use_exits_2_naming_the_option(
    command: list[str], taken_port: int, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main([*command, "--metrics-port", str(taken_port)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        f"hf-adapter: error: --metrics-port {taken_port}: cannot listen on 127.0.0.1:"
        f"{taken_port} (Address already in use); choose a free port"
    )
    assert "Traceback" not in err
    assert not (tmp_path / "untouched").exists()


@pytest.mark.parametrize(
    ("nik", "why"),
    [
        ("123", "NIK must be 16 digits, got 3 characters"),
        ("32010112345x0001", "NIK must contain digits only; character 12 is not a digit"),
        ("3201019999990001", "its region, birth date or serial part is impossible"),
    ],
    ids=["short", "not-digits", "impossible-date"],
)
def test_malformed_nik_is_refused_without_asking_kki_or_echoing_it(
    nik: str,
    why: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(nik + "\n"))
    # Nothing listens there: a request would fail as "KKI unavailable", not as this refusal.
    monkeypatch.setenv("KKI_BASE_URL", "https://127.0.0.1:9")

    code = main(["lookup", "--nik-stdin"])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == (
        f"hf-adapter: error: the NIK read from standard input is not a valid NIK ({why}); "
        "pipe the person's 16-digit NIK, one line, e.g. from a file only you can read\n"
    )
    assert nik not in captured.err + captured.out
    assert not (tmp_path / "untouched").exists()


@pytest.mark.parametrize("str_number", ["", "a" * 200, "QZ-0001", "qz0001"])
def test_an_str_number_the_api_would_refuse_is_refused_before_kki_or_the_store(
    str_number: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("KKI_BASE_URL", "https://127.0.0.1:9")

    code = main(["lookup", "--str", str_number])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("hf-adapter: error: --str takes an STR number: 1 to 50 ")
    assert not (tmp_path / "untouched").exists()  # no audit entry, no store opened


def test_an_event_id_that_is_not_a_uuid_is_refused_without_being_echoed() -> None:
    """What was typed where an event id goes may be a NIK: the refusal says which argument."""
    nik = "3171014509870001"
    with pytest.raises(AdapterError) as refused:
        parse_ids(["0b9d2c1e-5f1a-4c7e-9a57-3f0c2d1e4b6b", nik])

    assert refused.value.reason == "bad_id"
    assert "id 2 of 2 is not an event id" in refused.value.message
    assert nik not in refused.value.message
