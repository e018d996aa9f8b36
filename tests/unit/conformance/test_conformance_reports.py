"""Reports: one JUnit test case per operation and rule, a readable HTML page, JSON; all masked."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console

from conformance.cli import print_summary
from conformance.context import Credentials, RunOptions
from conformance.findings import Exchange, Finding, Severity
from conformance.reports import render_html, to_json, write_html, write_json, write_junit
from conformance.runner import BUDGET_SPENT, PhaseResult, RunResult

NIK = "3171015708900042"


def _result() -> RunResult:
    evidence = Exchange(
        method="GET",
        url="http://kki.test/v1/registrations?limit=5",
        request_headers={"X-API-Key": "secret-key"},
        request_body=None,
        status=200,
        response_headers={"content-type": "application/json"},
        response_body=json.dumps({"data": [{"nik": NIK, "full_name": "Siti Rahmawati"}]}),
    )
    accepted = Finding("pagination/updated-since", "listFacilities", "ignored")
    accepted.accepted = "ticket 9"
    return RunResult(
        options=RunOptions("kki", "http://kki.test", Credentials(api_key="secret-key")),
        findings=[
            Finding(
                "pagination/repeated-record", "listRegistrations", f"NIK {NIK}", evidence=evidence
            ),
            Finding("domain/peer-identity", "listRegistrations", "2 %", Severity.WARNING),
            accepted,
        ],
        checked={
            ("pagination/repeated-record", "listRegistrations"),
            ("domain/peer-identity", "listRegistrations"),
            ("pagination/updated-since", "listFacilities"),
            ("auth/missing-credentials", "getRegistration"),
        },
        phases=[PhaseResult("pagination", "done", 1.0), PhaseResult("pact", "not run (x)")],
        notes=["a note"],
        stats={},
        seconds=2.0,
    )


def test_junit_has_one_case_per_operation_and_rule(tmp_path: Path) -> None:
    write_junit(_result(), tmp_path / "junit.xml")
    root = ET.parse(tmp_path / "junit.xml").getroot()  # noqa: S314 - our own report
    cases = {(c.get("classname"), c.get("name")) for c in root.iter("testcase")}
    assert ("kki.getRegistration", "auth/missing-credentials") in cases
    assert len(cases) == 4
    failed = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert failed == ["pagination/repeated-record"]  # the warning and the accepted one pass
    assert root.get("failures") == "1"
    text = (tmp_path / "junit.xml").read_text()
    assert NIK not in text
    assert "secret-key" not in text
    assert "curl" in text


def test_html_shows_rules_operations_and_curl_masked() -> None:
    page = render_html(_result())
    assert "violations found" in page
    assert "pagination/repeated-record" in page
    assert "listRegistrations" in page
    assert "curl" in page
    assert "accepted by the baseline: ticket 9" in page
    assert NIK not in page
    assert "Rahmawati" not in page
    assert "secret-key" not in page


def test_json_verdict_and_masked_evidence() -> None:
    document = to_json(_result())
    assert document["verdict"] == "violations"
    assert document["exit_code"] == 1
    dumped = json.dumps(document)
    assert NIK not in dumped
    assert "secret-key" not in dumped
    assert document["findings"][0]["evidence"]["curl"].startswith("curl")


def test_junit_shows_each_phase_that_should_have_run_as_an_error(tmp_path: Path) -> None:
    result = _result()
    result.options = RunOptions("kki", "http://kki.test", Credentials(), phases=("pact",))
    result.phases.append(PhaseResult("errors", BUDGET_SPENT))
    write_junit(result, tmp_path / "junit.xml")
    root = ET.parse(tmp_path / "junit.xml").getroot()  # noqa: S314 - our own report
    errors = {
        c.get("name"): c.find("error") for c in root.iter("testcase") if c.find("error") is not None
    }
    assert set(errors) == {"pact", "errors"}
    assert errors["pact"].get("message") == "phase pact not run (x)"  # type: ignore[union-attr]
    assert root.get("errors") == "2"
    assert root.get("tests") == "6"


def test_junit_of_a_complete_run_has_no_error(tmp_path: Path) -> None:
    write_junit(_result(), tmp_path / "junit.xml")  # pact not run, but not asked for
    root = ET.parse(tmp_path / "junit.xml").getroot()  # noqa: S314 - our own report
    assert root.get("errors") == "0"
    assert not list(root.iter("error"))


def test_a_nik_the_provider_echoes_in_groups_reaches_no_report_nor_the_terminal(
    tmp_path: Path,
) -> None:
    grouped = ("3171 0157 0890 0042", "317101-570890-0042", f"{NIK}9")
    evidence = Exchange(
        method="POST",
        url="http://kki.test/v1/registrations/lookup",
        request_headers={},
        request_body=None,
        status=500,
        response_headers={"content-type": "application/problem+json"},
        response_body=json.dumps({"detail": f"lookup of {grouped[0]} failed"}),
    )
    result = _result()
    result.findings = [
        Finding(
            "contract/not_a_server_error",
            "lookupRegistrationsByNik",
            f"Server error: NIK {grouped[1]}",
            evidence=evidence,
        )
    ]
    result.notes = [f"pact: provider said {grouped[2]}"]
    write_junit(result, tmp_path / "junit.xml")
    out = io.StringIO()
    print_summary(result, Console(file=out, width=200, highlight=False))
    texts = {
        "junit": (tmp_path / "junit.xml").read_text(),
        "html": render_html(result),
        "json": json.dumps(to_json(result), ensure_ascii=False),
        "terminal": out.getvalue(),
    }
    for name, text in texts.items():
        digits = re.sub(r"[ -]", "", text)
        assert "01570890" not in digits, name  # the birth date and kecamatan of the NIK


def _with_odd_characters() -> RunResult:
    """A provider's values quoted in a finding and a note: a lone UTF-16 surrogate (a JSON
    "\\ud83d" escape without its pair) and a control character in an STR number."""
    evidence = Exchange(
        method="GET",
        url="http://kki.test/v1/registrations?limit=5",
        request_headers={},
        request_body=None,
        status=200,
        response_headers={"content-type": "application/json"},
        response_body='{"data": [{"full_name": "Budi \\ud83d", "str_number": "AB\\u0001CD"}]}',
    )
    result = _result()
    result.findings = [
        Finding(
            "pagination/repeated-record",
            "listRegistrations",
            "record AB\u0001CD (\ud83d) was already on page 1",
            evidence=evidence,
        )
    ]
    result.notes = ["listRegistrations: odd value \ud83d\u0001"]
    return result


def test_a_lone_surrogate_from_the_provider_does_not_stop_the_json_and_html_reports(
    tmp_path: Path,
) -> None:
    result = _with_odd_characters()

    write_json(result, tmp_path / "r.json")
    write_html(result, tmp_path / "r.html")

    document = json.loads((tmp_path / "r.json").read_bytes().decode("utf-8"))
    assert document["findings"][0]["message"] == "record AB\u0001CD (\ufffd) was already on page 1"
    assert document["notes"] == ["listRegistrations: odd value \ufffd\u0001"]
    assert "B••• \ufffd" in document["findings"][0]["evidence"]["response"]["body"]
    page = (tmp_path / "r.html").read_bytes().decode("utf-8")
    assert "(\ufffd) was already on page 1" in page


def test_junit_stays_well_formed_with_control_characters_and_surrogates(tmp_path: Path) -> None:
    write_junit(_with_odd_characters(), tmp_path / "junit.xml")

    root = ET.parse(tmp_path / "junit.xml").getroot()  # noqa: S314 - our own report
    failure = next(root.iter("failure"))
    assert failure.get("message") == "record AB\ufffdCD (\ufffd) was already on page 1"
    assert "record AB\ufffdCD" in (failure.text or "")


def _with_a_skipped_interaction() -> RunResult:
    result = _result()
    result.checked.add(("pact/interaction", "a request for the first page"))
    result.skipped = {("pact/interaction", "a request needing a state"): "needs a state URL"}
    return result


def test_junit_shows_a_skipped_interaction_as_skipped_not_passed(tmp_path: Path) -> None:
    write_junit(_with_a_skipped_interaction(), tmp_path / "junit.xml")

    root = ET.parse(tmp_path / "junit.xml").getroot()  # noqa: S314 - our own report
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    case = next(suites["a request needing a state"].iter("testcase"))
    assert case.find("skipped") is not None
    assert case.find("skipped").get("message") == "needs a state URL"  # type: ignore[union-attr]
    passed = next(suites["a request for the first page"].iter("testcase"))
    assert passed.find("skipped") is None
    assert suites["a request needing a state"].get("skipped") == "1"
    assert root.get("skipped") == "1"


def test_html_json_and_terminal_say_skipped() -> None:
    result = _with_a_skipped_interaction()

    page = render_html(result)
    document = to_json(result)
    out = io.StringIO()
    print_summary(result, Console(file=out, width=200, highlight=False))

    assert '<span class="warn">skipped</span>: needs a state URL' in page
    assert "1 skipped (not verified)" in page
    assert document["skipped"] == [
        {
            "rule": "pact/interaction",
            "operation": "a request needing a state",
            "reason": "needs a state URL",
        }
    ]
    assert {"rule": "pact/interaction", "operation": "a request needing a state"} not in document[
        "checked"
    ]
    terminal = out.getvalue()
    assert "pact/interaction: 1 skipped, not verified" in terminal
    assert ", 1 skipped, " in terminal.splitlines()[-1]
