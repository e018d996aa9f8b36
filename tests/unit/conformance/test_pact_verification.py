"""`conformance.pacts` without a provider: skips, reports, the state proxy, event descriptions."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conformance.pacts import (
    MESSAGE_DESCRIPTION,
    PACT_DIR,
    InteractionResult,
    PactVerification,
    PactVerificationError,
    _content_type_said,
    _mismatch_text,
    _state_proxy,
    event_type_of,
    pact_file,
    verify_pacts,
)


class StateEndpoint:
    """A state-change URL that records what it got and answers like the mocks' admin API."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[dict[str, Any]] = []
        received, answer_status = self.received, status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append(body)
                if answer_status == 200:
                    payload = {"state": body["state"], "result": {"cursor": "abc"}}
                else:
                    payload = {"title": "Bad Request", "detail": "unknown provider state"}
                data = json.dumps(payload).encode()
                self.send_response(answer_status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/__admin/provider-states"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def state_endpoint() -> Iterator[StateEndpoint]:
    endpoint = StateEndpoint()
    yield endpoint
    endpoint.close()


def unreachable_url() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()  # nothing listens there any more
    return f"http://127.0.0.1:{port}"


def test_unknown_provider_is_refused_before_anything_runs() -> None:
    with pytest.raises(PactVerificationError, match="unknown provider 'keycloak'"):
        verify_pacts("keycloak", "http://127.0.0.1:1", state_url=None)


def test_missing_pact_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PactVerificationError, match="no pact file"):
        verify_pacts("kki", "http://127.0.0.1:1", state_url=None, pact_dir=tmp_path)


def test_interactions_needing_a_state_are_skipped_without_a_state_url(tmp_path: Path) -> None:
    shutil.copy(pact_file("kki"), tmp_path)
    verification = verify_pacts("kki", unreachable_url(), state_url=None, pact_dir=tmp_path)
    assert verification.skipped
    for result in verification.skipped:
        assert result.states
        assert "offers no state-setup URL" in result.detail
        assert all(repr(state) in result.detail for state in result.states)


def test_unreachable_provider_fails_the_interactions_that_ran() -> None:
    verification = verify_pacts("kki", unreachable_url(), state_url=None, pact_dir=PACT_DIR)
    assert verification.failed
    assert not verification.ok
    assert all("error sending request" in r.detail for r in verification.failed)
    assert all(not r.states for r in verification.failed)


def test_unverified_tls_still_reports_each_interaction() -> None:
    verification = verify_pacts(
        "kki", unreachable_url(), state_url=None, pact_dir=PACT_DIR, verify_tls=False
    )
    assert [r.outcome for r in verification.results if not r.states] == ["failed"]


def test_message_pact_without_a_source_skips_every_event() -> None:
    verification = verify_pacts("sisdmk-webhooks", "http://127.0.0.1:1", state_url="http://x")
    assert len(verification.skipped) == len(verification.results) > 0
    assert verification.ok


def test_state_proxy_forwards_and_lifts_the_result(state_endpoint: StateEndpoint) -> None:
    change = {"state": "records follow a cursor", "params": {"collection": "c"}, "action": "setup"}
    with _state_proxy(state_endpoint.url) as proxy:
        answer = httpx.post(proxy.url, json=change, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"cursor": "abc"}
    assert state_endpoint.received == [change]


def test_state_proxy_answers_the_generic_setup_itself(state_endpoint: StateEndpoint) -> None:
    with _state_proxy(state_endpoint.url) as proxy:
        answer = httpx.post(proxy.url, json={"state": "", "action": "setup"}, timeout=10)
    assert (answer.status_code, answer.json()) == (200, {})
    assert state_endpoint.received == []


def test_state_proxy_reports_a_refused_state_as_a_failure() -> None:
    endpoint = StateEndpoint(status=400)
    try:
        with _state_proxy(endpoint.url) as proxy:
            answer = httpx.post(proxy.url, json={"state": "the moon is full"}, timeout=10)
    finally:
        endpoint.close()
    assert answer.status_code == 400  # a 4xx, so the verifier does not retry for minutes
    assert "unknown provider state" in answer.json()["error"]
    assert "unknown provider state" in proxy.failures["the moon is full"]


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        ("text/html; charset=utf-8", "content type text/html"),
        (" Application/JSON ", "content type application/json"),
        (None, "no content type"),
        # A provider's text, not a media type: never repeated (it may hold anyone's name).
        ("text/plain; Budi Santoso", "a content type that is not a media type"),
        ("Siti Aminah", "a content type that is not a media type"),
        ("x'Budi\"Santoso", "a content type that is not a media type"),
        ("", "a content type that is not a media type"),
        # A parameter's value is never repeated; nor a type too long or not ASCII.
        ("text/plain; patient=Budi_Santoso", "content type text/plain"),
        ("application/" + "x" * 100, "a content type that is not a media type"),
        ("text/\u0130nd\u0131r", "a content type that is not a media type"),
        ("text/plain;\r\n charset=utf-8", "a content type that is not a media type"),
    ],
)
def test_a_deliverys_content_type_is_said_only_when_it_is_a_media_type(
    content_type: str | None, said: str
) -> None:
    assert _content_type_said(content_type) == said


def test_event_type_is_read_from_the_message_description() -> None:
    description = MESSAGE_DESCRIPTION.format(type="registration.status_changed")
    assert event_type_of(description) == "registration.status_changed"
    with pytest.raises(ValueError, match="does not name an event type"):
        event_type_of("a registration event")


def test_mismatch_text_names_each_mismatch() -> None:
    mismatch = {
        "type": "mismatches",
        "mismatches": [
            {
                "type": "BodyMismatch",
                "path": "$.page",
                "mismatch": "Actual map is missing has_more",
            },
            {"type": "StatusMismatch", "mismatch": "expected 200 but was 500"},
        ],
    }
    text = _mismatch_text(mismatch)
    assert "BodyMismatch $.page: Actual map is missing has_more" in text
    assert "StatusMismatch" in text
    assert "expected 200 but was 500" in text


def test_summary_lists_failures_and_skips() -> None:
    verification = PactVerification(
        "kki",
        "http://staging",
        Path("p.json"),
        (
            InteractionResult("a", (), "passed"),
            InteractionResult("b", ("s",), "failed", "status 500"),
            InteractionResult("c", ("s",), "skipped", "no state URL"),
        ),
    )
    assert not verification.ok
    assert verification.summary().splitlines() == [
        "kki at http://staging: 1 passed, 1 failed, 1 skipped",
        "  FAILED b: status 500",
        "  skipped c: no state URL",
    ]


def test_a_pact_phase_that_cannot_verify_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # It used to end "done" with a note: `--phases pact` then exited 0, conforming.
    from conformance import contracts_pact, runner

    def cannot(ctx: object, provider: str) -> None:
        raise PactVerificationError("no pact file pacts/healthforce-adapter-kki.json")

    monkeypatch.setattr(contracts_pact, "verify", cannot)
    with pytest.raises(runner._Skip, match=r"^not run \(no pact file "):
        runner._pact(None, runner.SYSTEMS["kki"])  # type: ignore[arg-type]


def _pact_context() -> Any:
    """A run against a target that is no mock (its /__admin/health is 404): no state URL."""
    from conformance.context import Credentials, RunContext, RunOptions
    from conformance.provider import ApiKeyAuth, ProviderClient
    from conformance.spec import load_contract
    from conformance.systems import SYSTEMS

    options = RunOptions("kki", "http://kki.test", Credentials(api_key="k"))
    client = ProviderClient(options.base_url, ApiKeyAuth("X-API-Key", "k"))
    client.http = httpx.Client(
        base_url=options.base_url, transport=httpx.MockTransport(lambda r: httpx.Response(404))
    )
    contract = load_contract(SYSTEMS["kki"].contract)
    return RunContext(options, contract, client, lambda: dt.date(2026, 12, 1))


def _verification(*outcomes: str) -> PactVerification:
    return PactVerification(
        "kki",
        "http://kki.test",
        Path("pact.json"),
        tuple(
            InteractionResult(
                f"interaction {n}",
                ("a state",),
                outcome,  # type: ignore[arg-type]
                "needs the provider state(s) 'a state' and the target offers no state-setup URL"
                if outcome == "skipped"
                else "",
            )
            for n, outcome in enumerate(outcomes)
        ),
    )


def test_skipped_interactions_are_recorded_as_skipped_not_as_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conformance import contracts_pact

    ctx = _pact_context()
    monkeypatch.setattr(
        contracts_pact, "verify_pacts", lambda *a, **k: _verification("passed", "skipped")
    )

    contracts_pact.verify(ctx, "kki")

    assert ("pact/interaction", "interaction 0") in ctx.checked
    assert ("pact/interaction", "interaction 1") not in ctx.checked
    assert ctx.skipped[("pact/interaction", "interaction 1")].startswith(
        "needs the provider state(s) 'a state'"
    )


def test_a_pact_phase_that_verified_nothing_is_not_run_not_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every interaction skipped (no --state-url): the phase used to be "done", each skipped
    # interaction a passed test case.
    from conformance import contracts_pact, runner

    ctx = _pact_context()
    monkeypatch.setattr(
        contracts_pact, "verify_pacts", lambda *a, **k: _verification("skipped", "skipped")
    )

    with pytest.raises(runner._Skip) as skip:
        runner._pact(ctx, runner.SYSTEMS["kki"])

    assert str(skip.value).startswith(
        "not run (every interaction of the kki pact was skipped, none verified (e.g. needs the "
        "provider state(s) 'a state'"
    )
    assert str(skip.value).endswith("give --state-url the target's provider-state set-up URL)")
    assert not ctx.checked
    assert len(ctx.skipped) == 2


def _mock_context(snapshot: str, restore: str) -> Any:
    """A run against a KKI mock whose admin API answers its health, and whose snapshot and
    restore calls answer 201 / 200 or drop the connection (`snapshot`, `restore`: "ok" or
    "gone")."""
    from conformance.provider import ProviderClient

    ctx = _pact_context()

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/__admin/health":
            return httpx.Response(200, json={"system": "kki", "records": {"registrations": 3}})
        if request.method == "POST" and path == "/__admin/snapshots":
            if snapshot == "gone":
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(201, json={"name": "hf-conformance-before-pact"})
        if path.endswith("/restore"):
            if restore == "gone":
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(200, json={})
        return httpx.Response(204)

    client: ProviderClient = ctx.client
    client.http = httpx.Client(base_url=ctx.options.base_url, transport=httpx.MockTransport(answer))
    return ctx


def test_a_mock_gone_before_its_snapshot_stops_the_phase_partly_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It used to end the whole command in an internal error (httpx.ConnectError).
    from conformance import contracts_pact
    from conformance.provider import RequestFailed

    ctx = _mock_context(snapshot="gone", restore="ok")
    monkeypatch.setattr(
        contracts_pact, "verify_pacts", lambda *a, **k: pytest.fail("verified without a snapshot")
    )

    with pytest.raises(
        RequestFailed,
        match=r"^cannot reach http://kki.test/__admin/snapshots: connection refused \(the snapshot",
    ):
        contracts_pact.verify(ctx, "kki")


def test_a_restore_that_fails_is_a_note_saying_what_to_do_and_the_results_stand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conformance import contracts_pact

    ctx = _mock_context(snapshot="ok", restore="gone")
    monkeypatch.setattr(contracts_pact, "verify_pacts", lambda *a, **k: _verification("passed"))

    contracts_pact.verify(ctx, "kki")

    assert ("pact/interaction", "interaction 0") in ctx.checked
    [note] = [note for note in ctx.notes if "could not be put back" in note]
    assert "cannot reach" in note
    assert "POST http://kki.test/__admin/snapshots/hf-conformance-before-pact/restore" in note
