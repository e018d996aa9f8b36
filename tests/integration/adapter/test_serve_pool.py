"""A served process keeps a PostgreSQL connection for each request thread and each thread
beside them, so a burst of requests never opens (and closes again) connections beyond the pool."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from adapter.server import SERVE_POOL_BESIDE_THREADS, AdapterServer
from adapter.store.database import upgrade
from tests.integration.adapter.sync.support import adapter_environment

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_the_served_apps_pool_holds_a_connection_per_thread(
    empty_database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    upgrade(url)
    for name, value in adapter_environment(url, "http://127.0.0.1:9", "http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)
    app = AdapterServer({"workers": 1, "worker_class": "gthread", "threads": 12}).load()
    services = app.extensions["hf_services"]
    try:
        assert services.engine.pool.size() == 12 + SERVE_POOL_BESIDE_THREADS
    finally:
        services.close()
