"""Pact provider verification: the adapter's pacts (contracts/pacts/) replayed against a provider.

`verify_pacts` is what `hf-conformance` and the contract tests both call; it reports each
interaction as passed, failed (with the mismatch) or skipped (with the reason).
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx
from pact import Verifier
from pact.types import Message

from adapter.clients.http import tls_context
from conformance.masking import media_type

CONSUMER: Final = "healthforce-adapter"
HTTP_PROVIDERS: Final = ("kki", "sisdmk")
# The webhook events each system sends, as message pacts under a provider name of their own.
MESSAGE_PROVIDERS: Final = ("kki-webhooks", "sisdmk-webhooks")
PROVIDERS: Final = HTTP_PROVIDERS + MESSAGE_PROVIDERS
PACT_DIR: Final = Path(__file__).resolve().parents[1] / "contracts" / "pacts"
# The description of a webhook event's message interaction; the type is how a source finds it.
MESSAGE_DESCRIPTION: Final = "a {type} webhook event"
_MESSAGE_DESCRIPTION: Final = re.compile(r"^a (?P<type>[a-z_]+\.[a-z_]+) webhook event$")
# What the verifier's JSON report says of an interaction that verified.
PASSED_RESULTS: Final = frozenset({"OK", "Success"})
STATE_TIMEOUT_S: Final = 30.0
EVENT_TIMEOUT_S: Final = 20.0

Outcome = Literal["passed", "failed", "skipped"]
# Produces the body a provider really sends for a message interaction (by its description); when
# it cannot, raises RuntimeError, TimeoutError, ValueError or httpx.HTTPError saying why.
MessageSource = Callable[[str], bytes]


class PactVerificationError(Exception):
    """The verification could not run at all (no pact file, a provider name we do not know)."""


@dataclass(frozen=True, slots=True)
class InteractionResult:
    description: str
    states: tuple[str, ...]
    outcome: Outcome
    detail: str = ""  # the mismatch of a failure, the reason for a skip


@dataclass(frozen=True, slots=True)
class PactVerification:
    provider: str
    base_url: str
    pact_file: Path
    results: tuple[InteractionResult, ...]
    output: str = field(default="", repr=False)  # the verifier's own report, for a log

    def with_outcome(self, outcome: Outcome) -> tuple[InteractionResult, ...]:
        return tuple(r for r in self.results if r.outcome == outcome)

    @property
    def passed(self) -> tuple[InteractionResult, ...]:
        return self.with_outcome("passed")

    @property
    def failed(self) -> tuple[InteractionResult, ...]:
        return self.with_outcome("failed")

    @property
    def skipped(self) -> tuple[InteractionResult, ...]:
        return self.with_outcome("skipped")

    @property
    def ok(self) -> bool:
        """No interaction failed (skipped ones are reported, not failures)."""
        return not self.failed

    def summary(self) -> str:
        lines = [
            f"{self.provider} at {self.base_url}: {len(self.passed)} passed, "
            f"{len(self.failed)} failed, {len(self.skipped)} skipped"
        ]
        for result in self.failed:
            lines.append(f"  FAILED {result.description}: {result.detail}")
        for result in self.skipped:
            lines.append(f"  skipped {result.description}: {result.detail}")
        return "\n".join(lines)


def pact_file(provider: str, pact_dir: Path = PACT_DIR) -> Path:
    return pact_dir / f"{CONSUMER}-{provider}.json"


def pact_interactions(path: Path) -> list[dict[str, Any]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PactVerificationError(f"no pact file {path}") from None
    except (OSError, ValueError) as exc:
        raise PactVerificationError(f"cannot read the pact file {path}: {exc}") from None
    interactions = document.get("interactions") if isinstance(document, dict) else None
    if not isinstance(interactions, list):
        raise PactVerificationError(f"{path} is not a pact file (no interactions list)")
    return interactions


def _states(interaction: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(state["name"]) for state in interaction.get("providerStates") or [])


def verify_pacts(
    provider: str,
    base_url: str,
    *,
    state_url: str | None,
    pact_dir: Path = PACT_DIR,
    messages: MessageSource | None = None,
    request_timeout_s: float = 30.0,
    verify_tls: bool = True,
) -> PactVerification:
    """Replay the adapter's pact with `provider` against `base_url`.

    `state_url` receives each interaction's provider states (`{state, params, action}`, as the
    mocks' `POST /__admin/provider-states`); the values it answers (at the top level or under
    ``result``) fill the pact's `fromProviderState` expressions. Without it, interactions that
    need a state are skipped. Message pacts (``*-webhooks``) take their bodies from `messages`;
    without one they are all skipped. `verify_tls=False` accepts any certificate (the Pact
    verifier takes no CA bundle).
    """
    if provider not in PROVIDERS:
        raise PactVerificationError(
            f"unknown provider {provider!r}; the adapter has pacts with {', '.join(PROVIDERS)}"
        )
    path = pact_file(provider, pact_dir)
    interactions = pact_interactions(path)
    is_messages = provider in MESSAGE_PROVIDERS
    skipped: list[InteractionResult] = []
    to_verify: list[dict[str, Any]] = []
    for interaction in interactions:
        states = _states(interaction)
        if is_messages and messages is None:
            reason = "no source of the provider's webhook events was given"
        elif states and state_url is None:
            reason = (
                f"needs the provider state(s) {', '.join(repr(s) for s in states)} and the "
                "target offers no state-setup URL"
            )
        else:
            to_verify.append(interaction)
            continue
        skipped.append(
            InteractionResult(str(interaction["description"]), states, "skipped", reason)
        )
    if not to_verify:
        return PactVerification(provider, base_url, path, tuple(skipped))

    host = urlsplit(base_url).hostname or "localhost"
    verifier = Verifier(provider, host=host).add_source(path)
    verifier.set_request_timeout(int(request_timeout_s * 1000))
    verifier.set_coloured_output(enabled=False)
    if not verify_tls:
        verifier.disable_ssl_verification()
    # Why the message source could not give an interaction's body, by description: the
    # verifier only sees the handler's 500 page.
    source_failures: dict[str, str] = {}
    if messages is not None and is_messages:
        verifier.message_handler(_message_handler(messages, source_failures))
    else:
        verifier.add_transport(url=base_url)
    if state_url is None:
        verifier.filter(no_state=True)
    proxy: AbstractContextManager[StateProxy | None] = (
        _state_proxy(state_url) if state_url is not None else nullcontext(None)
    )
    with proxy as state_proxy:
        if state_proxy is not None:
            verifier.state_handler(state_proxy.url, teardown=False, body=True)
        # A failed verification raises; the per-interaction results below say which and why.
        with suppress(RuntimeError):
            verifier.verify()
    state_failures = state_proxy.failures if state_proxy is not None else {}
    verified = _results(verifier.results, to_verify, state_failures, source_failures)
    return PactVerification(
        provider,
        base_url,
        path,
        tuple(verified + skipped),
        output=verifier.output(strip_ansi=True),
    )


def _results(
    report: Mapping[str, Any],
    interactions: list[dict[str, Any]],
    state_failures: Mapping[str, str],
    source_failures: Mapping[str, str] | None = None,
) -> list[InteractionResult]:
    by_description = {str(r.get("description")): r for r in report.get("interactionResults") or []}
    results: list[InteractionResult] = []
    for interaction in interactions:
        description = str(interaction["description"])
        states = _states(interaction)
        entry = by_description.get(description)
        if entry is None:
            # The verifier never reached it (e.g. it stopped early): that is not a pass.
            detail = _first_error(report) or "the verifier reported no result for it"
            results.append(InteractionResult(description, states, "failed", detail))
        elif entry.get("result") in PASSED_RESULTS:
            results.append(InteractionResult(description, states, "passed"))
        elif source_failures and description in source_failures:
            detail = f"no message to verify: {source_failures[description]}"
            results.append(InteractionResult(description, states, "failed", detail))
        else:
            detail = _mismatch_text(entry.get("mismatch")) or f"result {entry.get('result')!r}"
            why = [
                f"{state!r} {state_failures[state]}" for state in states if state in state_failures
            ]
            if why and "state change" in detail:
                detail = f"{detail}: {'; '.join(why)}"
            results.append(InteractionResult(description, states, "failed", detail))
    return results


def _first_error(report: Mapping[str, Any]) -> str:
    for error in report.get("errors") or []:
        if isinstance(error, Mapping):
            return _mismatch_text(error.get("mismatch") or error)
    return ""


def _mismatch_text(mismatch: Any) -> str:
    """One readable paragraph from the verifier's mismatch object."""
    if mismatch is None:
        return ""
    if not isinstance(mismatch, Mapping):
        return str(mismatch)
    parts: list[str] = []
    if mismatch.get("message"):
        parts.append(str(mismatch["message"]))
    for item in mismatch.get("mismatches") or []:
        if isinstance(item, Mapping):
            where = item.get("path") or item.get("key") or item.get("parameter") or ""
            kind = str(item.get("type", "mismatch"))
            text = str(item.get("mismatch") or item.get("description") or "")
            parts.append(f"{kind} {where}: {text}".replace("  ", " ").strip())
        else:
            parts.append(str(item))
    return "; ".join(parts) if parts else json.dumps(mismatch, sort_keys=True)


# -- provider states ------------------------------------------------------------------------


@dataclass
class StateProxy:
    """Where the verifier sends state changes, and why set-ups failed, by state name."""

    url: str
    failures: dict[str, str] = field(default_factory=dict)


@contextmanager
def _state_proxy(state_url: str, timeout_s: float = STATE_TIMEOUT_S) -> Iterator[StateProxy]:
    """A local state-change endpoint that forwards to `state_url` and answers its values flat.

    The verifier reads `fromProviderState` values from the top level of the answer; the mocks
    answer them under ``result``, so the proxy lifts them. The verifier only says that a set-up
    failed, so the proxy keeps what the state URL answered.
    """
    client = httpx.Client(timeout=timeout_s, follow_redirects=False, verify=tls_context(None))
    failures: dict[str, str] = {}

    class Forward(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            state = _state_named(body)
            if state is None:
                # The verifier's generic set-up around an interaction with no state: no-op.
                self._reply(200, {})
                return
            try:
                answer = client.post(
                    state_url, content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                self._refuse(state, f"the state URL is unreachable ({type(exc).__name__})")
                return
            if not answer.is_success:
                self._refuse(state, f"answered {answer.status_code}: {answer.text[:500]}")
                return
            self._reply(200, _state_values(answer))

        def _refuse(self, state: str, why: str) -> None:
            failures[state] = why
            # A 4xx: the verifier retries a 5xx for about two minutes, which a set-up the
            # provider refuses (or a URL that is down) would not survive anyway.
            self._reply(400, {"error": why})

        def _reply(self, status: int, document: Mapping[str, Any]) -> None:
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the verifier's output is the record of what happened

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, name="pact-state-proxy", daemon=True)
    thread.start()
    try:
        yield StateProxy(f"http://127.0.0.1:{server.server_port}/provider-states", failures)
    finally:
        server.shutdown()
        server.server_close()
        client.close()


def _state_named(body: bytes) -> str | None:
    """The state a change request names; None for the verifier's nameless generic set-up."""
    try:
        request = json.loads(body)
    except ValueError:
        return "(unparseable state change)"  # let the state URL say what is wrong with it
    if not isinstance(request, dict):
        return "(unparseable state change)"
    return str(request["state"]) if request.get("state") else None


def _state_values(answer: httpx.Response) -> dict[str, Any]:
    try:
        document = answer.json()
    except ValueError:
        return {}
    if not isinstance(document, dict):
        return {}
    result = document.get("result")
    values = dict(result) if isinstance(result, dict) else {}
    values.update({k: v for k, v in document.items() if k not in ("result", "state")})
    return values


# -- messages -------------------------------------------------------------------------------


def event_type_of(description: str) -> str:
    """The webhook event type a message interaction is about (see `MESSAGE_DESCRIPTION`)."""
    found = _MESSAGE_DESCRIPTION.match(description)
    if found is None:
        raise ValueError(
            f"message interaction {description!r} does not name an event type "
            f"(expected {MESSAGE_DESCRIPTION!r})"
        )
    return found["type"]


def _message_handler(
    source: MessageSource, failures: dict[str, str]
) -> Callable[[str, dict[str, Any] | None], Message]:
    def produce(name: str, metadata: dict[str, Any] | None) -> Message:
        try:
            contents = source(name)
        except (RuntimeError, TimeoutError, ValueError, httpx.HTTPError) as exc:
            # pact-python answers the verifier with a bare 500: keep the reason for the result.
            failures[name] = str(exc) or type(exc).__name__
            raise
        return Message(contents=contents, metadata=None, content_type="application/json")

    return produce


def _content_type_said(content_type: str | None) -> str:
    """A delivery's Content-Type for a finding: the type/subtype of a media type; nothing else
    of the provider's text (a parameter, or a value that is no media type, may hold anything)."""
    if content_type is None:
        return "no content type"
    said = media_type(content_type)
    return "a content type that is not a media type" if said is None else f"content type {said}"


class MockEventSource:
    """Webhook events exactly as a mock delivers them: a local receiver is subscribed through the
    public API, and each message is an event the mock's admin API makes it send.

    Use as a context manager; `auth_headers` are what the public API's subscription calls need.
    """

    def __init__(
        self,
        base_url: str,
        auth_headers: Mapping[str, str],
        *,
        timeout_s: float = EVENT_TIMEOUT_S,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self._base_url,
            headers=dict(auth_headers),
            timeout=timeout_s,
            verify=tls_context(None),
        )
        self._timeout_s = timeout_s
        # Each delivery: its content type as sent (None: none) and its body.
        self._received: queue.Queue[tuple[str | None, bytes]] = queue.Queue()
        self._server: ThreadingHTTPServer | None = None
        self._subscription_id: str | None = None
        # Why the receiver's subscription could not be deleted at the end (None: it was).
        self.not_deleted: str | None = None

    @property
    def subscription_id(self) -> str | None:
        return self._subscription_id

    def __enter__(self) -> MockEventSource:
        received = self._received

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.put((self.headers.get("Content-Type"), self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        threading.Thread(
            target=self._server.serve_forever, name="pact-event-receiver", daemon=True
        ).start()
        try:
            answer = self._client.post(
                "/v1/webhook-subscriptions",
                json={"url": f"http://127.0.0.1:{self._server.server_port}/events"},
            )
            answer.raise_for_status()
            try:
                created = answer.json()
                # SISDMK answers in its envelope, KKI with the subscription itself.
                self._subscription_id = str(created.get("data", created)["id"])
            except (ValueError, KeyError, TypeError, AttributeError):
                raise PactVerificationError(
                    f"POST /v1/webhook-subscriptions answered {answer.status_code} without the "
                    "subscription's id"
                ) from None
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A subscription left behind is said (`not_deleted`), not raised: the verification's
        # results stand, and an exception of the `with` body must not be hidden.
        try:
            if self._subscription_id is not None:
                path = f"/v1/webhook-subscriptions/{self._subscription_id}"
                try:
                    answer = self._client.delete(path)
                except httpx.HTTPError as error:
                    self.not_deleted = f"DELETE {path} failed ({type(error).__name__})"
                else:
                    if not answer.is_success and answer.status_code != 404:
                        self.not_deleted = f"DELETE {path} answered {answer.status_code}"
        finally:
            self._stop()

    def _stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._client.close()

    def __call__(self, description: str) -> bytes:
        """The body the mock delivers for an event of the interaction's type."""
        event_type = event_type_of(description)
        answer = self._client.post(
            "/__admin/events",
            json={"type": event_type, "subscription_id": self._subscription_id},
        )
        if answer.status_code != 202:
            raise RuntimeError(
                f"the mock would not emit {event_type}: {answer.status_code} {answer.text[:300]}"
            )
        try:
            event_id = str(answer.json()["events"][0]["event_id"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise RuntimeError(
                f"the mock named no event_id when asked to emit {event_type}"
            ) from None
        return self._delivery_of(event_id)

    def _delivery_of(self, event_id: str) -> bytes:
        # One deadline for the event: other events' redeliveries must not extend the wait.
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                content_type, body = self._received.get(
                    timeout=max(0.0, deadline - time.monotonic())
                )
            except queue.Empty:
                raise TimeoutError(
                    f"event {event_id} was not delivered within {self._timeout_s:.0f} s"
                ) from None
            try:
                delivered = json.loads(body)
            except ValueError:
                # Not an event at all. Handed to the verifier, it would fail with the parser's
                # words quoted, which the report masks as a value.
                raise RuntimeError(
                    f"the delivery received while waiting for event {event_id} is not JSON "
                    f"({len(body):,} bytes, {_content_type_said(content_type)})"
                ) from None
            if not isinstance(delivered, dict) or delivered.get("event_id") == event_id:
                return body
            # An older event's redelivery: not the one asked for.
