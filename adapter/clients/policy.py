"""The one place where call policy lives: retries, `Retry-After`, retry budget, circuit breaker,
the mapping of HTTP outcomes to errors, and the metrics about external calls.

Every client sends its requests through a `ResilientCaller`; nothing else retries.
"""

from __future__ import annotations

import enum
import os
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httpx
import structlog
import tenacity
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapter.clients.errors import (
    AuthenticationFailed,
    CircuitOpen,
    ContractViolation,
    NotFound,
    UntrustedCertificate,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from adapter.errors import ConfigurationError
from adapter.observability.metric_sets import MetricSet
from retry_after import parse_retry_after

log = structlog.get_logger(__name__)

# Transport failures that say nothing about our request: the same request may well work later.
TRANSIENT_TRANSPORT_ERRORS: Final = (
    httpx.TimeoutException,  # connect, read, write and pool timeouts
    httpx.NetworkError,  # connection refused or reset, read/write errors
    httpx.RemoteProtocolError,  # the peer broke HTTP, e.g. closed mid-body (truncated answer)
)
# The errors a retry may cure; `CircuitOpen` is excluded explicitly (see `_retryable`).
RETRY_ON: Final = (UpstreamUnavailable, UpstreamRateLimited)


# -- switching retries off in tests ------------------------------------------------------------

_retries_enabled = True


def disable_retries(disabled: bool = True) -> None:
    """Make every client try each call once and never sleep (for tests); `False` undoes it."""
    global _retries_enabled
    _retries_enabled = not disabled


def retries_enabled() -> bool:
    return _retries_enabled


# -- retry policy --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. Waits grow as ``base_delay_s * 2**n`` up to ``max_delay_s``, with full
    jitter (a uniform draw between 0 and that); a `Retry-After` is honoured when it is at most
    ``max_retry_after_s``, and ends retrying when it is longer (the error carries it, so a queue
    can reschedule instead of holding a worker).

    The retry budget lets retries be at most ``budget_ratio`` of requests (plus a reserve of
    ``budget_reserve`` retries), so a failing system does not get several times its normal load.
    """

    max_attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    max_retry_after_s: float = 30.0
    budget_ratio: float = 0.2
    budget_reserve: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("delays must not be negative")
        if not 0 <= self.budget_ratio <= 1 or self.budget_reserve < 0:
            raise ValueError("budget_ratio must be in 0..1 and budget_reserve not negative")

    def backoff_s(self, retry_number: int, draw: Callable[[], float] = random.random) -> float:
        """The jittered wait before retry `retry_number` (1 for the first retry)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry_number - 1))
        return ceiling * draw()


# For a caller that has a better place to wait than a thread in a call: the event worker (its
# queue retries with its own backoff) and live look-ups (the stored copy is served at once).
# One quick retry; a Retry-After longer than 2 s ends the call, and the error carries it.
ONE_QUICK_RETRY: Final = RetryPolicy(
    max_attempts=2, base_delay_s=0.2, max_delay_s=1.0, max_retry_after_s=2.0
)


class RetryBudget:
    """A token bucket: each call adds ``ratio`` of a token, each retry takes a whole one."""

    def __init__(self, ratio: float, reserve: float) -> None:
        self._ratio = ratio
        self._capacity = reserve
        self._tokens = reserve
        self._lock = threading.Lock()

    @classmethod
    def for_policy(cls, policy: RetryPolicy) -> RetryBudget:
        return cls(policy.budget_ratio, policy.budget_reserve)

    @property
    def tokens(self) -> float:
        return self._tokens

    def on_call(self) -> None:
        with self._lock:
            self._tokens = min(self._capacity, self._tokens + self._ratio)

    def try_spend(self) -> bool:
        with self._lock:
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


# -- circuit breaker -----------------------------------------------------------------------------


class BreakerState(enum.Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Per external system: opens after ``failure_threshold`` consecutive failures, lets one
    trial call through after ``reset_timeout_s`` (half-open), and closes when it succeeds.

    Only `UpstreamUnavailable` counts as a failure; a 4xx, a 429 or a contract violation means
    the system is up and answering.
    """

    def __init__(
        self,
        system: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_timeout_s < 0:
            raise ValueError("failure_threshold must be ≥ 1 and reset_timeout_s ≥ 0")
        self.system = system
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._trials = 0  # the number of the last trial let through
        self._watchers: list[Callable[[BreakerState], None]] = []

    def watch(self, watcher: Callable[[BreakerState], None]) -> None:
        """Call `watcher` with the state now and at every change of it: at each call that
        changes it, and when an open breaker's reset timeout ends (half-open) even if no call
        comes. Called under the breaker's lock, so the states reach it in order; it must be
        quick and must not use the breaker."""
        with self._lock:
            self._watchers.append(watcher)
            watcher(self._state())

    def _changed_locked(self) -> None:
        state = self._state()
        for watcher in self._watchers:
            watcher(state)
        if state is BreakerState.OPEN and self._watchers:
            # Open turns half-open with time alone: say so then, not at the next call, which
            # may never come to a process that is not asked for this system.
            opened_at = self._opened_at
            timer = threading.Timer(self.reset_timeout_s, self._timed_out, args=(opened_at,))
            timer.daemon = True
            timer.start()

    def _timed_out(self, opened_at: float | None) -> None:
        with self._lock:
            if self._opened_at == opened_at:  # not closed or opened again since
                self._changed_locked()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_timeout_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self, operation: str) -> int:
        """Raise `CircuitOpen` unless a call may go out now. 0 for an ordinary call; for the
        half-open breaker's one trial call its number, which its outcome is then recorded
        with (``trial=``): a trial that ends after the breaker closed and opened again is not
        the trial of the new open period."""
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return 0
            if state is BreakerState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                self._trials += 1
                return self._trials
            assert self._opened_at is not None
            retry_in = max(0.0, self._opened_at + self.reset_timeout_s - self._clock())
        raise CircuitOpen(system=self.system, operation=operation, retry_in_s=retry_in)

    # A call let through while the breaker was closed may end after it opened and half-opened,
    # and a trial may end after an answer to such a call closed the breaker: an answer still
    # closes it (the system is up), but a failure is the outage that opened it, not a new one,
    # so it neither restarts the open period nor ends a trial; only the current trial's own
    # outcome ends the trial, so no second trial goes out beside the first.

    def _current_trial(self, trial: int) -> bool:
        return bool(trial) and self._trial_running and trial == self._trials

    def record_success(self, *, trial: int = 0) -> None:
        with self._lock:
            changed = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._trial_running = False  # closed: no trial is needed any more
            if changed:
                self._changed_locked()

    def record_failure(self, *, trial: int = 0) -> None:
        with self._lock:
            self._failures += 1
            current = self._current_trial(trial)
            if current:
                self._trial_running = False
            elif self._opened_at is not None:
                return  # from before it opened, or an earlier trial (see above)
            if current or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._changed_locked()

    def record_neutral(self, *, trial: int = 0) -> None:
        """The call ended in a way that says nothing about health (e.g. 429): if it was the
        trial, another call may be the trial."""
        if trial:
            with self._lock:
                if self._current_trial(trial):
                    self._trial_running = False


# -- metrics -------------------------------------------------------------------------------------


def system_label(system: str) -> str:
    """A system as metric labels name it: ``kki``, ``sisdmk``, as the store's `connections`,
    the CLI, the dashboards and the alerts do, however the messages spell it (``KKI``)."""
    return system.lower()


class ClientMetrics(MetricSet):
    """Prometheus metrics about external calls. Labels are the system (`system_label`), the
    operationId and a status class, never a URL or a value from a request."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "hf_external_call_duration_seconds",
            "Duration of one HTTP exchange with an external system (each attempt)",
            ["system", "operation"],
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.calls = Counter(
            "hf_external_calls_total",
            "HTTP exchanges with external systems by outcome: 2xx..5xx, transport_error, "
            "circuit_open",
            ["system", "operation", "status_class"],
            registry=registry,
        )
        self.retries = Counter(
            "hf_external_call_retries_total",
            "Retries of calls to external systems, by what caused them",
            ["system", "operation", "cause"],
            registry=registry,
        )
        self.retries_denied = Counter(
            "hf_external_call_retries_denied_total",
            "Retries not made because the retry budget was spent",
            ["system", "operation"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "hf_circuit_breaker_state",
            "Circuit breaker state per external system: 0 closed, 1 half-open, 2 open",
            ["system"],
            registry=registry,
            # Several processes (gunicorn workers): the worst state of those alive.
            multiprocess_mode="livemax",
        )

    @classmethod
    def register(cls, registry: CollectorRegistry) -> ClientMetrics:
        return cls(registry)

    def track_breaker(self, breaker: CircuitBreaker) -> None:
        gauge = self.breaker_state.labels(system_label(breaker.system))
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # The scrape reads every process's files, not this process's objects: a function
            # read at scrape time would never be written there (it showed 0, closed, always).
            breaker.watch(lambda state: gauge.set(state.value))
        else:
            # Read at scrape time, so the open → half-open transition (a matter of time) too.
            gauge.set_function(lambda: breaker.state.value)


# -- outcomes → errors (the one place that decides what a status means) -------------------------


def error_for_response(system: str, operation: str, response: httpx.Response) -> UpstreamError:
    """The error a non-2xx answer means. Upstream messages are left out: they may echo input."""
    status = response.status_code
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return UpstreamRateLimited(
            "rate limited (429)", system=system, operation=operation, retry_after_s=retry_after
        )
    if status >= 500:
        return UpstreamUnavailable(
            f"server error ({status})",
            system=system,
            operation=operation,
            status=status,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status == 401:
        return AuthenticationFailed(
            "credentials refused (401)", system=system, operation=operation, status=status
        )
    if status == 404:
        return NotFound("no such record (404)", system=system, operation=operation, status=status)
    if status >= 400:
        return UpstreamRejected(
            f"request rejected ({status})", system=system, operation=operation, status=status
        )
    # 1xx/3xx: not in any contract; redirects are not followed (they could leak the API key).
    return ContractViolation(
        f"unexpected status {status}", system=system, operation=operation, status=status
    )


# -- the retry loop --------------------------------------------------------------------------


def _retryable(error: BaseException) -> bool:
    return isinstance(error, RETRY_ON) and not isinstance(error, CircuitOpen | UntrustedCertificate)


def _cause(error: BaseException) -> str:
    if isinstance(error, UpstreamRateLimited):
        return "rate_limited"
    if isinstance(error, UpstreamError) and error.status is not None:
        return "server_error"
    return "transport_error"


def certificate_refusal(error: BaseException) -> str | None:
    """Why TLS verification refused the server's certificate, when that is what `error` (an
    httpx error, raised from httpcore's, raised from `ssl`'s) comes down to; else None."""
    seen: BaseException | None = error
    for _ in range(8):  # the chain is three long; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or "certificate verify failed")
        seen = seen.__cause__ or seen.__context__
    return None


def _transport_message(error: httpx.RequestError) -> str:
    # The exception's own text may hold the URL (with an identifier in the path): name it only.
    name = type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({name})"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"connection broken mid-answer ({name})"
    return f"connection failed ({name})"


class ResilientCaller:
    """Sends one logical call through the breaker and the retry loop, timing every attempt.

    `send` performs one HTTP exchange and returns the fully read response; the caller returns
    the first 2xx response or raises one of the errors in `adapter.clients.errors`.
    """

    def __init__(
        self,
        system: str,
        *,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        budget: RetryBudget | None = None,
        metrics: ClientMetrics | None = None,
        sleep: Callable[[float], None] = time.sleep,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.system = system  # as messages name it
        self._label = system_label(system)
        self.policy = policy if policy is not None else RetryPolicy()
        self.breaker = breaker if breaker is not None else CircuitBreaker(system)
        self.budget = budget if budget is not None else RetryBudget.for_policy(self.policy)
        self.metrics = metrics if metrics is not None else ClientMetrics.for_registry()
        self.metrics.track_breaker(self.breaker)
        self._sleep = sleep
        self._draw = draw

    def call(self, operation: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        self.budget.on_call()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            wait=self._wait,
            stop=lambda state: self._stop(operation, state),
            before_sleep=lambda state: self._before_sleep(operation, state),
            sleep=self._sleep,
            reraise=True,
        )
        response: httpx.Response = retrying(self._attempt, operation, send)
        return response

    # tenacity hooks

    @staticmethod
    def _error(state: tenacity.RetryCallState) -> BaseException | None:
        return state.outcome.exception() if state.outcome is not None else None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        backoff = self.policy.backoff_s(state.attempt_number, self._draw)
        error = self._error(state)
        retry_after = error.retry_after_s if isinstance(error, UpstreamError) else None
        return backoff if retry_after is None else max(backoff, retry_after)

    def _stop(self, operation: str, state: tenacity.RetryCallState) -> bool:
        if not _retries_enabled or state.attempt_number >= self.policy.max_attempts:
            return True
        error = self._error(state)
        retry_after = error.retry_after_s if isinstance(error, UpstreamError) else None
        if retry_after is not None and retry_after > self.policy.max_retry_after_s:
            return True  # the error carries retry_after_s; a queue can reschedule
        if not self.budget.try_spend():
            self.metrics.retries_denied.labels(self._label, operation).inc()
            log.warning("external_call_retry_budget_spent", system=self.system, operation=operation)
            return True
        return False

    def _before_sleep(self, operation: str, state: tenacity.RetryCallState) -> None:
        error = self._error(state)
        cause = _cause(error) if error is not None else "unknown"
        self.metrics.retries.labels(self._label, operation, cause).inc()
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.info(
            "external_call_retry",
            system=self.system,
            operation=operation,
            attempt=state.attempt_number,
            cause=cause,
            wait_s=round(wait, 3),
        )

    # one attempt

    def _attempt(self, operation: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        try:
            trial = self.breaker.before_call(operation)
        except CircuitOpen:
            self.metrics.calls.labels(self._label, operation, "circuit_open").inc()
            raise
        # The breaker hears each outcome before the metrics do: a metric that fails (a
        # multiprocess file) must not leave a half-open trial held, refusing every later call.
        started = time.perf_counter()
        try:
            response = send()
        except TRANSIENT_TRANSPORT_ERRORS as exc:
            self.breaker.record_failure(trial=trial)
            self._observe(operation, started, "transport_error")
            refusal = certificate_refusal(exc)
            if refusal is not None:
                raise UntrustedCertificate(
                    f"TLS certificate verify failed ({refusal}): the server's certificate does "
                    "not chain to CA_BUNDLE (or, unset, the default CA bundle); not retried",
                    system=self.system,
                    operation=operation,
                ) from exc
            raise UpstreamUnavailable(
                _transport_message(exc), system=self.system, operation=operation
            ) from exc
        except httpx.DecodingError as exc:
            self.breaker.record_success(trial=trial)
            self._observe(operation, started, "transport_error")
            raise ContractViolation(
                "the body could not be decoded (bad Content-Encoding)",
                system=self.system,
                operation=operation,
            ) from exc
        except httpx.RequestError as exc:
            # Unsupported scheme, proxy or local protocol errors: ours to fix, not worth retrying.
            self.breaker.record_neutral(trial=trial)
            self._observe(operation, started, "transport_error")
            raise ConfigurationError(
                f"{self.system} {operation}: cannot send the request ({type(exc).__name__}); "
                "check the base URL and proxy settings"
            ) from exc
        except ContractViolation:
            # Refused while it was read (larger than the client takes): it answered, so it is up.
            self.breaker.record_success(trial=trial)
            self._observe(operation, started, "contract_violation")
            raise
        except BaseException:
            # Anything else (a bug, an interrupt) says nothing about the system, but must free a
            # half-open trial: held, every later call would be refused until a restart.
            self.breaker.record_neutral(trial=trial)
            raise
        status_class = f"{response.status_code // 100}xx"
        if response.is_success:
            self.breaker.record_success(trial=trial)
            self._observe(operation, started, status_class)
            return response
        try:
            error = error_for_response(self.system, operation, response)
        except BaseException:
            self.breaker.record_neutral(trial=trial)
            raise
        if isinstance(error, UpstreamUnavailable):
            self.breaker.record_failure(trial=trial)
        elif isinstance(error, UpstreamRateLimited):
            self.breaker.record_neutral(trial=trial)
        else:
            self.breaker.record_success(trial=trial)  # it answered, so it is up
        self._observe(operation, started, status_class)
        raise error

    def _observe(self, operation: str, started: float, status_class: str) -> None:
        self.metrics.latency.labels(self._label, operation).observe(time.perf_counter() - started)
        self.metrics.calls.labels(self._label, operation, status_class).inc()


__all__ = [
    "ONE_QUICK_RETRY",
    "RETRY_ON",
    "TRANSIENT_TRANSPORT_ERRORS",
    "BreakerState",
    "CircuitBreaker",
    "ClientMetrics",
    "ResilientCaller",
    "RetryBudget",
    "RetryPolicy",
    "disable_retries",
    "error_for_response",
    "retries_enabled",
    "system_label",
]
