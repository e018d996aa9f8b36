"""The sso and adapter targets' options, hosts allowed plain http, and the scopes each adapter
operation requires (read from adapter.yaml, as the scope matrix reads them)."""

from __future__ import annotations

import pytest

from adapter.auth import scopes
from conformance.adapter_api import required_scopes
from conformance.cli import build_parser, options_from
from conformance.oidc import DEFAULT_AUDIENCE, OidcClient, is_local
from conformance.provider import CannotRun
from conformance.rules import RULES
from conformance.spec import load_contract
from conformance.systems import CONTRACTS, SYSTEMS


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080/realms/healthforce", True),
        ("http://localhost/realms/x", True),
        ("http://[::1]:8080/realms/x", True),
        ("http://sso.example.go.id/realms/healthforce", False),
        ("http://10.0.0.5/realms/healthforce", False),
    ],
)
def test_only_loopback_hosts_count_as_local(url: str, local: bool) -> None:
    assert is_local(url) is local


def test_sso_issuer_is_the_base_url_exactly_as_given() -> None:
    args = build_parser().parse_args(
        ["sso", "--base-url", "https://sso.example.go.id/realms/hf/", "--client", "a:b"]
    )
    options = options_from(args)
    assert options.oidc is not None
    # A trailing slash is part of an issuer: comparing it is the check's job, not the parser's.
    assert options.oidc.issuer == "https://sso.example.go.id/realms/hf/"
    assert options.base_url == "https://sso.example.go.id/realms/hf"


def test_clients_come_from_flags_and_client_id_together() -> None:
    args = build_parser().parse_args(
        [
            "adapter",
            "--base-url",
            "http://127.0.0.1:8000",
            "--issuer",
            "http://127.0.0.1:8080/realms/healthforce",
            "--client-id",
            "hf-ops",
            "--client-secret",
            "s1",
            "--client",
            "hf-readonly:s:2",
        ]
    )
    oidc = options_from(args).oidc
    assert oidc is not None
    # Only the first colon separates: a secret may hold colons.
    assert oidc.clients == (OidcClient("hf-ops", "s1"), OidcClient("hf-readonly", "s:2"))
    assert oidc.audience == DEFAULT_AUDIENCE


def test_clients_from_the_environment_when_no_flag_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_CONFORMANCE_CLIENTS", "hf-ops:s1 hf-readonly:s2")
    args = build_parser().parse_args(["adapter", "--base-url", "http://127.0.0.1:8000"])
    oidc = options_from(args).oidc
    assert oidc is not None
    assert [client.client_id for client in oidc.clients] == ["hf-ops", "hf-readonly"]


def test_malformed_client_in_the_environment_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_CONFORMANCE_CLIENTS", "hf-ops-without-secret")
    args = build_parser().parse_args(["adapter", "--base-url", "http://127.0.0.1:8000"])
    with pytest.raises(CannotRun, match="HF_CONFORMANCE_CLIENTS"):
        options_from(args)


def test_malformed_client_flag_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sso", "--base-url", "http://x", "--client", "no-secret"])


def test_every_api_operation_requires_one_known_scope() -> None:
    contract = load_contract(CONTRACTS / "adapter.yaml")
    for operation in contract.operations:
        required = required_scopes(contract, operation)
        if operation.path.startswith("/api/v1/"):
            assert len(required) == 1, operation.id
            assert required[0] in scopes.ALL_SCOPES, operation.id
        else:
            assert required == (), operation.id


def test_every_rule_the_new_targets_report_is_documented() -> None:
    for name in ("sso", "adapter"):
        assert name in SYSTEMS
    reported = {rule for rule in RULES if rule.startswith(("sso/", "scopes/"))}
    assert len(reported) == 17
    assert all(RULES[rule].source for rule in reported)
