"""The conformance summary table `make conformance` and `make demo` end with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.conformance_run import Outcome, summary_table


def rendered(reports: dict[str, Path], statuses: dict[str, int]) -> str:
    console = Console(record=True, width=200)
    console.print(summary_table(reports, statuses))
    return console.export_text()


def report(**overrides: Any) -> dict[str, Any]:
    return {
        "base_url": "http://127.0.0.1:1",
        "verdict": "conforming",
        "checked": [{"rule": "r", "operation": "o"}] * 3,
        "findings": [
            {"severity": "warning", "accepted": None},
            {"severity": "error", "accepted": "vendor ticket KKI-1"},
        ],
        "seconds": 1.25,
        **overrides,
    }


def row(text: str, name: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"│ {name}"))
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_accepted_findings_are_reported_only_and_the_exit_status_is_shown(tmp_path: Path) -> None:
    (tmp_path / "kki.json").write_text(json.dumps(report()))
    text = rendered({"kki": tmp_path / "kki.json"}, {"kki": 0})
    assert row(text, "kki") == ["kki http://127.0.0.1:1", "0", "conforming", "3", "0", "2", "1.2 s"]


def test_a_missing_report_shows_the_exit_status_not_an_old_verdict(tmp_path: Path) -> None:
    text = rendered({"sso": tmp_path / "sso.json"}, {"sso": 2})
    assert row(text, "sso")[:3] == ["sso", "2", "no report"]


def test_a_malformed_report_is_a_row_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "kki.json").write_text(json.dumps(report(findings=None)))
    (tmp_path / "sisdmk.json").write_text("[1, 2]")
    text = rendered({"kki": tmp_path / "kki.json", "sisdmk": tmp_path / "sisdmk.json"}, {})
    assert row(text, "kki")[2].startswith("unreadable report")
    assert row(text, "sisdmk")[2].startswith("unreadable report")


def test_the_last_error_line_names_why_a_run_could_not_start() -> None:
    outcome = Outcome(2, "progress\nhf-conformance: cannot run: connection refused\n\n")
    assert outcome.last_error() == "hf-conformance: cannot run: connection refused"
    assert Outcome(2).last_error() == "no message"
