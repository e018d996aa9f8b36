"""The terminal summary and the verdict: notes shown (masked), phases that did not run are not
"conforming"."""

from __future__ import annotations

import io
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from conformance import cli, reports
from conformance.cli import MAX_NOTES_SHOWN, print_summary
from conformance.context import Credentials, RunOptions
from conformance.findings import Finding, Severity
from conformance.runner import BUDGET_SPENT, PhaseResult, RunResult

NIK = "3171015708900042"


def _result(
    phases: list[PhaseResult], *, asked: tuple[str, ...] = (), notes: list[str] | None = None
) -> RunResult:
    return RunResult(
        options=RunOptions("kki", "http://kki.test", Credentials(api_key="k"), phases=asked),
        findings=[],
        checked={("pagination/has-more", "listRegistrations")},
        phases=phases,
        notes=notes or [],
        stats={},
        seconds=1.0,
    )


def _summary(result: RunResult) -> str:
    out = io.StringIO()
    print_summary(result, Console(file=out, width=100, highlight=False))
    return out.getvalue()


def test_notes_are_shown_after_the_table_one_masked_line_each() -> None:
    notes = [
        "peer: listRegistrations: page 1 answered 401; the walk stopped there",
        f"a note about NIK {NIK}\nover two lines",
    ]
    text = _summary(_result([PhaseResult("pagination", "done")], notes=notes))
    lines = text.splitlines()
    assert "note: peer: listRegistrations: page 1 answered 401; the walk stopped there" in lines
    assert any(
        line.startswith("note: a note about NIK 3171") and "over two" in line for line in lines
    )
    assert NIK not in text
    assert text.index("note: peer") > text.index("pagination/has-more") > 0  # after the table
    assert lines[-1].startswith("conforming:")


def test_many_notes_are_cut_with_a_pointer_to_the_reports() -> None:
    notes = [f"note {n}" for n in range(MAX_NOTES_SHOWN + 3)]
    text = _summary(_result([PhaseResult("pagination", "done")], notes=notes))
    assert text.count("note: note ") == MAX_NOTES_SHOWN
    assert "… and 3 more notes (see the reports)" in text


def test_a_phase_skipped_for_the_time_budget_makes_the_run_incomplete() -> None:
    result = _result([PhaseResult("pagination", "done"), PhaseResult("reads", BUDGET_SPENT)])
    assert result.verdict == "incomplete"
    assert result.exit_code == 2
    assert _summary(result).splitlines()[-1].startswith("incomplete:")


def test_a_phase_asked_for_by_name_and_not_run_makes_the_run_incomplete() -> None:
    result = _result([PhaseResult("pact", "not run (no verifier yet)")], asked=("pact",))
    assert (result.verdict, result.exit_code) == ("incomplete", 2)


def test_a_phase_partly_run_makes_a_run_of_every_phase_incomplete() -> None:
    # No --phases: the Pact phase whose message pacts could not be verified used to leave a run
    # of every phase conforming.
    partly = "partly run (the kki HTTP pact's interactions were checked; the message pacts not)"
    result = _result([PhaseResult("pagination", "done"), PhaseResult("pact", partly)])
    assert (result.verdict, result.exit_code) == ("incomplete", 2)
    assert _summary(result).splitlines()[-1].startswith("incomplete:")


def test_webhooks_not_run_make_a_run_asked_for_them_by_webhooks_incomplete() -> None:
    # `--webhooks` without --phases: a provider that refused the subscription left the run of
    # every phase conforming.
    result = _result([PhaseResult("pagination", "done"), PhaseResult("webhooks", "not run (403)")])
    assert (result.verdict, result.exit_code) == ("conforming", 0)  # not asked for
    result.options = replace(result.options, webhooks=True)
    assert (result.verdict, result.exit_code) == ("incomplete", 2)


def test_an_optional_phase_left_out_keeps_the_run_conforming() -> None:
    result = _result(
        [PhaseResult("pagination", "done"), PhaseResult("peer", "skipped (no --peer URL)")]
    )
    assert (result.verdict, result.exit_code) == ("conforming", 0)


def test_violations_win_over_an_incomplete_run() -> None:
    result = _result([PhaseResult("reads", BUDGET_SPENT)])
    result.findings.append(Finding("pagination/has-more", "listRegistrations", "lies"))
    assert (result.verdict, result.exit_code) == ("violations", 1)


def _main_with(
    monkeypatch: pytest.MonkeyPatch, result: RunResult, *args: str
) -> tuple[int, list[str], list[str]]:
    """`main` with the run replaced by `result`: what it prints after a run, and its exit."""
    monkeypatch.setattr(cli, "_run", lambda *_args, **_kwargs: result)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = cli.main(["kki", "--base-url", "http://kki.test", "--api-key", "k", "--quiet", *args])
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


def test_a_report_that_fails_to_render_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(result: RunResult, path: Path) -> None:
        raise ValueError("cannot render")

    monkeypatch.setattr(reports, "write_html", broken)
    result = _result([PhaseResult("pagination", "done")])
    code, out, err = _main_with(monkeypatch, result, "--html", str(tmp_path / "r.html"))
    assert code == 2
    assert out[-1].startswith("conforming:")  # the table and the verdict first
    assert err == ["hf-conformance: cannot run: internal error ValueError: cannot render"]


def test_the_incomplete_line_comes_after_the_reports_not_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def full(result: RunResult, path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reports, "write_json", full)
    result = _result([PhaseResult("errors", BUDGET_SPENT)])
    code, _, err = _main_with(monkeypatch, result, "--json", str(tmp_path / "r.json"))
    assert code == 2
    assert err[0].startswith(f"hf-conformance: report {tmp_path / 'r.json'} not written")
    assert err[-1].startswith("hf-conformance: incomplete: errors skipped (time budget spent)")


def test_the_table_counts_failing_checks_not_findings() -> None:
    # Three findings on one operation used to show "3 failing" next to "2 checked".
    result = _result([PhaseResult("pagination", "done")])
    result.checked = {
        ("pagination/has-more", "listRegistrations"),
        ("pagination/has-more", "listFacilities"),
    }
    result.findings = [
        *(Finding("pagination/has-more", "listRegistrations", f"page {n} lies") for n in range(3)),
        Finding("pagination/has-more", "listFacilities", "odd", Severity.WARNING),
    ]
    text = _summary(result)
    header = next(line for line in text.splitlines() if "rule" in line)
    assert "operations checked" in header
    assert "reported only" in header
    row = next(line for line in text.splitlines() if "pagination/has-more" in line)
    assert re.findall(r"\d+", row) == ["2", "1", "1"]
    assert text.splitlines()[-1].startswith("violations: 3 failing findings, 1 reported only")


def test_a_report_path_that_is_a_folder_is_refused_like_the_adapters_output_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # One rule and one wording for every command's output files (cli_startup.output_files).
    code, out, err = _main_with(monkeypatch, _result([]), "--json", str(tmp_path))

    assert code == 2
    assert out == []  # refused before the run
    assert err == [f"hf-conformance: cannot run: report {tmp_path} is a folder; name a file in it"]


@pytest.mark.parametrize("budget", ["inf", "nan", "-1", "0"])
def test_a_time_budget_that_is_not_a_positive_finite_number_is_refused(
    budget: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # inf passed and then killed the budget's timer thread with an OverflowError.
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["kki", "--base-url", "http://x", "--time-budget", budget])
    assert exit_.value.code == 2
    assert f"'{budget}' must be a positive, finite number" in capsys.readouterr().err


def test_a_lone_surrogate_from_the_provider_keeps_exit_1_and_writes_every_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A JSON "\ud83d" escape without its pair, quoted from a provider's record: writing the
    # reports raised UnicodeEncodeError, and the run ended "internal error", exit 2, no report.
    result = _result([PhaseResult("pagination", "done")], notes=["odd value \ud83d"])
    result.findings = [Finding("pagination/has-more", "listRegistrations", "record Budi \ud83d")]
    monkeypatch.setattr(cli, "_run", lambda *_args, **_kwargs: result)
    # A terminal as strict as a real one: UTF-8 cannot encode a lone surrogate.
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="utf-8"))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding="utf-8"))
    reports_asked = [f"--{kind}" for kind in ("junit", "html", "json")]
    paths = [tmp_path / f"r.{kind}" for kind in ("xml", "html", "json")]
    args = [item for pair in zip(reports_asked, map(str, paths), strict=True) for item in pair]

    code = cli.main(["kki", "--base-url", "http://kki.test", "--api-key", "k", "--quiet", *args])

    sys.stdout.flush()
    sys.stderr.flush()
    assert code == 1
    assert err.getvalue() == b""
    terminal = out.getvalue().decode("utf-8")
    assert "FAIL pagination/has-more listRegistrations: record B" in terminal
    assert terminal.splitlines()[-1].startswith("violations: 1 failing findings")
    assert all(path.stat().st_size > 0 for path in paths)
    assert json.loads(paths[2].read_text(encoding="utf-8"))["exit_code"] == 1
