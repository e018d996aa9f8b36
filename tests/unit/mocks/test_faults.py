"""Fault rules, route matching, seeded decisions and the middleware, without a network."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.types import Message, Receive, Scope, Send

from mocks.core import faults as faults_module
from mocks.core.faults import (
    Decision,
    FaultInjector,
    FaultMiddleware,
    FaultNotSupportedError,
    FaultRule,
    FaultRulesFull,
    FaultSpecError,
    RouteTable,
    load_fault_profile,
)
from openapi_schemas import load_yaml

CONTRACTS = Path(__file__).resolve().parents[3] / "contracts" / "openapi"

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "paths": {
        "/v1/registrations": {"get": {"operationId": "listRegistrations"}},
        "/v1/registrations/lookup": {"post": {"operationId": "lookupRegistrationsByNik"}},
        "/v1/registrations/{str_number}": {
            "parameters": [{"name": "str_number", "in": "path", "required": True}],
            "get": {"operationId": "getRegistration"},
        },
        "/v1/registrations/{str_number}/certification": {
            "get": {"operationId": "getCertificationStatus"}
        },
        "/v1/webhook-subscriptions": {
            "post": {
                "operationId": "createWebhookSubscription",
                "callbacks": {
                    "event": {"{$request.body#/url}": {"post": {"operationId": "deliverEvent"}}}
                },
            }
        },
        "/v1/no-operation-id": {"delete": {"summary": "an operation without an operationId"}},
    },
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def routes() -> RouteTable:
    return RouteTable.from_spec(SPEC)


def decisions(injector: FaultInjector, count: int, route: str = "listRegistrations") -> list[Any]:
    return [injector.decide(route, "GET", "/v1/registrations") for _ in range(count)]


# -- rule validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"route": "*", "kind": "latency"},
            "kind 'latency' needs latency_ms or latency_min_ms and latency_max_ms",
        ),
        (
            {"route": "*", "kind": "latency", "latency_ms": 5, "latency_min_ms": 1},
            "kind 'latency' takes latency_ms or latency_min_ms and latency_max_ms, not both",
        ),
        (
            {"route": "*", "kind": "latency", "latency_min_ms": 900, "latency_max_ms": 200},
            "latency_min_ms (900) must not be greater than latency_max_ms (200)",
        ),
        (
            {"route": "*", "kind": "latency", "latency_ms": 600_001},
            "latency_ms must be between 0 and 600000, got 600001",
        ),
        ({"route": "*", "kind": "down"}, "kind 'down' needs duration_ms (1 to 600000)"),
        (
            {"route": "*", "kind": "down", "duration_ms": 600_001},
            "duration_ms must be between 1 and 600000, got 600001",
        ),
        (
            {"route": "*", "kind": "error", "status": 302},
            "status must be between 400 and 599 for kind 'error', got 302",
        ),
        (
            {"route": "*", "kind": "error", "status": 500, "retry_after_s": 5},
            "retry_after_s applies only to status 429 or 503, not 500",
        ),
        (
            {"route": "*", "kind": "rate_limit", "limit": 3},
            "kind 'rate_limit' needs limit and window_s",
        ),
        (
            {"route": "*", "kind": "timeout", "timeout_ms": 0},
            "timeout_ms must be between 1 and 600000, got 0",
        ),
        (
            {"route": "*", "kind": "lag"},
            "kind 'lag' is not one of error, latency, timeout, down, rate_limit, malformed, "
            "truncated",
        ),
        (
            {"route": "*"},
            "kind is required (one of error, latency, timeout, down, rate_limit, malformed, "
            "truncated)",
        ),
        (
            {"kind": "malformed"},
            "route is required: '*', an operationId such as getRegistration, or "
            "'METHOD /path/template'",
        ),
        (
            {"route": "FETCH /v1/registrations", "kind": "malformed"},
            "route 'FETCH /v1/registrations' is not '*', an operationId such as "
            "getRegistration, or 'METHOD /path/template'",
        ),
        ({"route": 7, "kind": "malformed"}, "route must be a string, got 7"),
        (
            {"route": "*", "kind": "error", "probability": 1.5},
            "probability must be between 0 and 1, got 1.5",
        ),
        (
            {"route": "*", "kind": "error", "probability": "often"},
            "probability must be a number between 0 and 1, got 'often'",
        ),
        ({"route": "*", "kind": "error", "status": "503"}, "status must be an integer, got '503'"),
        ({"route": "*", "kind": "error", "status": True}, "status must be an integer, got True"),
        (
            {"route": "*", "kind": "error", "times": 0},
            "times must be between 1 and 1000000, got 0",
        ),
        (
            {"route": "*", "kind": "latency", "latency_ms": 5, "status": 500},
            "field 'status' does not apply to kind 'latency' (it takes latency_ms, "
            "latency_min_ms, latency_max_ms)",
        ),
        (
            {"route": "*", "kind": "truncated", "duration_ms": 5},
            "field 'duration_ms' does not apply to kind 'truncated' (it takes no fields of its "
            "own)",
        ),
        (
            {"route": "*", "kind": "latency", "latncy_ms": 5},
            "unknown field 'latncy_ms' (did you mean 'latency_ms'?)",
        ),
    ],
)
def test_from_dict_refuses_invalid_rule_with_precise_message(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(FaultSpecError) as caught:
        FaultRule.from_dict(data)
    assert caught.value.message == message


def test_from_dict_prefixes_message_with_rule_index() -> None:
    with pytest.raises(FaultSpecError) as caught:
        FaultRule.from_dict({"route": "*", "kind": "latency"}, index=2)
    assert str(caught.value) == (
        "fault 2: kind 'latency' needs latency_ms or latency_min_ms and latency_max_ms"
    )


def test_from_dict_refuses_non_mapping() -> None:
    with pytest.raises(FaultSpecError, match="expected a mapping of fields, got list"):
        FaultRule.from_dict(["route", "*"])  # type: ignore[arg-type]


def test_from_dict_applies_defaults_and_ignores_assigned_fields() -> None:
    rule = FaultRule.from_dict(
        {"route": "*", "kind": "error", "id": "mine", "matched": 9, "applied": 9}
    )
    assert (rule.id, rule.matched, rule.applied) == ("", 0, 0)
    assert (rule.status, rule.probability, rule.times, rule.seed) == (503, 1.0, None, None)
    assert FaultRule.from_dict({"route": "*", "kind": "timeout"}).timeout_ms == 30_000


def test_from_dict_normalises_method_and_path_route() -> None:
    rule = FaultRule.from_dict({"route": "get   /v1/registrations/{str_number}", "kind": "error"})
    assert rule.route == "GET /v1/registrations/{str_number}"


def test_rules_past_the_cap_are_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10,001 rules made GET /__admin/faults a 500 (its schema's maxItems) and every public
    # request looked through all of them under a lock.
    monkeypatch.setattr(faults_module, "MAX_FAULT_RULES", 3)
    injector = FaultInjector(seed=1)
    for _ in range(3):
        injector.add(FaultRule.from_dict({"route": "getRegistration", "kind": "error"}))
    with pytest.raises(FaultRulesFull, match=r"^at most 3 fault rules are kept .* delete some"):
        injector.add(FaultRule.from_dict({"route": "getRegistration", "kind": "error"}))
    assert FaultRulesFull.status == 409
    assert len(injector.list()) == 3


def test_a_profile_of_more_rules_than_kept_is_refused_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It reached the injector after the data set was built and ended the start in a traceback.
    monkeypatch.setattr(faults_module, "MAX_FAULT_RULES", 2)
    profile = tmp_path / "big.yaml"
    profile.write_text(
        "faults:\n" + "  - {route: getRegistration, kind: error}\n" * 3, encoding="utf-8"
    )
    with pytest.raises(FaultSpecError, match=r"big\.yaml: 3 rules; the mock keeps at most 2$"):
        load_fault_profile(profile)


def test_to_dict_round_trips_through_from_dict() -> None:
    injector = FaultInjector(seed=1)
    rule = injector.add(
        FaultRule.from_dict(
            {
                "route": "getRegistration",
                "kind": "latency",
                "latency_min_ms": 10,
                "latency_max_ms": 20,
                "probability": 0.5,
                "times": 3,
                "seed": 7,
            }
        )
    )
    exported = rule.to_dict()
    assert exported == {
        "id": "f-1",
        "route": "getRegistration",
        "kind": "latency",
        "probability": 0.5,
        "latency_min_ms": 10,
        "latency_max_ms": 20,
        "times": 3,
        "seed": 7,
        "matched": 0,
        "applied": 0,
    }
    again = FaultRule.from_dict(exported)
    assert {k: v for k, v in again.to_dict().items() if k != "id"} == {
        k: v for k, v in exported.items() if k != "id"
    }


@pytest.mark.parametrize(
    ("route", "hint"),
    [("getHealthWorker", ""), ("getRegistraton", "; did you mean 'getRegistration'?")],
)
def test_from_dict_with_routes_refuses_route_the_api_lacks(route: str, hint: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        FaultRule.from_dict({"route": route, "kind": "error"}, index=0, routes=routes())
    assert caught.value.message == (
        f"fault 0: route {route!r} is not an operationId or 'METHOD /path/template' of "
        f"this API{hint}"
    )


# -- profiles -----------------------------------------------------------------------------


def test_load_fault_profile_reads_every_rule(tmp_path: Path) -> None:
    profile = tmp_path / "faults.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "faults": [
                    {"route": "getRegistration", "kind": "error", "status": 429},
                    {"route": "*", "kind": "latency", "latency_ms": 50, "probability": 0.1},
                ]
            }
        )
    )
    rules = load_fault_profile(profile)
    assert [(r.route, r.kind) for r in rules] == [("getRegistration", "error"), ("*", "latency")]


def test_load_fault_profile_names_file_and_rule_index(tmp_path: Path) -> None:
    profile = tmp_path / "faults.yaml"
    profile.write_text(
        "faults:\n"
        "  - {route: '*', kind: error}\n"
        "  - {route: '*', kind: timeout}\n"
        "  - {route: '*', kind: latency}\n"
    )
    with pytest.raises(FaultSpecError) as caught:
        load_fault_profile(profile)
    assert str(caught.value) == (
        f"{profile}: fault 2: kind 'latency' needs latency_ms or latency_min_ms and latency_max_ms"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("faults: [\n", "not valid YAML"),
        ("- route: '*'\n", "expected a mapping with a 'faults' list"),
        ("rules: []\n", "expected a mapping with a 'faults' list"),
        ("faults: []\nversion: 2\n", "unknown top-level key 'version' (only 'faults')"),
        ("faults: {route: '*'}\n", "'faults' must be a list of rules"),
    ],
)
def test_load_fault_profile_refuses_bad_document(tmp_path: Path, text: str, message: str) -> None:
    profile = tmp_path / "faults.yaml"
    profile.write_text(text)
    with pytest.raises(FaultSpecError, match=re.escape(f"{profile}: ")) as caught:
        load_fault_profile(profile)
    assert message in caught.value.message


def test_load_fault_profile_accepts_empty_list(tmp_path: Path) -> None:
    profile = tmp_path / "faults.yaml"
    profile.write_text("faults:\n")
    assert load_fault_profile(profile) == []


def test_load_fault_profile_reports_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(FaultSpecError, match=re.escape(f"{missing}: cannot read")):
        load_fault_profile(missing)


# -- routes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "operation_id"),
    [
        ("GET", "/v1/registrations", "listRegistrations"),
        ("get", "/v1/registrations", "listRegistrations"),
        ("GET", "/v1/registrations/QN0001", "getRegistration"),
        ("GET", "/v1/registrations/QN0001/certification", "getCertificationStatus"),
        ("POST", "/v1/registrations/lookup", "lookupRegistrationsByNik"),
        ("GET", "/v1/registrations/lookup", "getRegistration"),
        ("HEAD", "/v1/registrations/QN0001", "getRegistration"),
        ("POST", "/v1/webhook-subscriptions", "createWebhookSubscription"),
        ("DELETE", "/v1/no-operation-id", None),
    ],
)
def test_match_finds_operation_by_method_and_path(
    method: str, path: str, operation_id: str | None
) -> None:
    route = routes().match(method, path)
    assert route is not None
    assert route.operation_id == operation_id


@pytest.mark.parametrize(
    "value", ["A%2FB", "%0A", "%0D%0A", "%C3%BC", "a;b=c", "a.b", "%20", "'", "%25", "..", "~x"]
)
def test_match_keeps_odd_characters_inside_one_path_parameter(value: str) -> None:
    route = routes().match("GET", f"/v1/registrations/{value}")
    assert route is not None
    assert route.template == "/v1/registrations/{str_number}"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/__admin/health"),
        ("POST", "/__admin/faults"),
        ("GET", "/__admin/records/registrations/QN0001"),
        ("GET", "/openapi.json"),
        ("GET", "/ui/"),
        ("GET", "/v1/registrations/"),
        ("GET", "/v1/registrations//certification"),
        ("GET", "/v1/registrations/QN0001/unknown"),
        ("PUT", "/v1/registrations/QN0001"),
        ("POST", "https://receiver.example/hooks"),
    ],
)
def test_match_returns_none_outside_the_spec(method: str, path: str) -> None:
    assert routes().match(method, path) is None


def test_from_spec_leaves_out_callback_operations() -> None:
    operation_ids = {r.operation_id for r in routes().routes}
    assert "deliverEvent" not in operation_ids
    assert "createWebhookSubscription" in operation_ids


@pytest.mark.parametrize("spec_file", ["kki.yaml", "sisdmk.yaml"])
def test_from_spec_knows_every_operation_of_the_public_specs(spec_file: str) -> None:
    spec = load_yaml((CONTRACTS / spec_file).read_text(encoding="utf-8"))
    table = RouteTable.from_spec(spec)
    for template, item in spec["paths"].items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item:
                table.check_route(item[method]["operationId"])
                table.check_route(f"{method.upper()} {template}")
                concrete = re.sub(r"\{[^}]+\}", "X1", template)
                matched = table.match(method.upper(), concrete)
                assert matched is not None
                assert matched.template == template
    with pytest.raises(FaultSpecError):
        table.check_route("deliverKkiWebhookEvent")


@pytest.mark.parametrize(
    "route",
    ["*", "getRegistration", "GET /v1/registrations/{str_number}"],
)
def test_rule_matches_by_star_operation_id_or_template(route: str) -> None:
    injector = FaultInjector(seed=1, routes=routes())
    injector.add(FaultRule(route=route, kind="error"))
    assert injector.decide("getRegistration", "GET", "/v1/registrations/{str_number}") is not None


def test_rule_for_one_route_leaves_others_alone() -> None:
    injector = FaultInjector(seed=1, routes=routes())
    injector.add(FaultRule(route="GET /v1/registrations/{str_number}", kind="error"))
    assert injector.decide("listRegistrations", "GET", "/v1/registrations") is None
    assert (
        injector.decide(
            "getCertificationStatus", "GET", "/v1/registrations/{str_number}/certification"
        )
        is None
    )


def test_add_refuses_unknown_route_once_routes_are_bound() -> None:
    injector = FaultInjector(seed=1)
    injector.bind_routes(routes())
    with pytest.raises(FaultSpecError, match="route 'GET /v1/health-workers' is not"):
        injector.add(FaultRule(route="GET /v1/health-workers", kind="error"))


def test_bind_routes_names_an_existing_rule_with_unknown_route() -> None:
    injector = FaultInjector(seed=1)
    injector.add(FaultRule(route="getRegistration", kind="error"))
    injector.add(FaultRule(route="getFacility", kind="error"))
    with pytest.raises(FaultSpecError, match=r"^fault f-2: route 'getFacility' is not"):
        injector.bind_routes(routes())


# -- seeded decisions ---------------------------------------------------------------------


def seeded_run(global_seed: int, rule_seed: int | None) -> list[Any]:
    injector = FaultInjector(seed=global_seed)
    injector.add(FaultRule(route="*", kind="error", probability=0.5, seed=rule_seed))
    injector.add(
        FaultRule(route="*", kind="latency", latency_min_ms=0, latency_max_ms=1000, seed=rule_seed)
    )
    return decisions(injector, 200)


@pytest.mark.parametrize("rule_seed", [None, 99])
def test_decide_repeats_the_same_sequence_for_the_same_seeds(rule_seed: int | None) -> None:
    first = seeded_run(42, rule_seed)
    assert first == seeded_run(42, rule_seed)
    kinds = {d.kind for d in first}
    assert kinds == {"error", "latency"}
    assert len({d.delay_s for d in first if d.kind == "latency"}) > 10


def test_decide_derives_rule_seed_from_global_seed() -> None:
    assert seeded_run(1, None) != seeded_run(2, None)
    assert seeded_run(1, 5) == seeded_run(2, 5)  # an explicit rule seed wins


def test_clear_restarts_ids_so_a_fresh_run_repeats() -> None:
    injector = FaultInjector(seed=3)
    injector.add(FaultRule(route="*", kind="error", probability=0.3))
    first = decisions(injector, 50)
    injector.clear()
    rule = injector.add(FaultRule(route="*", kind="error", probability=0.3))
    assert rule.id == "f-1"
    assert decisions(injector, 50) == first


@pytest.mark.parametrize("probability", [0.1, 0.3, 0.5, 0.9])
def test_probability_gives_expected_share_over_2000_decisions(probability: float) -> None:
    injector = FaultInjector(seed=11)
    injector.add(FaultRule(route="*", kind="error", probability=probability))
    share = sum(d is not None for d in decisions(injector, 2000)) / 2000
    # About five standard deviations at p = 0.5; the draws are seeded, so this never flakes.
    assert abs(share - probability) < 0.055


@pytest.mark.parametrize(("probability", "expected"), [(0.0, 0), (1.0, 500)])
def test_probability_bounds_mean_never_or_always(probability: float, expected: int) -> None:
    injector = FaultInjector(seed=11)
    injector.add(FaultRule(route="*", kind="error", probability=probability))
    assert sum(d is not None for d in decisions(injector, 500)) == expected


def test_times_expires_rule_after_n_applications() -> None:
    injector = FaultInjector(seed=1)
    rule = injector.add(FaultRule(route="*", kind="error", times=3))
    assert [d is not None for d in decisions(injector, 5)] == [True, True, True, False, False]
    assert injector.get(rule.id) is None
    assert injector.list() == []
    assert (rule.matched, rule.applied) == (3, 3)


def test_times_counts_applications_not_matches() -> None:
    injector = FaultInjector(seed=1)
    rule = injector.add(FaultRule(route="*", kind="error", probability=0.25, times=2))
    applied = [d for d in decisions(injector, 200) if d is not None]
    assert len(applied) == 2
    assert rule.matched > rule.applied == 2


def test_first_rule_that_fires_wins_and_later_rules_are_not_matched() -> None:
    injector = FaultInjector(seed=1)
    first = injector.add(FaultRule(route="*", kind="error", status=500))
    second = injector.add(FaultRule(route="*", kind="error", status=502))
    assert [d.status for d in decisions(injector, 3)] == [500, 500, 500]
    assert (first.matched, second.matched) == (3, 0)


def test_decide_reports_each_kind_with_its_parameters() -> None:
    cases: list[tuple[FaultRule, Decision]] = [
        (
            FaultRule(route="*", kind="error", status=429, retry_after_s=7),
            Decision("f-1", "error", status=429, retry_after_s=7),
        ),
        (FaultRule(route="*", kind="error", status=503), Decision("f-1", "error", 503, 1)),
        (FaultRule(route="*", kind="error", status=500), Decision("f-1", "error", 500, None)),
        (
            FaultRule(route="*", kind="latency", latency_ms=250),
            Decision("f-1", "latency", delay_s=0.25),
        ),
        (
            FaultRule(route="*", kind="timeout", timeout_ms=1500),
            Decision("f-1", "timeout", delay_s=1.5),
        ),
        (
            FaultRule(route="*", kind="down", duration_ms=3000),
            Decision("f-1", "down", duration_s=3.0),
        ),
        (FaultRule(route="*", kind="malformed"), Decision("f-1", "malformed")),
        (FaultRule(route="*", kind="truncated"), Decision("f-1", "truncated")),
    ]
    for rule, expected in cases:
        injector = FaultInjector(seed=1)
        injector.add(rule)
        assert decisions(injector, 1) == [expected]


# -- rate limits --------------------------------------------------------------------------


def test_rate_limit_window_arithmetic_with_injected_clock() -> None:
    clock = FakeClock()
    injector = FaultInjector(seed=1, clock=clock)
    rule = injector.add(FaultRule(route="*", kind="rate_limit", limit=2, window_s=10))

    def retry_after_at(now: float) -> int | None:
        clock.now = now
        decision = injector.decide("listRegistrations", "GET", "/v1/registrations")
        return None if decision is None else decision.retry_after_s

    assert [retry_after_at(0.0), retry_after_at(0.5)] == [None, None]
    assert retry_after_at(0.5) == 10  # ceil(9.5)
    assert retry_after_at(4.0) == 6
    assert retry_after_at(9.2) == 1  # ceil(0.8)
    assert retry_after_at(9.999) == 1  # never 0
    assert [retry_after_at(10.0), retry_after_at(12.0)] == [None, None]  # a new window
    assert retry_after_at(13.0) == 7  # that window opened at 10
    assert (rule.matched, rule.applied) == (9, 5)  # applied counts the 429s


def test_rate_limit_rejection_is_a_429_decision() -> None:
    injector = FaultInjector(seed=1, clock=FakeClock())
    injector.add(FaultRule(route="*", kind="rate_limit", limit=1, window_s=30))
    assert decisions(injector, 2) == [None, Decision("f-1", "rate_limit", 429, 30)]


def test_rate_limit_uses_retry_after_s_when_given() -> None:
    injector = FaultInjector(seed=1, clock=FakeClock())
    injector.add(FaultRule(route="*", kind="rate_limit", limit=1, window_s=60, retry_after_s=2))
    assert [d and d.retry_after_s for d in decisions(injector, 3)] == [None, 2, 2]


def test_rate_limit_lets_later_rules_see_admitted_requests() -> None:
    injector = FaultInjector(seed=1, clock=FakeClock())
    injector.add(FaultRule(route="*", kind="rate_limit", limit=1, window_s=60))
    injector.add(FaultRule(route="*", kind="latency", latency_ms=5))
    assert [d.kind for d in decisions(injector, 2)] == ["latency", "rate_limit"]


# -- the middleware -----------------------------------------------------------------------


Rendered = list[tuple[int, str, str, dict[str, str]]]


def render_problem(
    calls: Rendered,
) -> Callable[[str, int, str, str, dict[str, str]], tuple[bytes, str]]:
    def render(
        path: str, status: int, title: str, detail: str, headers: dict[str, str]
    ) -> tuple[bytes, str]:
        calls.append((status, title, detail, headers))
        return json.dumps({"status": status, "title": title}).encode(), "application/problem+json"

    return render


def json_app(status: int, document: object) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = json.dumps(document).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def call(
    middleware: FaultMiddleware, method: str, path: str
) -> tuple[list[Message], dict[bytes, bytes], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
    }
    asyncio.run(middleware(scope, receive, send))
    headers = dict(sent[0]["headers"]) if sent else {}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent, headers, body


def middleware_with(
    rule: FaultRule,
    app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
    calls: Rendered | None = None,
) -> FaultMiddleware:
    injector = FaultInjector(seed=1)
    injector.add(rule)
    return FaultMiddleware(
        app or json_app(200, {"data": [1, 2, 3]}),
        injector=injector,
        route_table=routes(),
        error_renderer=render_problem(calls if calls is not None else []),
    )


def test_error_fault_is_rendered_in_the_systems_format_with_retry_after() -> None:
    calls: Rendered = []
    middleware = middleware_with(
        FaultRule(route="getRegistration", kind="error", status=503, retry_after_s=7), calls=calls
    )
    sent, headers, body = call(middleware, "GET", "/v1/registrations/QN0001")
    assert sent[0]["status"] == 503
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"retry-after"] == b"7"
    assert int(headers[b"content-length"]) == len(body)
    assert json.loads(body) == {"status": 503, "title": "Service Unavailable"}
    assert calls[0][0:2] == (503, "Service Unavailable")
    assert calls[0][3] == {"Retry-After": "7"}


def test_error_fault_without_retry_status_sends_no_retry_after() -> None:
    middleware = middleware_with(FaultRule(route="*", kind="error", status=500))
    sent, headers, _ = call(middleware, "GET", "/v1/registrations")
    assert sent[0]["status"] == 500
    assert b"retry-after" not in headers


@pytest.mark.parametrize("path", ["/__admin/health", "/openapi.json", "/ui/"])
def test_requests_outside_the_spec_pass_through_a_star_rule(path: str) -> None:
    middleware = middleware_with(FaultRule(route="*", kind="error", status=500))
    sent, _, _ = call(middleware, "GET", path)
    assert sent[0]["status"] == 200
    assert middleware.injector.list()[0].matched == 0


def test_malformed_fault_breaks_json_and_fixes_content_length() -> None:
    middleware = middleware_with(FaultRule(route="*", kind="malformed"))
    sent, headers, body = call(middleware, "GET", "/v1/registrations")
    assert sent[0]["status"] == 200
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body)
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


@pytest.mark.parametrize("document", [{}, [], {"a": {"b": [1]}}, "text", 12, True, None])
def test_malformed_fault_breaks_every_kind_of_json_document(document: object) -> None:
    middleware = middleware_with(FaultRule(route="*", kind="malformed"), json_app(200, document))
    _, _, body = call(middleware, "GET", "/v1/registrations")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_malformed_fault_leaves_error_responses_alone() -> None:
    middleware = middleware_with(
        FaultRule(route="*", kind="malformed"), json_app(404, {"detail": "no such registration"})
    )
    sent, _, body = call(middleware, "GET", "/v1/registrations/QN0001")
    assert sent[0]["status"] == 404
    assert json.loads(body) == {"detail": "no such registration"}


def test_truncated_fault_without_connection_handle_sends_half_and_leaves_it_unfinished() -> None:
    middleware = middleware_with(FaultRule(route="*", kind="truncated"))
    sent, headers, body = call(middleware, "GET", "/v1/registrations")
    full = json.dumps({"data": [1, 2, 3]}).encode()
    assert int(headers[b"content-length"]) == len(full)
    assert body == full[: len(full) // 2]
    assert sent[-1]["more_body"] is True


def test_timeout_fault_without_connection_handle_says_which_server_it_needs() -> None:
    middleware = middleware_with(FaultRule(route="*", kind="timeout", timeout_ms=1))
    with pytest.raises(FaultNotSupportedError, match=r"mocks\.core\.listener\.serve"):
        call(middleware, "GET", "/v1/registrations")


def test_down_fault_without_listener_control_answers_503() -> None:
    middleware = middleware_with(FaultRule(route="*", kind="down", duration_ms=2500))
    sent, headers, _ = call(middleware, "GET", "/v1/registrations")
    assert sent[0]["status"] == 503
    assert headers[b"retry-after"] == b"3"


def test_down_fault_asks_the_listener_control_for_the_outage() -> None:
    outages: list[float] = []

    async def go_down(duration_s: float) -> None:
        outages.append(duration_s)

    middleware = middleware_with(FaultRule(route="*", kind="down", duration_ms=2500))
    middleware.injector.on_down = go_down
    sent, _, _ = call(middleware, "GET", "/v1/registrations")
    assert outages == [2.5]
    assert sent == []


def test_latency_fault_serves_the_request_after_the_delay() -> None:
    middleware = middleware_with(FaultRule(route="*", kind="latency", latency_ms=1))
    sent, _, body = call(middleware, "GET", "/v1/registrations")
    assert sent[0]["status"] == 200
    assert json.loads(body) == {"data": [1, 2, 3]}


def test_allowed_methods_prefer_the_concrete_path() -> None:
    table = RouteTable.from_spec(
        {
            "paths": {
                "/v1/things/{id}": {"get": {"operationId": "getThing"}},
                "/v1/things/lookup": {"post": {"operationId": "lookupThing"}},
            }
        }
    )
    assert table.allowed_methods("/v1/things/lookup") == ["POST"]
    assert table.allowed_methods("/v1/things/42") == ["GET", "HEAD"]
    assert table.allowed_methods("/nowhere") == []
