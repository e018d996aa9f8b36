"""What every check of a run shares: options, the contract, the client, findings so far.

Checks report through `RunContext.fail`, record what they verified with `RunContext.ok`, and
what they had to leave unverified with `RunContext.skip`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conformance.findings import Exchange, Finding, Severity
from conformance.oidc import OidcOptions
from conformance.provider import ProviderClient
from conformance.spec import Contract, Operation

Clock = Callable[[], dt.date]
# A walk through a list stops after this many pages unless --max-pages says otherwise (a
# provider that never ends its list, handing out a new cursor each page).
MAX_PAGES = 400
# A report shows this many findings per (rule, operation) and severity; the rest are only
# counted.
MAX_FINDINGS_PER_CHECK = 5


class BudgetSpent(Exception):
    """A phase cut short by the time budget before it could judge: the run is incomplete, not
    failing. The message says what was cut (a note)."""


class PartlyRun(Exception):
    """A phase that checked part of what it should and could not check the rest: the run is
    incomplete, not conforming, whatever --phases says. The message says which part is which."""


# Schemathesis and pact-python come with this extra (pyproject.toml), not with the project.
INSTALL_EXTRA = "install the conformance extra: pip install -e '.[conformance]'"


class NotInstalled(Exception):
    """A phase whose packages are not installed: not run, and the run incomplete. The message
    names the package and how to install it."""


@contextmanager
def needs_extra() -> Iterator[None]:
    """Imports of a phase that needs the conformance extra: a package of it missing is
    `NotInstalled`, not an internal error. One of this project's own modules missing is a
    defect, raised as it is."""
    try:
        yield
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "conformance":
            raise
        raise NotInstalled(f"{exc.name or 'a package it needs'}; {INSTALL_EXTRA}") from None


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    # How the user gives them, for messages: the target's options or the peer's (`--peer-…`).
    option_prefix: str = "--"
    env_prefix: str = "HF_CONFORMANCE_"


@dataclass(frozen=True, slots=True)
class RunOptions:
    system: str
    base_url: str
    credentials: Credentials
    spec: Path | None = None
    max_examples: int = 20
    max_pages: int = MAX_PAGES  # pages read per walk through a list
    time_budget_s: float = 600.0
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    seed: int | None = None
    rate_limit: float | None = None
    peer_url: str | None = None
    peer_credentials: Credentials = Credentials()
    webhooks: bool = False
    # Where the webhook receiver listens, and the URL the provider is told to call when that
    # differs (a staging system reaches the receiver through a tunnel or a public address).
    receiver_listen: tuple[str, int] = ("127.0.0.1", 0)
    receiver_url: str | None = None
    # How long --webhooks waits for deliveries; None: 10 s on the mocks, 120 s on a provider.
    webhook_wait_s: float | None = None
    state_url: str | None = None
    tls_verify: bool = True
    phases: tuple[str, ...] = ()  # empty: all of the system's phases
    oidc: OidcOptions | None = None  # sso and adapter: the realm and its clients


@dataclass
class RunContext:
    options: RunOptions
    contract: Contract
    client: ProviderClient
    clock: Clock
    started: float = field(default_factory=time.monotonic)
    findings: list[Finding] = field(default_factory=list)
    # (rule, operation) pairs a check verified, failing or not: the JUnit test cases.
    checked: set[tuple[str, str]] = field(default_factory=set)
    # (rule, operation) pairs a check could not verify, with why: skipped test cases, never
    # passed ones (a Pact interaction that needs a provider state and has no state URL).
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    # Records read while paging, per list operation: the domain checks' input.
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Path parameter values of records that exist (for requests that need one).
    samples: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    # Findings kept per (rule, operation, severity); the rest are only counted.
    kept: dict[tuple[str, str, Severity], int] = field(default_factory=dict)

    @property
    def deadline(self) -> float:
        return self.started + self.options.time_budget_s

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def selected(self, operation: Operation | str) -> bool:
        op_id = operation if isinstance(operation, str) else operation.id
        if self.options.include and op_id not in self.options.include:
            return False
        return op_id not in self.options.exclude

    def operations(self) -> list[Operation]:
        return [op for op in self.contract.operations if self.selected(op)]

    def ok(self, rule: str, operation: str) -> None:
        self.checked.add((rule, operation))

    def skip(self, rule: str, operation: str, reason: str) -> None:
        """`rule` could not be verified on `operation`; `reason` says why (reports show it)."""
        self.skipped.setdefault((rule, operation), reason)

    def fail(
        self,
        rule: str,
        operation: str,
        message: str,
        evidence: httpx.Response | Exchange | None = None,
        severity: Severity = Severity.ERROR,
    ) -> None:
        self.checked.add((rule, operation))
        same = self.stats.setdefault("findings_per_check", {})
        same[f"{rule} {operation}"] = same.get(f"{rule} {operation}", 0) + 1
        # Kept per severity: five warnings first must not hide the error that follows them
        # (the verdict is made from the findings kept).
        kept = self.kept.get((rule, operation, severity), 0)
        if kept >= MAX_FINDINGS_PER_CHECK:
            return  # counted, not repeated: the first few show the problem
        self.kept[(rule, operation, severity)] = kept + 1
        if isinstance(evidence, httpx.Response):
            evidence = Exchange.from_response(evidence)
        self.findings.append(Finding(rule, operation, message, severity, evidence))


def is_mock_admin(ctx: RunContext, admin: str, provider: str) -> bool:
    """Whether `admin` is the admin API of a `provider` mock: its health document (mocks/core/
    admin.py) names that system and counts its records. A 200 alone is not enough: most real
    services answer some /health, and a real provider's data must never be snapshotted over, nor
    its webhook policy changed or events caused."""
    try:
        health = ctx.client.http.get(f"{admin}/health", timeout=5)
        document = health.json()
    except (httpx.HTTPError, ValueError):
        return False
    return (
        health.status_code == 200
        and isinstance(document, dict)
        and document.get("system") == provider
        and isinstance(document.get("records"), dict)
    )
