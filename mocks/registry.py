"""The systems `hf-mock` can imitate, by command name."""

from __future__ import annotations

from mocks.core.system import MockSystem
from mocks.kki.system import KkiSystem
from mocks.sisdmk.system import SisdmkSystem

SYSTEMS: dict[str, MockSystem] = {"kki": KkiSystem(), "sisdmk": SisdmkSystem()}


def system_named(name: str) -> MockSystem:
    try:
        return SYSTEMS[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; choose one of {', '.join(SYSTEMS)}") from None
