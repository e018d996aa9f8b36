"""The e2e suite's one stack, started once for the package and shared by every scenario.

Package scope, not session: the stack (Keycloak, gunicorn, worker, scheduler, PostgreSQL,
RabbitMQ) is stopped as soon as the last scenario ends instead of idling beside the rest of
the test command until its end."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from e2e.stack import Stack  # noqa: E402 - after the path is set
from harness.keycloak import KeycloakUnavailable  # noqa: E402


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = time.monotonic()
    try:
        whole = Stack(tmp_path_factory.mktemp("e2e"))
    except KeycloakUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        whole.up()
    except BaseException:
        whole.close()
        raise
    print(f"\ne2e stack up in {time.monotonic() - started:.1f} s", file=sys.stderr)
    try:
        yield whole
    finally:
        whole.close()
