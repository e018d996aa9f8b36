"""One conformance run: connect, run the system's phases in order within the budget, apply the
baseline, and hand back everything the reports need.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conformance import domain, protocol
from conformance.baseline import BaselineEntry, apply_baseline
from conformance.context import Clock, RunContext, RunOptions
from conformance.findings import Finding
from conformance.provider import CannotRun, ProviderClient
from conformance.spec import Contract, SpecError, load_contract
from conformance.systems import SYSTEMS, SystemProfile

PhaseFunction = Callable[[RunContext, SystemProfile], None]
ProgressHook = Callable[[str, str], None]  # (phase, "start" | "done" | "skipped: why")


@dataclass
class PhaseResult:
    name: str
    status: str  # "done", "not run (…)", "skipped (…)"
    seconds: float = 0.0


@dataclass
class RunResult:
    options: RunOptions
    findings: list[Finding]
    checked: set[tuple[str, str]]
    phases: list[PhaseResult]
    notes: list[str]
    stats: dict[str, Any]
    seconds: float
    operations: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(finding.fails_run for finding in self.findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def _pagination(ctx: RunContext, profile: SystemProfile) -> None:
    protocol.check_pagination(ctx)


def _credentials(ctx: RunContext, profile: SystemProfile) -> None:
    protocol.check_credentials(ctx)


def _reads(ctx: RunContext, profile: SystemProfile) -> None:
    protocol.check_reads(ctx)


def _errors(ctx: RunContext, profile: SystemProfile) -> None:
    protocol.check_error_responses(ctx)


def _token(ctx: RunContext, profile: SystemProfile) -> None:
    protocol.check_token_endpoint(ctx)


def _domain(ctx: RunContext, profile: SystemProfile) -> None:
    if profile.people is not None:
        domain.check_people(ctx, profile.people)


def _skp(ctx: RunContext, profile: SystemProfile) -> None:
    if profile.people is not None:
        domain.check_skp_deactivation(ctx, profile.people)


def _peer(ctx: RunContext, profile: SystemProfile) -> None:
    options = ctx.options
    if not options.peer_url or profile.peer is None or profile.people is None:
        raise _Skip("no --peer URL")
    peer_profile = SYSTEMS[profile.peer]
    assert peer_profile.people is not None
    peer_client = ProviderClient(
        options.peer_url,
        peer_profile.make_auth(options.peer_credentials),
        rate_limit=options.rate_limit,
        verify=options.tls_verify,
    )
    try:
        peer_ctx = RunContext(options, load_contract(peer_profile.contract), peer_client, ctx.clock)
        domain.check_peer(ctx, profile.people, peer_ctx, peer_profile.people)
    finally:
        peer_client.close()


def _schemathesis(ctx: RunContext, profile: SystemProfile) -> None:
    from conformance import fuzzing  # Schemathesis and Hypothesis load only when used

    fuzzing.run_schemathesis(ctx, profile)


def _pact(ctx: RunContext, profile: SystemProfile) -> None:
    if not pact_verifier_available():
        raise _Skip("not run (no verifier yet)")
    from conformance import contracts_pact  # pact-python loads only when used

    contracts_pact.verify(ctx, profile.name)


def _webhooks(ctx: RunContext, profile: SystemProfile) -> None:
    if not ctx.options.webhooks:
        raise _Skip("no --webhooks")
    from conformance import webhooks

    webhooks.check_webhooks(ctx)


PHASES: dict[str, PhaseFunction] = {
    "token": _token,
    "pagination": _pagination,
    "credentials": _credentials,
    "reads": _reads,
    "errors": _errors,
    "domain": _domain,
    "skp": _skp,
    "peer": _peer,
    "schemathesis": _schemathesis,
    "pact": _pact,
    "webhooks": _webhooks,
}


class _Skip(Exception):
    """A phase that does not apply to this run; the message says why."""


def pact_verifier_available() -> bool:
    """Whether `conformance.pacts.verify_pacts` (written alongside this command) exists yet."""
    if importlib.util.find_spec("conformance.pacts") is None:
        return False
    module = importlib.import_module("conformance.pacts")
    return callable(getattr(module, "verify_pacts", None))


def prepare(options: RunOptions) -> tuple[SystemProfile, Contract]:
    """The system and its contract, or `CannotRun` with the reason."""
    profile = SYSTEMS.get(options.system)
    if profile is None:
        raise CannotRun(f"unknown system {options.system!r} (known: {', '.join(SYSTEMS)})")
    try:
        if profile.make_contract is not None:
            contract = profile.make_contract(options)
        else:
            contract = load_contract(options.spec or profile.contract)
    except SpecError as exc:
        raise CannotRun(str(exc)) from None
    unknown = sorted(set(options.include + options.exclude) - {op.id for op in contract.operations})
    if unknown:
        raise CannotRun(f"no operation {', '.join(unknown)} in {contract.path.name}")
    known = phases_of(profile)
    unknown = sorted(set(options.phases) - set(known))
    if unknown:
        raise CannotRun(
            f"no phase {', '.join(unknown)} for {options.system} (its phases: {', '.join(known)})"
        )
    return profile, contract


def phases_of(profile: SystemProfile) -> list[str]:
    """The system's phases in the order they run."""
    if not profile.shared_phases:
        return list(profile.phases)
    # Pact's provider states replace the target's data: it goes after every other phase.
    return [*profile.phases, "webhooks", "pact"]


def execute(
    options: RunOptions,
    clock: Clock,
    baseline: list[BaselineEntry],
    progress: ProgressHook | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """Run every phase; raises `CannotRun` when the target can't be tested at all."""
    started = time.monotonic()
    profile, contract = prepare(options)
    client = ProviderClient(
        options.base_url,
        profile.make_auth(options.credentials),
        rate_limit=options.rate_limit,
        verify=options.tls_verify,
        sleep=sleep,
    )
    ctx = RunContext(options, contract, client, clock)
    ctx.stats["record_keys"] = profile.record_keys
    ctx.stats["absent_values"] = profile.absent_values
    client.on_429 = protocol.on_too_many_requests(ctx)
    phases: list[PhaseResult] = []
    try:
        (profile.probe or _probe)(ctx, profile)
        for name in phases_of(profile):
            if options.phases and name not in options.phases:
                continue
            if progress:
                progress(name, "start")
            phase_started = time.monotonic()
            status = "done"
            if ctx.time_left() <= 0:
                status = "skipped (time budget spent)"
            else:
                try:
                    (profile.own_phases.get(name) or PHASES[name])(ctx, profile)
                except _Skip as skip:
                    status = str(skip) if str(skip).startswith("not run") else f"skipped ({skip})"
            phases.append(PhaseResult(name, status, time.monotonic() - phase_started))
            if progress:
                progress(name, status)
    finally:
        client.close()
    apply_baseline(ctx.findings, baseline, clock())
    ctx.stats["requests"] = client.requests
    ctx.stats["retry_after_waits_s"] = [round(wait, 2) for wait in client.retry_waits]
    for key in ("record_keys", "absent_values"):
        ctx.stats.pop(key, None)
    return RunResult(
        options=options,
        findings=ctx.findings,
        checked=ctx.checked,
        phases=phases,
        notes=ctx.notes,
        stats=ctx.stats,
        seconds=time.monotonic() - started,
        operations=[op.id for op in ctx.operations()],
    )


def _probe(ctx: RunContext, profile: SystemProfile) -> None:
    """Reachable, and these credentials accepted: otherwise the run cannot say anything."""
    operation = ctx.contract.operation(profile.probe_operation)
    response = ctx.client.request(operation.id, "GET", operation.path, params={"limit": "1"})
    if response.status_code in (401, 403):
        raise CannotRun(
            f"credentials refused: {operation.method} {operation.path} answered "
            f"{response.status_code}"
        )
    if response.status_code >= 500:
        raise CannotRun(
            f"{ctx.options.base_url} is not working: {operation.path} answered "
            f"{response.status_code}"
        )
