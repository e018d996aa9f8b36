"""`python -m load.run`'s options: a report directory that holds something is never emptied
without --overwrite, and nothing is deleted before the options are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from load.run import main


def test_a_directory_that_holds_something_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "keep.txt"
    kept.write_text("results of last week")

    with pytest.raises(SystemExit) as stopped:
        main(["--out", str(tmp_path), "--host", "http://127.0.0.1:9", "--database-url", "x"])

    assert stopped.value.code == 2
    assert kept.read_text() == "results of last week"
    assert "--overwrite" in capsys.readouterr().err


def test_an_option_error_deletes_nothing_even_with_overwrite(tmp_path: Path) -> None:
    kept = tmp_path / "keep.txt"
    kept.write_text("x")

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--overwrite", "--host", "http://127.0.0.1:9"])

    assert kept.exists()


def test_a_file_given_as_out_is_refused(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text("{}")

    with pytest.raises(SystemExit):
        main(["--out", str(report)])

    assert report.read_text() == "{}"


def test_an_unreachable_broker_is_one_line_and_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:9//")

    code = main(["--out", str(tmp_path / "run"), "--run-time", "1"])

    err = capsys.readouterr().err
    assert code == 2
    assert "load.run: failed: RuntimeError: RabbitMQ is not reachable" in err
    assert "Traceback" not in err
