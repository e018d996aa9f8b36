"""What stops a run and what only stops its phase, through `runner.execute` against a provider
served by httpx's mock transport: whatever happens after the first phase ran, what the phases
found and the reports are kept."""

from __future__ import annotations

import datetime as dt
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import conformance
from conformance import runner, webhooks
from conformance.context import Credentials, NotInstalled, RunContext, RunOptions
from conformance.provider import CannotRun, ProviderClient, RequestFailed

TODAY = dt.date(2026, 12, 1)
Handler = Callable[[httpx.Request], httpx.Response]


def _provider(request: httpx.Request) -> httpx.Response:
    """A KKI with no registrations, answering its lists as the contract says; no admin API."""
    if request.url.path.startswith("/__admin"):
        return httpx.Response(404)
    limit = int(request.url.params.get("limit", "100"))
    return httpx.Response(
        200, json={"data": [], "page": {"limit": limit, "next_cursor": None, "has_more": False}}
    )


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every client `execute` makes talks to `_provider`; the paths it was asked, in order."""
    made = runner.ProviderClient
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return _provider(request)

    def client(*args: Any, **kwargs: Any) -> ProviderClient:
        built = made(*args, **kwargs)
        built.http.close()
        built.http = httpx.Client(base_url=args[0], transport=httpx.MockTransport(handler))
        return built

    monkeypatch.setattr(runner, "ProviderClient", client)
    return asked


def _options(**changes: Any) -> RunOptions:
    values: dict[str, Any] = {
        "system": "kki",
        "base_url": "http://kki.test",
        "credentials": Credentials(api_key="k"),
        "include": ("listRegistrations",),
        **changes,
    }
    return RunOptions(**values)


def _execute(options: RunOptions, started: list[str] | None = None) -> runner.RunResult:
    def progress(phase: str, state: str) -> None:
        if started is not None and state == "start":
            started.append(phase)

    return runner.execute(options, lambda: TODAY, [], progress, sleep=lambda _: None)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_receiver_address_taken_stops_the_run_before_any_phase(
    served: list[str], taken_port: int
) -> None:
    # It was found when the webhooks phase started, after every other phase had run: exit 2,
    # and nothing they found reached the terminal or a report.
    started: list[str] = []
    options = _options(
        phases=("pagination", "webhooks"),
        webhooks=True,
        receiver_listen=("127.0.0.1", taken_port),
    )

    with pytest.raises(CannotRun, match=rf"cannot listen on 127\.0\.0\.1:{taken_port} "):
        _execute(options, started)

    assert started == []
    assert served == ["/v1/registrations"]  # the start-up probe, no page walked


def test_a_webhooks_phase_that_cannot_go_on_is_not_run_and_the_phases_before_it_stand(
    served: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def mock_gone(ctx: RunContext) -> None:
        raise CannotRun("the mock's PUT /__admin/webhook-policy answered 503: its fast retry ...")

    monkeypatch.setattr(webhooks, "check_webhooks", mock_gone)

    result = _execute(_options(phases=("pagination", "webhooks"), webhooks=True))

    assert [(p.name, p.status) for p in result.phases] == [
        ("pagination", "done"),
        (
            "webhooks",
            "not run (the mock's PUT /__admin/webhook-policy answered 503: its fast retry ...)",
        ),
    ]
    assert ("pagination/has-more", "listRegistrations") in result.checked
    assert (result.verdict, result.exit_code) == ("incomplete", 2)


def test_a_webhooks_request_without_an_answer_still_leaves_the_phase_partly_run(
    served: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def dropped(ctx: RunContext) -> None:
        raise RequestFailed("cannot reach http://kki.test: dropped (createWebhookSubscription)")

    monkeypatch.setattr(webhooks, "check_webhooks", dropped)

    result = _execute(_options(phases=("webhooks",), webhooks=True))

    [phase] = result.phases
    assert phase.status == (
        "partly run (stopped: cannot reach http://kki.test: dropped (createWebhookSubscription))"
    )


def _uninstalled(monkeypatch: pytest.MonkeyPatch, package: str, *ours: str) -> None:
    """`package` as if not installed, and our modules that import it not imported yet."""
    monkeypatch.setitem(sys.modules, package, None)  # importing it raises ModuleNotFoundError
    for name in ours:
        monkeypatch.delitem(sys.modules, f"conformance.{name}", raising=False)
        monkeypatch.delattr(conformance, name, raising=False)


INSTALL = "install the conformance extra: pip install -e '.[conformance]'"


@pytest.mark.parametrize(
    ("phase", "package", "ours"),
    [
        ("schemathesis", "schemathesis", ("fuzzing",)),
        ("pact", "pact", ("pacts", "contracts_pact")),
    ],
)
def test_a_phase_whose_package_is_not_installed_is_not_run_and_the_rest_stands(
    served: list[str],
    monkeypatch: pytest.MonkeyPatch,
    phase: str,
    package: str,
    ours: tuple[str, ...],
) -> None:
    # The import raised ModuleNotFoundError out of the run: "internal error", exit 2, and what
    # the phases before had found was lost.
    _uninstalled(monkeypatch, package, *ours)

    result = _execute(_options(phases=("pagination", phase)))

    assert [(p.name, p.status) for p in result.phases] == [
        ("pagination", "done"),
        (phase, f"not run (not installed: {package}; {INSTALL})"),
    ]
    assert ("pagination/has-more", "listRegistrations") in result.checked
    assert (result.verdict, result.exit_code) == ("incomplete", 2)


def test_a_phase_not_installed_makes_a_run_of_every_phase_incomplete() -> None:
    # Not asked for by name: a run without Schemathesis is still no verdict.
    result = runner.RunResult(
        options=_options(),
        findings=[],
        checked={("pagination/has-more", "listRegistrations")},
        phases=[
            runner.PhaseResult("pagination", "done"),
            runner.PhaseResult("schemathesis", f"not run (not installed: schemathesis; {INSTALL})"),
        ],
        notes=[],
        stats={},
        seconds=1.0,
    )

    assert (result.verdict, result.exit_code) == ("incomplete", 2)


def test_the_adapters_schemathesis_phase_without_schemathesis_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conformance import adapter_api

    _uninstalled(monkeypatch, "schemathesis", "fuzzing")

    with pytest.raises(NotInstalled, match=r"^schemathesis; install the conformance extra"):
        adapter_api.run_schemathesis(None, runner.SYSTEMS["adapter"])  # type: ignore[arg-type]
