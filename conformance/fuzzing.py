"""Schemathesis against the system's contract: examples, coverage, fuzzing and stateful phases,
positive and negative data, every check; each failure becomes a finding with its exchange.
"""

from __future__ import annotations

import math
import threading
from typing import Any
from urllib.parse import quote

import schemathesis
from pyrate_limiter import Limiter, Rate
from schemathesis.engine import StopReason, events, from_schema
from schemathesis.openapi.checks import JsonSchemaError

from conformance.context import BudgetSpent, PartlyRun, RunContext
from conformance.findings import Exchange
from conformance.spec import json_kind
from conformance.systems import SystemProfile

LIST_SUBSCRIPTIONS = "listWebhookSubscriptions"
DELETE_SUBSCRIPTION = "deleteWebhookSubscription"


def schemathesis_config(ctx: RunContext, profile: SystemProfile) -> dict[str, Any]:
    options = ctx.options
    data: dict[str, Any] = {
        "base-url": options.base_url,
        "headers": ctx.client.auth.headers(ctx.client.http),
        "workers": 1,  # 2 trips a Hypothesis "AST recursion" error on these schemas (3.11)
        "tls-verify": options.tls_verify,
        "generation": {
            "max-examples": options.max_examples,
            "mode": "all",
            "database": "none",
            # A failure is reported with the request that showed it; shrinking it to a
            # minimal one costs minutes against a slow provider and adds little for QA.
            "no-shrink": True,
        },
        "checks": {"enabled": True},
    }
    if options.seed is not None:
        data["seed"] = options.seed
        data["generation"]["deterministic"] = True
    return data


def even_limiter(rate_per_s: float) -> Limiter:
    """One request every 1/rate seconds. Schemathesis' own "N/m" is a sliding window that lets
    N requests go at once: `--rate-limit 2/s`, given to it as "120/m", sent 42-61 requests in
    the first 3 s."""
    # pyrate-limiter adds `buffer_ms` (50 by default) to each wait: at 20/s that halved the rate.
    return Limiter(Rate(1, max(1, math.ceil(1000 / rate_per_s))), buffer_ms=1)


def run_schemathesis(ctx: RunContext, profile: SystemProfile) -> None:
    # The headers are taken once, here (a token due for renewal is renewed first).
    config = schemathesis.Config.from_dict(schemathesis_config(ctx, profile))
    remaining = getattr(ctx.client.auth, "remaining_s", lambda: None)()
    if remaining is not None and remaining < ctx.time_left():
        # Schemathesis sends the headers it was given: a token that expires mid-phase turns
        # its requests into 401s from then on.
        ctx.notes.append(
            f"schemathesis: the access token it was given is used for {remaining:.0f} s more, "
            f"less than the {ctx.time_left():.0f} s left of the time budget; a 401 after that "
            "is the token's end, not the operation's (give --time-budget less, or the client "
            "a longer token lifetime)"
        )
    schema: schemathesis.BaseSchema = schemathesis.openapi.from_path(
        str(ctx.contract.path), config=config
    )
    if ctx.options.rate_limit:
        schema.config.rate_limit = even_limiter(ctx.options.rate_limit)
    if ctx.options.include:
        schema = schema.include(operation_id=list(ctx.options.include))
    if ctx.options.exclude:
        schema = schema.exclude(operation_id=list(ctx.options.exclude))
    by_label = {f"{op.method} {op.path}": op.id for op in ctx.contract.operations}
    subscriptions_before = _subscriptions(ctx)
    try:
        _run(ctx, profile, schema, by_label)
    finally:
        _delete_new_subscriptions(ctx, subscriptions_before)


def _subscriptions(ctx: RunContext) -> set[str] | None:
    """The target's webhook subscriptions, when it lists them (None when it does not)."""
    listing = next((op for op in ctx.contract.operations if op.id == LIST_SUBSCRIPTIONS), None)
    if listing is None:
        return None
    response = ctx.client.request(listing.id, "GET", listing.path)
    if response.status_code != 200:
        return None
    try:
        items = response.json().get("data")
    except (ValueError, AttributeError):
        items = None
    if not isinstance(items, list):
        # Schemathesis judges the listing itself; here it only cannot tell what to clean up,
        # and an unreadable listing must not make existing subscriptions look new.
        note = (
            f"schemathesis: {listing.id} answered 200 without a JSON list page; the "
            "subscriptions Schemathesis created were not deleted"
        )
        if note not in ctx.notes:
            ctx.notes.append(note)
        return None
    return {str(item["id"]) for item in items if isinstance(item, dict) and "id" in item}


def _delete_new_subscriptions(ctx: RunContext, before: set[str] | None) -> None:
    """Schemathesis subscribes generated URLs; a run leaves no subscription it did not find.
    (On the mocks they would also keep the delivery workers busy with unreachable hosts.)"""
    after = _subscriptions(ctx)
    if before is None or after is None:
        return
    deleting = next((op for op in ctx.contract.operations if op.id == DELETE_SUBSCRIPTION), None)
    if deleting is None:
        return
    for subscription_id in sorted(after - before):
        path = deleting.path.replace("{subscription_id}", quote(subscription_id, safe=""))
        ctx.client.request(deleting.id, "DELETE", path)
    ctx.stats["schemathesis_subscriptions_deleted"] = len(after - before)


def _run(
    ctx: RunContext,
    profile: SystemProfile,
    schema: schemathesis.BaseSchema,
    by_label: dict[str, str],
) -> None:
    stream = from_schema(schema).execute()
    scenarios = 0
    fuzzed: set[str] = set()
    # Operations Schemathesis could not test (the provider dropped the connection or timed
    # out, or no request could be made from the schema): not passed, whatever else ran.
    errored: set[str] = set()
    stopped: str | None = None
    # Schemathesis knows no deadline without also cycling its fuzzing until it is reached, so
    # the budget is enforced here: a timer stops the stream when it is spent, and Schemathesis
    # checks that before each request. (Checked between events only, a run under --rate-limit
    # overran the budget by a whole operation's examples: an event comes per operation.)
    spent = threading.Event()

    def budget_spent() -> None:
        spent.set()
        stream.stop()

    timer = threading.Timer(max(ctx.time_left(), 0.0), budget_spent)
    timer.daemon = True
    timer.start()
    try:
        for event in stream:
            if isinstance(event, events.ScenarioFinished):
                scenarios += 1
                fuzzed.update(_collect(ctx, profile, event, by_label))
            elif isinstance(event, events.NonFatalError):
                operation_id = by_label.get(event.label, event.label)
                if event.related_to_operation and ctx.selected(operation_id):
                    errored.add(operation_id)
                    ctx.fail(
                        "contract/run-error",
                        operation_id,
                        f"Schemathesis could not test it: {event.info.title} "
                        f"({type(event.value).__name__})",
                    )
                else:
                    ctx.notes.append(f"schemathesis: {event.label}: {event.info.title}")
            elif isinstance(event, events.FatalError):
                stopped = f"{type(event.exception).__name__}: {event.exception}"
            elif isinstance(event, events.EngineFinished):
                ctx.stats["schemathesis_stop_reason"] = str(event.stop_reason)
                if event.stop_reason is not StopReason.INTERRUPTED:
                    # Finished on its own: a timer firing now stopped nothing.
                    timer.cancel()
                    spent.clear()
    finally:
        timer.cancel()
    ctx.stats["schemathesis_scenarios"] = scenarios
    operations = ctx.operations()
    for operation in operations:
        if operation.id in errored:
            continue
        if not (spent.is_set() or stopped) or operation.id in fuzzed:
            ctx.ok("contract/response_schema_conformance", operation.id)
            ctx.ok("contract/status_code_conformance", operation.id)
            ctx.ok("contract/not_a_server_error", operation.id)
        ctx.ok("contract/run-error", operation.id)
    if stopped is not None:
        left = sorted(op.id for op in operations if op.id not in fuzzed)
        raise PartlyRun(
            f"schemathesis stopped ({stopped[:200]}) after {len(fuzzed)} of {len(operations)} "
            "operations" + (f" (not fuzzed: {', '.join(left)})" if left else "")
        )
    if spent.is_set():
        left = sorted(op.id for op in operations if op.id not in fuzzed)
        raise BudgetSpent(
            f"schemathesis: stopped by the time budget after {len(fuzzed)} of "
            f"{len(operations)} operations" + (f" (not fuzzed: {', '.join(left)})" if left else "")
        )


def _collect(
    ctx: RunContext,
    profile: SystemProfile,
    event: events.ScenarioFinished,
    by_label: dict[str, str],
) -> set[str]:
    """Findings and checks of a finished scenario; the operations it checked."""
    recorder = event.recorder
    checked: set[str] = set()
    for case_id, checks in recorder.checks.items():
        node = recorder.cases.get(case_id)
        if node is None:
            continue
        label = node.value.operation.label
        operation_id = by_label.get(label, label)
        if not ctx.selected(operation_id):
            continue  # checks that probe neighbouring operations report only what was asked
        checked.add(operation_id)
        for check in checks:
            ctx.ok(f"contract/{check.name}", operation_id)
            info = check.failure_info
            if info is None:
                continue
            failure = info.failure
            interaction = recorder.interactions.get(case_id)
            status = interaction.response.status_code if interaction and interaction.response else 0
            if check.name == "positive_data_acceptance" and status in (
                profile.semantic_rejections.get(operation_id, frozenset())
            ):
                continue
            message = failure_message(failure)
            evidence = _exchange(interaction) if interaction is not None else None
            ctx.fail(f"contract/{check.name}", operation_id, " ".join(message.split()), evidence)
    return checked


def failure_message(failure: Any) -> str:
    """A finding's message for a Schemathesis failure, never quoting the provider's values.

    A schema violation's own message quotes the value (`"Siti Rahmawati\t" does not match
    ...`), and free text with a name in it cannot be masked reliably: it is said by where the
    value is and which keyword of the contract it breaks (the evidence shows the value,
    masked field by field). Other failures' first paragraph names statuses, headers and
    media types; Schemathesis appends the schema and the whole instance after it.
    """
    if isinstance(failure, JsonSchemaError):
        where = "/".join(str(part) for part in failure.instance_path) or "(body)"
        keyword = str(failure.schema_path[-1]) if failure.schema_path else "schema"
        kind = json_kind(failure.instance)
        return f"{failure.title}: {where}: {kind} that breaks the contract's {keyword}"
    detail = failure.message.split("\n\n")[0] if failure.message else ""
    return str(failure.title) + (f": {detail}" if detail else "")


def _exchange(interaction: Any) -> Exchange:
    request, response = interaction.request, interaction.response
    body = request.body.decode("utf-8", "replace") if request.body else None
    return Exchange(
        method=request.method,
        url=request.uri,
        request_headers={k: ", ".join(v) for k, v in request.headers.items()},
        request_body=body,
        status=None if response is None else response.status_code,
        response_headers={}
        if response is None
        else {k: ", ".join(v) for k, v in response.headers.items()},
        response_body=None
        if response is None or not response.content
        else response.content.decode("utf-8", "replace"),
    )
