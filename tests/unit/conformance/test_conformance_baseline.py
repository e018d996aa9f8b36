"""The baseline: accepted deviations pass until their expiry date; bad files are refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conformance.baseline import BaselineError, apply_baseline, load_baseline, parse_baseline
from conformance.findings import Finding, Severity

ENTRY = {
    "rule": "pagination/updated-since",
    "operation": "listFacilities",
    "reason": "vendor ticket 42",
    "expires": dt.date(2027, 1, 31),
}


def _finding(rule: str = "pagination/updated-since", op: str = "listFacilities") -> Finding:
    return Finding(rule, op, "updated_since ignored")


def test_accepted_finding_does_not_fail_before_expiry() -> None:
    finding = _finding()
    apply_baseline([finding], parse_baseline({"accepted": [ENTRY]}), dt.date(2027, 1, 31))
    assert finding.accepted == "vendor ticket 42"
    assert not finding.fails_run


def test_expired_entry_fails_again() -> None:
    finding = _finding()
    apply_baseline([finding], parse_baseline({"accepted": [ENTRY]}), dt.date(2027, 2, 1))
    assert finding.accepted is None
    assert finding.baseline_expired == "2027-01-31"
    assert finding.fails_run


def test_entry_covers_only_its_rule_and_operation() -> None:
    other_rule, other_op = _finding(rule="pagination/lost-record"), _finding(op="listHealthWorkers")
    apply_baseline(
        [other_rule, other_op], parse_baseline({"accepted": [ENTRY]}), dt.date(2027, 1, 1)
    )
    assert other_rule.fails_run
    assert other_op.fails_run


def test_star_operation_covers_every_operation() -> None:
    finding = _finding(op="listHealthWorkers")
    entries = parse_baseline({"accepted": [{**ENTRY, "operation": "*"}]})
    apply_baseline([finding], entries, dt.date(2027, 1, 1))
    assert not finding.fails_run


def test_warning_never_fails_run() -> None:
    finding = Finding("domain/peer-identity", "listRegistrations", "2 %", Severity.WARNING)
    assert not finding.fails_run


def test_baseline_file_with_string_dates_loads(tmp_path: Path) -> None:
    path = tmp_path / "baseline.yaml"
    path.write_text(
        "accepted:\n  - rule: r\n    operation: o\n    reason: why\n    expires: '2027-03-01'\n"
    )
    assert load_baseline(path)[0].expires == dt.date(2027, 3, 1)


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ([], "expected a mapping"),
        ({"accepted": ["x"]}, "entry 1 is not a mapping"),
        ({"accepted": [{"rule": "r"}]}, "lacks operation, reason, expires"),
        ({"accepted": [{**ENTRY, "expires": "someday"}]}, "is not a date"),
        ({"accepted": [{**ENTRY, "reason": " "}]}, "reason must be a non-empty string"),
    ],
)
def test_malformed_baseline_is_refused_with_reason(document: object, words: str) -> None:
    with pytest.raises(BaselineError, match=words):
        parse_baseline(document)


def test_missing_baseline_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="cannot read"):
        load_baseline(tmp_path / "absent.yaml")
