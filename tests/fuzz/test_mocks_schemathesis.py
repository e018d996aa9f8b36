"""Schemathesis against each running mock, as QA would run it: the `st` CLI, every check, positive
and negative data. Any 5xx or any drift from the spec fails the test with Schemathesis' report."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import ManagedProcess, start_mock
from tests.support.mock_servers import sisdmk_token

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "contracts" / "openapi"
ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("schemathesis.toml")
# 8 per operation (as for the adapter) keeps `make test` within its 10-minute budget; `make fuzz`
# runs 100.
MAX_EXAMPLES = os.environ.get("HF_FUZZ_MAX_EXAMPLES", "8")
SEED = "20261126"


@pytest.fixture(scope="module")
def kki_process() -> Iterator[tuple[ManagedProcess, str]]:
    process, url = start_mock("kki", size=200)
    yield process, url
    process.close()


@pytest.fixture(scope="module")
def sisdmk_process() -> Iterator[tuple[ManagedProcess, str]]:
    process, url = start_mock("sisdmk", size=200)
    yield process, url
    process.close()


def schemathesis(
    spec: Path, url: str, headers: list[str], tmp_path: Path, *extra: str
) -> tuple[int, str, ET.Element]:
    junit = tmp_path / "junit.xml"
    argv = [
        str(ST),
        "--config-file",
        str(CONFIG),
        "run",
        str(spec),
        "--url",
        url,
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",  # 2 trips a Hypothesis/Python 3.11 "AST recursion" error on these schemas
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
        *[arg for header in headers for arg in ("-H", header)],
        *extra,
    ]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    output = run.stdout[-20_000:] + run.stderr[-5_000:]
    assert junit.exists(), f"schemathesis wrote no report:\n{output}"
    return run.returncode, output, ET.parse(junit).getroot()  # noqa: S314 - our own report


def assert_clean(code: int, output: str, report: ET.Element, process: ManagedProcess) -> None:
    tests = sum(int(s.get("tests", 0)) for s in report.iter("testsuite"))
    failures = sum(
        int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in report.iter("testsuite")
    )
    assert tests > 0, f"schemathesis ran no operations:\n{output}"
    assert failures == 0, (
        f"schemathesis found {failures} failing operations (exit {code}):\n{output}\n"
        f"--- mock log ---\n{process.output()}"
    )
    assert code == 0, f"schemathesis exited {code}:\n{output}"
    assert process.is_running(), f"the mock died during fuzzing:\n{process.output()}"


def test_kki_public_api_conforms_under_fuzzing(
    kki_process: tuple[ManagedProcess, str], tmp_path: Path
) -> None:
    process, url = kki_process
    code, output, report = schemathesis(
        SPECS / "kki.yaml", url, ["X-API-Key: kki-dev-token"], tmp_path
    )
    assert_clean(code, output, report, process)


def test_sisdmk_public_api_conforms_under_fuzzing(
    sisdmk_process: tuple[ManagedProcess, str], tmp_path: Path
) -> None:
    process, url = sisdmk_process
    token = sisdmk_token(url)
    code, output, report = schemathesis(
        SPECS / "sisdmk.yaml", url, [f"Authorization: Bearer {token}"], tmp_path
    )
    assert_clean(code, output, report, process)


@pytest.mark.parametrize("system", ["kki", "sisdmk"])
def test_admin_api_conforms_under_fuzzing(system: str, tmp_path: Path) -> None:
    process, url = start_mock(system, size=50)
    try:
        spec = SPECS / "mock-admin.yaml"
        code, output, report = schemathesis(spec, f"{url}/__admin", [], tmp_path)
        assert_clean(code, output, report, process)
    finally:
        process.close()
