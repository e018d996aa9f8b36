"""`hf-conformance` as QA runs it: a real subprocess against the clean mocks (exit 0, reports
written, no failing finding), 429s honoured, the baseline and its expiry, and bad input (exit 2
with one line, never a traceback).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.processes import free_port
from tests.integration.conformance.support import (
    CREDENTIALS,
    TODAY,
    Target,
    failing,
    run_conformance,
)

pytestmark = pytest.mark.integration

COMMAND = Path(sys.executable).with_name("hf-conformance")
# Warnings the clean mocks show on purpose: KKI's identity fields may differ from Dukcapil's
# (contract), and the mocks seed such mismatches (--mismatch-rate 0.02).
DOCUMENTED_WARNINGS = {"domain/nik-birth-date", "domain/nik-sex", "domain/peer-identity"}


def hf_conformance(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMMAND), *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


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
    fault = {"route": "listRegistrations", "kind": "rate_limit", "limit": 3, "window_s": 1}
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


def test_tls_failure_cannot_run(kki_target: Target) -> None:
    url = kki_target.mock.url.replace("http://", "https://")
    _assert_cannot_run(hf_conformance("kki", "--base-url", url, "--api-key", "k"), "TLS")


@pytest.mark.parametrize(
    ("system", "credentials"),
    [
        ("kki", ["--api-key", "not-the-key"]),
        ("sisdmk", ["--client-id", "sisdmk-dev-client", "--client-secret", "wrong"]),
    ],
)
def test_wrong_credentials_cannot_run(
    system: str, credentials: list[str], kki_target: Target, sisdmk_target: Target
) -> None:
    target = kki_target if system == "kki" else sisdmk_target
    run = hf_conformance(system, "--base-url", target.mock.url, *credentials)
    _assert_cannot_run(run, "credentials refused")


def test_missing_spec_cannot_run(kki_target: Target, tmp_path: Path) -> None:
    run = hf_conformance(
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--spec",
        str(tmp_path / "no-such.yaml"),
    )
    _assert_cannot_run(run, "no-such.yaml")


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
    content: str, words: str, kki_target: Target, tmp_path: Path
) -> None:
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(content)
    run = hf_conformance(
        "kki",
        "--base-url",
        kki_target.mock.url,
        *CREDENTIALS["kki"],
        "--baseline",
        str(baseline),
    )
    _assert_cannot_run(run, words)


def test_unknown_operation_cannot_run(kki_target: Target) -> None:
    run = hf_conformance(
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


def test_a_receiver_address_that_is_not_host_and_port_cannot_run(kki_target: Target) -> None:
    run = hf_conformance(
        "kki", "--base-url", kki_target.mock.url, "--webhooks", "--receiver-listen", "9000"
    )
    assert run.returncode == 2
    assert "'9000' is not HOST:PORT" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(("system", "phase"), [("kki", "pagnation"), ("kki", "discovery")])
def test_unknown_phase_cannot_run(kki_target: Target, system: str, phase: str) -> None:
    # A misspelt phase used to run nothing and report "conforming".
    run = hf_conformance(
        system, "--base-url", kki_target.mock.url, *CREDENTIALS["kki"], "--phases", phase
    )
    _assert_cannot_run(run, f"no phase {phase} for {system}")
