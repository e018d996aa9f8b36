"""Liveness, readiness and metrics: ``/healthz``, ``/readyz``, ``/metrics``.

Readiness checks are named callables in ``app.extensions["hf_readiness_checks"]``; another
module adds its own (the SSO's JWKS, say) with `add_readiness_check`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from flask import Blueprint, Flask, Response, current_app, jsonify
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

READINESS_CHECKS: Final = "hf_readiness_checks"

# A check returns None when ready, or a short reason (no secrets, no personal data).
ReadinessCheck = Callable[[], str | None]

blueprint = Blueprint("health", __name__)


def add_readiness_check(app: Flask, name: str, check: ReadinessCheck) -> None:
    app.extensions.setdefault(READINESS_CHECKS, {})[name] = check


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify(status="ok"), 200


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks: dict[str, ReadinessCheck] = current_app.extensions.get(READINESS_CHECKS, {})
    results = {name: check() for name, check in checks.items()}
    ready = all(result is None for result in results.values())
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {name: result or "ok" for name, result in results.items()},
    }
    return jsonify(body), 200 if ready else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several gunicorn workers: each writes its samples to that folder; add them up here.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    return Response(output, mimetype=CONTENT_TYPE_LATEST)
