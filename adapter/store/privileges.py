"""The runtime database role on PostgreSQL: what ``serve``, ``worker`` and ``schedule`` may do.

They read and write the adapter's tables, append to the audit trail and read it, create
temporary tables of their own session (a sync page's many updates are merged from one), and
nothing more: no UPDATE, DELETE or TRUNCATE of the audit trail, no change of its head but by
appending, no DDL. The migrations run as the tables' owner, which grants these rights
(`hf-adapter db grant`); docs/operations.md shows the roles. `check_runtime_rights` refuses to
start a process whose role lacks the database's ``TEMPORARY`` right, which otherwise would show
only when a large page fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from adapter.errors import AdapterError, ConfigurationError
from adapter.store.database import (
    Ownership,
    adapter_tables,
    connected,
    ownership,
    quoted_identifier,
)

# What the runtime role may do, by table; every other table of `adapter_tables` gets
# `_READ_WRITE`.
_READ_WRITE: Final = "SELECT, INSERT, UPDATE, DELETE"
_SPECIAL: Final = {
    # Append, read and seal (set an entry's place in the chain, once); the BEFORE UPDATE/
    # DELETE/TRUNCATE triggers stand behind this and refuse any other change.
    "audit_events": "SELECT, INSERT, UPDATE (chain_seq, prev_hash, hash)",
    # Sealing locks the head by touching `changed_at`; the number and hash are moved only by
    # the trigger on audit_events, which runs as the owner.
    "audit_chain_head": "SELECT, UPDATE (changed_at)",
    # Appending counts each writer's entries; a trigger lets the count only grow by one.
    "audit_writers": "SELECT, INSERT, UPDATE (n)",
    # Each blind-index key's check value is recorded once, at the first start with that key.
    "blind_index_keys": "SELECT, INSERT",
    # `db check` and start-up checks read the schema's revision.
    "alembic_version": "SELECT",
}
_ROLE_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class RoleError(AdapterError):
    """The runtime role cannot be granted its rights (missing, badly named, or too powerful)."""

    default_reason = "database_role"


class MissingRightError(ConfigurationError):
    """The role a process connects as lacks a right the adapter's writes need."""

    default_reason = "database_right"


def temporary_grant(database: str, role: str) -> str:
    """The statement that lets `role` create temporary tables in `database` (run by the
    database's owner)."""
    return f"GRANT TEMPORARY ON DATABASE {quoted_identifier(database)} TO {quoted_identifier(role)}"


def runtime_grants(role: str) -> list[str]:
    """The statements that give `role` exactly the runtime rights (run as the tables' owner).

    Every right on each table is revoked first, so running them again after a migration (new
    tables) or on a role that had more leaves exactly these.
    """
    if not _ROLE_NAME.fullmatch(role):
        raise RoleError(
            f"role name {role!r}: use 1-63 of a-z, 0-9 and '_', not starting with a digit"
        )
    tables = adapter_tables()
    statements = [f'REVOKE ALL ON TABLE "{table}" FROM "{role}"' for table in tables]
    statements += [
        f'GRANT {_SPECIAL.get(table, _READ_WRITE)} ON TABLE "{table}" TO "{role}"'
        for table in tables
    ]
    return statements


@dataclass(frozen=True)
class Granted:
    """What `grant_runtime_role` ran; `temporary`: the statement the database's owner should
    still run, when the role may create temporary tables but not by a grant of its own (only
    through PUBLIC or another role, which a later REVOKE could take away)."""

    statements: list[str]
    temporary: str | None = None


def grant_runtime_role(engine: Engine, role: str) -> Granted:
    """Run `runtime_grants` for `role` in one transaction, as `engine`'s user (the owner),
    then `temporary_grant` of the database: that one only the database's owner can give, so
    when `role` still lacks the right after it, nothing is granted and `RoleError` says who
    must run it; when the role has it but not by a grant of its own, `Granted.temporary` says so.

    `RoleError` when the role does not exist, is the owner itself, or could act as the owner
    (a member of its role, a superuser, or allowed to bypass row security): its rights would
    then be the owner's, whatever is granted here. `RoleError`, naming them, when `engine`'s
    user does not own every table it grants on: a GRANT on another's table fails, or (with
    some right on it) only warns and grants nothing.
    """
    statements = runtime_grants(role)
    if engine.dialect.name != "postgresql":
        raise RoleError(
            "database roles are a PostgreSQL feature; SQLite has none (docs/security.md says "
            "what the audit trail can promise there)"
        )
    with engine.begin() as connection:
        owned = ownership(connection, adapter_tables())
        if not owned.owners:
            raise RoleError("the adapter's tables are not there yet; run `hf-adapter db upgrade`")
        owners = sorted(set(owned.owners.values()))
        found = connection.execute(
            text(
                "SELECT rolsuper OR rolbypassrls, "
                "bool_or(pg_has_role(rolname, owner, 'MEMBER')) "
                "FROM pg_roles, unnest(CAST(:owners AS text[])) AS owner "
                "WHERE rolname = :role GROUP BY rolsuper, rolbypassrls"
            ),
            {"role": role, "owners": owners},
        ).one_or_none()
        if found is None:
            raise RoleError(
                f"no database role {role!r}; create it first (as a user with CREATEROLE): "
                f"CREATE ROLE {role} LOGIN PASSWORD '...'"
            )
        superuser, acts_as_owner = found
        # Anyone else's GRANTs on a table fail, or with some right on it only warn and grant
        # nothing: refuse before, naming the tables and the role to grant as.
        if owned.not_owned:
            raise RoleError(_not_owner_message(owned, role))
        if superuser or acts_as_owner:
            raise RoleError(
                f"role {role!r} is a superuser, the owner of the adapter's tables "
                f"({', '.join(map(repr, owners))}) or a member of the owner's role: it would keep "
                "the owner's rights. Use a role of its own"
            )
        for statement in statements:
            connection.execute(text(statement))
        database, grantor = connection.execute(
            text("SELECT current_database(), current_user")
        ).one()
        grant = temporary_grant(database, role)
        refused = ""
        try:
            with connection.begin_nested():
                connection.execute(text(grant))
        except DBAPIError as exc:
            refused = f" ({str(exc.orig).splitlines()[0]})"
        # Only the database's owner (or a holder of the grant option) can give it. Anyone else
        # with some right on the database gets a warning and nothing is granted (with none, an
        # error): what counts is whether the role has the right, and whether as its own grant
        # (not through PUBLIC or another role, which can be taken away without it).
        own, through_public = connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a "
                "WHERE d.datname = current_database() AND a.grantee = CAST(:role AS regrole) "
                "AND a.privilege_type = 'TEMPORARY'), "
                "has_database_privilege(:role, current_database(), 'TEMPORARY')"
            ),
            {"role": role},
        ).one()
        if not own and not through_public:
            raise RoleError(
                f"role {role!r} may not create temporary tables in database {database!r}, and "
                f"{grantor!r} could not give it that right{refused}: as the database's owner "
                f"run {grant}; then run `hf-adapter db grant` again"
            )
        if own:
            statements.append(grant)
    return Granted(statements, temporary=grant if not own else None)


def _not_owner_message(owned: Ownership, role: str) -> str:
    again = f"`hf-adapter db grant --role {role} --apply`"
    if (owner := owned.sole_other_owner()) is not None:
        return (
            f"DATABASE_URL's role is not the owner of the adapter's tables ({owner!r}), so "
            f"it cannot grant their rights: run {again} with the tables' owner's URL, the role "
            "that runs `hf-adapter db upgrade` (docs/operations.md, Database roles)"
        )
    return (
        f"DATABASE_URL's role does not own {len(owned.not_owned)} of the "
        f"{len(owned.owners)} tables it would grant on, so it cannot grant their rights: "
        f"{owned.not_owned_listed()}. {owned.give_all()} (the role that runs `hf-adapter db "
        f"upgrade`), then run {again} with its URL (docs/operations.md, Database roles)"
    )


def check_runtime_rights(engine: Engine) -> None:
    """`MissingRightError` when `engine`'s role may not create temporary tables in its
    database (PostgreSQL only): an update of `MERGE_FROM_ROWS` or more rows of one table (a
    sync page with many changes; a worker's batch, with `EVENT_APPLY_BATCH` raised to that) is
    merged from one, and would fail. `DatabaseUnavailableError` when it cannot connect."""
    if engine.dialect.name != "postgresql":
        return
    with connected(engine) as connection:
        database, role, allowed = connection.execute(
            text(
                "SELECT current_database(), current_user, "
                "has_database_privilege(current_database(), 'TEMPORARY')"
            )
        ).one()
    if not allowed:
        raise MissingRightError(
            f"database role {role!r} may not create temporary tables in database "
            f"{database!r}, which a sync page with many changes (or a worker's batch, with "
            f"EVENT_APPLY_BATCH 64 or more) needs: as the database's owner run "
            f"{temporary_grant(database, role)} (docs/operations.md, Database roles); a worker "
            "may instead keep EVENT_APPLY_BATCH under 64"
        )
