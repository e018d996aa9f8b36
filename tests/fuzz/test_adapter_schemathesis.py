"""Schemathesis against the running adapter with real tokens from the test IdP: every check,
positive and negative data. Any 5xx or any drift from adapter.yaml fails with the report.

No realm client holds all six scopes (by design: readers and operators are separate), so the
run is split by tag: the portal's token (health workers, PII, audit) and the operators' token
(sync, integrations, events); health and webhooks need none."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.store.crypto import BlindIndex, FieldCipher
from harness.idp import IdpProcess
from tests.integration.adapter.api.stack import OPS, PORTAL, Adapter, served_adapter
from tests.integration.adapter.sync.support import Mock, run_sync, running_mock
from tests.support.databases import PostgresServer

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "contracts" / "openapi" / "adapter.yaml"
ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("adapter-schemathesis.toml")
MAX_EXAMPLES = os.environ.get("HF_FUZZ_MAX_EXAMPLES", "8")  # `make fuzz` runs 100
SEED = "20261127"
RUNS = {
    "reader": (PORTAL, ["health-workers", "registrations", "audit"]),
    "operator": (OPS, ["sync", "integrations", "events"]),
    "open": (None, ["health", "webhooks"]),
}


@pytest.fixture(scope="module")
def mocks() -> Iterator[tuple[Mock, Mock]]:
    kki_mocks = running_mock("kki", size=15, seed=5)
    sisdmk_mocks = running_mock("sisdmk", size=15, seed=5)
    kki, sisdmk = next(kki_mocks), next(sisdmk_mocks)
    try:
        yield kki, sisdmk
    finally:
        for generator in (kki_mocks, sisdmk_mocks):
            generator.close()


@pytest.fixture(scope="module")
def adapter(
    postgres_server: PostgresServer,
    idp: IdpProcess,
    mocks: tuple[Mock, Mock],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> Iterator[Adapter]:
    kki, sisdmk = mocks
    # The fuzzer sends far more NIK queries and STR look-ups than a person would; the limits
    # have their own tests.
    generous = {"NIK_SEARCH_RATE_LIMIT": "100000/minute", "STR_LOOKUP_RATE_LIMIT": "100000/minute"}
    with served_adapter(postgres_server.create_database(), idp, kki, sisdmk, generous) as served:
        for system, mock in (("sisdmk", sisdmk), ("kki", kki)):
            assert run_sync(system, mock, served.sessions, cipher, blind_index, full=True).succeeded
        yield served


def schemathesis(
    url: str, token: str | None, tags: list[str], tmp_path: Path
) -> tuple[int, str, ET.Element]:
    junit = tmp_path / "junit.xml"
    argv = [
        str(ST),
        "--config-file",
        str(CONFIG),
        "run",
        str(SPEC),
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
        "1",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
        *[arg for tag in tags for arg in ("--include-tag", tag)],
        *(["-H", f"Authorization: Bearer {token}"] if token else []),
    ]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    output = run.stdout[-20_000:] + run.stderr[-5_000:]
    assert junit.exists(), f"schemathesis wrote no report:\n{output}"
    return run.returncode, output, ET.parse(junit).getroot()  # noqa: S314 - our own report


@pytest.mark.parametrize("run", sorted(RUNS))
def test_adapter_api_conforms_under_fuzzing(
    adapter: Adapter, idp: IdpProcess, run: str, tmp_path: Path
) -> None:
    client, tags = RUNS[run]
    token = idp.token(client) if client else None
    code, output, report = schemathesis(adapter.url, token, tags, tmp_path)
    tests = sum(int(s.get("tests", 0)) for s in report.iter("testsuite"))
    failures = sum(
        int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in report.iter("testsuite")
    )
    assert tests > 0, f"schemathesis ran no operations:\n{output}"
    assert failures == 0, (
        f"schemathesis found {failures} failing operations (exit {code}):\n{output}"
    )
    assert code == 0, f"schemathesis exited {code}:\n{output}"
