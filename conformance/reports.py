"""Reports of a run: JUnit XML for CI, a self-contained HTML page for people, JSON for machines.

Every report is written from masked findings: personal data never reaches a file.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from cli_startup.output_files import OutputFileError, check_output_file, write_atomically
from conformance.findings import Finding, pretty_body
from conformance.masking import mask_finding, mask_text
from conformance.rules import RULES, rule_title
from conformance.runner import RunResult

# A lone UTF-16 surrogate: what a provider's JSON escape "\ud83d" without its pair decodes to.
# UTF-8 cannot encode one.
_SURROGATE = re.compile("[\ud800-\udfff]")
# What XML 1.0 cannot hold, not even as a character reference (§2.2 Char): control characters
# but tab, line feed and carriage return, surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
REPLACEMENT = "\ufffd"


def well_formed(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD: it can be written as UTF-8 (a report,
    the terminal) whatever the provider sent."""
    return _SURROGATE.sub(REPLACEMENT, text)


def xml_safe(text: str) -> str:
    """`text` with each character XML cannot hold replaced by U+FFFD (a provider's value with a
    control character, quoted in a finding, would make the JUnit file unreadable)."""
    return _NOT_XML.sub(REPLACEMENT, text)


class ReportPathError(Exception):
    """A report path the run could not write to; the message names it and says what to do."""


def prepare_report_path(path: Path) -> None:
    """Create the report's missing folders and check it can be written, before the run starts:
    a report that cannot be written is found in a second, not after a long run."""
    try:
        check_output_file(path, what="report", create_folders=True)
    except OutputFileError as exc:
        raise ReportPathError(str(exc)) from None


def masked(result: RunResult) -> list[Finding]:
    return [mask_finding(finding) for finding in result.findings]


def _cases(result: RunResult) -> dict[tuple[str, str], list[Finding]]:
    """Every (operation, rule) verified, with its findings (none when it passed)."""
    cases: dict[tuple[str, str], list[Finding]] = {
        (operation, rule): [] for rule, operation in sorted(result.checked)
    }
    for finding in masked(result):
        cases.setdefault((finding.operation, finding.rule), []).append(finding)
    return dict(sorted(cases.items()))


def _skipped(result: RunResult) -> dict[tuple[str, str], str]:
    """Every (operation, rule) that could not be verified, with why (masked)."""
    return {
        (operation, rule): mask_text(why)
        for (rule, operation), why in sorted(result.skipped.items())
        if (rule, operation) not in result.checked
    }


def to_json(result: RunResult) -> dict[str, Any]:
    findings = masked(result)
    return {
        "system": result.options.system,
        "base_url": result.options.base_url,
        "verdict": result.verdict,
        "exit_code": result.exit_code,
        "seconds": round(result.seconds, 2),
        "phases": [
            {"name": p.name, "status": p.status, "seconds": round(p.seconds, 2)}
            for p in result.phases
        ],
        "operations": result.operations,
        "checked": [{"rule": r, "operation": o} for r, o in sorted(result.checked)],
        "skipped": [
            {"rule": rule, "operation": operation, "reason": why}
            for (operation, rule), why in _skipped(result).items()
        ],
        "findings": [finding.to_dict() for finding in findings],
        "notes": [mask_text(note) for note in result.notes],
        "stats": result.stats,
    }


def write_json(result: RunResult, path: Path) -> None:
    text = json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n"
    write_atomically(path, well_formed(text).encode("utf-8"))


def write_junit(result: RunResult, path: Path) -> None:
    """One test suite per operation, one test case per rule checked on it; and a suite `phases`
    with an `<error>` case for each phase that should have run and did not."""
    cases = _cases(result)
    root = ET.Element("testsuites", name=f"hf-conformance {result.options.system}")
    by_operation: dict[str, list[tuple[str, list[Finding]]]] = defaultdict(list)
    for (operation, rule), findings in cases.items():
        by_operation[operation].append((rule, findings))
    skipped = _skipped(result)
    for operation, rule in skipped:
        by_operation[operation].append((rule, []))
    total = failures = 0
    for operation, rules in sorted(by_operation.items()):
        suite = ET.SubElement(root, "testsuite", name=operation)
        suite_failures = suite_skipped = 0
        for rule, findings in sorted(rules, key=lambda entry: entry[0]):
            case = ET.SubElement(
                suite, "testcase", classname=f"{result.options.system}.{operation}", name=rule
            )
            if (operation, rule) in skipped:
                # Not verified: a CI counts it as skipped, not as passed.
                suite_skipped += 1
                ET.SubElement(case, "skipped", message=skipped[(operation, rule)][:500])
                continue
            failing = [f for f in findings if f.fails_run]
            reported = [f for f in findings if not f.fails_run]
            if failing:
                suite_failures += 1
                failure = ET.SubElement(
                    case, "failure", message=failing[0].message[:500], type=rule
                )
                failure.text = "\n\n".join(_finding_text(f) for f in failing)
            if reported:
                out = ET.SubElement(case, "system-out")
                out.text = "\n\n".join(_finding_text(f) for f in reported)
        suite.set("tests", str(len(rules)))
        suite.set("failures", str(suite_failures))
        suite.set("errors", "0")
        suite.set("skipped", str(suite_skipped))
        total += len(rules)
        failures += suite_failures
    # A CI that reads only JUnit must see an incomplete run as red, not as fewer green cases.
    errors = len(result.incomplete)
    if errors:
        suite = ET.SubElement(root, "testsuite", name="phases")
        for phase in result.incomplete:
            case = ET.SubElement(
                suite, "testcase", classname=f"{result.options.system}.phases", name=phase.name
            )
            error = ET.SubElement(
                case, "error", message=f"phase {phase.name} {phase.status}", type="incomplete"
            )
            error.text = (
                f"phase {phase.name} should have run in full and did not: {phase.status}; "
                "the run is incomplete"
            )
        suite.set("tests", str(errors))
        suite.set("failures", "0")
        suite.set("errors", str(errors))
    root.set("tests", str(total + errors))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    root.set("skipped", str(len(skipped)))
    _make_xml_safe(root)
    document = io.BytesIO()
    ET.ElementTree(root).write(document, encoding="utf-8", xml_declaration=True)
    write_atomically(path, document.getvalue())


def _make_xml_safe(root: ET.Element) -> None:
    """Every attribute and text node of the tree made of characters XML can hold."""
    for element in root.iter():
        element.attrib = {name: xml_safe(value) for name, value in element.attrib.items()}
        if element.text:
            element.text = xml_safe(element.text)
        if element.tail:
            element.tail = xml_safe(element.tail)


def _finding_text(finding: Finding) -> str:
    lines = [f"[{finding.severity}] {finding.message}"]
    if finding.accepted:
        lines.append(f"accepted by the baseline: {finding.accepted}")
    if finding.baseline_expired:
        lines.append(f"baseline entry expired on {finding.baseline_expired}")
    if finding.evidence is not None:
        lines.append(f"reproduce: {finding.evidence.curl()}")
        if finding.evidence.status is not None:
            lines.append(f"response: {finding.evidence.status}")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f4f4f4}
.fail{color:#b00020;font-weight:600}.ok{color:#137333}.warn{color:#a05a00}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;max-height:24rem;white-space:pre-wrap}
details{margin:.5rem 0 1rem 0}summary{cursor:pointer}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _status(findings: list[Finding]) -> str:
    if any(f.fails_run for f in findings):
        return '<span class="fail">FAIL</span>'
    if findings:
        return '<span class="warn">reported</span>'
    return '<span class="ok">pass</span>'


def _evidence_html(finding: Finding) -> str:
    evidence = finding.evidence
    if evidence is None:
        return ""
    request_headers = "\n".join(f"{k}: {v}" for k, v in evidence.request_headers.items())
    response_headers = "\n".join(f"{k}: {v}" for k, v in evidence.response_headers.items())
    response = (
        "(no response)"
        if evidence.status is None
        else f"HTTP {evidence.status}\n{response_headers}\n\n{pretty_body(evidence.response_body)}"
    )
    return (
        "<details><summary>request, response and curl</summary>"
        f"<p>Reproduce:</p><pre>{_e(evidence.curl())}</pre>"
        f"<p>Request:</p><pre>{_e(evidence.method)} {_e(evidence.url)}\n{_e(request_headers)}"
        f"\n\n{_e(pretty_body(evidence.request_body))}</pre>"
        f"<p>Response:</p><pre>{_e(response)}</pre></details>"
    )


def render_html(result: RunResult, generated: dt.datetime | None = None) -> str:
    cases = _cases(result)
    skipped = _skipped(result)
    findings = masked(result)
    verdict = {"violations": "violations found"}.get(result.verdict, result.verdict)
    generated = generated or dt.datetime.now(dt.UTC)
    not_verified = f"{len(skipped)} skipped (not verified); " if skipped else ""
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        f"<title>hf-conformance {_e(result.options.system)}</title><style>{_CSS}</style>",
        f"<h1>hf-conformance {_e(result.options.system)} — "
        f"<span class={'ok' if result.verdict == 'conforming' else 'fail'}>{verdict}</span></h1>",
        f"<p>Target {_e(result.options.base_url)}; {len(findings)} finding(s) "
        f"({sum(f.fails_run for f in findings)} failing); {len(cases)} checks; "
        f"{not_verified}"
        f"{result.seconds:.1f} s; generated {_e(generated.isoformat(timespec='seconds'))}. "
        "Personal data (NIK, NIP, names, phone, e-mail) is masked.</p>",
        "<h2>Phases</h2><table><tr><th>phase</th><th>status</th><th>seconds</th></tr>",
        *(
            f"<tr><td>{_e(p.name)}</td><td>{_e(p.status)}</td><td>{p.seconds:.1f}</td></tr>"
            for p in result.phases
        ),
        "</table>",
        "<h2>Per rule</h2><table><tr><th>rule</th><th>meaning</th><th>source</th>"
        "<th>operations checked</th><th>failing</th><th>reported</th><th>skipped</th></tr>",
    ]
    by_rule: dict[str, list[tuple[str, list[Finding]]]] = defaultdict(list)
    for (operation, rule), rule_findings in cases.items():
        by_rule[rule].append((operation, rule_findings))
    skipped_per_rule = Counter(rule for _, rule in skipped)
    for rule in skipped_per_rule:
        by_rule.setdefault(rule, [])
    for rule, entries in sorted(by_rule.items()):
        known = RULES.get(rule)
        failing = sorted({op for op, fs in entries if any(f.fails_run for f in fs)})
        reported = sorted({op for op, fs in entries if fs and not any(f.fails_run for f in fs)})
        parts.append(
            f"<tr><td><a href='#rule-{_e(rule)}'>{_e(rule)}</a></td><td>{_e(rule_title(rule))}"
            f"</td><td>{_e(known.source if known else '')}</td><td>{len(entries)}</td>"
            f"<td class={'fail' if failing else 'ok'}>{_e(', '.join(failing) or '—')}</td>"
            f"<td>{_e(', '.join(reported) or '—')}</td><td>{skipped_per_rule[rule]}</td></tr>"
        )
    parts.append(
        "</table><h2>Per operation</h2><table><tr><th>operation</th><th>rule</th>"
        "<th>result</th></tr>"
    )
    rows = {key: _status(rule_findings) for key, rule_findings in cases.items()}
    rows |= {key: f'<span class="warn">skipped</span>: {_e(why)}' for key, why in skipped.items()}
    for (operation, rule), status in sorted(rows.items()):
        parts.append(
            f"<tr><td>{_e(operation)}</td><td><a href='#rule-{_e(rule)}'>{_e(rule)}</a></td>"
            f"<td>{status}</td></tr>"
        )
    parts.append("</table><h2>Findings</h2>")
    if not findings:
        parts.append("<p class=ok>No findings.</p>")
    for rule in sorted({f.rule for f in findings}):
        parts.append(f"<h3 id='rule-{_e(rule)}'>{_e(rule)} — {_e(rule_title(rule))}</h3>")
        for finding in (f for f in findings if f.rule == rule):
            badge = "fail" if finding.fails_run else "warn"
            extra = ""
            if finding.accepted:
                extra = f" <em>(accepted by the baseline: {_e(finding.accepted)})</em>"
            elif finding.baseline_expired:
                extra = f" <em>(baseline entry expired {_e(finding.baseline_expired)})</em>"
            parts.append(
                f"<p><span class={badge}>{_e(finding.severity)}</span> "
                f"<strong>{_e(finding.operation)}</strong>: {_e(finding.message)}{extra}</p>"
                + _evidence_html(finding)
            )
    if result.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts.extend(f"<li>{_e(mask_text(note))}</li>" for note in result.notes)
        parts.append("</ul>")
    parts.append("</html>\n")
    return "\n".join(parts)


def write_html(result: RunResult, path: Path) -> None:
    write_atomically(path, well_formed(render_html(result)).encode("utf-8"))
