"""The objects `db upgrade` checks the ownership of are the ones the migrations create."""

from __future__ import annotations

import re

import pytest

from adapter.store.database import MIGRATIONS, adapter_functions

# In any case, optionally schema-qualified, each part optionally a quoted identifier.
_CREATED_FUNCTION = re.compile(
    r'\bCREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?:(?:"[^"]+"|\w+)\s*\.\s*)?'
    r'(?:"([^"]+)"|(\w+))\s*\(',
    re.IGNORECASE,
)


def _created_functions(source: str) -> set[str]:
    return {quoted or plain for quoted, plain in _CREATED_FUNCTION.findall(source)}


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE FUNCTION audit_x() RETURNS trigger",
        "create or replace function audit_x() returns trigger",
        "CREATE OR REPLACE FUNCTION public.audit_x()",
        'CREATE FUNCTION "public"."audit_x" ()',
        'Create Or Replace\n    Function "audit_x"(',
    ],
)
def test_the_pattern_finds_a_created_function_however_it_is_written(statement: str) -> None:
    assert _created_functions(f'op.execute("""{statement}""")') == {"audit_x"}


def test_adapter_functions_are_every_function_the_migrations_create() -> None:
    created = {
        name
        for migration in (MIGRATIONS / "versions").glob("*.py")
        for name in _created_functions(migration.read_text(encoding="utf-8"))
    }

    assert created  # the pattern still finds them
    assert set(adapter_functions()) == created
