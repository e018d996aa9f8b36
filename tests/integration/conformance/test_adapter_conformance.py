"""`hf-conformance adapter` against the served adapter (test IdP, real mocks, PostgreSQL): it
conforms, scope matrix and Schemathesis included; a proxy that breaks one operation's
authorization is caught with the operation named; bad input exits 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.store.crypto import BlindIndex, FieldCipher
from harness.idp import IdpProcess, realm_clients
from harness.processes import free_port
from tests.integration.adapter.api.stack import (
    OPS,
    PORTAL,
    READONLY,
    Adapter,
    served_adapter,
)
from tests.integration.adapter.sync.support import Mock, run_sync, running_mock
from tests.integration.conformance.oidc_support import (
    client_args,
    failing,
    run_command,
    run_in_process,
)
from tests.support.breaking_proxy import Breakage, BreakingProxy, Exchange
from tests.support.databases import PostgresServer

pytestmark = pytest.mark.integration

SIZE = 10
CLIENTS = realm_clients()
CLIENT_ARGS = client_args([(name, CLIENTS[name].secret) for name in (PORTAL, OPS, READONLY)])
# Every operation under /api/v1 names a scope in adapter.yaml.
SECURED = {
    "listHealthWorkers",
    "searchHealthWorkersByNik",
    "getHealthWorker",
    "listIdentityFindings",
    "lookupRegistration",
    "listSyncRuns",
    "startSyncRun",
    "getSyncRun",
    "listIntegrations",
    "updateIntegration",
    "getIntegrationLogs",
    "listWebhookEvents",
    "replayFailedWebhookEvents",
    "replayWebhookEvent",
    "purgeWebhookEvent",
    "purgeFailedWebhookEvents",
    "listAuditEvents",
}
# Allowed, it would purge the target's dead letters: never sent with the right scope.
IRREVERSIBLE = {"purgeFailedWebhookEvents"}


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=SIZE, seed=7)


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=SIZE, seed=7)


@pytest.fixture(scope="module")
def adapter(
    postgres_server: PostgresServer,
    idp: IdpProcess,
    kki: Mock,
    sisdmk: Mock,
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> Iterator[Adapter]:
    with served_adapter(postgres_server.create_database(), idp, kki, sisdmk) as served:
        for system, mock in (("sisdmk", sisdmk), ("kki", kki)):
            assert run_sync(system, mock, served.sessions, cipher, blind_index, full=True).succeeded
        yield served


@pytest.fixture
def proxy(adapter: Adapter) -> Iterator[BreakingProxy]:
    broken = BreakingProxy(adapter.url)
    try:
        yield broken
    finally:
        broken.close()


class OpensWithoutToken(Breakage):
    """The route forgot its `require_scope`: a request without a token gets through."""

    def __init__(self, method: str, path: str, token: str) -> None:
        self.method, self.path, self.token = method, path, token

    def request(self, exchange: Exchange) -> None:
        has_token = any(name.lower() == "authorization" for name in exchange.headers)
        if exchange.method == self.method and exchange.path == self.path and not has_token:
            exchange.headers["Authorization"] = f"Bearer {self.token}"


class IgnoresScope(Breakage):
    """The route checks the token but not its scope: any valid token gets through."""

    def __init__(self, method: str, path: str, token: str) -> None:
        self.method, self.path, self.token = method, path, token

    def request(self, exchange: Exchange) -> None:
        if exchange.method != self.method or exchange.path != self.path:
            return
        for name, value in list(exchange.headers.items()):
            # Only a real token (a JWT) is swapped: made-up credentials still meet a 401.
            if name.lower() == "authorization" and value.count(".") == 2:
                exchange.headers[name] = f"Bearer {self.token}"


def test_served_adapter_conforms_with_scope_matrix_and_schemathesis(
    adapter: Adapter, idp: IdpProcess, tmp_path: Path
) -> None:
    code, report = run_in_process(
        "adapter",
        adapter.url,
        tmp_path,
        "--issuer",
        idp.issuer,
        *CLIENT_ARGS,
        "--max-examples",
        "2",
        "--seed",
        "20261202",
        "--html",
        str(tmp_path / "adapter.html"),
    )
    assert code == 0, [f for f in report.get("findings", []) if f["severity"] == "error"]
    assert failing(report) == set()
    checked = {(c["rule"], c["operation"]) for c in report["checked"]}
    for operation in SECURED:
        for rule in ("scopes/wrong-scope", "scopes/right-scope", "auth/missing-credentials"):
            if rule == "scopes/right-scope" and operation in IRREVERSIBLE:
                assert (rule, operation) not in checked, (rule, operation)
            else:
                assert (rule, operation) in checked, (rule, operation)
    assert [phase["status"] for phase in report["phases"]] == ["done", "done", "done"]
    assert report["stats"]["schemathesis_scenarios"] > 0
    assert set(report["stats"]["adapter_clients"]) == {PORTAL, OPS, READONLY}


def test_operation_open_without_token_is_caught_with_its_name(
    adapter: Adapter, idp: IdpProcess, proxy: BreakingProxy, tmp_path: Path
) -> None:
    proxy.breakage = OpensWithoutToken("GET", "/api/v1/integrations", idp.token(OPS))
    code, report = run_in_process(
        "adapter",
        proxy.url,
        tmp_path,
        "--issuer",
        idp.issuer,
        *CLIENT_ARGS,
        "--phases",
        "scopes",
        "credentials",
    )
    assert code == 1
    assert failing(report) == {("auth/missing-credentials", "listIntegrations")}


def test_operation_ignoring_its_scope_is_caught_with_its_name(
    adapter: Adapter, idp: IdpProcess, proxy: BreakingProxy, tmp_path: Path
) -> None:
    proxy.breakage = IgnoresScope("GET", "/api/v1/sync-runs", idp.token(OPS))
    code, report = run_in_process(
        "adapter",
        proxy.url,
        tmp_path,
        "--issuer",
        idp.issuer,
        *CLIENT_ARGS,
        "--phases",
        "scopes",
        "credentials",
    )
    assert code == 1
    assert failing(report) == {("scopes/wrong-scope", "listSyncRuns")}
    (finding,) = report["findings"]
    assert finding["evidence"]["response"]["status"] == 200
    assert "lacks sync:run" in finding["message"]


def test_wrong_client_secret_cannot_run_in_one_line(adapter: Adapter, idp: IdpProcess) -> None:
    run = run_command(
        "adapter",
        "--base-url",
        adapter.url,
        "--issuer",
        idp.issuer,
        "--client",
        f"{OPS}:not-its-secret",
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert "credentials refused" in run.stderr
    assert OPS in run.stderr


def test_unreachable_adapter_cannot_run(
    idp: IdpProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, report = run_in_process("adapter", url, tmp_path, "--issuer", idp.issuer, *CLIENT_ARGS)
    assert code == 2
    assert report == {}
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "cannot reach" in err
