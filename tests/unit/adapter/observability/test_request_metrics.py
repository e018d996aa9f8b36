"""The request metrics' labels are a closed set: a caller cannot add series by inventing
HTTP methods (answered 405 before any token is checked)."""

from __future__ import annotations

from flask import Flask
from prometheus_client import CollectorRegistry

from adapter.api import observability
from adapter.api.observability import RequestMetrics


def test_made_up_methods_count_as_one_other_method() -> None:
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    registry = CollectorRegistry()
    observability.init_app(app, RequestMetrics.for_registry(registry))
    client = app.test_client()
    for index in range(50):
        assert client.open("/healthz", method=f"X{index:05d}").status_code == 405
    assert client.get("/healthz").status_code == 200

    samples = [
        sample
        for metric in registry.collect()
        if metric.name == "hf_http_requests"
        for sample in metric.samples
        if sample.name == "hf_http_requests_total"
    ]
    methods = {sample.labels["method"]: sample.value for sample in samples}
    assert methods == {"_OTHER": 50.0, "GET": 1.0}
