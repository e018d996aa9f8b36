"""The API tests' stack: the shared test IdP, both mocks, PostgreSQL filled by a real sync, and the
adapter over HTTP. Anything missing fails the tests with what to start; nothing is skipped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapter.store.crypto import BlindIndex, FieldCipher
from harness.idp import IdpProcess
from tests.integration.adapter.api.stack import OPS, PORTAL, READONLY, SIZE, Adapter, served_adapter
from tests.integration.adapter.sync.support import Mock, run_sync, running_mock
from tests.support.databases import PostgresServer


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=SIZE, seed=11)


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=SIZE, seed=11)


@pytest.fixture(scope="module")
def adapter(
    postgres_server: PostgresServer,
    idp: IdpProcess,
    kki: Mock,
    sisdmk: Mock,
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> Iterator[Adapter]:
    database = postgres_server.create_database()
    with served_adapter(database, idp, kki, sisdmk) as served:
        for system in ("sisdmk", "kki"):
            result = run_sync(
                system,
                kki if system == "kki" else sisdmk,
                served.sessions,
                cipher,
                blind_index,
                full=True,
            )
            assert result.succeeded, result.error
        yield served


@pytest.fixture(scope="module")
def tokens(idp: IdpProcess) -> dict[str, str]:
    return {client: idp.token(client) for client in (PORTAL, OPS, READONLY)}


@pytest.fixture(scope="module")
def people(sisdmk: Mock) -> list[dict[str, Any]]:
    """SISDMK's workers as the mock holds them (the NIKs and names to look for)."""
    return sisdmk.records("health-workers")
