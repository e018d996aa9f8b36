"""One pair of conformance targets (real mock + breaking proxy) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conformance.support import Target


def _target(system: str) -> Iterator[Target]:
    target = Target(system)
    try:
        yield target
    finally:
        target.close()


@pytest.fixture(scope="module")
def kki_target() -> Iterator[Target]:
    yield from _target("kki")


@pytest.fixture(scope="module")
def sisdmk_target() -> Iterator[Target]:
    yield from _target("sisdmk")
