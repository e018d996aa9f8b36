"""Fixtures every test folder may use."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The integration suite's shared fixtures, one module (no chains of conftest imports).
# tests.support.keycloak: the run's one Keycloak, shared by the modules (and xdist workers).
pytest_plugins = [
    "tests.support.adapter_cli",
    "tests.support.fixtures",
    "tests.support.keycloak",
]


def pytest_collection_finish(session: pytest.Session) -> None:
    """The collected modules live as long as the run: out of the collector's way (`gc.freeze`),
    and collections made rarer. With Python's default thresholds the collector took 5.1 s of a
    worker's 39 s of CPU on tests/unit/mocks and the N=10,000 sync equality, 1.5 s with these
    (docs/benchmarks.md, "The test command on a fresh machine")."""
    gc.collect()  # what is garbage now is finalised now, not frozen for the run
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
