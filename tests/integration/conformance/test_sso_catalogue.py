"""The sso catalogue: an OpenID provider we control gets one thing wrong at a time (an ID token
as access token, a symmetric or private key in the JWKS, ...), and `hf-conformance sso` names the
rule and the operation; the same provider done right conforms.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conformance.oidc_stub import (
    CLIENT_ID,
    CLIENT_SECRET,
    StubBreakage,
    StubProvider,
)
from tests.integration.conformance.oidc_support import failing, run_in_process

pytestmark = pytest.mark.integration

TOKEN = f"token:{CLIENT_ID}"
CATALOGUE: dict[str, tuple[StubBreakage, str, str]] = {
    "id-token-as-access-token": (
        StubBreakage(id_token_as_access_token=True),
        "sso/token-type",
        TOKEN,
    ),
    "symmetric-key-published": (StubBreakage(symmetric_key=True), "sso/jwks-asymmetric", "jwks"),
    "private-key-published": (StubBreakage(private_parts=True), "sso/jwks-no-private", "jwks"),
    "duplicate-kid": (StubBreakage(duplicate_kid=True), "sso/jwks-unique-kid", "jwks"),
    "other-issuer-announced": (
        StubBreakage(announced_issuer="https://sso.example.go.id/realms/healthforce"),
        "sso/discovery-issuer",
        "discovery",
    ),
    "plain-http-issuer": (
        StubBreakage(announced_issuer="http://sso.example.go.id/realms/healthforce"),
        "sso/https",
        "discovery",
    ),
    "required-metadata-missing": (
        StubBreakage(missing_metadata="subject_types_supported"),
        "sso/discovery-document",
        "discovery",
    ),
    "wrong-secret-accepted": (
        StubBreakage(accepts_wrong_secret=True),
        "sso/wrong-secret",
        TOKEN,
    ),
    "token-without-iat": (StubBreakage(without_iat=True), "sso/token-lifetime", TOKEN),
    "opaque-access-token": (StubBreakage(opaque_token=True), "sso/token-validates", TOKEN),
}


@pytest.fixture(scope="module")
def provider() -> Iterator[StubProvider]:
    stub = StubProvider()
    try:
        yield stub
    finally:
        stub.close()


def run_sso(provider: StubProvider, tmp_path: Path) -> tuple[int, dict[str, object]]:
    return run_in_process(
        "sso", provider.issuer, tmp_path, "--client", f"{CLIENT_ID}:{CLIENT_SECRET}"
    )


def test_provider_done_right_conforms(provider: StubProvider, tmp_path: Path) -> None:
    provider.breakage = StubBreakage()
    code, report = run_sso(provider, tmp_path)
    assert code == 0, report.get("findings")


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_broken_provider_is_caught_with_rule_and_operation(
    provider: StubProvider, tmp_path: Path, case: str
) -> None:
    breakage, rule, operation = CATALOGUE[case]
    provider.breakage = breakage
    code, report = run_sso(provider, tmp_path)
    assert code == 1
    assert (rule, operation) in failing(report), failing(report)


def test_id_token_shape_is_named_in_the_finding(provider: StubProvider, tmp_path: Path) -> None:
    provider.breakage = StubBreakage(id_token_as_access_token=True)
    _, report = run_sso(provider, tmp_path)
    findings = report["findings"]
    assert isinstance(findings, list)
    (finding,) = [f for f in findings if f["rule"] == "sso/token-type"]
    assert "looks like an ID token" in finding["message"]
    assert "nonce" in finding["message"]


def test_private_key_parts_never_reach_the_report(provider: StubProvider, tmp_path: Path) -> None:
    provider.breakage = StubBreakage(private_parts=True)
    private = json.dumps(provider.key_set())
    d_value = json.loads(private)["keys"][0]["d"]
    _, report = run_sso(provider, tmp_path)
    assert d_value not in json.dumps(report)


def test_tokens_phase_alone_conforms_without_the_jwks_phase(
    provider: StubProvider, tmp_path: Path
) -> None:
    provider.breakage = StubBreakage()
    code, report = run_in_process(
        "sso",
        provider.issuer,
        tmp_path,
        "--client",
        f"{CLIENT_ID}:{CLIENT_SECRET}",
        "--phases",
        "tokens",
    )
    assert code == 0, report.get("findings")
    assert [phase["name"] for phase in report["phases"]] == ["tokens"]
