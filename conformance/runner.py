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
from conformance.context import (
    BudgetSpent,
    Clock,
    NotInstalled,
    PartlyRun,
    RunContext,
    RunOptions,
    needs_extra,
)
from conformance.findings import Finding
from conformance.provider import CannotRun, ProviderClient, RequestFailed
from conformance.spec import Contract, SpecError, load_contract
from conformance.systems import SYSTEMS, SystemProfile

PhaseFunction = Callable[[RunContext, SystemProfile], None]
ProgressHook = Callable[[str, str], None]  # (phase, "start" | "done" | "skipped: why")

BUDGET_SPENT = "skipped (time budget spent)"
PARTLY_RUN = "partly run"
# A phase whose packages (the conformance extra) are not installed: the run is incomplete.
NOT_INSTALLED = "not run (not installed:"
# Phases that check the records and ids the `pagination` phase reads: asking for one of them
# with --phases runs `pagination` first (without it they would check nothing).
NEEDS_PAGINATION = frozenset({"reads", "domain", "skp", "peer"})


@dataclass
class PhaseResult:
    name: str
    status: str  # "done", "partly run (…)", "not run (…)", "skipped (…)"
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
    # (rule, operation) pairs that could not be verified, with why; none of them is in
    # `checked` (what was verified elsewhere in the run counts as verified).
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(finding.fails_run for finding in self.findings)

    @property
    def incomplete(self) -> list[PhaseResult]:
        """Phases that should have run and did not: skipped for the time budget, partly run
        (part of what they check could not be checked), not run for want of their packages, or
        asked for by name (`--phases`, or `--webhooks` for the webhooks phase) and not run.
        Without a failing finding, the run proves nothing."""
        return [
            phase
            for phase in self.phases
            if phase.status != "done"
            and (
                phase.status == BUDGET_SPENT
                or phase.status.startswith((PARTLY_RUN, NOT_INSTALLED))
                or phase.name in self.options.phases
                # --webhooks asks for the webhooks phase as --phases does.
                or (phase.name == "webhooks" and self.options.webhooks)
            )
        ]

    @property
    def verdict(self) -> str:
        if self.failed:
            return "violations"
        return "incomplete" if self.incomplete else "conforming"

    @property
    def exit_code(self) -> int:
        return {"violations": 1, "incomplete": 2}.get(self.verdict, 0)


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
    peer_ctx, peer_profile = _peer_context(ctx, profile)
    assert peer_profile.people is not None
    try:
        domain.check_peer(ctx, profile.people, peer_ctx, peer_profile.people)
    finally:
        peer_ctx.client.close()


def _peer_context(ctx: RunContext, profile: SystemProfile) -> tuple[RunContext, SystemProfile]:
    """A context for the other registry (`--peer`); its client is the caller's to close."""
    options = ctx.options
    assert options.peer_url is not None
    assert profile.peer is not None
    peer_profile = SYSTEMS[profile.peer]
    contract = load_contract(peer_profile.contract)
    peer_client = ProviderClient(
        options.peer_url,
        peer_profile.make_auth(options.peer_credentials),
        rate_limit=options.rate_limit,
        verify=options.tls_verify,
    )
    # The run's budget, not a new one: its deadline bounds the peer's walks and 429 waits too.
    peer_client.deadline = ctx.deadline
    peer_ctx = RunContext(options, contract, peer_client, ctx.clock, started=ctx.started)
    return peer_ctx, peer_profile


def _probe_peer(ctx: RunContext, profile: SystemProfile) -> None:
    """The peer reachable and its credentials accepted, before any phase runs."""
    try:
        peer_ctx, peer_profile = _peer_context(ctx, profile)
        try:
            _probe(peer_ctx, peer_profile)
        finally:
            peer_ctx.client.close()
    except CannotRun as exc:
        raise CannotRun(f"--peer: {exc}") from None


def _schemathesis(ctx: RunContext, profile: SystemProfile) -> None:
    with needs_extra():
        from conformance import fuzzing  # Schemathesis and Hypothesis load only when used

    fuzzing.run_schemathesis(ctx, profile)


def _pact(ctx: RunContext, profile: SystemProfile) -> None:
    with needs_extra():  # pact-python loads only when used
        if not pact_verifier_available():
            raise _Skip("not run (no verifier yet)")
        from conformance import contracts_pact
        from conformance.pacts import PactVerificationError

    try:
        contracts_pact.verify(ctx, profile.name)
    except PactVerificationError as exc:
        # Nothing was verified: asked for with --phases, the run is incomplete, not conforming.
        raise _Skip(f"not run ({exc})") from None


def _webhooks(ctx: RunContext, profile: SystemProfile) -> None:
    if not ctx.options.webhooks:
        raise _Skip("no --webhooks")
    from conformance import webhooks

    try:
        webhooks.check_webhooks(ctx)
    except RequestFailed:
        raise  # partly run, naming the operation
    except (webhooks.NothingChecked, CannotRun) as exc:
        # The start-up checks found the receiver's address and the mock's policy usable; one
        # that fails now (a mock gone mid-run) leaves the phases before it and their reports.
        # Asked for with --phases or --webhooks, the run is then incomplete, not conforming.
        raise _Skip(f"not run ({exc})") from None


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
    ids = {op.id for op in contract.operations}
    missing = [op for op in profile.operations_needed() if op not in ids]
    if missing:
        raise CannotRun(
            f"contract {contract.path} does not describe the {options.system} API: it has no "
            f"operation {', '.join(missing)}; give the {options.system} contract to --spec "
            f"(or leave --spec out for {profile.contract.name})"
        )
    unknown = sorted(set(options.include + options.exclude) - {op.id for op in contract.operations})
    if unknown:
        raise CannotRun(f"no operation {', '.join(unknown)} in {contract.path.name}")
    known = phases_of(profile)
    unknown = sorted(set(options.phases) - set(known))
    if unknown:
        raise CannotRun(
            f"no phase {', '.join(unknown)} for {options.system} (its phases: {', '.join(known)})"
        )
    # A phase asked for by name that could not run would leave a run that checked nothing.
    if "webhooks" in options.phases and not options.webhooks:
        raise CannotRun(
            "phase webhooks needs --webhooks (it subscribes a receiver on the target; "
            "see --receiver-listen and --receiver-url)"
        )
    if "peer" in options.phases and not options.peer_url:
        raise CannotRun(
            "phase peer needs --peer URL and the other registry's credentials "
            "(--peer-api-key, or --peer-client-id and --peer-client-secret)"
        )
    return profile, contract


def planned_phases(profile: SystemProfile, options: RunOptions) -> list[str]:
    """The phases this run goes through, in order: all of the system's, or those of --phases
    with `pagination` added when one of them checks what it reads."""
    known = phases_of(profile)
    if not options.phases:
        return known
    wanted = set(options.phases)
    if wanted & NEEDS_PAGINATION and "pagination" in known:
        wanted.add("pagination")
    return [name for name in known if name in wanted]


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
    client.deadline = ctx.deadline
    ctx.stats["record_keys"] = profile.record_keys
    ctx.stats["absent_values"] = profile.absent_values
    client.on_429 = protocol.on_too_many_requests(ctx)
    phases: list[PhaseResult] = []
    planned = planned_phases(profile, options)
    try:
        (profile.probe or _probe)(ctx, profile)
        if "peer" in planned and options.peer_url and profile.peer is not None:
            _probe_peer(ctx, profile)
        if "webhooks" in planned and options.webhooks:
            from conformance import webhooks

            webhooks.check_startup(ctx)
        if options.phases and "pagination" in planned and "pagination" not in options.phases:
            ctx.notes.append(
                "pagination: run because "
                + ", ".join(sorted(NEEDS_PAGINATION & set(options.phases)))
                + " checks the records it reads"
            )
        for name in planned:
            if progress:
                progress(name, "start")
            phase_started = time.monotonic()
            status = "done"
            if ctx.time_left() <= 0:
                status = BUDGET_SPENT
            else:
                try:
                    (profile.own_phases.get(name) or PHASES[name])(ctx, profile)
                except _Skip as skip:
                    status = str(skip) if str(skip).startswith("not run") else f"skipped ({skip})"
                except PartlyRun as partly:
                    status = f"{PARTLY_RUN} ({partly})"
                except NotInstalled as missing:
                    status = f"{NOT_INSTALLED} {missing})"
                except BudgetSpent as spent:
                    status = BUDGET_SPENT
                    ctx.notes.append(str(spent))
                except RequestFailed as failed:
                    # What this phase and those before found stands; the next phase tries again.
                    status = f"{PARTLY_RUN} (stopped: {failed})"
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
        skipped={key: why for key, why in ctx.skipped.items() if key not in ctx.checked},
    )


def _probe(ctx: RunContext, profile: SystemProfile) -> None:
    """Reachable, serving this system's API, and these credentials accepted: otherwise the run
    cannot say anything (a wrong URL's 404s would all count as violations)."""
    operation = ctx.contract.operation(profile.probe_operation)
    base_url = str(ctx.client.http.base_url).rstrip("/")
    response = ctx.client.request(operation.id, "GET", operation.path, params={"limit": "1"})
    call = f"{operation.method} {operation.path} answered {response.status_code}"
    if response.status_code in (401, 403):
        raise CannotRun(f"credentials refused: {call}")
    if response.status_code >= 500:
        raise CannotRun(f"{base_url} is not working: {call}")
    not_served = (
        f"{base_url} does not serve the {profile.name} API: {operation.method} {operation.path}"
    )
    advice = f"check --base-url (the API's root) and that the target is {profile.name}"
    if response.status_code != 200:
        raise CannotRun(f"{not_served} answered {response.status_code}; {advice}")
    try:
        body = response.json()
    except ValueError:
        media = response.headers.get("content-type") or "no content type"
        raise CannotRun(
            f"{not_served} answered 200 with a body that is not JSON ({media}); {advice}"
        ) from None
    # The shape every list walk relies on; anything beyond it is for the phases to judge.
    if not (
        isinstance(body, dict)
        and isinstance(body.get("data"), list)
        and isinstance(body.get("page"), dict)
    ):
        raise CannotRun(
            f"{not_served} answered 200 with JSON that is not a list page "
            f"(an object with a data array and a page object); {advice}"
        )
