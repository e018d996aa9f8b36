"""The adapter served over real HTTP (werkzeug, threaded) with the test IdP, real mocks and a
migrated store; shared by the API tests and the Schemathesis run."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from adapter.app import create_app
from adapter.clients.http import tls_context
from adapter.settings import load_settings
from adapter.store.database import session_factory
from harness.idp import IdpProcess, IdpUnavailable
from harness.processes import free_port
from tests.integration.adapter.sync.support import Mock, adapter_environment, migrated
from tests.support.databases import AUDIT_KEYS

AUDIENCE = "hf-adapter"
PORTAL = "healthforce-portal"  # healthworkers:read, healthworkers:read:pii, audit:read
OPS = "hf-ops"  # sync:run, integrations:admin, events:admin, audit:read
READONLY = "hf-readonly"  # healthworkers:read
# People in each mock of the API tests.
SIZE = 30


def started_idp() -> IdpProcess:
    idp = IdpProcess()
    try:
        return idp.start()
    except IdpUnavailable as exc:
        idp.close()
        pytest.fail(str(exc), pytrace=False)


@dataclass
class Adapter:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=30.0, verify=tls_context(None)
        )


@contextmanager
def served_adapter(
    database: URL,
    idp: IdpProcess,
    kki: Mock,
    sisdmk: Mock,
    environment: Mapping[str, str] | None = None,
) -> Iterator[Adapter]:
    """`create_app` on the real settings (plus `environment`), served on a free port until the
    block ends."""
    url = database.render_as_string(hide_password=False)
    env = (
        adapter_environment(url, kki.url, sisdmk.url)
        | {"OIDC_ISSUER": idp.issuer, "OIDC_AUDIENCE": AUDIENCE}
        | dict(environment or {})
    )
    engine = migrated(database)
    app = create_app(load_settings(env), engine=engine)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="adapter-http", daemon=True)
    thread.start()
    try:
        yield Adapter(
            f"http://127.0.0.1:{port}", engine, session_factory(engine, audit_keys=AUDIT_KEYS)
        )
    finally:
        server.shutdown()
        thread.join(timeout=10)
        engine.dispose()
