"""The objects `db upgrade` checks the ownership of are the ones the migrations create."""

from __future__ import annotations

import re

from adapter.store.database import MIGRATIONS, adapter_functions

_CREATED_FUNCTION = re.compile(r"CREATE (?:OR REPLACE )?FUNCTION (\w+)\(")


def test_adapter_functions_are_every_function_the_migrations_create() -> None:
    created = {
        name
        for migration in (MIGRATIONS / "versions").glob("*.py")
        for name in _CREATED_FUNCTION.findall(migration.read_text(encoding="utf-8"))
    }

    assert created  # the pattern still finds them
    assert set(adapter_functions()) == created
