"""The systems `hf-conformance` knows: each one's contract, credentials and checks.

Adding a system is one more `SystemProfile` in `SYSTEMS` naming its phases (sso and adapter
bring their own operations, probe and phases).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conformance import adapter_api, sso
from conformance.context import Credentials, RunContext, RunOptions
from conformance.domain import PersonList
from conformance.findings import Severity
from conformance.oidc import NoAuth
from conformance.provider import ApiKeyAuth, Auth, CannotRun, ClientCredentialsAuth
from conformance.spec import Contract

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts" / "openapi"


PhaseFunction = Callable[[RunContext, "SystemProfile"], None]


@dataclass(frozen=True, slots=True)
class SystemProfile:
    name: str
    contract: Path  # sso: a name only; `make_contract` builds the operations from the options
    make_auth: Callable[[Credentials], Auth]
    # A cheap authenticated list call: the start-up probe of reachability and credentials.
    probe_operation: str
    phases: tuple[str, ...]
    people: PersonList | None = None
    peer: str | None = None
    record_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Values of path parameters that surely name no record (for 404 probes).
    absent_values: dict[str, str] = field(default_factory=dict)
    # Statuses that answer a schema-valid request correctly for reasons no schema can express
    # (Schemathesis' positive_data_acceptance would call them failures).
    semantic_rejections: dict[str, frozenset[int]] = field(default_factory=dict)
    # sso and adapter: their own operations, start-up probe and phases; no Pact, no webhooks.
    make_contract: Callable[[RunOptions], Contract] | None = None
    probe: PhaseFunction | None = None
    own_phases: dict[str, PhaseFunction] = field(default_factory=dict)
    shared_phases: bool = True

    def operations_needed(self) -> list[str]:
        """The operationIds nothing can run without (the start-up probe, the people list): a
        contract without them is another API's. An older contract may lack the others; the
        checks that call them go without (`record_keys` only names how to key a list walked)."""
        needed = [self.probe_operation]
        if self.people is not None:
            needed.append(self.people.operation)
        return list(dict.fromkeys(needed))


def _kki_auth(credentials: Credentials) -> Auth:
    if not credentials.api_key:
        raise CannotRun(
            f"kki needs an API key: {credentials.option_prefix}api-key KEY "
            f"(or {credentials.env_prefix}API_KEY)"
        )
    return ApiKeyAuth("X-API-Key", credentials.api_key)


def _sisdmk_auth(credentials: Credentials) -> Auth:
    if not credentials.client_id or not credentials.client_secret:
        option, env = credentials.option_prefix, credentials.env_prefix
        raise CannotRun(
            f"sisdmk needs client credentials: {option}client-id ID {option}client-secret SECRET "
            f"(or {env}CLIENT_ID / {env}CLIENT_SECRET)"
        )
    return ClientCredentialsAuth(
        "/oauth2/v1/accesstoken", credentials.client_id, credentials.client_secret
    )


UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"


def _semantic_rejections(lists: list[str], lookups: list[str]) -> dict[str, frozenset[int]]:
    """A cursor the server never issued is 400 however well-formed; a 16-digit NIK that cannot
    exist (unknown province, impossible date) is 422: both documented, neither in a schema."""
    return {
        **{operation: frozenset({400, 404}) for operation in lists},
        **{operation: frozenset({404, 422}) for operation in lookups},
    }


SYSTEMS: dict[str, SystemProfile] = {
    "kki": SystemProfile(
        name="kki",
        contract=CONTRACTS / "kki.yaml",
        make_auth=_kki_auth,
        probe_operation="listRegistrations",
        phases=(
            "pagination",
            "reads",
            "credentials",
            "errors",
            "domain",
            "skp",
            "peer",
            "schemathesis",
        ),
        # KKI's identity fields may differ from Dukcapil's (the contract says so): warnings.
        people=PersonList("listRegistrations", "str_number", Severity.WARNING),
        peer="sisdmk",
        record_keys={"listRegistrations": ("str_number",)},
        absent_values={"str_number": "ZZ99999999999999", "subscription_id": UNKNOWN_UUID},
        semantic_rejections=_semantic_rejections(
            ["listRegistrations", "listTrainings", "listPracticeLicenses"],
            ["lookupRegistrationsByNik"],
        ),
    ),
    "sisdmk": SystemProfile(
        name="sisdmk",
        contract=CONTRACTS / "sisdmk.yaml",
        make_auth=_sisdmk_auth,
        probe_operation="listHealthWorkers",
        phases=(
            "token",
            "pagination",
            "reads",
            "credentials",
            "errors",
            "domain",
            "peer",
            "schemathesis",
        ),
        people=PersonList("listHealthWorkers", "worker_id", Severity.ERROR),
        peer="kki",
        record_keys={
            "listHealthWorkers": ("worker_id",),
            "listFacilities": ("facility_code",),
            "listFacilityHealthWorkers": ("worker_id",),
        },
        absent_values={
            "worker_id": UNKNOWN_UUID,
            "facility_code": "9999999",
            "subscription_id": UNKNOWN_UUID,
        },
        semantic_rejections=_semantic_rejections(
            [
                "listHealthWorkers",
                "listEmployments",
                "listEducations",
                "listCertifications",
                "listFacilities",
                "listFacilityHealthWorkers",
            ],
            ["lookupHealthWorkerByNik"],
        ),
    ),
    "sso": SystemProfile(
        name="sso",
        contract=sso.CONTRACT_NAME,
        make_auth=lambda credentials: NoAuth(),
        probe_operation=sso.DISCOVERY,
        phases=("discovery", "jwks", "tokens"),
        make_contract=sso.contract,
        probe=sso.probe,
        own_phases={
            "discovery": sso.check_discovery,
            "jwks": sso.check_jwks,
            "tokens": sso.check_tokens,
        },
        shared_phases=False,
    ),
    "adapter": SystemProfile(
        name="adapter",
        contract=CONTRACTS / "adapter.yaml",
        # The probe replaces it with the first client's token once the realm has issued it.
        make_auth=lambda credentials: NoAuth(),
        probe_operation="getHealthz",
        phases=("scopes", "credentials", "schemathesis"),
        absent_values={
            "worker_id": UNKNOWN_UUID,
            "run_id": UNKNOWN_UUID,
            "event_id": UNKNOWN_UUID,
            "system": "kki",
        },
        semantic_rejections={
            # tests/fuzz/adapter-schemathesis.toml says why, operation by operation.
            **{
                operation: frozenset({400})
                for operation in (
                    "listHealthWorkers",
                    "listIdentityFindings",
                    "listSyncRuns",
                    "listWebhookEvents",
                    "listAuditEvents",
                )
            },
            **{
                operation: frozenset({404, 409})
                for operation in (
                    "getHealthWorker",
                    "getSyncRun",
                    "startSyncRun",
                    "replayWebhookEvent",
                    "purgeWebhookEvent",
                )
            },
            "lookupRegistration": frozenset({404, 422}),
            "receiveKkiWebhook": frozenset({400, 401, 413, 415, 422}),
            "receiveSisdmkWebhook": frozenset({400, 401, 413, 415, 422}),
            "getReadyz": frozenset({503}),
        },
        probe=adapter_api.probe,
        own_phases={
            "scopes": adapter_api.check_scope_matrix,
            "schemathesis": adapter_api.run_schemathesis,
        },
        shared_phases=False,
    ),
}
