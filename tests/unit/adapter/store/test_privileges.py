"""The runtime role's grants: one per table the migrations create, the audit trail's narrowed."""

from __future__ import annotations

import re

import pytest

from adapter.store import privileges
from adapter.store.database import adapter_tables
from adapter.store.privileges import RoleError, runtime_grants

GRANT = re.compile(r'GRANT (?P<rights>.+) ON TABLE "(?P<table>[a-z_]+)" TO "hf_runtime"')


def granted() -> dict[str, str]:
    rights: dict[str, str] = {}
    for statement in runtime_grants("hf_runtime"):
        if statement.startswith("REVOKE"):
            continue
        match = GRANT.fullmatch(statement)
        assert match is not None, statement
        assert match["table"] not in rights, f"{match['table']} granted twice"
        rights[match["table"]] = match["rights"]
    return rights


def test_every_table_narrowed_by_name_is_a_table_the_migrations_create() -> None:
    # A table renamed in the models but not here would silently get SELECT, INSERT, UPDATE,
    # DELETE under its new name: the audit trail's own rows among them.
    assert set(privileges._SPECIAL) <= set(adapter_tables())


def test_each_table_is_revoked_then_granted_once() -> None:
    statements = runtime_grants("hf_runtime")
    tables = adapter_tables()
    revoked = [s for s in statements if s.startswith("REVOKE")]
    assert revoked == [f'REVOKE ALL ON TABLE "{table}" FROM "hf_runtime"' for table in tables]
    assert statements.index(revoked[-1]) < min(
        i for i, s in enumerate(statements) if s.startswith("GRANT")
    )
    assert sorted(granted()) == tables


def test_the_audit_trail_can_be_appended_and_sealed_but_not_rewritten() -> None:
    rights = granted()
    for table in ("audit_events", "audit_chain_head", "audit_writers", "alembic_version"):
        assert "DELETE" not in rights[table], table
    assert rights["audit_events"] == "SELECT, INSERT, UPDATE (chain_seq, prev_hash, hash)"
    assert rights["audit_chain_head"] == "SELECT, UPDATE (changed_at)"
    assert rights["audit_writers"] == "SELECT, INSERT, UPDATE (n)"
    assert rights["blind_index_keys"] == "SELECT, INSERT"
    assert rights["alembic_version"] == "SELECT"
    assert rights["health_workers"] == "SELECT, INSERT, UPDATE, DELETE"


@pytest.mark.parametrize("role", ["", "HF", "1role", 'x"; DROP TABLE audit_events; --', "a" * 64])
def test_a_role_name_that_is_not_a_plain_identifier_is_refused(role: str) -> None:
    with pytest.raises(RoleError, match="role name"):
        runtime_grants(role)
