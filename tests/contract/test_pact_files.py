"""The committed pacts (contracts/pacts/) are what the consumer tests write now and cover every
method of the KKI and SISDMK client ports. `HF_PACT_WRITE=1` makes the first test refresh them.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.clients import (
    HttpKkiClient,
    HttpSisdmkClient,
    KkiClient,
    SisdmkClient,
    UpstreamError,
)
from adapter.clients.contract import CONTRACTS_DIR
from conformance.pacts import CONSUMER, HTTP_PROVIDERS, PACT_DIR, PROVIDERS, pact_interactions
from openapi_schemas import load_yaml
from tests.contract.pact_support import kki_client, sisdmk_client

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
CONSUMER_TESTS = sorted(Path(__file__).parent.glob("test_pact_consumer_*.py"))
REFRESH = os.environ.get("HF_PACT_WRITE") == "1"
SPEC_FILES = {"kki": "kki.yaml", "sisdmk": "sisdmk.yaml"}
# A value for each parameter a port method needs; a new parameter name needs one here.
SAMPLE_ARGUMENTS: dict[str, Any] = {
    "str_number": "QZ00011234567890",
    "nik": "3171015708900042",
    "worker_id": "0f8e6a52-3b1d-4c4e-9a7f-2d6b8c1e4f30",
}


def comparable(path: Path) -> list[dict[str, Any]]:
    """A pact's interactions in a stable order; the file's metadata (versions) is left out."""
    return sorted(
        pact_interactions(path),
        key=lambda i: (i["description"], json.dumps(i.get("providerStates"), sort_keys=True)),
    )


def regenerate(into: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *map(str, CONSUMER_TESTS)],
        cwd=ROOT,
        env={**env, "HF_PACT_OUTPUT_DIR": str(into)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, (
        f"the consumer tests failed:\n{run.stdout[-4000:]}{run.stderr[-2000:]}"
    )


def differences(committed: list[dict[str, Any]], written: list[dict[str, Any]]) -> list[str]:
    old = {i["description"]: i for i in committed}
    new = {i["description"]: i for i in written}
    lines = [f"  only in the committed pact: {d}" for d in sorted(old.keys() - new.keys())]
    lines += [f"  new in the consumer tests: {d}" for d in sorted(new.keys() - old.keys())]
    lines += [f"  changed: {d}" for d in sorted(old.keys() & new.keys()) if old[d] != new[d]]
    return lines


def test_committed_pacts_are_what_the_consumer_tests_write(tmp_path: Path) -> None:
    regenerate(tmp_path)
    names = sorted(p.name for p in tmp_path.glob(f"{CONSUMER}-*.json"))
    assert names == sorted(f"{CONSUMER}-{provider}.json" for provider in PROVIDERS)
    if REFRESH:
        for stale in PACT_DIR.glob(f"{CONSUMER}-*.json"):
            stale.unlink()
        for name in names:
            shutil.copyfile(tmp_path / name, PACT_DIR / name)
    report = []
    for name in names:
        changes = differences(comparable(PACT_DIR / name), comparable(tmp_path / name))
        if changes:
            report += [f"{name}:", *changes]
    committed = sorted(p.name for p in PACT_DIR.glob(f"{CONSUMER}-*.json"))
    assert committed == names, f"pact files in {PACT_DIR} that no test writes: {committed}"
    assert not report, (
        "contracts/pacts/ differs from what the consumer tests write now; refresh with "
        "`HF_PACT_WRITE=1 .venv/bin/python -m pytest tests/contract/test_pact_files.py` and "
        "commit the pacts with the change:\n" + "\n".join(report)
    )


# -- every port method is in the pacts ------------------------------------------------------


@cache
def operations(provider: str) -> list[tuple[str, re.Pattern[str], str]]:
    """(method, path pattern, operationId) of every operation in the provider's contract."""
    with (CONTRACTS_DIR / SPEC_FILES[provider]).open(encoding="utf-8") as fh:
        spec = load_yaml(fh)
    found = []
    for template, item in spec["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$")
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                found.append((method.upper(), pattern, str(operation["operationId"])))
    # Literal paths before templated ones: /lookup is not a {str_number}.
    return sorted(found, key=lambda op: op[1].pattern.count("[^/]+"))


def operation_of(provider: str, method: str, path: str) -> str:
    for op_method, pattern, operation_id in operations(provider):
        if op_method == method and pattern.match(path):
            return operation_id
    raise AssertionError(f"{method} {path} is no {provider} operation")


def pact_operations(provider: str) -> set[str]:
    return {
        operation_of(provider, i["request"]["method"], i["request"]["path"])
        for i in pact_interactions(PACT_DIR / f"{CONSUMER}-{provider}.json")
    }


@cache
def token_example() -> dict[str, Any]:
    with (CONTRACTS_DIR / "sisdmk.yaml").open(encoding="utf-8") as fh:
        spec = load_yaml(fh)
    answer = spec["paths"]["/oauth2/v1/accesstoken"]["post"]["responses"]["200"]
    example: dict[str, Any] = answer["content"]["application/json"]["example"]
    return example


class Recorder:
    """An httpx transport that notes each request; a token for SISDMK, 404 for the rest."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if request.url.path == "/oauth2/v1/accesstoken":
            return httpx.Response(200, json=token_example())
        return httpx.Response(404)


def port_methods(port: type[Any]) -> list[str]:
    return sorted(
        name for name, _ in inspect.getmembers(port, inspect.isfunction) if not name.startswith("_")
    )


def requests_made(
    client: HttpKkiClient | HttpSisdmkClient, recorder: Recorder, method: str
) -> list[tuple[str, str]]:
    """The requests one call of the port method `method` sends (its answer does not matter)."""
    call = getattr(client, method)
    needed = [
        p.name
        for p in inspect.signature(call).parameters.values()
        if p.default is inspect.Parameter.empty
    ]
    missing = [name for name in needed if name not in SAMPLE_ARGUMENTS]
    assert not missing, f"{method}: add a sample value for {missing} to SAMPLE_ARGUMENTS"
    recorder.requests.clear()
    with suppress(UpstreamError):
        result = call(**{name: SAMPLE_ARGUMENTS[name] for name in needed})
        if isinstance(result, Iterator):
            next(result)
    return list(recorder.requests)


@pytest.mark.parametrize(
    ("provider", "port"), [("kki", KkiClient), ("sisdmk", SisdmkClient)], ids=HTTP_PROVIDERS
)
def test_every_port_method_is_exercised_by_an_interaction(provider: str, port: type[Any]) -> None:
    recorder = Recorder()
    transport = httpx.MockTransport(recorder)
    client: HttpKkiClient | HttpSisdmkClient = (
        kki_client("http://kki.invalid", transport=transport)
        if provider == "kki"
        else sisdmk_client("http://sisdmk.invalid", transport=transport)
    )
    covered = pact_operations(provider)
    uncovered = []
    with client:
        for method in port_methods(port):
            sent = requests_made(client, recorder, method)
            assert sent, f"{provider} {method} sent no request"
            for verb, path in sent:
                operation = operation_of(provider, verb, path)
                if operation not in covered:
                    uncovered.append(f"{method} → {operation}")
    assert not uncovered, f"no {provider} interaction for: {', '.join(uncovered)}"


@pytest.mark.parametrize("provider", HTTP_PROVIDERS)
def test_every_paged_operation_has_cursor_and_updated_since_interactions(provider: str) -> None:
    queries: dict[str, set[str]] = {}
    for interaction in pact_interactions(PACT_DIR / f"{CONSUMER}-{provider}.json"):
        request = interaction["request"]
        operation = operation_of(provider, request["method"], request["path"])
        queries.setdefault(operation, set()).update(request.get("query") or {})
    paged = {op: names for op, names in queries.items() if "limit" in names}
    assert paged, f"no paged {provider} operation in the pact"
    for operation, names in paged.items():
        assert {"cursor", "updated_since"} <= names, f"{operation} lacks {names}"
