"""Protocol checks: credentials refused, cursor paging, `updated_since`, error bodies, 429s and
the SATUSEHAT-style token endpoint — what a schema alone cannot say.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import quote

import httpx

from conformance.context import BudgetSpent, PartlyRun, RunContext
from conformance.findings import Exchange, Severity
from conformance.provider import MAX_429_RETRIES, ClientCredentialsAuth, send
from conformance.spec import Operation, json_kind

# The small-limit walk aims at about this many pages: enough page boundaries to lose a record.
SMALL_WALK_PAGES = 12
# Lists under a path parameter (a worker's employments) are walked with this limit.
SUB_LIST_LIMIT = 2
PLACEHOLDER_UUID = "00000000-0000-4000-8000-000000000000"


def record_key(ctx: RunContext, operation: Operation, item: dict[str, Any]) -> str:
    """The record's identity: its key field when the system names one, else the whole item."""
    for name in ctx.stats.get("record_keys", {}).get(operation.id, ()):
        if name in item:
            return str(item[name])
    return json.dumps(item, sort_keys=True)


def fill_path(ctx: RunContext, operation: Operation, absent: bool = False) -> str | None:
    """The operation's path with a real (or, `absent`, a surely unknown) value per parameter."""
    path = operation.path
    values: dict[str, str] = ctx.stats.get("absent_values", {}) if absent else ctx.samples
    for name in operation.path_params:
        value = values.get(name)
        if value is None and name.endswith("_id") and "subscription" in name:
            value = PLACEHOLDER_UUID
        if value is None:
            return None
        # Quoted: a provider's value may hold "/", "?" or "#" (an STR number "KKI/2020/77").
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def max_limit(operation: Operation) -> int:
    param = operation.query_param("limit") or {}
    return int(param.get("schema", {}).get("maximum", 100))


class _Walk:
    """The items of one walk through a cursor-paged list, with what went wrong on the way."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.complete = False
        # The answer other than 200 that stopped the walk, if one did.
        self.refused: httpx.Response | None = None
        # Pages answered 200 (the page checks were made on them).
        self.pages_read = 0
        # Where a 429 still there after the client's waits stopped the walk, if one did: the
        # checks that need the whole list were not made.
        self.rate_limited: str | None = None


def walk(
    ctx: RunContext,
    operation: Operation,
    path: str,
    limit: int,
    params: dict[str, str] | None = None,
    *,
    report: bool = True,
) -> _Walk:
    result = _Walk()
    seen_keys: dict[str, int] = {}
    seen_cursors: set[str] = set()
    cursor: str | None = None
    for page_number in range(1, ctx.options.max_pages + 1):
        if ctx.time_left() <= 0:
            raise BudgetSpent(
                f"{operation.id}: the time budget was spent on page {page_number} of a walk "
                f"with limit {limit}"
            )
        query = {**(params or {}), "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = ctx.client.request(operation.id, "GET", path, params=query)
        if response.status_code == 429:  # still, after the client's waits: not the list's fault
            result.rate_limited = f"page {page_number} with limit {limit}"
            ctx.notes.append(
                f"{operation.id}: page {page_number} still answered 429 after "
                f"{MAX_429_RETRIES} waits; the walk stopped there"
            )
            return result
        if response.status_code != 200:
            result.refused = response
            asked = ", ".join(
                [f"limit {limit}"]
                + (["the cursor of the page before"] if cursor else [])
                + [f"{name}={value}" for name, value in (params or {}).items()]
            )
            message = (
                f"page {page_number} ({asked}) answered {response.status_code}; "
                "the walk stopped there"
            )
            if report:
                ctx.fail("pagination/page-answered", operation.id, message, response)
            else:  # the caller judges (updated_since), or only notes it (the peer's lists)
                ctx.notes.append(f"{operation.id}: {message}")
            return result
        result.pages_read += 1
        try:
            body = response.json()
        except ValueError:
            body = None
        items = body.get("data") if isinstance(body, dict) else None
        page = body.get("page") if isinstance(body, dict) else None
        if report:
            # A page that is not JSON, or not a list page, fails here with the page as evidence.
            _check_page_schema(ctx, operation, response)
        if not (
            isinstance(items, list)
            and isinstance(page, dict)
            and all(isinstance(item, dict) for item in items)
        ):
            ctx.notes.append(
                f"{operation.id}: page {page_number} has no data array of objects and page "
                "object; walk stopped"
            )
            return result
        for item in items:
            key = record_key(ctx, operation, item)
            if key in seen_keys and report:
                ctx.fail(
                    "pagination/repeated-record",
                    operation.id,
                    f"record {key} on page {page_number} was already on page {seen_keys[key]} "
                    f"(limit {limit})",
                    response,
                )
            seen_keys.setdefault(key, page_number)
            result.items.append(item)
        next_cursor = page.get("next_cursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            # The page's schema check above reports it; there is no cursor to follow.
            ctx.notes.append(
                f"{operation.id}: page {page_number}'s next_cursor is {json_kind(next_cursor)}, "
                "not a string; walk stopped"
            )
            return result
        if report and bool(page.get("has_more")) != (next_cursor is not None):
            ctx.fail(
                "pagination/has-more",
                operation.id,
                f"page {page_number}: has_more is {page.get('has_more')} but next_cursor is "
                f"{'null' if next_cursor is None else 'set'}",
                response,
            )
        if next_cursor is None:
            result.complete = True
            return result
        if next_cursor in seen_cursors or next_cursor == cursor:
            if report:
                ctx.fail(
                    "pagination/cursor-loop",
                    operation.id,
                    f"page {page_number} hands out a cursor already used; paging never ends",
                    response,
                )
            else:
                ctx.notes.append(
                    f"{operation.id}: page {page_number} hands out a cursor already used; "
                    "walk stopped"
                )
            return result
        seen_cursors.add(next_cursor)
        cursor = next_cursor
    if report:
        # A national registry's list is longer than a walk may be; one that never ends looks the
        # same from here: a warning, which does not fail the run (a repeated cursor does).
        ctx.fail(
            "pagination/cursor-loop",
            operation.id,
            f"the list did not end within {ctx.options.max_pages} pages of {limit} "
            f"({len(result.items)} records): longer than a walk may be, or never ending; "
            "raise --max-pages to walk further",
            severity=Severity.WARNING,
        )
    return result


def _check_page_schema(ctx: RunContext, operation: Operation, response: httpx.Response) -> None:
    """Every page read is also checked against the contract (cheap: compiled validators)."""
    ctx.ok("contract/response_schema_conformance", operation.id)
    problems = ctx.contract.check_response(operation, response)
    if problems:
        ctx.fail(
            "contract/response_schema_conformance",
            operation.id,
            "a page does not match the documented schema: " + "; ".join(problems[:3]),
            response,
        )


# Checked on every page a walk reads: recorded when it read one.
PAGE_RULES = ("repeated-record", "cursor-loop", "has-more", "page-answered")


def check_pagination(ctx: RunContext) -> None:
    """Walk every paged list twice (largest and a small limit); keep the records for later.
    Only the checks made are recorded: `PartlyRun` names the lists a lasting 429 cut short."""
    cut: list[str] = []
    for operation in ctx.operations():
        if not operation.is_paged_list:
            continue
        path = fill_path(ctx, operation)
        if path is None:
            ctx.notes.append(f"{operation.id}: not paged (no record to put in its path yet)")
            continue
        if operation.path_params:
            _record_walk(ctx, operation, walk(ctx, operation, path, SUB_LIST_LIMIT), cut)
            continue
        _check_list(ctx, operation, path, cut)
    if cut:
        raise PartlyRun(
            f"still answered 429 after {MAX_429_RETRIES} waits: "
            + "; ".join(cut)
            + "; the checks of what was not read were not made: run again when the provider "
            "is less busy, or with a lower --rate-limit"
        )


def _check_list(ctx: RunContext, operation: Operation, path: str, cut: list[str]) -> None:
    """A top-level list: walked whole at its largest limit and at a small one, then
    `updated_since`; what a lasting 429 left unchecked is added to `cut`."""
    full = walk(ctx, operation, path, max_limit(operation))
    ctx.records[operation.id] = full.items
    _remember_samples(ctx, full.items)
    _record_walk(ctx, operation, full, cut, "lost-record and updated-since not checked")
    if not full.complete:
        return  # the finding or note that stopped the walk says why
    if ctx.time_left() <= 0:
        raise BudgetSpent(
            f"{operation.id}: the time budget was spent before the walk with a small limit; "
            "lost-record and updated-since not checked"
        )
    pages = max(1, min(SMALL_WALK_PAGES, ctx.options.max_pages - 1))
    small_limit = max(2, min(max_limit(operation) // 2, math.ceil(len(full.items) / pages)))
    small = walk(ctx, operation, path, small_limit)
    _record_walk(ctx, operation, small, cut, "lost-record not checked")
    if small.complete:
        _compare_walks(ctx, operation, full, small, small_limit)
    if operation.query_param("updated_since") is not None:
        not_judged = check_updated_since(ctx, operation, path, full.items)
        if not_judged is not None:
            cut.append(not_judged)


def _record_walk(
    ctx: RunContext, operation: Operation, walked: _Walk, cut: list[str], unchecked: str = ""
) -> None:
    """The page checks as made when the walk read a page; a lasting 429 goes into `cut`, with
    what `unchecked` says it leaves out."""
    if walked.pages_read:
        for rule in PAGE_RULES:
            ctx.ok(f"pagination/{rule}", operation.id)
    if walked.rate_limited is not None:
        cut.append(
            f"{operation.id} {walked.rate_limited}" + (f" ({unchecked})" if unchecked else "")
        )


def _compare_walks(
    ctx: RunContext, operation: Operation, full: _Walk, small: _Walk, small_limit: int
) -> None:
    ctx.ok("pagination/lost-record", operation.id)
    big_keys = {record_key(ctx, operation, item) for item in full.items}
    small_keys = {record_key(ctx, operation, item) for item in small.items}
    lost = sorted(big_keys - small_keys)
    if lost:
        ctx.fail(
            "pagination/lost-record",
            operation.id,
            f"{len(lost)} of {len(big_keys)} records seen with limit "
            f"{max_limit(operation)} are missing when paging with limit {small_limit} "
            f"(e.g. {lost[0]})",
        )


def _remember_samples(ctx: RunContext, items: list[dict[str, Any]]) -> None:
    for item in items[:1]:
        for name in ("str_number", "worker_id", "facility_code"):
            if isinstance(item.get(name), str):
                ctx.samples.setdefault(name, item[name])


# An RFC 3339 date-time (§5.6): the fraction kept whole, the offset required.
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _instant(value: Any) -> Fraction | None:
    """An RFC 3339 timestamp's instant, exactly: seconds since the epoch with the whole
    fraction (the contracts allow nine digits; a datetime keeps six, and two instants 100 ns
    apart would be equal). None for anything else, a time without an offset included (it
    cannot be ordered against the others; the schema check reports it)."""
    match = _RFC3339.fullmatch(str(value))
    if match is None:
        return None
    offset = match["offset"].upper().replace("Z", "+00:00")
    try:
        whole = dt.datetime.fromisoformat(f"{match['date']}T{match['time']}{offset}")
    except ValueError:  # no such date or time (month 13, second 60)
        return None
    since_epoch = whole - _EPOCH
    seconds = since_epoch.days * 86_400 + since_epoch.seconds
    digits = match["fraction"] or "0"
    return seconds + Fraction(int(digits), 10 ** len(digits))


def check_updated_since(
    ctx: RunContext, operation: Operation, path: str, items: list[dict[str, Any]]
) -> str | None:
    """`updated_since` at the median `updated_at` of `items`: exactly the later records. Returns
    why it could not be judged (a lasting 429), None when it was (or there was nothing to test)."""
    stamped = [
        (when, item) for item in items if (when := _instant(item.get("updated_at"))) is not None
    ]
    if not stamped:
        ctx.notes.append(f"{operation.id}: no updated_at values to test updated_since with")
        return None
    ordered = sorted({when for when, _ in stamped})
    pivot = ordered[len(ordered) // 2]
    since = next(str(item["updated_at"]) for when, item in stamped if when == pivot)
    expected = {record_key(ctx, operation, item) for when, item in stamped if when > pivot}
    noted = len(ctx.notes)
    got = walk(ctx, operation, path, max_limit(operation), {"updated_since": since}, report=False)
    early = [
        item
        for item in got.items
        if (when := _instant(item.get("updated_at"))) is not None and when <= pivot
    ]
    got_keys = {record_key(ctx, operation, item) for item in got.items}
    missing = expected - got_keys
    if got.refused is not None:
        ctx.fail(
            "pagination/updated-since",
            operation.id,
            f"updated_since={since} was answered {got.refused.status_code}",
            got.refused,
        )
    elif early:
        ctx.fail(
            "pagination/updated-since",
            operation.id,
            f"updated_since={since} returned {len(early)} record(s) not changed after it "
            f"(e.g. one updated {early[0].get('updated_at')})",
        )
    elif got.rate_limited is not None:
        return f"{operation.id} {got.rate_limited} of the updated_since walk (not checked)"
    elif not got.complete:
        # The whole list was walked to its end; the same list from a point in time was not
        # (a page that is not a list page, a bad or repeated cursor, or no end in sight).
        why = "; ".join(note.split(": ", 1)[-1] for note in ctx.notes[noted:])
        ctx.fail(
            "pagination/updated-since",
            operation.id,
            f"the walk with updated_since={since} did not reach the list's end "
            f"({why or f'more than {ctx.options.max_pages} pages'}), though the whole list "
            "did",
        )
    elif missing:
        ctx.fail(
            "pagination/updated-since",
            operation.id,
            f"updated_since={since} left out {len(missing)} of {len(expected)} record(s) "
            "changed after it",
        )
    ctx.ok("pagination/updated-since", operation.id)
    return None


def _probe_body(operation: Operation) -> dict[str, Any] | None:
    # An empty JSON object: refused by a correct provider for lack of credentials, and by a
    # broken one as invalid input, so an auth probe never creates anything.
    return {} if operation.request_body is not None else None


def check_credentials(ctx: RunContext) -> None:
    """Every secured operation refuses a request with no credentials and with wrong ones."""
    for operation in ctx.operations():
        if not operation.secured:
            continue
        path = fill_path(ctx, operation) or fill_path(ctx, operation, absent=True)
        if path is None:
            ctx.notes.append(f"{operation.id}: no value for its path; credentials not probed")
            continue
        for mode, rule in (
            ("none", "auth/missing-credentials"),
            ("wrong", "auth/wrong-credentials"),
        ):
            response = ctx.client.request(
                operation.id, operation.method, path, credentials=mode, json=_probe_body(operation)
            )
            ctx.ok(rule, operation.id)
            if response.status_code != 401:
                what = "no credentials" if mode == "none" else "credentials it never issued"
                ctx.fail(
                    rule,
                    operation.id,
                    f"answered {response.status_code} to a request with {what} (expected 401)",
                    response,
                )
            else:
                check_error_body(ctx, operation, response)


def check_error_body(ctx: RunContext, operation: Operation, response: httpx.Response) -> None:
    ctx.ok("errors/error-body", operation.id)
    problems = ctx.contract.check_response(operation, response)
    if problems:
        ctx.fail(
            "errors/error-body",
            operation.id,
            f"the {response.status_code} answer is not the documented error: "
            + "; ".join(problems[:3]),
            response,
        )


def check_reads(ctx: RunContext) -> None:
    """Each read of a record that exists answers 200 with the documented document."""
    for operation in ctx.operations():
        if operation.method != "GET" or not operation.path_params:
            continue
        path = fill_path(ctx, operation)
        if path is None or "subscription_id" in operation.path_params:
            continue
        params = {"limit": "2"} if operation.query_param("limit") is not None else {}
        response = ctx.client.request(operation.id, "GET", path, params=params)
        ctx.ok("contract/response_schema_conformance", operation.id)
        ctx.ok("contract/status_code_conformance", operation.id)
        if response.status_code != 200:
            ctx.fail(
                "contract/status_code_conformance",
                operation.id,
                f"reading a record listed by the provider itself answered {response.status_code}",
                response,
            )
            continue
        problems = ctx.contract.check_response(operation, response)
        if problems:
            ctx.fail(
                "contract/response_schema_conformance",
                operation.id,
                "the answer does not match the documented schema: " + "; ".join(problems[:3]),
                response,
            )


@dataclass(frozen=True, slots=True)
class _ErrorProbe:
    """A request the contract documents one error status for (`what` names it in findings)."""

    what: str
    path: str
    expected: int
    request: dict[str, Any]


# Values that surely provoke the documented error: a cursor no server issued, a 16-digit NIK
# with an unknown province (99), which cannot exist.
UNISSUED_CURSOR = "AAAAAAAA"
IMPOSSIBLE_NIK = "9900000000000000"


def _error_probes(ctx: RunContext, operation: Operation) -> list[_ErrorProbe]:
    """The errors the contract documents for the operation, each with the request provoking it:
    an unknown record 404, a cursor the server did not issue 400, an impossible NIK 422."""
    probes: list[_ErrorProbe] = []
    if operation.path_params and "404" in operation.responses:
        absent = fill_path(ctx, operation, absent=True)
        if absent is not None:
            what = "a record that does not exist"
            probes.append(_ErrorProbe(what, absent, 404, {"json": _probe_body(operation)}))
    if operation.is_paged_list and "400" in operation.responses:
        path = fill_path(ctx, operation)
        if path is not None:
            what = f"a cursor this server never issued (cursor={UNISSUED_CURSOR})"
            probes.append(_ErrorProbe(what, path, 400, {"params": {"cursor": UNISSUED_CURSOR}}))
    if operation.id.startswith("lookup") and "422" in operation.responses:
        what = "a 16-digit NIK that cannot exist (province 99)"
        probes.append(_ErrorProbe(what, operation.path, 422, {"json": {"nik": IMPOSSIBLE_NIK}}))
    return probes


def check_error_responses(ctx: RunContext) -> None:
    """Provoke the documented errors (unknown record, unissued cursor, impossible NIK): each
    must get the status the contract documents for it, with the documented error body.
    `PartlyRun` when a probe still got 429 after the waits (it could not be judged)."""
    not_judged: list[str] = []
    for operation in ctx.operations():
        if operation.method != "GET" and operation.request_body is None:
            continue  # a DELETE of an unknown record would still be a change request
        for probe in _error_probes(ctx, operation):
            response = ctx.client.request(
                operation.id, operation.method, probe.path, **probe.request
            )
            if response.status_code == 429:  # still, after the client's waits
                not_judged.append(f"{operation.id} ({probe.what})")
                continue
            _judge_error_probe(ctx, operation, probe, response)
    if not_judged:
        raise PartlyRun(
            f"still answered 429 after {MAX_429_RETRIES} waits, so not judged: "
            + "; ".join(not_judged)
            + "; run again with a lower --rate-limit"
        )


def _judge_error_probe(
    ctx: RunContext, operation: Operation, probe: _ErrorProbe, response: httpx.Response
) -> None:
    ctx.ok("errors/status", operation.id)
    if response.status_code != probe.expected:
        ctx.fail(
            "errors/status",
            operation.id,
            f"{probe.what} was answered {response.status_code}; the contract documents "
            f"{probe.expected} for it",
            response,
        )
    if response.status_code >= 400:
        check_error_body(ctx, operation, response)


def on_too_many_requests(ctx: RunContext) -> Any:
    """The client's 429 hook: every 429 needs a valid Retry-After and the body documented."""

    def handle(operation_id: str, response: httpx.Response, delay: float | None) -> None:
        ctx.stats["429s"] = ctx.stats.get("429s", 0) + 1
        ctx.ok("rate-limit/retry-after", operation_id)
        value = response.headers.get("retry-after")
        if delay is None:
            ctx.fail(
                "rate-limit/retry-after",
                operation_id,
                "429 without Retry-After"
                if value is None
                else f"429 with an invalid Retry-After {value!r}",
                response,
            )
        try:
            operation = ctx.contract.operation(operation_id)
        except StopIteration:
            return
        check_error_body(ctx, operation, response)

    return handle


def check_token_endpoint(ctx: RunContext) -> None:
    """SATUSEHAT-style client credentials: form body, grant_type in the query, lifetime, refusal."""
    auth = ctx.client.auth
    if not isinstance(auth, ClientCredentialsAuth):
        return
    operation = next(
        (
            op
            for op in ctx.contract.operations
            if op.path == auth.token_path and op.method == "POST"
        ),
        None,
    )
    if operation is None or not ctx.selected(operation):
        return
    http = ctx.client.http
    form = {"client_id": auth.client_id, "client_secret": auth.client_secret}
    grant = {"grant_type": "client_credentials"}

    good = send(http, "POST", auth.token_path, params=grant, data=form)
    ctx.ok("token/client-credentials", operation.id)
    ctx.ok("token/lifetime", operation.id)
    problems = ctx.contract.check_response(operation, good)
    if good.status_code != 200 or problems:
        ctx.fail(
            "token/client-credentials",
            operation.id,
            f"a form-encoded request with grant_type in the query answered {good.status_code}"
            + (": " + "; ".join(problems[:3]) if problems else ""),
            good,
        )
    else:
        _check_lifetime(ctx, operation, good)

    wrong = send(
        http, "POST", auth.token_path, params=grant, data={**form, "client_secret": "wrong-secret"}
    )
    ctx.ok("token/wrong-secret", operation.id)
    if wrong.status_code != 401:
        ctx.fail(
            "token/wrong-secret",
            operation.id,
            f"a wrong client secret was answered {wrong.status_code} (expected 401)",
            wrong,
        )
    else:
        check_error_body(ctx, operation, wrong)

    no_grant = send(http, "POST", auth.token_path, data=form)
    ctx.ok("token/grant-type", operation.id)
    if no_grant.status_code != 400:
        ctx.fail(
            "token/grant-type",
            operation.id,
            f"a request without grant_type in the query was answered {no_grant.status_code} "
            "(expected 400)",
            no_grant,
        )


def _check_lifetime(ctx: RunContext, operation: Operation, response: httpx.Response) -> None:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # Possible where the contract given to --spec documents no schema for the token.
        ctx.fail(
            "token/lifetime",
            operation.id,
            "the token answer is not a JSON object: no expires_in to judge",
            response,
        )
        return
    expires = str(body.get("expires_in", ""))
    if not expires.isdigit() or int(expires) < 60:
        ctx.fail(
            "token/lifetime",
            operation.id,
            f"expires_in {expires!r} is not a whole number of seconds of at least 60",
            response,
        )
        return
    ctx.stats["token_lifetime_s"] = int(expires)
    probe = next((op for op in ctx.contract.operations if op.is_paged_list), None)
    if probe is None or probe.path_params:
        return
    token = str(body.get("access_token", ""))
    used = send(
        ctx.client.http,
        "GET",
        probe.path,
        params={"limit": "1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    if used.status_code != 200:
        ctx.fail(
            "token/lifetime",
            operation.id,
            f"a token just issued (expires_in {expires}) was refused by {probe.id} "
            f"with {used.status_code}",
            Exchange.from_response(used),
        )
