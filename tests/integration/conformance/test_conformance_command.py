"""`hf-conformance` as QA runs it: a real subprocess against the clean mocks (exit 0, reports
written, no failing finding) and against an unreachable URL (exit 2); in this process (its exit
code, stdout and stderr, without a Python start per case): 429s honoured, the baseline and its
expiry, the time budget, and bad input (exit 2 with one line, never a traceback).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.cli import main
from conformance.webhooks import FAST_POLICY
from harness.processes import free_port
from tests.integration.conformance.support import (
    CREDENTIALS,
    TODAY,
    DeliveryRelay,
    Target,
    failing,
    run_conformance,
)
from tests.support.breaking_proxy import Breakage, Exchange

pytestmark = pytest.mark.integration

COMMAND = Path(sys.executable).with_name("hf-conformance")
# Warnings the clean mocks show on purpose: KKI's identity fields may differ from Dukcapil's
# (contract), and the mocks seed such mismatches (--mismatch-rate 0.02).
DOCUMENTED_WARNINGS = {"domain/nik-birth-date", "domain/nik-sex", "domain/peer-identity"}


def hf_conformance(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMMAND), *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`hf-conformance ARGS` as `conformance.cli.main` in this process: its exit code, stdout and
    stderr, without the ~0.6 s of CPU a process spends importing it. An exception escaping `main`
    (what the console script would print as a traceback) fails the test."""
    try:
        code = main(list(args), clock=lambda: TODAY)
    except SystemExit as exc:  # argparse's usage errors: the status the process would exit with
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.mark.parametrize("system", ["kki", "sisdmk"])
def test_clean_mock_conforms_with_reports_written(
    system: str, kki_target: Target, sisdmk_target: Target, tmp_path: Path
) -> None:
    target, peer = (kki_target, sisdmk_target) if system == "kki" else (sisdmk_target, kki_target)
    target.reset()
    peer.reset()
    peer_args = [
        "--peer",
        peer.mock.url,
        *[arg.replace("--", "--peer-", 1) for arg in CREDENTIALS[peer.system]],
    ]
    run = hf_conformance(
        system,
        "--base-url",
        target.mock.url,
        *CREDENTIALS[system],
        *peer_args,
        "--max-examples",
        "3",
        "--seed",
        "20261202",
        "--webhooks",
        "--as-of",
        TODAY.isoformat(),
        "--junit",
        str(tmp_path / "junit.xml"),
        "--html",
        str(tmp_path / "report.html"),
        "--json",
        str(tmp_path / "report.json"),
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert failing(report) == set()
    assert {f["rule"] for f in report["findings"]} <= DOCUMENTED_WARNINGS
    assert report["stats"]["peer_matched"] > 0
    assert report["stats"]["webhook_deliveries"] >= 3
    assert "conforming" in run.stdout
    junit = ET.parse(tmp_path / "junit.xml").getroot()  # noqa: S314 - our own report
    assert int(junit.get("tests", 0)) > 50
    assert junit.get("failures") == "0"
    html = (tmp_path / "report.html").read_text()
    assert "conforming" in html
    assert "<script" not in html  # self-contained and static


def test_rate_limited_provider_is_waited_for_not_reported(
    kki_target: Target, tmp_path: Path
) -> None:
    kki_target.reset()
    # One 429 (Retry-After: 1) after three requests, however slowly they come.
    fault = {
        "route": "listRegistrations",
        "kind": "rate_limit",
        "limit": 3,
        "window_s": 60,
        "retry_after_s": 1,
        "times": 1,
    }
    assert kki_target.mock.admin.post("/faults", json=fault).status_code == 201
    code, report = run_conformance("kki", kki_target.mock.url, tmp_path, "--phases", "pagination")
    assert code == 0, report["findings"]
    assert report["stats"]["429s"] > 0
    assert report["stats"]["retry_after_waits_s"]
    assert ("rate-limit/retry-after", "listRegistrations") in {
        (c["rule"], c["operation"]) for c in report["checked"]
    }


def test_rate_limit_spaces_requests(kki_target: Target, tmp_path: Path) -> None:
    kki_target.reset()
    started = time.monotonic()
    code, report = run_conformance(
        "kki", kki_target.mock.url, tmp_path, "--phases", "pagination", "--rate-limit", "25/s"
    )
    elapsed = time.monotonic() - started
    assert code == 0
    requests = report["stats"]["requests"]
    assert requests > 10
    assert elapsed >= (requests - 1) / 25


def _break_citizen_str(target: Target) -> None:
    with target.public() as client:
        items = client.get("/v1/registrations", params={"limit": 500}).json()["data"]
    registration = next(
        r
        for r in items
        if r["citizenship"] == "WNI"
        and r["issued_at"] >= "2023-08-08"
        and r["certification"]["valid_until"] is None
    )
    target.patch(
        "registrations",
        registration["str_number"],
        {"certification": {"valid_until": "2031-01-31"}},
    )


def test_baselined_deviation_passes_until_it_expires(kki_target: Target, tmp_path: Path) -> None:
    kki_target.reset()
    _break_citizen_str(kki_target)
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(
        "accepted:\n"
        "  - rule: domain/str-citizen-lifetime\n"
        "    operation: listRegistrations\n"
        "    reason: vendor ticket KKI-123, fix promised for the January release\n"
        "    expires: 2027-01-15\n"
    )
    args = ("--phases", "pagination", "domain", "--baseline", str(baseline))

    code, report = run_conformance(
        "kki", kki_target.mock.url, tmp_path, *args, today=dt.date(2027, 1, 15)
    )
    assert code == 0
    accepted = [f for f in report["findings"] if f["rule"] == "domain/str-citizen-lifetime"]
    assert accepted
    assert accepted[0]["accepted"].startswith("vendor ticket")

    code, report = run_conformance(
        "kki", kki_target.mock.url, tmp_path, *args, today=dt.date(2027, 1, 16)
    )
    assert code == 1
    assert ("domain/str-citizen-lifetime", "listRegistrations") in failing(report)


def _assert_cannot_run(run: subprocess.CompletedProcess[str], words: str) -> None:
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("hf-conformance: cannot run:")
    assert words in lines[0]
    assert "Traceback" not in run.stdout + run.stderr


def test_unreachable_url_cannot_run() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    _assert_cannot_run(hf_conformance("kki", "--base-url", url, "--api-key", "k"), "cannot reach")


def test_tls_failure_cannot_run(kki_target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    url = kki_target.mock.url.replace("http://", "https://")
    _assert_cannot_run(in_process(capsys, "kki", "--base-url", url, "--api-key", "k"), "TLS")


@pytest.mark.parametrize(
    ("system", "credentials"),
    [
        ("kki", ["--api-key", "not-the-key"]),
        ("sisdmk", ["--client-id", "sisdmk-dev-client", "--client-secret", "wrong"]),
    ],
)
def test_wrong_credentials_cannot_run(
    system: str,
    credentials: list[str],
    kki_target: Target,
    sisdmk_target: Target,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = kki_target if system == "kki" else sisdmk_target
    run = in_process(capsys, system, "--base-url", target.mock.url, *credentials)
    _assert_cannot_run(run, "credentials refused")


def test_missing_spec_cannot_run(
    kki_target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--spec",
        str(tmp_path / "no-such.yaml"),
    )
    _assert_cannot_run(run, "no-such.yaml")


CONTRACTS = Path(__file__).resolve().parents[3] / "contracts" / "openapi"


def _edited_contract(system: str, tmp_path: Path, edit: Callable[[dict[str, Any]], object]) -> Path:
    """The system's contract for `--spec`, with `edit` applied to its `paths` (an older or a
    thinner version of it)."""
    document = yaml.safe_load((CONTRACTS / f"{system}.yaml").read_text(encoding="utf-8"))
    edit(document["paths"])
    edited = tmp_path / f"{system}-edited.yaml"
    edited.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return edited


@pytest.mark.parametrize(("system", "other"), [("kki", "sisdmk"), ("sisdmk", "kki")])
def test_the_other_systems_contract_cannot_run(
    system: str,
    other: str,
    kki_target: Target,
    sisdmk_target: Target,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = kki_target if system == "kki" else sisdmk_target
    spec = CONTRACTS / f"{other}.yaml"
    run = in_process(
        capsys, system, "--base-url", target.mock.url, *CREDENTIALS[system], "--spec", str(spec)
    )
    _assert_cannot_run(run, f"{other}.yaml does not describe the {system} API")


def test_an_older_contract_without_an_optional_operation_runs(
    sisdmk_target: Target, tmp_path: Path
) -> None:
    # An older SISDMK contract without listFacilityHealthWorkers was refused as "does not
    # describe the sisdmk API", although --spec takes another version of the contract.
    older = _edited_contract(
        "sisdmk", tmp_path, lambda paths: paths.pop("/v1/facilities/{facility_code}/health-workers")
    )
    sisdmk_target.reset()
    code, report = run_conformance(
        "sisdmk", sisdmk_target.mock.url, tmp_path, "--spec", str(older), "--phases", "pagination"
    )
    assert code == 0, report.get("findings")
    assert report["verdict"] == "conforming"
    assert "listFacilityHealthWorkers" not in {c["operation"] for c in report["checked"]}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("accepted: [unclosed\n", "not valid YAML"),
        ("accepted:\n  - rule: domain/nik-structure\n", "lacks operation, reason, expires"),
        (
            "accepted:\n  - {rule: r, operation: o, reason: why, expires: soon}\n",
            "is not a date",
        ),
    ],
)
def test_bad_baseline_cannot_run(
    content: str,
    words: str,
    kki_target: Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(content)
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--baseline",
        str(baseline),
    )
    _assert_cannot_run(run, words)


def test_unknown_operation_cannot_run(
    kki_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--include",
        "listEverything",
    )
    _assert_cannot_run(run, "no operation listEverything")


def test_webhook_receiver_listens_where_told_and_is_subscribed_by_the_given_url(
    kki_target: Target, tmp_path: Path
) -> None:
    # As against a staging system behind a tunnel: the provider calls --receiver-url, which
    # reaches the receiver listening at --receiver-listen (here: localhost for 127.0.0.1).
    kki_target.reset()
    port = free_port()
    code, report = run_conformance(
        "kki",
        kki_target.mock.url,
        tmp_path,
        "--phases",
        "webhooks",
        "--webhooks",
        "--receiver-listen",
        f"127.0.0.1:{port}",
        "--receiver-url",
        f"http://localhost:{port}/hf-conformance/webhook",
    )
    assert code == 0, report["findings"]
    assert report["stats"]["webhook_deliveries"] >= 3


def test_a_receiver_address_that_is_not_host_and_port_cannot_run(
    kki_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    run = in_process(
        capsys, "kki", "--base-url", kki_target.mock.url, "--webhooks", "--receiver-listen", "9000"
    )
    assert run.returncode == 2
    assert "'9000' is not HOST:PORT" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(("system", "phase"), [("kki", "pagnation"), ("kki", "discovery")])
def test_unknown_phase_cannot_run(
    kki_target: Target, system: str, phase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A misspelt phase used to run nothing and report "conforming".
    run = in_process(
        capsys, system, "--base-url", kki_target.mock.url, *CREDENTIALS["kki"], "--phases", phase
    )
    _assert_cannot_run(run, f"no phase {phase} for {system}")


class _Answer(Breakage):
    """The first list's answers replaced by `body` labelled `content_type`, as a web server
    that is not the API (a gateway's page, another service) would answer."""

    def __init__(self, path: str, body: bytes, content_type: str) -> None:
        self.path, self.body, self.content_type = path, body, content_type

    def response(self, exchange: Exchange) -> None:
        if exchange.path == self.path:
            exchange.status = 200
            exchange.response_headers = {"content-type": self.content_type}
            exchange.response_body = self.body


class _Slow(Breakage):
    """Every answer takes `seconds` longer (a slow staging system)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def request(self, exchange: Exchange) -> None:
        time.sleep(self.seconds)


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        # Its access log would go to this process's stderr: the command's, in `in_process`.
        return


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[str]:
    """A plain web server (python -m http.server) that serves files, not an API."""
    handler = functools.partial(_QuietFiles, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # Polled every 50 ms (not 0.5 s) so that shutdown() at teardown does not wait half a second.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("phases", [[], ["--phases", "pagination", "reads"]])
def test_url_of_a_plain_web_server_cannot_run(
    static_site: str, phases: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to count as tested: 75 failing checks, or "conforming" with fewer phases.
    run = in_process(capsys, "kki", "--base-url", static_site, *CREDENTIALS["kki"], *phases)
    _assert_cannot_run(run, "does not serve the kki API: GET /v1/registrations answered 404")


def test_url_of_the_other_registry_cannot_run(
    sisdmk_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    run = in_process(capsys, "kki", "--base-url", sisdmk_target.mock.url, *CREDENTIALS["kki"])
    _assert_cannot_run(run, "does not serve the kki API")
    assert "check --base-url" in run.stderr


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"<html><body>Welcome</body></html>", "text/html", "a body that is not JSON (text/html)"),
        (b'{"status": "ok"}', "application/json", "JSON that is not a list page"),
    ],
)
def test_list_answered_by_something_else_cannot_run(
    kki_target: Target,
    body: bytes,
    content_type: str,
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kki_target.reset(_Answer("/v1/registrations", body, content_type))
    run = in_process(capsys, "kki", "--base-url", kki_target.proxy.url, *CREDENTIALS["kki"])
    _assert_cannot_run(run, words)


@pytest.mark.parametrize("phase", ["domain", "reads"])
def test_phase_that_checks_read_records_runs_pagination_first(
    kki_target: Target,
    tmp_path: Path,
    phase: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `--phases domain` alone used to check nothing and say "conforming".
    kki_target.reset()
    report_path = tmp_path / "report.json"
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--as-of",
        TODAY.isoformat(),
        "--phases",
        phase,
        "--json",
        str(report_path),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    report = json.loads(report_path.read_text())
    assert [p["name"] for p in report["phases"]] == ["pagination", phase]
    assert {p["status"] for p in report["phases"]} == {"done"}
    rule = "domain/nik-structure" if phase == "domain" else "contract/status_code_conformance"
    operation = "listRegistrations" if phase == "domain" else "getRegistration"
    assert (rule, operation) in {(c["rule"], c["operation"]) for c in report["checked"]}
    # The notes reach the terminal, not only the reports.
    assert f"note: pagination: run because {phase} checks the records it reads" in run.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--phases", "webhooks"], "phase webhooks needs --webhooks"),
        (["--phases", "peer"], "phase peer needs --peer URL"),
        (["--phases", "pagination", "peer"], "phase peer needs --peer URL"),
    ],
)
def test_phase_asked_for_without_what_it_needs_cannot_run(
    kki_target: Target,
    args: list[str],
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = in_process(capsys, "kki", "--base-url", kki_target.mock.url, *CREDENTIALS["kki"], *args)
    _assert_cannot_run(run, words)


def test_time_budget_spent_before_a_phase_is_not_conforming(
    kki_target: Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 120 ms per answer: the credentials phase (22 requests, 2.6 s of delays alone) outlasts a
    # 2 s budget whatever the load, errors never starts; 2 s leave the start-up probe room on a
    # loaded machine.
    kki_target.reset(_Slow(0.12))
    report_path = tmp_path / "report.json"
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.proxy.url,
        *CREDENTIALS["kki"],
        "--phases",
        "errors",
        "credentials",
        "--time-budget",
        "2",
        "--quiet",
        "--json",
        str(report_path),
    )
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "incomplete"
    assert failing(report) == set()
    statuses = {p["name"]: p["status"] for p in report["phases"]}
    assert statuses == {"credentials": "done", "errors": "skipped (time budget spent)"}
    assert run.stdout.strip().splitlines()[-1].startswith("incomplete: 0 failing")
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith("hf-conformance: incomplete: errors skipped (time budget spent)")
    )
    assert "Traceback" not in run.stderr


class _Counted(Breakage):
    """Counts the requests for one registration that reach the proxy."""

    def __init__(self) -> None:
        self.requests = 0

    def request(self, exchange: Exchange) -> None:
        if exchange.path.startswith("/v1/registrations/"):
            self.requests += 1


def test_schemathesis_under_a_rate_limit_stops_when_the_budget_is_spent(
    kki_target: Target, tmp_path: Path
) -> None:
    # At 2 requests/s, 40 examples of one operation take 20 s and come as one Schemathesis event:
    # a budget checked between events let them all run. A 3 s budget stops it after a few.
    counted = _Counted()
    kki_target.reset(counted)
    code, report = run_conformance(
        "kki",
        kki_target.proxy.url,
        tmp_path,
        *("--phases", "schemathesis", "--include", "getRegistration"),
        *("--rate-limit", "2/s", "--max-examples", "40", "--seed", "7", "--time-budget", "3"),
    )
    assert 0 < counted.requests < 20, counted.requests
    assert (code, report["verdict"]) == (2, "incomplete"), report.get("findings")
    assert [p["status"] for p in report["phases"]] == ["skipped (time budget spent)"]
    assert any(
        note.startswith("schemathesis: stopped by the time budget") for note in report["notes"]
    ), report["notes"]


def _webhooks_phase(
    system: str, url: str, tmp_path: Path, *args: str
) -> tuple[int, dict[str, Any]]:
    """`run_conformance` of the webhooks phase alone, its receiver on a free local port."""
    receiver = ("--receiver-listen", f"127.0.0.1:{free_port()}")
    return run_conformance(
        system, url, tmp_path, "--phases", "webhooks", "--webhooks", *receiver, *args
    )


def test_webhooks_that_never_arrive_are_a_violation(kki_target: Target, tmp_path: Path) -> None:
    # The mock delivers to a URL nobody listens on: the events the command caused never arrive.
    # Nothing arrives in any wait: 2 s instead of the mocks' 10 s show the same finding.
    kki_target.reset()
    code, report = _webhooks_phase(
        "kki",
        kki_target.mock.url,
        tmp_path,
        *("--receiver-url", f"http://127.0.0.1:{free_port()}/hf-conformance/webhook"),
        *("--webhook-wait", "2"),
    )
    assert code == 1
    assert failing(report) == {("webhooks/retry", "createWebhookSubscription")}
    assert "within 2 s" in report["findings"][0]["message"]
    assert report["stats"]["webhook_deliveries"] == 0


def test_webhooks_waited_for_less_than_their_time_for_the_budget_are_incomplete(
    kki_target: Target, tmp_path: Path
) -> None:
    # Near the deadline the wait shrinks to what is left; nothing arriving in it used to fail
    # webhooks/retry "within 10 s". A 2 s budget: the phase starts (the probe before it takes
    # ~0.1 s, more on a loaded machine) and its wait is cut to what is left, far under 10 s.
    kki_target.reset()
    code, report = _webhooks_phase(
        "kki",
        kki_target.mock.url,
        tmp_path,
        *("--time-budget", "2"),
        *("--receiver-url", f"http://127.0.0.1:{free_port()}/hf-conformance/webhook"),
    )
    assert code == 2, report.get("findings")
    assert report["verdict"] == "incomplete"
    assert failing(report) == set()
    assert [p["status"] for p in report["phases"]] == ["skipped (time budget spent)"]
    assert any(
        note.startswith("webhooks: the wait for deliveries was cut") for note in report["notes"]
    )


class _PlainHealth(Breakage):
    """The target's admin API answers its health as a real service would ({"status": "ok"});
    every admin request that reaches the proxy is recorded."""

    admin = True

    def __init__(self) -> None:
        self.admin_requests: list[str] = []

    def request(self, exchange: Exchange) -> None:
        if exchange.path.startswith("/__admin"):
            self.admin_requests.append(f"{exchange.method} {exchange.path}")

    def response(self, exchange: Exchange) -> None:
        if exchange.path == "/__admin/health":
            exchange.status = 200
            exchange.response_body = b'{"status": "ok"}'
            exchange.response_headers["Content-Type"] = "application/json"


@pytest.mark.parametrize(
    ("mock", "wait", "why"),
    [
        # The first event is refused twice; the mock retries after 1 s, then 2 s more. A 2 s
        # wait judged the retries anyway: "webhooks/retry ... attempted 2 time(s)" against a
        # mock that works.
        (
            True,
            "2",
            "--webhook-wait 2 s ended before every delivery and retry arrived, so nothing was "
            "judged; give it 4 s or more",
        ),
        # Not a mock (its health is a real service's): the command waits for events of real
        # changes. None in the wait left the phase "done" with a note, and the run conforming.
        (
            False,
            "1",
            "no event was delivered within 1 s, so nothing could be checked; run it while the "
            "provider has changes to send, or give --webhook-wait more seconds",
        ),
    ],
    ids=["shorter than the mocks' retries", "a provider sending nothing"],
)
def test_a_webhook_wait_that_cannot_judge_leaves_the_phase_not_run(
    kki_target: Target, tmp_path: Path, mock: bool, wait: str, why: str
) -> None:
    kki_target.reset(None if mock else _PlainHealth())
    code, report = _webhooks_phase(
        "kki",
        kki_target.mock.url if mock else kki_target.proxy.url,
        tmp_path,
        "--webhook-wait",
        wait,
    )
    assert (code, report["verdict"]) == (2, "incomplete"), report.get("findings")
    assert [p["status"] for p in report["phases"]] == [f"not run ({why})"]


def test_webhooks_change_no_policy_and_cause_no_events_where_health_is_not_a_mocks(
    kki_target: Target, tmp_path: Path
) -> None:
    # A 200 on /__admin/health used to be enough: the command then replaced that service's
    # webhook policy and asked it to cause events, as it does on the mocks. A 2 s budget, as
    # above: the phase runs and its wait is cut short.
    breakage = _PlainHealth()
    kki_target.reset(breakage)
    code, report = _webhooks_phase("kki", kki_target.proxy.url, tmp_path, "--time-budget", "2")
    # Only its health document is read (at start-up, and again by the phase): nothing else.
    assert set(breakage.admin_requests) == {"GET /__admin/health"}, breakage.admin_requests
    # Waited for as a real provider (its 120 s), cut by the budget: nothing judged.
    assert (code, report["verdict"]) == (2, "incomplete"), report.get("findings")


@pytest.mark.parametrize(
    ("system", "peer_credentials", "words"),
    [
        (
            "kki",
            ["--peer-client-id", "sisdmk-dev-client", "--peer-client-secret", "wrong"],
            "--peer: credentials refused",
        ),
        ("sisdmk", ["--peer-api-key", "not-the-key"], "--peer: credentials refused"),
        ("sisdmk", [], "kki needs an API key: --peer-api-key KEY (or HF_CONFORMANCE_PEER_API_KEY)"),
        (
            "kki",
            [],
            "sisdmk needs client credentials: --peer-client-id ID --peer-client-secret SECRET",
        ),
    ],
)
def test_peer_credentials_missing_or_refused_cannot_run(
    kki_target: Target,
    sisdmk_target: Target,
    system: str,
    peer_credentials: list[str],
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A refused peer key used to end as "peer: done", 0 matched, exit 0.
    target, peer = (kki_target, sisdmk_target) if system == "kki" else (sisdmk_target, kki_target)
    run = in_process(
        capsys,
        system,
        "--base-url",
        target.mock.url,
        *CREDENTIALS[system],
        "--phases",
        "peer",
        "--peer",
        peer.mock.url,
        *peer_credentials,
    )
    _assert_cannot_run(run, words)


def test_reports_are_written_into_folders_that_do_not_exist_yet(
    kki_target: Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CI recipe writes to reports/, which a fresh checkout does not have.
    kki_target.reset()
    junit, html, report = (
        tmp_path / "a" / "kki.xml",
        tmp_path / "b" / "c" / "kki.html",
        tmp_path / "d" / "kki.json",
    )
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--phases",
        "pagination",
        "--junit",
        str(junit),
        "--html",
        str(html),
        "--json",
        str(report),
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(report.read_text())["verdict"] == "conforming"
    assert junit.exists()
    assert html.exists()


def test_a_report_path_that_cannot_be_written_stops_the_run_before_it_starts(
    kki_target: Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--json",
        str(tmp_path / "taken" / "kki.json"),
    )
    _assert_cannot_run(run, f"for report {tmp_path / 'taken' / 'kki.json'}")
    assert run.stdout == ""  # no phase ran


def test_a_report_that_fails_to_write_keeps_the_verdict_and_the_other_reports(
    kki_target: Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # /dev/full passes every check and then refuses the write, as a full disk would.
    kki_target.reset()
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--phases",
        "pagination",
        "--quiet",
        "--junit",
        "/dev/full",
        "--json",
        str(tmp_path / "kki.json"),
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "conforming:" in run.stdout  # the table and the verdict
    assert json.loads((tmp_path / "kki.json").read_text())["verdict"] == "conforming"
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("hf-conformance: report /dev/full not written (No space left")
    assert "Traceback" not in run.stderr


def test_pact_states_given_by_another_spelling_of_the_mocks_url_leave_its_data_as_it_was(
    kki_target: Target, tmp_path: Path
) -> None:
    # The same mock as the target, spelt localhost instead of 127.0.0.1.
    kki_target.reset()
    before = kki_target.mock.admin.get("/health").json()["records"]
    state_url = kki_target.mock.url.replace("127.0.0.1", "localhost") + "/__admin/provider-states"
    assert state_url.startswith("http://localhost:")
    code, report = run_conformance(
        "kki", kki_target.mock.url, tmp_path, "--phases", "pact", "--state-url", state_url
    )
    assert code == 0, report["findings"]
    assert report["stats"]["pact kki"]["passed"] > 0
    assert kki_target.mock.admin.get("/health").json()["records"] == before


@pytest.fixture
def plain_service() -> Iterator[tuple[str, list[str]]]:
    """A real service that is no mock: 200 {"status": "ok"} at any /health, 200 {} to a
    provider state; it records every request path it gets."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            data = b'{"status": "ok"}' if self.path.endswith("/health") else b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_state_url_next_to_a_plain_health_endpoint_is_not_taken_for_a_mock(
    kki_target: Target, tmp_path: Path, plain_service: tuple[str, list[str]]
) -> None:
    # A 200 on /health used to be enough: the command then deleted and posted snapshots there.
    url, seen = plain_service
    kki_target.reset()
    _, report = run_conformance(
        "kki",
        kki_target.mock.url,
        tmp_path,
        "--phases",
        "pact",
        "--state-url",
        f"{url}/states/provider-states",
    )
    assert seen, "the state URL was used"
    assert not [line for line in seen if "/snapshots" in line], seen
    assert seen.count("GET /states/health") == 1, "asked once per Pact phase"
    assert (
        f"pact: {url}/states/provider-states has no mock admin API next to it to snapshot the "
        "data: the provider states replaced the target's data"
    ) in report["notes"]


def test_a_rate_without_its_unit_cannot_run(
    kki_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    run = in_process(
        capsys, "kki", "--base-url", kki_target.mock.url, *CREDENTIALS["kki"], "--rate-limit", "5"
    )
    assert run.returncode == 2
    assert "'5' is not a rate like 5/s" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_receiver_port_already_taken_names_receiver_listen(
    kki_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = kki_target.mock.url.removeprefix("http://")  # the mock itself listens there
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--quiet",
        "--phases",
        "webhooks",
        "--webhooks",
        "--receiver-listen",
        taken,
    )
    _assert_cannot_run(run, f"the webhook receiver cannot listen on {taken}")
    assert "--receiver-listen" in run.stderr


class SubscriptionsRefused(Breakage):
    """The provider answers 503 to every new webhook subscription."""

    def response(self, exchange: Exchange) -> None:
        if exchange.method == "POST" and exchange.path == "/v1/webhook-subscriptions":
            exchange.status = 503
            exchange.response_headers = {"content-type": "application/problem+json"}
            exchange.response_body = b'{"title": "Service Unavailable", "status": 503}'


def test_message_pacts_that_cannot_run_leave_the_http_pacts_results(
    kki_target: Target, tmp_path: Path
) -> None:
    # The message pacts' receiver could not be subscribed: that error used to discard the HTTP
    # pact's results of the same phase (and end the run with an internal error, no report); then
    # the phase read "not run (...; the kki HTTP pact was verified)" and a run of every phase
    # came out conforming although the message pacts were never checked (that a partly run
    # phase makes any run incomplete: test_conformance_cli_summary.py).
    kki_target.reset(SubscriptionsRefused())
    code, report = run_conformance(
        "kki", kki_target.proxy.url, tmp_path, "--webhooks", "--phases", "pact"
    )
    assert code == 2, report.get("findings")
    assert report["verdict"] == "incomplete"
    assert report["stats"]["pact kki"]["passed"] > 0
    assert report["stats"]["pact kki"]["failed"] == 0
    assert "pact kki-webhooks" not in report["stats"]
    verified = {c["operation"] for c in report["checked"] if c["rule"] == "pact/interaction"}
    assert "a request for the first page of registrations" in verified
    assert [p["status"] for p in report["phases"] if p["name"] == "pact"] == [
        "partly run (the kki HTTP pact's interactions were checked; the kki-webhooks message "
        "pacts were not: POST /v1/webhook-subscriptions answered 503)"
    ]


class SubscriptionNotDeleted(Breakage):
    """Deleting a webhook subscription fails: answered 503, or the connection dropped."""

    def __init__(self, dropped: bool) -> None:
        self.dropped = dropped
        self.deleted: list[str] = []

    def request(self, exchange: Exchange) -> None:
        if exchange.method == "DELETE" and exchange.path.startswith("/v1/webhook-subscriptions/"):
            self.deleted.append(exchange.path.rsplit("/", 1)[1])
            if self.dropped:
                # The proxy's handler fails: the connection closes without an answer.
                raise ConnectionAbortedError("hf-conformance test: dropped on purpose")

    def response(self, exchange: Exchange) -> None:
        if exchange.method == "DELETE" and exchange.path.startswith("/v1/webhook-subscriptions/"):
            exchange.status = 503
            exchange.response_headers = {"content-type": "application/problem+json"}
            exchange.response_body = b'{"title": "Service Unavailable", "status": 503}'


@pytest.mark.parametrize(
    ("dropped", "why"), [(False, "answered 503"), (True, "failed (RemoteProtocolError)")]
)
def test_message_pacts_verified_stand_when_their_receiver_cannot_be_unsubscribed(
    kki_target: Target, tmp_path: Path, dropped: bool, why: str
) -> None:
    # A failed clean-up after the message pacts were verified discarded their results (the phase
    # became "not run"), or, answered with an error status, left the subscription unsaid.
    breakage = SubscriptionNotDeleted(dropped)
    kki_target.reset(breakage)
    code, report = run_conformance(
        "kki", kki_target.proxy.url, tmp_path, "--phases", "pact", "--webhooks"
    )
    assert code == 0, (report.get("phases"), report.get("findings"))
    assert report["verdict"] == "conforming"
    assert [p["status"] for p in report["phases"]] == ["done"]
    assert report["stats"]["pact kki-webhooks"]["passed"] > 0
    assert report["stats"]["pact kki-webhooks"]["failed"] == 0
    [subscription] = breakage.deleted
    path = f"/v1/webhook-subscriptions/{subscription}"
    assert (
        f"pact: the message pacts' event receiver is still subscribed: DELETE {path} {why}; "
        f"delete subscription {subscription} by hand (DELETE {path} with the target's "
        "credentials), or the target keeps sending events to an address nobody listens on"
    ) in report["notes"]


class LookupShowsActive(Breakage):
    """The NIK look-up shows every STR as active: what an older release's look-up, outside the
    older contract given to --spec, may well answer."""

    def response(self, exchange: Exchange) -> None:
        if exchange.path == "/v1/registrations/lookup" and exchange.status == 200:
            document = json.loads(exchange.response_body)
            for item in document.get("data", []):
                item["certification"]["status"] = "AKTIF"
            exchange.response_body = json.dumps(document).encode()


def test_an_older_contract_without_the_nik_look_up_leaves_it_out_of_the_skp_comparison(
    kki_target: Target, tmp_path: Path
) -> None:
    # The SKP comparison checked whether the contract has each view's operation, except the NIK
    # look-up: against an older contract it was still called and its answer judged.
    older = _edited_contract("kki", tmp_path, lambda paths: paths.pop("/v1/registrations/lookup"))
    kki_target.reset(LookupShowsActive())
    code, report = run_conformance(
        "kki", kki_target.proxy.url, tmp_path, "--spec", str(older), "--phases", "skp"
    )
    assert code == 0, report.get("findings")
    assert report["verdict"] == "conforming"
    assert ("domain/skp-deactivation", "getCertificationStatus") in {
        (c["rule"], c["operation"]) for c in report["checked"]
    }, "the other views were compared"
    assert "lookupRegistrationsByNik" not in {c["operation"] for c in report["checked"]}
    assert (
        "skp: the contract has no lookupRegistrationsByNik; that view is not compared"
        in report["notes"]
    )


class _ViewAnswered(Breakage):
    """The 200 answers of the paths matching `path` replaced by `body` labelled `content_type`:
    a proxy's error page, a body cut short, a document of another shape."""

    def __init__(self, path: str, body: bytes, content_type: str) -> None:
        self.path = re.compile(path)
        self.body, self.content_type = body, content_type

    def response(self, exchange: Exchange) -> None:
        if exchange.status == 200 and self.path.fullmatch(exchange.path):
            exchange.response_headers = {"content-type": self.content_type}
            exchange.response_body = self.body


@pytest.mark.parametrize(
    ("path", "body", "content_type", "operation", "words"),
    [
        (
            r"/v1/registrations/[^/]+/skp",
            b"<html><body>502 Bad Gateway</body></html>",
            "text/html",
            "getSkpSummary",
            "a body that is not JSON (text/html)",
        ),
        (
            r"/v1/registrations/[^/]+/certification",
            b'{"status": "NONAKTIF_SEM',
            "application/json",
            "getCertificationStatus",
            "a body that is not JSON (application/json)",
        ),
        (
            r"/v1/registrations/[^/]+/sips",
            b'[{"status": "BERLAKU"}]',
            "application/json",
            "listPracticeLicenses",
            "JSON that is not an object with a data array of objects",
        ),
        (
            r"/v1/registrations/lookup",
            b'{"data": "none"}',
            "application/json",
            "lookupRegistrationsByNik",
            "JSON that is not an object with a data array of objects",
        ),
    ],
)
def test_an_skp_view_answering_200_with_another_body_is_a_finding_of_the_comparison(
    kki_target: Target,
    tmp_path: Path,
    path: str,
    body: bytes,
    content_type: str,
    operation: str,
    words: str,
) -> None:
    # The SKP comparison read every view's 200 as JSON of the documented shape: an HTML page
    # from a proxy or a truncated body ended the whole run as an internal error, with no report.
    kki_target.reset(_ViewAnswered(path, body, content_type))
    code, report = run_conformance("kki", kki_target.proxy.url, tmp_path, "--phases", "skp")
    assert code == 1, report.get("phases")
    assert report["verdict"] == "violations"
    assert [p["status"] for p in report["phases"]] == ["done", "done"]
    found = [
        f
        for f in report["findings"]
        if (f["rule"], f["operation"]) == ("domain/skp-deactivation", operation)
    ]
    assert found, report["findings"]
    assert f"{operation} answered 200 with {words}" in found[0]["message"]
    # The answer is the evidence (masked: JSON that does not parse is redacted).
    assert found[0]["evidence"]["response"]["status"] == 200
    assert found[0]["evidence"]["response"]["body"]
    # The paging phase reads a sub-list (`/sips`) too; there the page fails the contract.
    assert {f for f in failing(report) if f[0].startswith("domain/")} == {
        ("domain/skp-deactivation", operation)
    }


class _Together(Breakage):
    """Several breakages at once, each seeing every exchange in turn."""

    def __init__(self, *parts: Breakage) -> None:
        self.parts = parts
        self.admin = any(part.admin for part in parts)

    def request(self, exchange: Exchange) -> None:
        for part in self.parts:
            part.request(exchange)

    def response(self, exchange: Exchange) -> None:
        for part in self.parts:
            part.response(exchange)


class _LaterPages(Breakage):
    """The registration list's pages after the first (those asked for with a cursor) answered
    `body`: the small-limit walk reads them, the start-up call and the full walk do not."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def response(self, exchange: Exchange) -> None:
        if exchange.path == "/v1/registrations" and exchange.param("cursor") is not None:
            exchange.response_body = self.body


def test_a_list_page_that_is_not_a_list_page_of_objects_fails_its_schema_and_stops_the_walk(
    kki_target: Target, tmp_path: Path
) -> None:
    # A page cut short (not JSON) stopped the walk unjudged (the run conformed); a page whose
    # data held no objects ended the run as an internal error. One run, one page of each.
    kki_target.reset(
        _Together(
            _ViewAnswered(
                r"/v1/registrations/[^/]+/trainings", b'{"data": [{"title": "BL', "application/json"
            ),
            _LaterPages(
                b'{"data": [1, 2], "page": {"limit": 2, "next_cursor": null, "has_more": false}}'
            ),
        )
    )
    code, report = run_conformance("kki", kki_target.proxy.url, tmp_path, "--phases", "pagination")
    assert code == 1, report.get("phases")
    assert report["verdict"] == "violations"
    assert [p["status"] for p in report["phases"]] == ["done"]
    assert failing(report) == {
        ("contract/response_schema_conformance", "listTrainings"),
        ("contract/response_schema_conformance", "listRegistrations"),
    }
    by_operation = {f["operation"]: f for f in report["findings"]}
    assert by_operation["listTrainings"]["message"] == (
        "a page does not match the documented schema: the 200 body is not JSON"
    )
    assert by_operation["listRegistrations"]["message"].startswith(
        "a page does not match the documented schema: data/0: an integer, the contract says object"
    )
    assert by_operation["listRegistrations"]["evidence"]["response"]["status"] == 200
    assert (
        "listTrainings: page 1 has no data array of objects and page object; walk stopped"
        in report["notes"]
    )
    assert (
        "listRegistrations: page 2 has no data array of objects and page object; walk stopped"
        in report["notes"]
    )


class _TokenAnswered(Breakage):
    """The token endpoint's 200s after the first (the command's own token) replaced by `body`:
    the token phase's request gets it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.issued = 0

    def response(self, exchange: Exchange) -> None:
        if exchange.path == "/oauth2/v1/accesstoken" and exchange.status == 200:
            self.issued += 1
            if self.issued > 1:
                exchange.response_body = self.body


@pytest.mark.parametrize("body", [b'{"expires_in": "143', b'["14399"]'])
def test_a_token_answer_that_is_not_a_json_object_fails_token_lifetime(
    sisdmk_target: Target, tmp_path: Path, body: bytes
) -> None:
    # Possible with a --spec documenting no schema for the token: it ended the run as an
    # internal error with no report.
    older = _edited_contract(
        "sisdmk",
        tmp_path,
        lambda paths: paths["/oauth2/v1/accesstoken"]["post"]["responses"]["200"]["content"][
            "application/json"
        ].pop("schema"),
    )
    sisdmk_target.reset(_TokenAnswered(body))
    code, report = run_conformance(
        "sisdmk", sisdmk_target.proxy.url, tmp_path, "--spec", str(older), "--phases", "token"
    )
    assert code == 1, report.get("phases")
    assert report["verdict"] == "violations"
    assert failing(report) == {("token/lifetime", "issueAccessToken")}
    [finding] = [f for f in report["findings"] if f["rule"] == "token/lifetime"]
    assert finding["message"] == "the token answer is not a JSON object: no expires_in to judge"
    assert finding["evidence"]["response"]["status"] == 200


class _FirstListingAnswered(Breakage):
    """The first subscription listing (Schemathesis' "before") answered `body` labelled
    `content_type`; every DELETE of a subscription is recorded."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body, self.content_type = body, content_type
        self.listings = 0
        self.deleted: list[str] = []

    def request(self, exchange: Exchange) -> None:
        if exchange.method == "DELETE" and exchange.path.startswith("/v1/webhook-subscriptions/"):
            self.deleted.append(exchange.path)

    def response(self, exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == "/v1/webhook-subscriptions":
            self.listings += 1
            if self.listings == 1:
                exchange.response_headers = {"content-type": self.content_type}
                exchange.response_body = self.body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"<html><body>502 Bad Gateway</body></html>", "text/html"), (b"{}", "application/json")],
)
def test_an_unreadable_subscription_listing_deletes_no_subscription(
    kki_target: Target, tmp_path: Path, body: bytes, content_type: str
) -> None:
    # Not JSON ended the run as an internal error before Schemathesis started; a listing
    # without a data array was taken for "no subscriptions", and every subscription the target
    # had before the run was then deleted as one Schemathesis had created.
    kki_target.reset()
    with kki_target.public() as client:
        existing = client.post(
            "/v1/webhook-subscriptions",
            json={"url": "https://hooks.example.com/kki", "event_types": ["registration.issued"]},
        )
    assert existing.status_code == 201, existing.text
    breakage = _FirstListingAnswered(body, content_type)
    kki_target.proxy.breakage = breakage
    code, report = run_conformance(
        "kki",
        kki_target.proxy.url,
        tmp_path,
        *("--phases", "schemathesis", "--include", "getRegistration"),
        *("--max-examples", "1", "--seed", "7"),
    )
    assert code == 0, (report.get("phases"), report.get("findings"))
    assert [p["status"] for p in report["phases"]] == ["done"]
    assert breakage.deleted == []
    assert (
        "schemathesis: listWebhookSubscriptions answered 200 without a JSON list page; the "
        "subscriptions Schemathesis created were not deleted"
    ) in report["notes"]
    assert "schemathesis_subscriptions_deleted" not in report["stats"]
    with kki_target.public() as client:
        listed = client.get("/v1/webhook-subscriptions").json()["data"]
    assert existing.json()["id"] in {item["id"] for item in listed}


class _MessagesBroken(DeliveryRelay):
    """For the message pacts: the mock's answer to emitting `unnamed` names no event, the
    deliveries of `mangled` reach the receiver as a JSON array and those of `garbled` as an
    HTML page (through the relay)."""

    admin = True

    def __init__(self, unnamed: str, mangled: str, garbled: str) -> None:
        super().__init__(self._mangle)
        self.unnamed, self.mangled, self.garbled = unnamed, mangled, garbled

    def _mangle(self, headers: dict[str, str], body: Any, _count: int) -> Any:
        if body.get("type") == self.garbled:
            headers["content-type"] = "text/html; charset=utf-8"
            return b"<html><body>502 Bad Gateway</body></html>"
        return [self.mangled] if body.get("type") == self.mangled else None

    def response(self, exchange: Exchange) -> None:
        if (
            exchange.path == "/__admin/events"
            and exchange.status == 202
            and json.loads(exchange.body).get("type") == self.unnamed
        ):
            exchange.response_body = b'{"events": []}'


def test_a_message_pact_whose_event_cannot_be_had_fails_alone_with_the_reason(
    kki_target: Target, tmp_path: Path
) -> None:
    # The mock's answer without an event id, or a delivery that is not a JSON object, raised in
    # the message handler: the interaction failed as "content type text/html" (pact-python's
    # 500 page), with no word of why. One run, one of each (a JSON array, and not JSON at all).
    breakage = _MessagesBroken(
        unnamed="registration.issued", mangled="sip.recorded", garbled="training.completed"
    )
    kki_target.reset(breakage)
    try:
        code, report = run_conformance(
            "kki", kki_target.proxy.url, tmp_path, "--phases", "pact", "--webhooks"
        )
    finally:
        breakage.close()
    assert code == 1, (report.get("phases"), report.get("findings"))
    assert [p["status"] for p in report["phases"]] == ["done"]
    assert failing(report) == {
        ("pact/interaction", "a registration.issued webhook event"),
        ("pact/interaction", "a sip.recorded webhook event"),
        ("pact/interaction", "a training.completed webhook event"),
    }
    messages = {f["operation"]: f["message"] for f in report["findings"]}
    assert messages["a registration.issued webhook event"] == (
        "no message to verify: the mock named no event_id when asked to emit registration.issued"
    )
    # Handed to the verifier, which shows how it differs from an event.
    assert messages["a sip.recorded webhook event"].startswith("BodyMismatch $: Type mismatch")
    assert "(Array)" in messages["a sip.recorded webhook event"]
    assert re.fullmatch(
        r"no message to verify: the delivery received while waiting for event \S+ is not JSON "
        r"\(41 bytes, content type text/html\)",
        messages["a training.completed webhook event"],
    ), messages["a training.completed webhook event"]
    assert report["stats"]["pact kki-webhooks"]["passed"] == 10
    assert report["stats"]["pact kki"]["failed"] == 0


class _RecordsChanged(Breakage):
    """Every record on the pages of the list at `path` gets `changes`."""

    def __init__(self, path: str, changes: dict[str, object]) -> None:
        self.path, self.changes = path, changes

    def response(self, exchange: Exchange) -> None:
        if exchange.path == self.path and exchange.status == 200:
            document = json.loads(exchange.response_body)
            for record in document["data"]:
                record.update(self.changes)
            exchange.response_body = json.dumps(document).encode()


@pytest.mark.parametrize(
    ("system", "path", "changes", "expected"),
    [
        (
            "kki",
            "/v1/registrations",
            {"sips": 5},
            {("domain/sip-five-years", "listRegistrations", "sips is an integer")},
        ),
        (
            "sisdmk",
            "/v1/health-workers",
            {"employments": 5, "certifications": {"kind": "STR"}},
            {
                ("domain/nip-structure", "listHealthWorkers", "employments is an integer"),
                ("domain/str-format", "listHealthWorkers", "certifications is an object"),
            },
        ),
    ],
)
def test_a_record_whose_list_is_not_an_array_fails_the_rule_that_reads_it(
    kki_target: Target,
    sisdmk_target: Target,
    tmp_path: Path,
    system: str,
    path: str,
    changes: dict[str, object],
    expected: set[tuple[str, str, str]],
) -> None:
    # A number where an array belongs ended the run as an internal error (TypeError) in the
    # domain phase, and at KKI in the SKP comparison; an object there was silently unchecked.
    target = kki_target if system == "kki" else sisdmk_target
    target.reset(_RecordsChanged(path, changes))
    phases = ["domain", "skp"] if system == "kki" else ["domain"]
    code, report = run_conformance(
        system, target.proxy.url, tmp_path, "--phases", *phases, "--as-of", TODAY.isoformat()
    )
    assert code == 1, report.get("phases")
    assert {p["status"] for p in report["phases"]} == {"done"}
    domain_failures = {f for f in failing(report) if f[0].startswith("domain/")}
    assert domain_failures == {(rule, operation) for rule, operation, _ in expected}
    for rule, operation, words in expected:
        message = next(
            f["message"]
            for f in report["findings"]
            if (f["rule"], f["operation"]) == (rule, operation)
        )
        assert message.startswith("record ")
        assert message.endswith(f": {words}, not an array: its entries cannot be checked")
    # The page itself fails the contract too, as any page off its schema does.
    for _, operation, _ in expected:
        assert ("contract/response_schema_conformance", operation) in failing(report)


class _PolicyAnswered(Breakage):
    """The mock's `GET /__admin/webhook-policy` answered `body` labelled `content_type`; every
    other admin request is recorded."""

    admin = True

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body, self.content_type = body, content_type
        self.admin_requests: list[str] = []

    def request(self, exchange: Exchange) -> None:
        if exchange.path.startswith("/__admin") and exchange.path != "/__admin/health":
            self.admin_requests.append(f"{exchange.method} {exchange.path}")

    def response(self, exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == "/__admin/webhook-policy":
            exchange.response_headers = {"content-type": self.content_type}
            exchange.response_body = self.body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"<html><body>Not here</body></html>", "text/html"), (b"[4, 1000]", "application/json")],
)
def test_a_mock_webhook_policy_that_cannot_be_read_cannot_run_and_changes_nothing(
    kki_target: Target, body: bytes, content_type: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Read without a guard: a body that is not JSON ended the run as an internal error; a JSON
    # array was kept as "the policy" and PUT back at the end over the mock's real one.
    breakage = _PolicyAnswered(body, content_type)
    kki_target.reset(breakage)
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.proxy.url,
        *CREDENTIALS["kki"],
        *("--quiet", "--phases", "webhooks", "--webhooks"),
        *("--receiver-listen", f"127.0.0.1:{free_port()}"),
    )
    _assert_cannot_run(
        run,
        "the mock's GET /__admin/webhook-policy answered 200 with a body that is not a JSON "
        "object: its retry policy could not be read to be put back after the run; nothing was "
        "changed there; check that the target runs hf-mock of this release, or leave out "
        "--webhooks",
    )
    assert breakage.admin_requests == ["GET /__admin/webhook-policy"]
    with kki_target.public() as client:
        assert client.get("/v1/webhook-subscriptions").json()["data"] == [], "unsubscribed"


class _Rerouted(Breakage):
    """`method path` goes to a path the mock does not serve (nothing there is changed or
    caused) and is answered `status`; `admin` when the path is the admin API's."""

    def __init__(self, method: str, path: str, status: int, *, admin: bool = False) -> None:
        self.method, self.path, self.status, self.admin = method, path, status, admin

    def request(self, exchange: Exchange) -> None:
        if (exchange.method, exchange.path) == (self.method, self.path):
            exchange.path = f"{self.path}-nowhere"

    def response(self, exchange: Exchange) -> None:
        if exchange.path == f"{self.path}-nowhere":
            exchange.status = self.status


def _webhook_policy(target: Target) -> object:
    return target.mock.admin.get("/webhook-policy").json()


@pytest.mark.parametrize(
    ("breakage", "status"),
    [
        (
            _Rerouted("POST", "/v1/webhook-subscriptions", 403),
            "not run (POST /v1/webhook-subscriptions answered 403: the receiver could not be "
            "subscribed; check that these credentials may subscribe and that the target accepts "
            "the receiver's URL (--receiver-url))",
        ),
        (
            _Rerouted("POST", "/__admin/events", 404, admin=True),
            "not run (the mock's POST /__admin/events answered 404 without the ids of the events "
            "it caused: no event is known to wait for; check that the target runs hf-mock of "
            "this release, or leave out --webhooks)",
        ),
    ],
    ids=["subscription-refused", "no-events-caused"],
)
def test_webhooks_phase_that_could_check_nothing_is_not_run_and_the_run_incomplete(
    kki_target: Target, tmp_path: Path, breakage: Breakage, status: str
) -> None:
    # Both were notes under a "done" phase: `--phases webhooks --webhooks` exited 0, conforming,
    # having checked nothing (and waited 10 s for events never caused).
    kki_target.reset(breakage)
    policy = _webhook_policy(kki_target)
    code, report = _webhooks_phase("kki", kki_target.proxy.url, tmp_path)
    assert (code, report["verdict"]) == (2, "incomplete"), report.get("phases")
    assert failing(report) == set()
    assert [(p["name"], p["status"]) for p in report["phases"]] == [("webhooks", status)]
    assert _webhook_policy(kki_target) == policy
    with kki_target.public() as client:
        assert client.get("/v1/webhook-subscriptions").json()["data"] == [], "unsubscribed"


class _Dropped(Breakage):
    """The connection of the first `method` request to a path starting with `path` is closed
    without an answer, as by a mock that went away or a proxy that cut it; later ones pass."""

    admin = True

    def __init__(self, method: str, path: str) -> None:
        self.method, self.path, self.dropped = method, path, 0

    def request(self, exchange: Exchange) -> None:
        ours = exchange.method == self.method and exchange.path.startswith(self.path)
        if ours and not self.dropped:
            self.dropped += 1
            # The proxy's handler closes the connection without a word on a TimeoutError.
            raise TimeoutError("dropped")


def test_a_dropped_connection_causing_events_leaves_webhooks_not_run(
    kki_target: Target, tmp_path: Path
) -> None:
    # Ended the run as "internal error RemoteProtocolError: Server disconnected ...".
    kki_target.reset(_Dropped("POST", "/__admin/events"))
    policy = _webhook_policy(kki_target)
    code, report = _webhooks_phase("kki", kki_target.proxy.url, tmp_path)
    assert (code, report.get("verdict")) == (2, "incomplete"), report.get("phases")
    assert [p["status"] for p in report["phases"]] == [
        "not run (the mock's POST /__admin/events failed (RemoteProtocolError): no event is "
        f"known to wait for; check that the mock at {kki_target.proxy.url} is up and reachable, "
        "or leave out --webhooks)"
    ]
    assert _webhook_policy(kki_target) == policy, "the fast retry policy was put back"
    with kki_target.public() as client:
        assert client.get("/v1/webhook-subscriptions").json()["data"] == [], "unsubscribed"


def test_a_subscription_that_cannot_be_deleted_at_the_end_leaves_the_webhooks_verdict(
    kki_target: Target, tmp_path: Path
) -> None:
    # The provider client raises CannotRun on a dropped connection; at clean-up it replaced the
    # phase's outcome with "cannot run".
    breakage = _Dropped("DELETE", "/v1/webhook-subscriptions/")
    kki_target.reset(breakage)
    code, report = _webhooks_phase("kki", kki_target.proxy.url, tmp_path)
    assert breakage.dropped == 1
    assert (code, report.get("verdict")) == (0, "conforming"), report.get("phases")
    assert [p["status"] for p in report["phases"]] == ["done"]
    assert any(
        note.startswith("webhooks: subscription ") and note.endswith("; delete it by hand")
        for note in report["notes"]
    ), report["notes"]


@pytest.mark.parametrize(
    ("method", "words"),
    [
        ("GET", "the mock's GET /__admin/webhook-policy failed (RemoteProtocolError): its retry "),
        # The start-up check sets the policy it read, as it is: that PUT is the first one.
        ("PUT", "the mock's PUT /__admin/webhook-policy failed (RemoteProtocolError): its retry "),
    ],
)
def test_a_dropped_connection_on_the_mock_webhook_policy_cannot_run_in_one_line(
    kki_target: Target, method: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ended the run as "internal error RemoteProtocolError: Server disconnected ...".
    kki_target.reset(_Dropped(method, "/__admin/webhook-policy"))
    policy = _webhook_policy(kki_target)
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.proxy.url,
        *CREDENTIALS["kki"],
        *("--quiet", "--phases", "webhooks", "--webhooks"),
        *("--receiver-listen", f"127.0.0.1:{free_port()}"),
    )
    _assert_cannot_run(run, words)
    assert run.stderr.rstrip().endswith(
        f"check that the mock at {kki_target.proxy.url} is up and reachable, or leave out "
        "--webhooks"
    )
    assert _webhook_policy(kki_target) == policy, "the old policy is the mock's"
    with kki_target.public() as client:
        assert client.get("/v1/webhook-subscriptions").json()["data"] == [], "unsubscribed"


NIK_IN_A_LIST = "3171015708900042"


@pytest.mark.parametrize(
    ("broken", "nik", "words", "code", "severity"),
    [
        ("kki", [NIK_IN_A_LIST], "nik is an array, not a string", 1, "error"),
        # The other registry's data is not the provider under test's to answer for.
        ("sisdmk", {"value": NIK_IN_A_LIST}, "nik is an object, not a string", 0, "warning"),
    ],
)
def test_a_nik_that_is_not_a_string_fails_the_peer_comparison_without_its_value(
    kki_target: Target,
    sisdmk_target: Target,
    tmp_path: Path,
    broken: str,
    nik: object,
    words: str,
    code: int,
    severity: str,
) -> None:
    # A list or an object as `nik` ended the peer phase with a TypeError (unhashable): the run
    # was an internal error with no report.
    kki_target.reset(
        _RecordsChanged("/v1/registrations", {"nik": nik}) if broken == "kki" else None
    )
    sisdmk_target.reset(
        _RecordsChanged("/v1/health-workers", {"nik": nik}) if broken == "sisdmk" else None
    )
    exit_code, report = run_conformance(
        "kki",
        kki_target.proxy.url,
        tmp_path,
        *("--phases", "peer", "--peer", sisdmk_target.proxy.url),
        *[arg.replace("--", "--peer-", 1) for arg in CREDENTIALS["sisdmk"]],
    )
    assert exit_code == code, report.get("findings")
    assert {p["status"] for p in report["phases"]} == {"done"}
    messages = [
        f["message"]
        for f in report["findings"]
        if (f["rule"], f["operation"], f["severity"])
        == ("domain/peer-identity", "listRegistrations", severity)
    ]
    assert messages, report["findings"]
    whose = "record " if broken == "kki" else "the peer's record "
    for message in messages:
        assert message.startswith(whose)
        assert message.endswith(f": {words}: it cannot be compared between the registries")
    assert NIK_IN_A_LIST not in json.dumps(report)


class _PeerListLimited(Breakage):
    """SISDMK's worker list answers 429 (retry at once) to every walk; the start-up probe's
    one-item page passes."""

    def response(self, exchange: Exchange) -> None:
        if exchange.path == "/v1/health-workers" and exchange.param("limit") != "1":
            exchange.status = 429
            exchange.response_headers = {
                "content-type": "application/problem+json",
                "retry-after": "0",
            }
            exchange.response_body = b'{"title": "Too Many Requests", "status": 429}'


def test_a_peer_list_cut_short_by_a_lasting_429_leaves_the_peer_phase_partly_run(
    kki_target: Target, sisdmk_target: Target, tmp_path: Path
) -> None:
    # The comparison ran on the part read (here nothing) and the phase was "done": exit 0,
    # conforming, with the note "no NIK is in both registries".
    kki_target.reset()
    sisdmk_target.reset(_PeerListLimited())
    exit_code, report = run_conformance(
        "kki",
        kki_target.proxy.url,
        tmp_path,
        *("--phases", "peer", "--peer", sisdmk_target.proxy.url),
        *[arg.replace("--", "--peer-", 1) for arg in CREDENTIALS["sisdmk"]],
    )
    assert (exit_code, report["verdict"]) == (2, "incomplete"), report.get("phases")
    [peer] = [p for p in report["phases"] if p["name"] == "peer"]
    assert peer["status"].startswith(
        "partly run (compared with the 0 records of the peer's list read before it stopped: its "
        "page 1 with limit "
    )
    assert peer["status"].endswith(" still answered 429)")
    assert "peer: no NIK is in both registries" not in report["notes"]


def test_webhooks_with_a_contract_without_subscriptions_is_not_run_and_the_run_incomplete(
    kki_target: Target, tmp_path: Path
) -> None:
    # Was a note under a "done" phase: `--phases webhooks --webhooks` exited 0, conforming.
    older = _edited_contract(
        "kki", tmp_path, lambda paths: paths["/v1/webhook-subscriptions"].pop("post")
    )
    kki_target.reset()
    code, report = _webhooks_phase("kki", kki_target.mock.url, tmp_path, "--spec", str(older))
    assert (code, report["verdict"]) == (2, "incomplete"), report.get("phases")
    assert [p["status"] for p in report["phases"]] == [
        "not run (the contract has no webhook subscriptions (createWebhookSubscription, "
        "WebhookEvent, EventType): give --spec a contract that has them, or leave out --webhooks)"
    ]


class _FastPolicyRefused(Breakage):
    """The mock's admin API takes its policy as it is (the start-up check) but answers 503 to
    the fast policy, as a mock going away between the start-up and the webhooks phase would."""

    admin = True

    def request(self, exchange: Exchange) -> None:
        fast = exchange.path == "/__admin/webhook-policy" and exchange.method == "PUT"
        if fast and json.loads(exchange.body) == FAST_POLICY:
            exchange.path = "/__admin/webhook-policy-nowhere"

    def response(self, exchange: Exchange) -> None:
        if exchange.path == "/__admin/webhook-policy-nowhere":
            exchange.status = 503


def test_a_webhook_policy_refused_after_other_phases_ran_keeps_their_results_and_reports(
    kki_target: Target, tmp_path: Path
) -> None:
    # It stopped the run with exit 2 before the summary and the reports: what pagination found
    # was lost.
    kki_target.reset(_FastPolicyRefused())
    policy = _webhook_policy(kki_target)
    code, report = run_conformance(
        "kki",
        kki_target.proxy.url,
        tmp_path,
        *("--phases", "pagination", "webhooks", "--webhooks"),
        *("--receiver-listen", f"127.0.0.1:{free_port()}"),
    )
    assert (code, report.get("verdict")) == (2, "incomplete"), report.get("phases")
    assert [(p["name"], p["status"]) for p in report["phases"]] == [
        ("pagination", "done"),
        (
            "webhooks",
            "not run (the mock's PUT /__admin/webhook-policy answered 503: its fast retry policy "
            "could not be set; nothing was changed there; check that the target runs hf-mock of "
            "this release, or leave out --webhooks)",
        ),
    ]
    assert {"rule": "pagination/has-more", "operation": "listRegistrations"} in report["checked"]
    assert _webhook_policy(kki_target) == policy
    with kki_target.public() as client:
        assert client.get("/v1/webhook-subscriptions").json()["data"] == [], "unsubscribed"


def test_a_webhook_policy_that_cannot_be_set_stops_the_run_before_any_phase(
    kki_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    kki_target.reset(_Rerouted("PUT", "/__admin/webhook-policy", 405, admin=True))
    policy = _webhook_policy(kki_target)
    run = in_process(
        capsys,
        "kki",
        "--base-url",
        kki_target.proxy.url,
        *CREDENTIALS["kki"],
        *("--quiet", "--phases", "pagination", "webhooks", "--webhooks"),
        *("--receiver-listen", f"127.0.0.1:{free_port()}"),
    )
    _assert_cannot_run(
        run,
        "the mock's PUT /__admin/webhook-policy answered 405: its retry policy could not be set; "
        "nothing was changed there",
    )
    assert run.stdout == ""  # no phase ran: nothing found was lost
    assert _webhook_policy(kki_target) == policy
