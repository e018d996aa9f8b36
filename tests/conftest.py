"""Fixtures every test folder may use."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The integration suite's shared fixtures, one module (no chains of conftest imports).
# tests.support.keycloak: the run's one Keycloak, shared by the modules (and xdist workers).
pytest_plugins = ["tests.support.fixtures", "tests.support.keycloak"]
