"""The shared call policy: retries, Retry-After, budget, breaker, outcome mapping, metrics."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import CollectorRegistry

from adapter.clients.errors import (
    AuthenticationFailed,
    CircuitOpen,
    ContractViolation,
    NotFound,
    UntrustedCertificate,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from adapter.clients.policy import (
    BreakerState,
    CircuitBreaker,
    ClientMetrics,
    ResilientCaller,
    RetryBudget,
    RetryPolicy,
    disable_retries,
)
from adapter.errors import AdapterError, ConfigurationError

NOW = datetime(2026, 1, 31, 8, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _retries_on() -> Iterator[None]:
    disable_retries(False)
    yield
    disable_retries(False)


class Script:
    """Answers (or raises) in order; counts the exchanges."""

    def __init__(self, *outcomes: httpx.Response | Exception) -> None:
        self.outcomes = list(outcomes)
        self.sent = 0

    def __call__(self) -> httpx.Response:
        outcome = self.outcomes[min(self.sent, len(self.outcomes) - 1)]
        self.sent += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def answer(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={})


def make_caller(
    *,
    policy: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    sleeps: list[float] | None = None,
    draw: Callable[[], float] = lambda: 1.0,
) -> tuple[ResilientCaller, CollectorRegistry]:
    registry = CollectorRegistry()
    recorded = sleeps if sleeps is not None else []
    caller = ResilientCaller(
        "KKI",
        policy=policy or RetryPolicy(max_attempts=4, base_delay_s=0.1, max_delay_s=1.0),
        breaker=breaker,
        metrics=ClientMetrics.for_registry(registry),
        sleep=recorded.append,
        draw=draw,
    )
    return caller, registry


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=3.0)
    assert [policy.backoff_s(n, lambda: 1.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.backoff_s(3, lambda: 0.25) == 0.5
    assert policy.backoff_s(3, lambda: 0.0) == 0.0


def test_server_errors_are_retried_until_success() -> None:
    sleeps: list[float] = []
    caller, registry = make_caller(sleeps=sleeps)
    script = Script(answer(503), answer(502), answer(200))
    assert caller.call("getRegistration", script).status_code == 200
    assert script.sent == 3
    assert sleeps == [0.1, 0.2]
    retries = registry.get_sample_value(
        "hf_external_call_retries_total",
        {"system": "kki", "operation": "getRegistration", "cause": "server_error"},
    )
    assert retries == 2


def test_server_errors_exhaust_attempts_as_upstream_unavailable() -> None:
    caller, _ = make_caller()
    script = Script(answer(500))
    with pytest.raises(UpstreamUnavailable) as info:
        caller.call("getRegistration", script)
    assert script.sent == 4
    assert info.value.status == 500
    assert info.value.reason == "upstream_unavailable"


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    ],
)
def test_transient_transport_errors_are_retried_and_wrapped(error: Exception) -> None:
    caller, _ = make_caller(policy=RetryPolicy(max_attempts=2, base_delay_s=0))
    script = Script(error)
    with pytest.raises(UpstreamUnavailable) as info:
        caller.call("getRegistration", script)
    assert script.sent == 2
    assert info.value.__cause__ is error


def refused_certificate() -> httpx.ConnectError:
    """What httpx raises when TLS verification refuses the server: ssl's error at the root."""
    root = ssl.SSLCertVerificationError(1, "certificate verify failed")
    root.verify_message = "self-signed certificate in certificate chain"
    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.__cause__ = root
    return error


def test_a_refused_certificate_is_named_and_not_retried() -> None:
    caller, registry = make_caller(policy=RetryPolicy(max_attempts=4, base_delay_s=0))
    script = Script(refused_certificate())
    with pytest.raises(UntrustedCertificate) as info:
        caller.call("getRegistration", script)
    assert script.sent == 1
    assert "TLS certificate verify failed" in str(info.value)
    assert "self-signed certificate in certificate chain" in str(info.value)
    assert "CA_BUNDLE" in str(info.value)
    # Still "unavailable" to its callers: a look-up serves the stored copy.
    assert isinstance(info.value, UpstreamUnavailable)
    assert info.value.reason == "upstream_unavailable"
    retries = registry.get_sample_value(
        "hf_external_call_retries_total",
        {"system": "kki", "operation": "getRegistration", "cause": "transport_error"},
    )
    assert retries is None


def test_unsupported_protocol_is_a_configuration_error_and_not_retried() -> None:
    caller, _ = make_caller()
    script = Script(httpx.UnsupportedProtocol("Request URL is missing an 'http://' protocol."))
    with pytest.raises(ConfigurationError):
        caller.call("getRegistration", script)
    assert script.sent == 1


@pytest.mark.parametrize(
    ("status", "error_type", "reason"),
    [
        (400, UpstreamRejected, "upstream_rejected"),
        (403, UpstreamRejected, "upstream_rejected"),
        (422, UpstreamRejected, "upstream_rejected"),
        (401, AuthenticationFailed, "authentication_failed"),
        (404, NotFound, "not_found"),
        (302, ContractViolation, "contract_violation"),
    ],
)
def test_client_errors_are_not_retried(
    status: int, error_type: type[AdapterError], reason: str
) -> None:
    caller, _ = make_caller()
    script = Script(answer(status))
    with pytest.raises(error_type) as info:
        caller.call("getRegistration", script)
    assert script.sent == 1
    assert info.value.reason == reason


def test_retry_after_seconds_is_honoured() -> None:
    sleeps: list[float] = []
    caller, _ = make_caller(sleeps=sleeps)
    script = Script(answer(429, {"Retry-After": "3"}), answer(200))
    caller.call("listRegistrations", script)
    assert sleeps == [3.0]


def test_retry_after_date_is_honoured() -> None:
    sleeps: list[float] = []
    caller, _ = make_caller(sleeps=sleeps)
    later = datetime.now(UTC).timestamp() + 20
    header = datetime.fromtimestamp(later, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    script = Script(answer(503, {"Retry-After": header}), answer(200))
    caller.call("listRegistrations", script)
    assert 18.0 <= sleeps[0] <= 20.0


def test_retry_after_shorter_than_backoff_uses_backoff() -> None:
    sleeps: list[float] = []
    caller, _ = make_caller(sleeps=sleeps, policy=RetryPolicy(base_delay_s=2.0))
    caller.call("listRegistrations", Script(answer(429, {"Retry-After": "1"}), answer(200)))
    assert sleeps == [2.0]


def test_retry_after_beyond_the_cap_ends_retrying_and_is_reported() -> None:
    sleeps: list[float] = []
    caller, _ = make_caller(sleeps=sleeps, policy=RetryPolicy(max_retry_after_s=30))
    script = Script(answer(429, {"Retry-After": "3600"}))
    with pytest.raises(UpstreamRateLimited) as info:
        caller.call("listRegistrations", script)
    assert script.sent == 1
    assert sleeps == []
    assert info.value.retry_after_s == 3600
    assert info.value.reason == "upstream_rate_limited"


def test_rate_limit_after_all_attempts_is_upstream_rate_limited() -> None:
    caller, _ = make_caller(policy=RetryPolicy(max_attempts=3, base_delay_s=0))
    script = Script(answer(429, {"Retry-After": "1"}))
    with pytest.raises(UpstreamRateLimited):
        caller.call("listRegistrations", script)
    assert script.sent == 3


def test_retry_budget_limits_retries_to_a_share_of_calls() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=0, budget_ratio=0.5, budget_reserve=2)
    caller, registry = make_caller(policy=policy)
    failing = Script(answer(503))
    with pytest.raises(UpstreamUnavailable):
        caller.call("getRegistration", failing)
    assert failing.sent == 3  # the reserve of 2 retries, then no more
    again = Script(answer(503))
    with pytest.raises(UpstreamUnavailable):
        caller.call("getRegistration", again)
    assert again.sent == 1  # half a token earned: not enough for a retry
    denied = registry.get_sample_value(
        "hf_external_call_retries_denied_total",
        {"system": "kki", "operation": "getRegistration"},
    )
    assert denied == 2


def test_retry_budget_refills_with_calls() -> None:
    budget = RetryBudget(ratio=0.25, reserve=1)
    assert budget.try_spend()
    assert not budget.try_spend()
    for _ in range(4):
        budget.on_call()
    assert budget.try_spend()


def test_disable_retries_makes_one_attempt_without_sleeping() -> None:
    sleeps: list[float] = []
    caller, _ = make_caller(sleeps=sleeps)
    disable_retries()
    script = Script(answer(503), answer(200))
    with pytest.raises(UpstreamUnavailable):
        caller.call("getRegistration", script)
    assert script.sent == 1
    assert sleeps == []


def test_breaker_opens_after_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("KKI", failure_threshold=3, reset_timeout_s=10, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # the success reset the count
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.before_call("getRegistration")
    assert info.value.retry_in_s == 10
    assert isinstance(info.value, UpstreamUnavailable)


def test_breaker_half_opens_after_cool_down_and_closes_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("KKI", failure_threshold=1, reset_timeout_s=10, clock=clock)
    breaker.record_failure()
    clock.advance(9.9)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call("getRegistration")  # the one trial call
    with pytest.raises(CircuitOpen):
        breaker.before_call("getRegistration")  # others wait for the trial
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_a_call_from_before_the_breaker_opened_does_not_end_its_trial() -> None:
    """A call let through while closed that ends (429: neutral) during the half-open trial freed
    the trial, and a second trial went out beside the first."""
    clock = FakeClock()
    breaker = CircuitBreaker("KKI", failure_threshold=1, reset_timeout_s=10, clock=clock)
    stale = breaker.before_call("getRegistration")  # closed: an ordinary call
    breaker.record_failure()  # another call fails: open
    clock.advance(10)
    trial = breaker.before_call("getRegistration")
    assert (stale, trial) == (0, 1)  # an ordinary call, the first trial
    breaker.record_neutral(trial=stale)  # the old call ends now
    with pytest.raises(CircuitOpen):
        breaker.before_call("getRegistration")  # still waiting for the trial
    breaker.record_success(trial=trial)
    assert breaker.state is BreakerState.CLOSED


def test_a_call_from_before_the_breaker_opened_failing_late_does_not_keep_it_open_longer() -> None:
    """It failed after the breaker had opened, and restarted the open period: with calls of a
    long timeout in flight, a breaker could stay open well past its reset timeout."""
    clock = FakeClock()
    breaker = CircuitBreaker("KKI", failure_threshold=1, reset_timeout_s=10, clock=clock)
    stale = breaker.before_call("getRegistration")  # closed: an ordinary call
    breaker.record_failure()  # another call fails: open
    clock.advance(8)
    breaker.record_failure(trial=stale)  # the old call times out now
    clock.advance(2)
    assert breaker.state is BreakerState.HALF_OPEN  # ten seconds after it opened
    trial = breaker.before_call("getRegistration")
    breaker.record_failure(trial=stale)  # another old one, during the trial
    with pytest.raises(CircuitOpen):
        breaker.before_call("getRegistration")  # still the one trial
    breaker.record_success(trial=trial)
    assert breaker.state is BreakerState.CLOSED


def test_a_trial_ending_after_the_breaker_closed_is_an_ordinary_call() -> None:
    """A late answer to a call from before the breaker opened closed it while its trial was
    out: the trial's failure then reopened it on one failure, and after it opened again an old
    trial's end freed the new period's trial, letting a second one out."""
    clock = FakeClock()
    breaker = CircuitBreaker("KKI", failure_threshold=3, reset_timeout_s=10, clock=clock)
    stale = breaker.before_call("getRegistration")
    for _ in range(3):
        breaker.record_failure()
    clock.advance(10)
    first_trial = breaker.before_call("getRegistration")
    breaker.record_success(trial=stale)  # the old call answers: closed
    breaker.record_failure(trial=first_trial)  # one failure of three, not a trial's
    assert breaker.state is BreakerState.CLOSED

    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(10)
    second_trial = breaker.before_call("getRegistration")
    breaker.record_neutral(trial=first_trial)  # an old trial's end frees nothing
    with pytest.raises(CircuitOpen):
        breaker.before_call("getRegistration")
    breaker.record_failure(trial=first_trial)  # nor reopens: still the one trial out
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(trial=second_trial)
    assert breaker.state is BreakerState.CLOSED


def test_breaker_reopens_when_the_trial_fails() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("KKI", failure_threshold=5, reset_timeout_s=10, clock=clock)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(10)
    trial = breaker.before_call("getRegistration")
    breaker.record_failure(trial=trial)
    assert breaker.state is BreakerState.OPEN
    clock.advance(9)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    ("raised", "state_after"),
    [
        # Refused while read (too large): it answered, so the breaker closes.
        (
            ContractViolation("too large", system="KKI", operation="getRegistration"),
            BreakerState.CLOSED,
        ),
        # A bug or an interrupt says nothing about KKI: the breaker stays half-open, free.
        (RuntimeError("a bug in the send"), BreakerState.HALF_OPEN),
        (KeyboardInterrupt(), BreakerState.HALF_OPEN),
    ],
)
def test_a_trial_call_ending_in_any_other_exception_does_not_wedge_the_breaker(
    raised: BaseException, state_after: BreakerState
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("KKI", failure_threshold=1, reset_timeout_s=10, clock=clock)
    caller, _ = make_caller(breaker=breaker, policy=RetryPolicy(max_attempts=1))
    breaker.record_failure()
    clock.advance(10)  # half-open: the next call is the trial

    def send() -> httpx.Response:
        raise raised

    with pytest.raises(type(raised)):
        caller.call("getRegistration", send)

    assert breaker.state is state_after
    # The trial is over: the next call goes out (it used to be refused until a restart).
    assert caller.call("getRegistration", Script(answer(200))).status_code == 200
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    "outcome",
    [answer(200), answer(503), answer(429), answer(404), httpx.ConnectError("refused")],
    ids=["200", "503", "429", "404", "transport"],
)
def test_a_trial_whose_metrics_fail_to_record_does_not_wedge_the_breaker(
    outcome: httpx.Response | Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metrics were recorded before the breaker heard the outcome: a metric that raised (a
    multiprocess file) left the trial held, and every later call was refused until a restart."""
    clock = FakeClock()
    breaker = CircuitBreaker("KKI", failure_threshold=1, reset_timeout_s=10, clock=clock)
    caller, _ = make_caller(breaker=breaker, policy=RetryPolicy(max_attempts=1))
    breaker.record_failure()
    clock.advance(10)  # half-open: the next call is the trial

    def fail(*args: object) -> None:
        raise OSError("the metrics file is gone")

    with monkeypatch.context() as patched:
        patched.setattr(caller, "_observe", fail)
        with pytest.raises(OSError, match="metrics file"):
            caller.call("getRegistration", Script(outcome))

    clock.advance(10)  # reopened by a failed trial: half-open again
    assert caller.call("getRegistration", Script(answer(200))).status_code == 200


def test_open_breaker_stops_the_retry_loop_and_shows_in_metrics() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("KKI", failure_threshold=2, reset_timeout_s=5, clock=clock)
    caller, registry = make_caller(breaker=breaker, policy=RetryPolicy(base_delay_s=0))
    script = Script(httpx.ConnectError("refused"))
    with pytest.raises(CircuitOpen):
        caller.call("getRegistration", script)
    assert script.sent == 2
    state = registry.get_sample_value("hf_circuit_breaker_state", {"system": "kki"})
    assert state == BreakerState.OPEN.value
    clock.advance(5)
    state = registry.get_sample_value("hf_circuit_breaker_state", {"system": "kki"})
    assert state == BreakerState.HALF_OPEN.value
    assert caller.call("getRegistration", Script(answer(200))).status_code == 200
    assert breaker.state is BreakerState.CLOSED


def test_client_errors_and_rate_limits_do_not_trip_the_breaker() -> None:
    breaker = CircuitBreaker("KKI", failure_threshold=1, reset_timeout_s=5, clock=FakeClock())
    caller, _ = make_caller(breaker=breaker, policy=RetryPolicy(max_attempts=1))
    for status in (404, 400, 429):
        with pytest.raises(AdapterError):
            caller.call("getRegistration", Script(answer(status)))
    assert breaker.state is BreakerState.CLOSED


def test_metrics_label_by_operation_and_status_class() -> None:
    caller, registry = make_caller(policy=RetryPolicy(max_attempts=1))
    caller.call("getRegistration", Script(answer(200)))
    with pytest.raises(NotFound):
        caller.call("getRegistration", Script(answer(404)))
    labels = {"system": "kki", "operation": "getRegistration"}
    assert registry.get_sample_value("hf_external_calls_total", {**labels, "status_class": "2xx"})
    assert registry.get_sample_value("hf_external_calls_total", {**labels, "status_class": "4xx"})
    count = registry.get_sample_value("hf_external_call_duration_seconds_count", labels)
    assert count == 2
