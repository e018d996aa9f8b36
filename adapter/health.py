"""Liveness, readiness and metrics: ``/healthz``, ``/readyz``, ``/metrics``.

Readiness runs named checks (`Readiness.add`) and reuses their answer for ``READINESS_CACHE_S``,
so a flood of unauthenticated probes costs one round of checks per window. With ``OPS_BIND``
set, ``/readyz`` and ``/metrics`` leave the public app for a small ops app (`ops_app`) that
`ByListener` serves on that address only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, cast

from flask import Blueprint, Flask, Response, current_app, jsonify
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

READINESS: Final = "hf_readiness"
OPS_APP: Final = "hf_ops_app"

# A check returns None when ready, or a short reason (no secrets, no personal data).
ReadinessCheck = Callable[[], str | None]

blueprint = Blueprint("health", __name__)  # /healthz: no dependency, served everywhere
ops_blueprint = Blueprint("ops", __name__)  # /readyz and /metrics: the public port or OPS_BIND


class Readiness:
    """The readiness checks of one app and their last answer, reused for `max_age_s`."""

    def __init__(self, max_age_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._checks: dict[str, ReadinessCheck] = {}
        # Checks whose failure is reported but does not make the process unready.
        self._reported_only: set[str] = set()
        # Held while the checks run: probes arriving meanwhile wait and share that round.
        self._lock = threading.Lock()
        self._answer: tuple[float, dict[str, str | None]] | None = None

    def add(self, name: str, check: ReadinessCheck, *, gates: bool = True) -> None:
        """`check` under `name`; with `gates` False its failure is reported (``degraded``)
        but the process stays ready: a dependency every replica shares and can serve without
        (the broker: the outbox keeps the events; the SSO: cached keys) must not pull every
        replica out of the load balancer at once."""
        with self._lock:
            self._checks[name] = check
            if not gates:
                self._reported_only.add(name)
            self._answer = None

    def gating(self, name: str) -> bool:
        return name not in self._reported_only

    def results(self) -> dict[str, str | None]:
        """Each check's problem (None when fine), run again only when the last answer is old."""
        with self._lock:
            if self._answer is not None and self._clock() - self._answer[0] < self._max_age_s:
                return self._answer[1]
            results = {name: check() for name, check in self._checks.items()}
            self._answer = (self._clock(), results)
            return results


def init_app(app: Flask, readiness: Readiness, *, ops_routes: bool = True) -> None:
    """``/healthz`` on `app`; ``/readyz`` and ``/metrics`` as well unless `ops_routes` is False."""
    app.extensions[READINESS] = readiness
    app.register_blueprint(blueprint)
    if ops_routes:
        app.register_blueprint(ops_blueprint)


def ops_app(
    readiness: Readiness, *, after_request: Iterable[Callable[[Response], Response]] = ()
) -> Flask:
    """The app `serve` answers on ``OPS_BIND``: ``/healthz``, ``/readyz`` and ``/metrics`` only."""
    app = Flask("adapter-ops")
    init_app(app, readiness)
    for hook in after_request:
        app.after_request(hook)
    return app


class ByListener:
    """WSGI: requests that arrived on the ops listener's port go to `ops`, all others to `public`.

    Gunicorn and werkzeug take ``SERVER_PORT`` from the listening TCP socket, not from the
    request, so a caller cannot choose it (a unix-socket bind would take it from ``Host``:
    `serve` refuses that combination).
    """

    def __init__(self, public: WSGIApplication, ops: WSGIApplication, ops_port: int) -> None:
        self._public = public
        self._ops = ops
        self._ops_port = str(ops_port)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        app = self._ops if environ.get("SERVER_PORT") == self._ops_port else self._public
        return app(environ, start_response)


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify(status="ok"), 200


@ops_blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    readiness = cast(Readiness, current_app.extensions[READINESS])
    results = readiness.results()
    failing = [name for name, result in results.items() if result is not None]
    ready = not any(readiness.gating(name) for name in failing)
    status = "not_ready" if not ready else "degraded" if failing else "ready"
    body = {"status": status, "checks": {name: result or "ok" for name, result in results.items()}}
    return jsonify(body), 200 if ready else 503


@ops_blueprint.get("/metrics")
def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several gunicorn workers: each writes its samples to that folder; add them up here.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    return Response(output, mimetype=CONTENT_TYPE_LATEST)
