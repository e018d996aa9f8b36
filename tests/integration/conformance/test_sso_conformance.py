"""`hf-conformance sso` against a real Keycloak with the realm export: it conforms, and clients
broken through the admin REST API are caught with the rule named; bad input exits 2 in one line.
The adapter's scope matrix with this Keycloak's tokens runs here too. The Keycloak is the run's
shared server (tests/support/keycloak.py); the broken clients and the HS256 key are added to the
module's own copy of the realm export, which no other module sees.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.rules import RULES
from harness.idp import IdpProcess, IdpUnavailable, realm_clients
from harness.processes import free_port
from tests.integration.adapter.sync.support import Mock, running_mock
from tests.integration.conformance.oidc_support import (
    ConformanceAdmin,
    adapter_for_issuer,
    client_args,
    failing,
    run_command,
    run_in_process,
)
from tests.support.databases import PostgresServer
from tests.support.keycloak import KeycloakRealm, module_realm

pytestmark = pytest.mark.integration

CLIENTS = realm_clients()
# The realm's clients that call the adapter (the audience mapper for hf-adapter).
ADAPTER_CALLERS = [
    (client.client_id, client.secret)
    for client in CLIENTS.values()
    if "hf-adapter" in client.audiences
]
SSO_RULES = {rule for rule in RULES if rule.startswith("sso/")}
BROKEN_SECRET = "dev-only-broken-client-secret"
ADAPTER_SCOPES = ["basic", "roles", "hf-adapter-audience", "healthworkers:read"]
# Each client is misconfigured in one way, as an administrator could do it by mistake.
BROKEN_CLIENTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "hf-broken-no-audience": (["basic", "roles", "healthworkers:read"], {}),
    "hf-broken-long-lived": (ADAPTER_SCOPES, {"access.token.lifespan": "86400"}),
    "hf-broken-hs256": (ADAPTER_SCOPES, {"access.token.signed.response.alg": "HS256"}),
    "hf-broken-no-scope": (["basic", "roles", "hf-adapter-audience"], {}),
}


@pytest.fixture(scope="module")
def keycloak(request: pytest.FixtureRequest, keycloak_server: str) -> Iterator[KeycloakRealm]:
    """The module's own realm, with the misconfigured clients added next to the realm's."""
    with module_realm(request, keycloak_server) as realm:
        admin = ConformanceAdmin.of(realm)
        try:
            # The realm's own clients keep RS256: an HS256 key only signs for clients asking it.
            admin.add_hmac_key("hf-conformance-hs256")
            for client_id, (scopes, attributes) in BROKEN_CLIENTS.items():
                admin.create_service_client(client_id, BROKEN_SECRET, scopes, attributes)
        finally:
            admin.close()
        yield realm


def test_realm_export_conforms_for_every_adapter_client(
    keycloak: KeycloakRealm, tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    code, report = run_in_process(
        "sso",
        keycloak.issuer(),
        tmp_path,
        *client_args(ADAPTER_CALLERS),
        "--junit",
        str(junit),
    )
    assert code == 0, report.get("findings")
    assert failing(report) == set()
    assert {rule for rule, _ in ((c["rule"], c["operation"]) for c in report["checked"])} == (
        SSO_RULES
    )
    assert {f"token:{client_id}" for client_id, _ in ADAPTER_CALLERS} <= set(report["operations"])
    assert all(token["alg"] == "RS256" for token in report["stats"]["sso_tokens"].values())
    assert ET.parse(junit).getroot().get("failures") == "0"  # noqa: S314 - our own report


def test_each_clients_documented_scopes_are_in_its_token(
    keycloak: KeycloakRealm, tmp_path: Path
) -> None:
    for client_id, secret in ADAPTER_CALLERS:
        code, report = run_in_process(
            "sso",
            keycloak.issuer(),
            tmp_path,
            *client_args([(client_id, secret)]),
            "--expect-scopes",
            *CLIENTS[client_id].default_scopes,
        )
        assert code == 0, (client_id, report.get("findings"))


@pytest.mark.parametrize(
    ("client_id", "rule", "extra"),
    [
        ("hf-broken-no-audience", "sso/token-audience", []),
        ("hf-broken-long-lived", "sso/token-lifetime", []),
        ("hf-broken-hs256", "sso/token-algorithm", []),
        ("hf-broken-no-scope", "sso/token-scopes", []),
        (
            "hf-readonly",
            "sso/token-scopes",
            ["--expect-scopes", "healthworkers:read", "audit:read"],
        ),
    ],
)
def test_misconfigured_client_is_caught_with_its_rule(
    keycloak: KeycloakRealm, tmp_path: Path, client_id: str, rule: str, extra: list[str]
) -> None:
    secret = CLIENTS[client_id].secret if client_id in CLIENTS else BROKEN_SECRET
    code, report = run_in_process(
        "sso", keycloak.issuer(), tmp_path, *client_args([(client_id, secret)]), *extra
    )
    assert code == 1
    assert (rule, f"token:{client_id}") in failing(report)
    # Discovery and keys are the realm's and stay fine: only the client's token is reported.
    assert {operation for _, operation in failing(report)} == {f"token:{client_id}"}


def test_audience_without_a_mapper_also_fails_the_adapters_validator(
    keycloak: KeycloakRealm, tmp_path: Path
) -> None:
    code, report = run_in_process(
        "sso",
        keycloak.issuer(),
        tmp_path,
        *client_args([("hf-broken-no-audience", BROKEN_SECRET)]),
    )
    assert code == 1
    messages = [f["message"] for f in report["findings"] if f["rule"] == "sso/token-validates"]
    # Keycloak leaves `aud` out altogether when no mapper adds one.
    assert messages
    assert "aud" in messages[0]


def test_wrong_client_secret_cannot_run_in_one_line(keycloak: KeycloakRealm) -> None:
    run = run_command(
        "sso", "--base-url", keycloak.issuer(), "--client", "hf-readonly:not-its-secret"
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert "credentials refused" in run.stderr
    assert "hf-readonly" in run.stderr
    assert "Traceback" not in run.stderr


def test_unreachable_issuer_cannot_run_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issuer = f"http://127.0.0.1:{free_port()}/realms/healthforce"
    code, report = run_in_process("sso", issuer, tmp_path, "--client", "hf-readonly:secret")
    assert code == 2
    assert report == {}
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "cannot reach" in err


def test_other_realm_url_is_an_issuer_mismatch_or_cannot_run(
    keycloak: KeycloakRealm, tmp_path: Path
) -> None:
    # Keycloak answers for the realm's issuer only with its exact URL: a trailing slash is
    # another issuer to the adapter.
    code, report = run_in_process(
        "sso", keycloak.issuer() + "/", tmp_path, *client_args(ADAPTER_CALLERS[:1])
    )
    assert code == 1
    assert ("sso/discovery-issuer", "discovery") in failing(report)


def test_oidc_provider_test_idp_conforms(tmp_path: Path) -> None:
    idp = IdpProcess()
    try:
        idp.start()
    except IdpUnavailable as exc:
        idp.close()
        pytest.fail(str(exc), pytrace=False)
    try:
        code, report = run_in_process("sso", idp.issuer, tmp_path, *client_args(ADAPTER_CALLERS))
    finally:
        idp.close()
    assert code == 0, report.get("findings")
    assert failing(report) == set()


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=5, seed=3)


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=5, seed=3)


def test_adapter_scope_matrix_conforms_with_keycloak_tokens(
    keycloak: KeycloakRealm,
    postgres_server: PostgresServer,
    kki: Mock,
    sisdmk: Mock,
    tmp_path: Path,
) -> None:
    database = postgres_server.create_database()
    with adapter_for_issuer(keycloak.issuer(), database, kki.url, sisdmk.url) as url:
        code, report = run_in_process(
            "adapter",
            url,
            tmp_path,
            "--issuer",
            keycloak.issuer(),
            *client_args(ADAPTER_CALLERS),
            "--phases",
            "scopes",
            "credentials",
        )
    assert code == 0, report.get("findings")
    checked = {(c["rule"], c["operation"]) for c in report["checked"]}
    assert ("scopes/wrong-scope", "listAuditEvents") in checked
    assert ("scopes/right-scope", "startSyncRun") in checked
    assert report["stats"]["adapter_clients"]["hf-ops"] == sorted(CLIENTS["hf-ops"].default_scopes)
