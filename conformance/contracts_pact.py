"""The Pact step: the adapter's pacts with this system replayed against the target by
`conformance.pacts.verify_pacts`; failed interactions become findings, skipped ones notes.
A verification that cannot run at all raises `PactVerificationError` (the phase is not run); the
HTTP pact's results are recorded first, and message pacts that cannot run leave them: the phase
is then partly run (`PartlyRun`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx

from conformance.context import PartlyRun, RunContext, is_mock_admin
from conformance.masking import mask_quoted, mask_text
from conformance.pacts import (
    MockEventSource,
    PactVerification,
    PactVerificationError,
    verify_pacts,
)
from conformance.provider import CannotRun, RequestFailed, send

ADMIN_PATH = "/__admin"
STATE_PATH = f"{ADMIN_PATH}/provider-states"
SNAPSHOT = "hf-conformance-before-pact"
PACT_RULE = "pact/interaction"
# How long one message interaction waits for the mock's delivery of its event.
EVENT_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class PactTarget:
    """Where this Pact phase sets provider states, decided once: the state URL (or none), the
    mock admin API it belongs to (or none: not a mock, nothing to snapshot), and whether the
    target itself is a mock (its admin API causes events for the message pacts)."""

    states: str | None
    states_admin: str | None
    target_is_mock: bool


def pact_target(ctx: RunContext, provider: str) -> PactTarget:
    """The state URL given, or the target's own when it is a mock; each admin API asked once."""
    own_admin = f"{ctx.options.base_url}{ADMIN_PATH}"
    target_is_mock = is_mock_admin(ctx, own_admin, provider)
    if ctx.options.state_url:
        states = ctx.options.state_url
        # The same URL may be spelt many ways (localhost, 127.0.0.1, a proxy): the state URL's
        # own server is asked, no string is compared.
        admin = states.rstrip("/").rsplit("/", 1)[0]
        return PactTarget(
            states, admin if is_mock_admin(ctx, admin, provider) else None, target_is_mock
        )
    if target_is_mock:
        return PactTarget(f"{ctx.options.base_url}{STATE_PATH}", own_admin, True)
    return PactTarget(None, None, False)


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """The verifier's Rust core writes its report to file descriptor 1, and pact-python's message
    server its handler errors to 2: the result keeps both, the terminal gets neither."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(os.devnull, "wb") as devnull:
        for fd in saved:
            os.dup2(devnull.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


@contextmanager
def _data_kept(ctx: RunContext, target: PactTarget) -> Iterator[None]:
    """On the mocks, the data as it was before the pact's states replaced it, afterwards."""
    admin = target.states_admin
    if admin is None:
        if target.states is not None:
            ctx.notes.append(
                f"pact: {target.states} has no mock admin API next to it to snapshot the data: "
                "the provider states replaced the target's data"
            )
        yield
        return
    http = ctx.client.http
    try:
        _admin(http, "DELETE", f"{admin}/snapshots/{SNAPSHOT}")  # an interrupted run's
        taken = _admin(http, "POST", f"{admin}/snapshots", json={"name": SNAPSHOT})
    except CannotRun as exc:  # the mock answered its health a moment ago: gone meanwhile
        raise RequestFailed(f"{exc} (the snapshot of the mock's data before the pact)") from None
    try:
        yield
    finally:
        if taken.status_code in (200, 201):
            _restore(ctx, admin)
        else:
            ctx.notes.append("pact: no snapshot of the mock's data; its states replaced the data")


def _admin(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A call to a mock's admin API, which may be another server than the target's (a
    `--state-url`): a failure names the URL called, not the target's."""
    return send(http, method, url, where=url, timeout=30, **kwargs)


def _restore(ctx: RunContext, admin: str) -> None:
    """The mock's data back from the snapshot, then the snapshot removed; what fails is a note
    saying how to finish by hand (never an error over the phase's own outcome)."""
    http = ctx.client.http
    restore = f"{admin}/snapshots/{SNAPSHOT}/restore"
    try:
        status = _admin(http, "POST", restore).status_code
        reason = f"it answered {status}"
    except CannotRun as exc:
        status, reason = None, str(exc)
    if status not in (200, 204):
        ctx.notes.append(
            f"pact: the mock's data could not be put back ({reason}): the pact's provider states "
            f"replaced it; POST {restore} when the mock is back, or restart it"
        )
        return
    with suppress(CannotRun):  # the data is back; the next run removes the snapshot first
        _admin(http, "DELETE", f"{admin}/snapshots/{SNAPSHOT}")


def verify(ctx: RunContext, provider: str) -> None:
    os.environ.setdefault("PACT_DO_NOT_TRACK", "true")
    target = pact_target(ctx, provider)
    states, on_mock = target.states, target.target_is_mock
    with _data_kept(ctx, target):
        with _quiet_stdout():
            verified = verify_pacts(
                provider,
                ctx.options.base_url,
                state_url=states,
                verify_tls=ctx.options.tls_verify,
            )
        # Recorded before the message pacts run: their failing to run leaves these results.
        _record(ctx, verified, states)
        verifications = [verified]
        if ctx.options.webhooks and on_mock:
            try:
                messages = _verify_messages(ctx, provider)
            except PactVerificationError as exc:
                raise PartlyRun(
                    f"the {provider} HTTP pact's interactions were checked; the "
                    f"{provider}-webhooks message pacts were not: {exc}"
                ) from None
            _record(ctx, messages, None)
            verifications.append(messages)
        else:
            why = "needs --webhooks" if on_mock else "needs a target that emits events on demand"
            ctx.notes.append(f"pact: {provider}-webhooks message pacts not run ({why})")
    _require_one_verified(ctx, verifications)


def _require_one_verified(ctx: RunContext, verifications: list[PactVerification]) -> None:
    """`PactVerificationError` (the phase is not run) when no interaction was verified: a phase
    that verified nothing must not pass."""
    if any(v.passed or v.failed for v in verifications):
        return
    names = " and ".join(f"the {v.provider} pact" for v in verifications)
    if not any(v.skipped for v in verifications):
        raise PactVerificationError(f"{names} has no interaction: nothing to verify")
    # Masked when recorded.
    why = next((why for (rule, _), why in ctx.skipped.items() if rule == PACT_RULE), "")
    raise PactVerificationError(
        f"every interaction of {names} was skipped, none verified (e.g. {why}); give --state-url "
        "the target's provider-state set-up URL"
    )


def _verify_messages(ctx: RunContext, provider: str) -> PactVerification:
    """The message pacts with events the mock delivers; `PactVerificationError` when they could
    not be verified at all (no pact file, the mock refused the receiver's subscription)."""
    headers = ctx.client.auth.headers(ctx.client.http)
    source = MockEventSource(ctx.options.base_url, headers, timeout_s=EVENT_WAIT_S)
    try:
        with source as events, _quiet_stdout():
            verified = verify_pacts(
                f"{provider}-webhooks",
                ctx.options.base_url,
                state_url=None,
                messages=events,
                verify_tls=ctx.options.tls_verify,
            )
    except (PactVerificationError, httpx.HTTPError) as exc:
        raise PactVerificationError(_why(exc)) from None
    finally:
        if source.not_deleted is not None:
            # The results stand; the subscription left behind is for the operator to remove.
            ctx.notes.append(
                f"pact: the message pacts' event receiver is still subscribed: "
                f"{source.not_deleted}; delete subscription {source.subscription_id} by hand "
                f"(DELETE /v1/webhook-subscriptions/{source.subscription_id} with the target's "
                "credentials), or the target keeps sending events to an address nobody listens on"
            )
    return verified


def _why(exc: PactVerificationError | httpx.HTTPError) -> str:
    """One line on why the message pacts could not be verified."""
    if isinstance(exc, httpx.HTTPStatusError):
        request = exc.request
        return f"{request.method} {request.url.path} answered {exc.response.status_code}"
    if isinstance(exc, httpx.HTTPError):
        return f"{exc.request.method} {exc.request.url.path} failed ({type(exc).__name__})"
    return mask_text(" ".join(str(exc).split()))


def _record(ctx: RunContext, result: PactVerification, states: str | None) -> None:
    """One verification's interactions as checks, findings and notes, and its counts."""
    ctx.stats[f"pact {result.provider}"] = {
        "passed": len(result.passed),
        "failed": len(result.failed),
        "skipped": len(result.skipped),
        "state_url": states,
    }
    # The pact's own words (state names, descriptions) are no one's data: they stay readable.
    ours = {text for r in result.results for text in (r.description, *r.states)}
    for interaction in result.results:
        if interaction.outcome == "skipped":
            detail = mask_quoted(interaction.detail, keep=ours)
            # Not verified: a skipped test case in the reports, never a passed one.
            ctx.skip(PACT_RULE, interaction.description, detail)
            ctx.notes.append(f"pact: skipped {interaction.description}: {detail}")
            continue
        ctx.ok(PACT_RULE, interaction.description)
        if interaction.outcome == "failed":
            # The verifier quotes the provider's values: on staging, real people's.
            ctx.fail(
                "pact/interaction",
                interaction.description,
                mask_quoted(interaction.detail, keep=ours),
            )
