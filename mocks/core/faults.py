"""Reproducible fault injection on a mock's public API: rules (`FaultRule`), the seeded decision
per request (`FaultInjector.decide`) and the ASGI middleware that acts it out on the wire."""

from __future__ import annotations

import asyncio
import builtins
import difflib
import hashlib
import http
import logging
import math
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mocks.core.listener import ConnectionHandle, connection_handle
from mocks.core.store import RecordConflict

log = logging.getLogger("hf_mock.faults")

FaultKind = Literal["error", "latency", "timeout", "down", "rate_limit", "malformed", "truncated"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")

MAX_DELAY_MS = 600_000
MAX_RETRY_AFTER_S = 86_400
MAX_TIMES = 1_000_000
MAX_LIMIT = 1_000_000
MAX_WINDOW_S = 86_400
MAX_SEED = 2**32 - 1
# Rules kept at once: each public request is matched against every one, under a lock.
MAX_FAULT_RULES = 1_000
DEFAULT_ERROR_STATUS = 503
DEFAULT_TIMEOUT_MS = 30_000
# The public specs document Retry-After on 429 and 503, so injected ones always carry it.
RETRY_AFTER_STATUSES = (429, 503)
DEFAULT_RETRY_AFTER_S = 1

_RULE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPERATION_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_COMMON_FIELDS = ("route", "kind", "probability", "times", "seed")
_ASSIGNED_FIELDS = ("id", "matched", "applied")  # the mock assigns them; values sent are ignored
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "error": ("status", "retry_after_s"),
    "latency": ("latency_ms", "latency_min_ms", "latency_max_ms"),
    "timeout": ("timeout_ms",),
    "down": ("duration_ms",),
    "rate_limit": ("limit", "window_s", "retry_after_s"),
    "malformed": (),
    "truncated": (),
}
_INT_FIELDS = frozenset(
    {
        "status",
        "retry_after_s",
        "latency_ms",
        "latency_min_ms",
        "latency_max_ms",
        "timeout_ms",
        "duration_ms",
        "limit",
        "window_s",
        "times",
        "seed",
    }
)
_ROUTE_FORMS = "'*', an operationId such as getRegistration, or 'METHOD /path/template'"


class FaultRulesFull(RecordConflict):
    """The mock keeps `MAX_FAULT_RULES` rules (409): every public request looks through them."""


class FaultSpecError(ValueError):
    """A fault rule or profile that cannot be used; the message says which field and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """What one request gets from the rule that fired for it."""

    rule_id: str
    kind: FaultKind
    status: int | None = None  # error and rate_limit
    retry_after_s: int | None = None  # sent as Retry-After when not None
    delay_s: float = 0.0  # latency: before serving; timeout: before closing
    duration_s: float = 0.0  # down: how long the listener stays closed


@dataclass(eq=False)
class FaultRule:
    """One rule; build it with `from_dict` (validated) or directly (validated the same way).

    `id` is assigned by `FaultInjector.add` (`f-1`, `f-2`, ...), so with the same mock seed and
    the same rules the derived random seeds, and so the faults, are the same on every run.
    """

    route: str
    kind: FaultKind
    probability: float = 1.0
    status: int = DEFAULT_ERROR_STATUS
    retry_after_s: int | None = None
    latency_ms: int | None = None
    latency_min_ms: int | None = None
    latency_max_ms: int | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    duration_ms: int | None = None
    limit: int | None = None
    window_s: int | None = None
    times: int | None = None
    seed: int | None = None
    id: str = ""
    matched: int = 0
    applied: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(0), init=False, repr=False)
    _window_start: float | None = field(default=None, init=False, repr=False)
    _window_used: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.route = _normalise_route(self.route)
        if self.kind not in FAULT_KINDS:
            raise FaultSpecError(f"kind {self.kind!r} is not one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise FaultSpecError(f"probability must be between 0 and 1, got {self.probability}")
        self.probability = float(self.probability)
        _check_range("times", self.times, 1, MAX_TIMES)
        _check_range("seed", self.seed, 0, MAX_SEED)
        if self.id and not _RULE_ID.match(self.id):
            raise FaultSpecError(f"id {self.id!r} must match {_RULE_ID.pattern}")
        checks: dict[str, Callable[[], None]] = {
            "error": self._check_error,
            "latency": self._check_latency,
            "timeout": self._check_timeout,
            "down": self._check_down,
            "rate_limit": self._check_rate_limit,
        }
        if self.kind in checks:
            checks[self.kind]()

    def _check_error(self) -> None:
        if not 400 <= self.status <= 599:
            raise FaultSpecError(
                f"status must be between 400 and 599 for kind 'error', got {self.status}"
            )
        if self.retry_after_s is not None and self.status not in RETRY_AFTER_STATUSES:
            raise FaultSpecError(
                f"retry_after_s applies only to status 429 or 503, not {self.status}"
            )
        _check_range("retry_after_s", self.retry_after_s, 0, MAX_RETRY_AFTER_S)

    def _check_latency(self) -> None:
        fixed, low, high = self.latency_ms, self.latency_min_ms, self.latency_max_ms
        if fixed is not None and (low is not None or high is not None):
            raise FaultSpecError(
                "kind 'latency' takes latency_ms or latency_min_ms and latency_max_ms, not both"
            )
        if fixed is None and (low is None or high is None):
            raise FaultSpecError(
                "kind 'latency' needs latency_ms or latency_min_ms and latency_max_ms"
            )
        for name in ("latency_ms", "latency_min_ms", "latency_max_ms"):
            _check_range(name, getattr(self, name), 0, MAX_DELAY_MS)
        if low is not None and high is not None and low > high:
            raise FaultSpecError(
                f"latency_min_ms ({low}) must not be greater than latency_max_ms ({high})"
            )

    def _check_timeout(self) -> None:
        _check_range("timeout_ms", self.timeout_ms, 1, MAX_DELAY_MS)

    def _check_down(self) -> None:
        if self.duration_ms is None:
            raise FaultSpecError(f"kind 'down' needs duration_ms (1 to {MAX_DELAY_MS})")
        _check_range("duration_ms", self.duration_ms, 1, MAX_DELAY_MS)

    def _check_rate_limit(self) -> None:
        if self.limit is None or self.window_s is None:
            raise FaultSpecError("kind 'rate_limit' needs limit and window_s")
        _check_range("limit", self.limit, 1, MAX_LIMIT)
        _check_range("window_s", self.window_s, 1, MAX_WINDOW_S)
        _check_range("retry_after_s", self.retry_after_s, 0, MAX_RETRY_AFTER_S)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        index: int | None = None,
        routes: RouteTable | None = None,
    ) -> FaultRule:
        """A validated rule from its JSON/YAML form.

        `index` (position in a profile's `faults` list, from 0) prefixes messages ("fault 2:
        ..."); with `routes`, a route the API does not have is refused too.
        """
        try:
            rule = cls(**_parse_fields(data))
            if routes is not None:
                routes.check_route(rule.route)
        except FaultSpecError as exc:
            where = f"fault {index}: " if index is not None else ""
            raise FaultSpecError(where + exc.message) from None
        return rule

    def to_dict(self) -> dict[str, Any]:
        """The admin API's `FaultRule` (fields that do not apply, or are unset, left out)."""
        out: dict[str, Any] = {"id": self.id} if self.id else {}
        out.update(route=self.route, kind=self.kind, probability=self.probability)
        for name in _KIND_FIELDS[self.kind]:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.times is not None:
            out["times"] = self.times
        if self.seed is not None:
            out["seed"] = self.seed
        out.update(matched=self.matched, applied=self.applied)
        return out

    def matches(self, operation_id: str | None, method: str, template: str) -> bool:
        return (
            self.route == "*"
            or (operation_id is not None and self.route == operation_id)
            or self.route == f"{method.upper()} {template}"
        )

    def reseed(self, seed: int) -> None:
        """Start this rule's random sequence and rate window afresh."""
        self._rng.seed(seed)
        self._window_start = None
        self._window_used = 0

    def draw(self, now: float) -> Decision | None:
        """The fault a matching request gets from this rule, or None (probability or limit).

        The probability draw comes first for every kind, then (latency range) a second draw
        from the same generator, so a seed fixes the whole sequence.
        """
        if self._rng.random() >= self.probability:
            return None
        if self.kind == "error":
            return Decision(
                self.id, "error", status=self.status, retry_after_s=self._retry_after(self.status)
            )
        if self.kind == "latency":
            if self.latency_ms is not None:
                delay_ms = self.latency_ms
            else:
                delay_ms = self._rng.randint(
                    cast(int, self.latency_min_ms), cast(int, self.latency_max_ms)
                )
            return Decision(self.id, "latency", delay_s=delay_ms / 1000)
        if self.kind == "timeout":
            return Decision(self.id, "timeout", delay_s=self.timeout_ms / 1000)
        if self.kind == "down":
            return Decision(self.id, "down", duration_s=cast(int, self.duration_ms) / 1000)
        if self.kind == "rate_limit":
            return self._rate_limit(now)
        return Decision(self.id, self.kind)

    def _retry_after(self, status: int) -> int | None:
        if status not in RETRY_AFTER_STATUSES:
            return None
        return self.retry_after_s if self.retry_after_s is not None else DEFAULT_RETRY_AFTER_S

    def _rate_limit(self, now: float) -> Decision | None:
        # Fixed window that opens with the first request after the previous one ended, so a
        # test's first request always starts a full window.
        limit, window = cast(int, self.limit), cast(int, self.window_s)
        if self._window_start is None or now >= self._window_start + window:
            self._window_start, self._window_used = now, 0
        if self._window_used < limit:
            self._window_used += 1
            return None
        if self.retry_after_s is not None:
            retry_after = self.retry_after_s
        else:
            retry_after = max(1, math.ceil(self._window_start + window - now))
        return Decision(self.id, "rate_limit", status=429, retry_after_s=retry_after)


def _check_range(name: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise FaultSpecError(f"{name} must be between {low} and {high}, got {value}")


def _normalise_route(route: str) -> str:
    text = " ".join(route.split())
    if text == "*":
        return text
    if " " in text:
        method, _, path = text.partition(" ")
        method = method.upper()
        if method in HTTP_METHODS and path.startswith("/") and " " not in path:
            return f"{method} {path}"
    elif _OPERATION_ID.match(text):
        return text
    raise FaultSpecError(f"route {route!r} is not {_ROUTE_FORMS}")


def _parse_fields(data: object) -> dict[str, Any]:
    """Type-check the raw fields; value ranges and combinations are `FaultRule`'s job."""
    if not isinstance(data, Mapping):
        raise FaultSpecError(f"expected a mapping of fields, got {type(data).__name__}")
    kind = data.get("kind")
    if kind is None:
        raise FaultSpecError(f"kind is required (one of {', '.join(FAULT_KINDS)})")
    if not isinstance(kind, str) or kind not in FAULT_KINDS:
        raise FaultSpecError(f"kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    allowed = (*_COMMON_FIELDS, *_KIND_FIELDS[kind])
    for name in data:
        if name in allowed or name in _ASSIGNED_FIELDS:
            continue
        if any(name in fields for fields in _KIND_FIELDS.values()):
            own = ", ".join(_KIND_FIELDS[kind]) or "no fields of its own"
            raise FaultSpecError(f"field {name!r} does not apply to kind {kind!r} (it takes {own})")
        close = difflib.get_close_matches(str(name), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FaultSpecError(f"unknown field {name!r}{hint}")
    route = data.get("route")
    if route is None:
        raise FaultSpecError(f"route is required: {_ROUTE_FORMS}")
    if not isinstance(route, str):
        raise FaultSpecError(f"route must be a string, got {route!r}")
    fields: dict[str, Any] = {"route": route, "kind": kind}
    probability = data.get("probability")
    if probability is not None:
        if isinstance(probability, bool) or not isinstance(probability, int | float):
            raise FaultSpecError(
                f"probability must be a number between 0 and 1, got {probability!r}"
            )
        fields["probability"] = float(probability)
    for name in allowed:
        value = data.get(name)
        if name not in _INT_FIELDS or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise FaultSpecError(f"{name} must be an integer, got {value!r}")
        fields[name] = value
    return fields


def load_fault_profile(path: str | Path, routes: RouteTable | None = None) -> list[FaultRule]:
    """Rules from a YAML profile `{faults: [rule, ...]}`; errors name the file and the rule."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FaultSpecError(f"{path}: cannot read the fault profile: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FaultSpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, Mapping) or "faults" not in document:
        raise FaultSpecError(f"{path}: expected a mapping with a 'faults' list")
    extra = sorted(str(key) for key in document if key != "faults")
    if extra:
        raise FaultSpecError(f"{path}: unknown top-level key {extra[0]!r} (only 'faults')")
    entries = document["faults"] or []
    if not isinstance(entries, list):
        raise FaultSpecError(f"{path}: 'faults' must be a list of rules")
    if len(entries) > MAX_FAULT_RULES:  # refused here, before the data set is generated
        raise FaultSpecError(
            f"{path}: {len(entries):,} rules; the mock keeps at most {MAX_FAULT_RULES:,}"
        )
    rules: list[FaultRule] = []
    for index, entry in enumerate(entries):
        try:
            rules.append(FaultRule.from_dict(entry, index=index, routes=routes))
        except FaultSpecError as exc:
            raise FaultSpecError(f"{path}: {exc.message}") from None
    return rules


# -- routes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    operation_id: str | None
    pattern: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def compile(cls, method: str, template: str, operation_id: str | None) -> Route:
        parts = re.split(r"(\{[^{}/]+\})", template)
        # A path parameter is one non-empty segment of the raw (still percent-encoded) path,
        # so `%2F` or `%0A` inside a value stays inside the parameter.
        regex = "".join(
            "[^/]+" if part.startswith("{") and part.endswith("}") else re.escape(part)
            for part in parts
        )
        return cls(method.upper(), template, operation_id, re.compile(regex))

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def parameter_count(self) -> int:
        return self.template.count("{")


def _alternation(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regex trying `patterns` (which have no groups) in order, each as a group: the
    matched alternative is known by its group number."""
    listed = list(patterns)
    compiled = re.compile("|".join(f"({p})" for p in listed))
    if compiled.groups != len(listed):
        raise ValueError("a route pattern has a group of its own; use (?:...)")
    return compiled


class RouteTable:
    """Matches a request's method and raw path to an operation of one OpenAPI spec.

    Paths the spec does not declare (the admin API, `/openapi.json`, `/ui`) match nothing and
    so are never faulted.
    """

    def __init__(self, routes: Iterable[Route]) -> None:
        # OpenAPI: a concrete path wins over a templated one (`/lookup` over `/{str_number}`).
        ordered = sorted(routes, key=lambda r: (r.parameter_count, -len(r.template)))
        self._routes = tuple(ordered)
        self._by_method: dict[str, list[Route]] = {}
        for route in ordered:
            self._by_method.setdefault(route.method, []).append(route)
        self._operation_ids = frozenset(r.operation_id for r in ordered if r.operation_id)
        self._keys = frozenset(r.key for r in ordered)
        # One alternation per lookup, tried in the order above (the first alternative that
        # matches the whole path wins, as a scan would): two regex calls per request instead
        # of a scan of every route (~8 % of a GET by id under load).
        templates = list(dict.fromkeys(r.template for r in ordered))
        patterns = {r.template: r.pattern.pattern for r in ordered}
        self._templates = _alternation(patterns[t] for t in templates)
        self._template_list = templates
        self._allowed = {
            t: sorted(
                (methods := {r.method for r in ordered if r.template == t})
                | ({"HEAD"} if "GET" in methods else set())
            )
            for t in templates
        }
        self._by_method_pattern = {
            method: _alternation(r.pattern.pattern for r in candidates)
            for method, candidates in self._by_method.items()
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], base_path: str = "") -> RouteTable:
        """Routes of every operation under `paths` (callbacks are not routes of this API)."""
        routes: list[Route] = []
        for template, item in (spec.get("paths") or {}).items():
            if not isinstance(item, Mapping):
                continue
            for method in HTTP_METHODS:
                operation = item.get(method.lower())
                if isinstance(operation, Mapping):
                    operation_id = operation.get("operationId")
                    routes.append(
                        Route.compile(
                            method,
                            base_path.rstrip("/") + str(template),
                            operation_id if isinstance(operation_id, str) else None,
                        )
                    )
        return cls(routes)

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes

    def allowed_methods(self, path: str) -> list[str]:
        """Methods some operation declares for `path` (what a 405's `Allow` header lists)."""
        # Routes are ordered concrete-first, so the first match is the path's own template.
        found = self._templates.fullmatch(path)
        if found is None or found.lastindex is None:
            return []
        return list(self._allowed[self._template_list[found.lastindex - 1]])

    def match(self, method: str, path: str) -> Route | None:
        """The route of `path` (raw, percent-encoded); HEAD falls back to GET like Starlette."""
        method = method.upper()
        pattern = self._by_method_pattern.get(method)
        found = None if pattern is None else pattern.fullmatch(path)
        if found is not None and found.lastindex is not None:
            return self._by_method[method][found.lastindex - 1]
        if method == "HEAD":
            return self.match("GET", path)
        return None

    def check_route(self, route: str) -> None:
        """Raise `FaultSpecError` unless a rule with this (normalised) route can ever match."""
        if route == "*" or route in self._operation_ids or route in self._keys:
            return
        known = sorted(self._operation_ids | self._keys)
        close = difflib.get_close_matches(route, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FaultSpecError(
            f"route {route!r} is not an operationId or 'METHOD /path/template' of this API{hint}"
        )


# -- decisions --------------------------------------------------------------------------------


def derived_seed(global_seed: int, rule_id: str) -> int:
    """The seed of a rule without its own: stable across runs and Python hash seeds."""
    digest = hashlib.sha256(f"{global_seed}:{rule_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class FaultInjector:
    """The rules of one mock and the seeded decision for each request (thread-safe).

    Rules are checked in creation order; the first one whose route matches and whose draw
    fires is applied. `matched` counts requests that reached a rule with a matching route,
    `applied` those that got its fault; a rule with `times` is removed once applied that often.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        routes: RouteTable | None = None,
    ) -> None:
        self.seed = seed
        self._clock = clock
        self._routes = routes
        self._rules: dict[str, FaultRule] = {}
        self._next_id = 1
        self._lock = threading.Lock()
        # Set by whoever owns the listener (`ListenerControl.go_down`); None = no real outage.
        self.on_down: Callable[[float], Awaitable[None]] | None = None

    def bind_routes(self, routes: RouteTable) -> None:
        """Refuse rules for routes the API does not have, from now on and among current ones."""
        with self._lock:
            for rule in self._rules.values():
                try:
                    routes.check_route(rule.route)
                except FaultSpecError as exc:
                    raise FaultSpecError(f"fault {rule.id}: {exc.message}") from None
            self._routes = routes

    def add(self, rule: FaultRule) -> FaultRule:
        """Register `rule` (assigning its id when it has none) and seed its generator."""
        with self._lock:
            if len(self._rules) >= MAX_FAULT_RULES:
                raise FaultRulesFull(
                    f"at most {MAX_FAULT_RULES:,} fault rules are kept (every request looks "
                    "through them); delete some (DELETE /__admin/faults/{id}, or all with "
                    "DELETE /__admin/faults), or give rules `times` so they end"
                )
            if self._routes is not None:
                self._routes.check_route(rule.route)
            if rule.id in self._rules:
                raise FaultSpecError(f"a fault with id {rule.id!r} exists already")
            if not rule.id:
                while f"f-{self._next_id}" in self._rules:
                    self._next_id += 1
                rule.id = f"f-{self._next_id}"
                self._next_id += 1
            rule.reseed(rule.seed if rule.seed is not None else derived_seed(self.seed, rule.id))
            self._rules[rule.id] = rule
            return rule

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            return self._rules.pop(rule_id, None) is not None

    def clear(self) -> None:
        """Remove every rule; ids start again at `f-1` so a fresh run reproduces a fresh run."""
        with self._lock:
            self._rules.clear()
            self._next_id = 1

    def list(self) -> builtins.list[FaultRule]:
        with self._lock:
            return builtins.list(self._rules.values())

    def get(self, rule_id: str) -> FaultRule | None:
        with self._lock:
            return self._rules.get(rule_id)

    def decide(self, operation_id: str | None, method: str, template: str) -> Decision | None:
        """The fault for one request to `method template` (operationId if any), or None."""
        with self._lock:
            now = self._clock()
            for rule in builtins.list(self._rules.values()):
                if not rule.matches(operation_id, method, template):
                    continue
                rule.matched += 1
                decision = rule.draw(now)
                if decision is None:
                    continue
                rule.applied += 1
                if rule.times is not None and rule.applied >= rule.times:
                    del self._rules[rule.id]
                    log.info("fault %s expired after %d applications", rule.id, rule.applied)
                return decision
            return None


# -- the middleware ---------------------------------------------------------------------------

# (path, status, title, detail, headers) -> (body, content type)
ErrorRenderer = Callable[[str, int, str, str, dict[str, str]], tuple[bytes, str]]


class FaultNotSupportedError(RuntimeError):
    """A fault that needs `mocks.core.listener.serve` ran under another server."""


class FaultMiddleware:
    """Pure ASGI middleware acting out `FaultInjector` decisions on the public API's routes.

    `error_renderer(path, status, title, detail, headers)` returns the body and content type of an
    error in the system's own format, so injected errors look like its real ones.
    """

    def __init__(
        self,
        app: ASGIApp,
        injector: FaultInjector,
        route_table: RouteTable,
        error_renderer: ErrorRenderer,
    ) -> None:
        self.app = app
        self.injector = injector
        self.routes = route_table
        self.render = error_renderer
        injector.bind_routes(route_table)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        route = self.routes.match(scope["method"], path)
        decision = (
            None
            if route is None
            else self.injector.decide(route.operation_id, route.method, route.template)
        )
        if decision is None:
            await self.app(scope, receive, send)
            return
        log.info("fault %s (%s) on %s %s", decision.rule_id, decision.kind, scope["method"], path)
        if decision.kind in ("error", "rate_limit"):
            await self._send_error(scope, send, cast(int, decision.status), decision.retry_after_s)
        elif decision.kind == "latency":
            await self._latency(decision, scope, receive, send)
        elif decision.kind == "timeout":
            await self._timeout(decision, scope)
        elif decision.kind == "down":
            await self._down(decision, scope, send)
        elif decision.kind == "malformed":
            await self._malformed(scope, receive, send)
        else:
            await self._truncated(decision, scope, receive, send)

    async def _send_error(
        self, scope: Scope, send: Send, status: int, retry_after_s: int | None
    ) -> None:
        headers = {} if retry_after_s is None else {"Retry-After": str(retry_after_s)}
        title = _status_phrase(status)
        body, content_type = self.render(
            scope["path"], status, title, f"{title} (fault injected by the mock)", dict(headers)
        )
        raw_headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
            *(
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    async def _latency(
        self, decision: Decision, scope: Scope, receive: Receive, send: Send
    ) -> None:
        handle = connection_handle(scope)
        if handle is None:
            await asyncio.sleep(decision.delay_s)
        elif not await handle.stall(decision.delay_s):
            return  # the client (or a shutdown) closed the connection while we waited
        await self.app(scope, receive, send)

    async def _timeout(self, decision: Decision, scope: Scope) -> None:
        handle = _required_handle(scope, "timeout")
        await handle.stall(decision.delay_s)
        await handle.close()

    async def _down(self, decision: Decision, scope: Scope, send: Send) -> None:
        if self.injector.on_down is None:
            log.warning("fault %s: no listener control attached; answering 503", decision.rule_id)
            await self._send_error(scope, send, 503, max(1, math.ceil(decision.duration_s)))
            return
        await self.injector.on_down(decision.duration_s)
        handle = connection_handle(scope)
        if handle is not None:
            await handle.close()  # already dropped with the others; wait until uvicorn knows

    async def _malformed(self, scope: Scope, receive: Receive, send: Send) -> None:
        start, body = await self._buffered_response(scope, receive)
        if start is None:
            return
        headers = list(start.get("headers", []))
        if 200 <= start["status"] < 300 and scope["method"] != "HEAD" and _is_json(headers):
            body = _malformed_json(body)
        await send({**start, "headers": _with_content_length(headers, len(body))})
        await send({"type": "http.response.body", "body": body})

    async def _truncated(
        self, decision: Decision, scope: Scope, receive: Receive, send: Send
    ) -> None:
        start, body = await self._buffered_response(scope, receive)
        if start is None:
            return
        headers = _with_content_length(list(start.get("headers", [])), len(body))
        await send({**start, "headers": headers})
        if scope["method"] == "HEAD" or not body:
            await send({"type": "http.response.body", "body": body})
            return  # nothing to cut
        cut = len(body) // 2
        await send({"type": "http.response.body", "body": body[:cut], "more_body": True})
        log.info(
            "fault %s: sent %d of %d body bytes, closing the connection",
            decision.rule_id,
            cut,
            len(body),
        )
        handle = connection_handle(scope)
        if handle is not None:
            await handle.close()
        # Without a handle the server closes the connection itself (uvicorn logs one line).

    async def _buffered_response(
        self, scope: Scope, receive: Receive
    ) -> tuple[Message | None, bytes]:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        return start, b"".join(chunks)


def _required_handle(scope: Scope, kind: str) -> ConnectionHandle:
    handle = connection_handle(scope)
    if handle is None:
        raise FaultNotSupportedError(
            f"a {kind} fault closes the connection itself: serve the app with "
            "mocks.core.listener.serve (uvicorn with connection handles)"
        )
    return handle


def _status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _is_json(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return False


def _malformed_json(body: bytes) -> bytes:
    # Drop the closing character and end on a comma: the document is cut short mid-value, which
    # every JSON parser (streaming ones included) rejects, unlike trailing garbage.
    return body.rstrip()[:-1] + b","


def _with_content_length(
    headers: Iterable[tuple[bytes, bytes]], length: int
) -> list[tuple[bytes, bytes]]:
    kept = [
        (name, value)
        for name, value in headers
        if name.lower() not in (b"content-length", b"transfer-encoding")
    ]
    return [*kept, (b"content-length", str(length).encode())]
