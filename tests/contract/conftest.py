"""Pact fixtures: where the consumer tests write their pacts.

Pacts go to a fresh directory per session (`HF_PACT_OUTPUT_DIR` overrides it, which is how
`test_pact_files.py` regenerates them); contracts/pacts/ is only written by the refresh.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pact import Pact

from tests.contract.pact_support import CONSUMER, PactFactory


@pytest.fixture(scope="session")
def pact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("HF_PACT_OUTPUT_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("pacts")


@pytest.fixture
def new_pact(pact_dir: Path) -> Iterator[PactFactory]:
    """`new_pact(provider)`: a pact with one test's interactions, merged into `pact_dir` after."""
    made: list[Pact] = []

    def make(provider: str) -> Pact:
        pact = Pact(CONSUMER, provider).with_specification("V4")
        made.append(pact)
        return pact

    yield make
    for pact in made:
        pact.write_file(pact_dir)
