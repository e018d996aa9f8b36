"""The runtime database role on PostgreSQL (`hf-adapter db grant`): it syncs and appends to the
audit trail, and cannot change, empty or re-point the trail, nor alter the schema. The commands
run in this process (`adapter.cli.main`), but for the sync refused at a process's start."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from adapter.audit import seal_all, verify_chain
from adapter.composition import build_services
from adapter.observability.sync_metrics import SyncMetrics
from adapter.settings import load_settings
from adapter.store.bulk import MERGE_FROM_ROWS
from adapter.store.database import create_engine_from_url, upgrade
from adapter.store.models import AuditEvent, HealthWorker
from adapter.store.privileges import MissingRightError
from adapter.sync import SyncRunResult
from tests.integration.adapter.sync.support import Mock, adapter_environment, running_mock
from tests.integration.adapter.sync.test_sync_cli_crash import HF_ADAPTER
from tests.support.adapter_cli import InProcess
from tests.support.databases import PostgresServer, drop_database, drop_runtime_role

pytestmark = pytest.mark.integration

REFUSED = "permission denied|must be owner"


@dataclass(frozen=True)
class Roles:
    owner: URL
    runtime: URL
    runtime_name: str


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=30, seed=23)


@pytest.fixture
def sisdmk_of_a_merged_page() -> Iterator[Mock]:
    """More workers than `MERGE_FROM_ROWS`: a page changing all of them is merged from a
    temporary table, a page changing a few is not."""
    yield from running_mock("sisdmk", size=MERGE_FROM_ROWS + 8, seed=29)


def _environment(url: URL) -> dict[str, str]:
    return adapter_environment(
        url.render_as_string(hide_password=False), "http://127.0.0.1:9", "http://127.0.0.1:9"
    )


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def hf_adapter(hf_adapter_here: InProcess) -> Run:
    """`hf-adapter ARGS` as `url`'s role, in this process (`adapter.cli.main` with the
    environment a process gets): for the tests about rights, not about a process."""

    def run(url: URL, *args: str) -> subprocess.CompletedProcess[str]:
        return hf_adapter_here(_environment(url), *args)

    return run


def _hf_adapter_process(url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    environment = _environment(url)
    return subprocess.run(
        [str(HF_ADAPTER), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def roles(postgres_server: PostgresServer, hf_adapter: Run) -> Iterator[Roles]:
    """A migrated database owned by the test user, and a runtime role granted by the CLI."""
    owner = postgres_server.create_database()
    upgrade(owner)
    name, password = f"hf_runtime_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    admin = create_engine_from_url(owner)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
    try:
        granted = hf_adapter(owner, "db", "grant", "--role", name, "--apply")
        assert granted.returncode == 0, granted.stderr
        yield Roles(owner, owner.set(username=name, password=password), name)
    finally:
        drop_runtime_role(admin, str(owner.database), name)
        admin.dispose()


@contextmanager
def _as_owner(roles: Roles) -> Iterator[Connection]:
    """A connection of the tables' (and the database's) owner, committed on leaving."""
    owner = create_engine_from_url(roles.owner)
    try:
        with owner.begin() as connection:
            yield connection
    finally:
        owner.dispose()


def _revoke_temporary(roles: Roles, *, from_the_role: bool = True) -> None:
    """Take the TEMPORARY right from PUBLIC, through which every role has it by default, as a
    hardened database would, and (unless not `from_the_role`) from the runtime role."""
    with _as_owner(roles) as connection:
        database = connection.scalar(text("SELECT current_database()"))
        grantees = f"PUBLIC, {roles.runtime_name}" if from_the_role else "PUBLIC"
        connection.execute(text(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM {grantees}'))


def _may_create_temporary_tables(roles: Roles) -> bool:
    with _as_owner(roles) as connection:
        return bool(
            connection.scalar(
                text("SELECT has_database_privilege(:role, current_database(), 'TEMPORARY')"),
                {"role": roles.runtime_name},
            )
        )


def test_the_runtime_role_cannot_change_empty_or_repoint_the_trail(roles: Roles) -> None:
    runtime = create_engine_from_url(roles.runtime)
    try:
        for statement in (
            "UPDATE audit_events SET actor_subject = 'someone-else'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
            "UPDATE audit_chain_head SET seq = 0",
            "UPDATE audit_chain_head SET hash = repeat('0', 64)",
            "DELETE FROM audit_chain_head",
            "TRUNCATE audit_chain_head",
            "ALTER TABLE audit_events DISABLE TRIGGER USER",
            "DROP TRIGGER audit_events_seal ON audit_events",
            "ALTER TABLE audit_events ADD COLUMN note text",
            "CREATE TABLE scratch (id integer)",
            "DROP TABLE health_workers",
        ):
            with pytest.raises(DBAPIError, match=REFUSED), runtime.begin() as connection:
                connection.execute(text(statement))
        # It may insert, but only a pending entry (the trigger runs as owner), and start a
        # writer's count only at 1 (sealing in turn: test_audit_tampering.py).
        for statement, message in (
            (
                "INSERT INTO audit_events (id, at, actor_kind, action, resource_type, "
                "outcome, prev_hash, hash, key_id, chain_seq) VALUES (:id, :at, 'user', 'x', "
                "'y', 'success', repeat('0', 64), repeat('1', 64), 'audit-1', 1)",
                "enter the trail pending",
            ),
            (
                "INSERT INTO audit_events (seq, id, at, actor_kind, action, resource_type, "
                "outcome) VALUES (5, :id, :at, 'user', 'x', 'y', 'success')",
                "non-DEFAULT value into column",
            ),
            ("INSERT INTO audit_writers (id, n) VALUES (:id, 5)", "starts at 1"),
            ("DELETE FROM audit_writers", REFUSED),
            ("TRUNCATE audit_writers", REFUSED),
        ):
            with pytest.raises(DBAPIError, match=message), runtime.begin() as connection:
                connection.execute(
                    text(statement), {"id": uuid.uuid4(), "at": dt.datetime.now(dt.UTC)}
                )
    finally:
        runtime.dispose()


def test_the_runtime_role_syncs_and_appends_to_the_audit_trail(
    roles: Roles, sisdmk: Mock, hf_adapter: Run
) -> None:
    environment = adapter_environment(
        roles.runtime.render_as_string(hide_password=False), "http://127.0.0.1:9", sisdmk.url
    )
    with build_services(load_settings(environment)) as services:
        result = services.sync(
            "sisdmk",
            full=True,
            page_size=10,
            metrics=SyncMetrics.for_registry(CollectorRegistry()),
        )
        assert result.succeeded, result.error
        # The runtime role seals too (each long-running process has a sealer).
        assert seal_all(services.sessions).sealed == 3
        with services.sessions() as session:
            user = session.scalar(text("SELECT current_user"))
            entries = session.scalar(select(func.count()).select_from(AuditEvent))
        with services.sessions() as session:
            report = verify_chain(session)
    assert user == roles.runtime_name
    assert entries == 3, "one entry per page written"
    assert report.intact
    assert (report.entries, report.unkeyed) == (3, 0)
    verified = hf_adapter(roles.runtime, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "audit trail intact: 3 entries, newest is #3" in verified.stdout


def test_db_grant_refuses_a_role_that_would_keep_the_owners_rights(
    roles: Roles, hf_adapter: Run
) -> None:
    owner_name = roles.owner.username
    assert owner_name is not None
    refused = hf_adapter(roles.owner, "db", "grant", "--role", owner_name, "--apply")
    missing = hf_adapter(roles.owner, "db", "grant", "--role", "hf_nobody_here", "--apply")
    printed = hf_adapter(roles.owner, "db", "grant", "--role", "hf_app")

    assert refused.returncode == 2
    assert "would keep the owner's rights" in refused.stderr
    assert missing.returncode == 2
    assert "no database role 'hf_nobody_here'; create it first" in missing.stderr
    assert printed.returncode == 0
    assert (
        'GRANT SELECT, INSERT, UPDATE (chain_seq, prev_hash, hash) ON TABLE "audit_events" TO '
        '"hf_app";' in printed.stdout
    )
    assert 'GRANT SELECT, INSERT, UPDATE (n) ON TABLE "audit_writers"' in printed.stdout
    assert 'GRANT SELECT, UPDATE (changed_at) ON TABLE "audit_chain_head"' in printed.stdout
    assert "TRUNCATE" not in printed.stdout
    temporary = f'GRANT TEMPORARY ON DATABASE "{roles.owner.database}" TO "hf_app";'
    assert f"{temporary}  -- as the database's owner" in printed.stdout.splitlines()


def test_a_runtime_role_without_temporary_tables_fails_merged_pages_by_name_and_keeps_the_rows(
    roles: Roles, sisdmk_of_a_merged_page: Mock
) -> None:
    """A page changing `MERGE_FROM_ROWS` rows or more is staged in a temporary table: where the
    TEMPORARY right was revoked after the process started (a start without it is refused, see
    below), that update fails naming the missing right and the page rolls back; a page
    changing a few rows (as a worker's batch) needs no such table."""
    sisdmk = sisdmk_of_a_merged_page
    environment = adapter_environment(
        roles.runtime.render_as_string(hide_password=False), "http://127.0.0.1:9", sisdmk.url
    )
    page = MERGE_FROM_ROWS + 8

    def sync() -> SyncRunResult:
        metrics = SyncMetrics.for_registry(CollectorRegistry())
        return services.sync("sisdmk", full=True, page_size=page, metrics=metrics)

    stored = select(HealthWorker.id, HealthWorker.is_active, HealthWorker.payload_hash)
    with build_services(load_settings(environment)) as services:
        first = sync()
        assert first.succeeded, first.error
        _revoke_temporary(roles)
        workers = sisdmk.records("health-workers")
        assert len(workers) == page
        one = workers[0]
        sisdmk.patch("health-workers", one["worker_id"], {"is_active": not one["is_active"]})
        few = sync()
        assert few.succeeded, few.error
        with services.sessions() as session:
            active = session.scalar(
                select(HealthWorker.is_active).where(
                    HealthWorker.sisdmk_worker_id == uuid.UUID(one["worker_id"])
                )
            )
        assert active is not one["is_active"]
        for worker in sisdmk.records("health-workers"):
            patch = {"is_active": not worker["is_active"]}
            sisdmk.patch("health-workers", worker["worker_id"], patch)
        with services.sessions() as session:
            before = session.execute(stored.order_by(HealthWorker.id)).all()
        merged = sync()
        with services.sessions() as session:
            after = session.execute(stored.order_by(HealthWorker.id)).all()
    assert not merged.succeeded
    assert merged.error is not None
    assert "permission denied" in merged.error.lower()
    assert after == before


def test_a_process_whose_role_lacks_temporary_tables_refuses_to_start_until_db_grant(
    roles: Roles, hf_adapter: Run
) -> None:
    """`db grant` gives the runtime role TEMPORARY itself, so a hardened database that takes it
    from PUBLIC changes nothing; a role without it is refused at start-up with the statement
    to run, before anything is written, and `db grant` run again gives it back."""
    environment = adapter_environment(
        roles.runtime.render_as_string(hide_password=False),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
    )
    _revoke_temporary(roles, from_the_role=False)
    assert _may_create_temporary_tables(roles)
    _revoke_temporary(roles)
    assert not _may_create_temporary_tables(roles)

    with pytest.raises(MissingRightError) as refused:
        build_services(load_settings(environment), check_temporary=True)
    run = _hf_adapter_process(roles.runtime, "sync", "--system", "sisdmk", "--full")
    again = hf_adapter(roles.owner, "db", "grant", "--role", roles.runtime_name, "--apply")

    database = roles.runtime.database
    grant = f'GRANT TEMPORARY ON DATABASE "{database}" TO "{roles.runtime_name}"'
    assert str(refused.value) == (
        f"database role {roles.runtime_name!r} may not create temporary tables in database "
        f"{database!r}, which a sync page with many changes (or a worker's batch, with "
        f"EVENT_APPLY_BATCH 64 or more) needs: as the database's owner run {grant} "
        "(docs/operations.md, Database roles); a worker may instead keep EVENT_APPLY_BATCH "
        "under 64"
    )
    assert run.returncode == 2, run.stderr
    assert f"hf-adapter: error: {refused.value}" in run.stderr
    assert again.returncode == 0, again.stderr
    assert _may_create_temporary_tables(roles)
    with _as_owner(roles) as connection:
        written = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM sync_runs), (SELECT count(*) FROM audit_events), "
                "(SELECT count(*) FROM blind_index_keys)"
            )
        ).one()
    assert written == (0, 0, 0), "the refused start wrote nothing"
    with build_services(load_settings(environment), check_temporary=True):
        pass


@dataclass(frozen=True)
class ForeignOwner:
    """A database owned by the test's user whose tables another role owns (and a runtime
    role), as on a managed server where the admin user created the database."""

    admin: URL
    owner: URL
    owner_name: str
    runtime_name: str


@pytest.fixture
def foreign_owner(postgres_server: PostgresServer) -> Iterator[ForeignOwner]:
    admin_url = postgres_server.create_database()
    database = str(admin_url.database)
    suffix = secrets.token_hex(4)
    owner_name, runtime_name = f"hf_owner_{suffix}", f"hf_runtime_{suffix}"
    password = secrets.token_urlsafe(16)
    admin = create_engine_from_url(admin_url)
    try:
        with admin.begin() as connection:
            for name in (owner_name, runtime_name):
                connection.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
            connection.execute(text(f"GRANT CREATE ON SCHEMA public TO {owner_name}"))
        owner = admin_url.set(username=owner_name, password=password)
        upgrade(owner)
        yield ForeignOwner(admin_url, owner, owner_name, runtime_name)
    finally:
        admin.dispose()
        # A teardown error is reported beside the test's own. The owner role owns the tables:
        # the database goes first; if it cannot, both roles stay behind (the error says so).
        server = create_engine_from_url(admin_url.set(database="postgres"))
        try:
            with server.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT")
                drop_database(connection, database)
                for name in (runtime_name, owner_name):
                    connection.execute(text(f"DROP ROLE IF EXISTS {name}"))
        finally:
            server.dispose()


def test_db_grant_by_an_owner_who_cannot_give_temporary_grants_nothing_or_says_what_is_left(
    foreign_owner: ForeignOwner, hf_adapter: Run
) -> None:
    """The tables' owner is not the database's owner here, so it cannot give TEMPORARY: where
    the runtime role lacks it, `db grant --apply` fails (exit 2), grants none of the table
    rights either, and names the statement for the database's owner; where the role has it
    through PUBLIC, the rights are granted and a note names that statement."""
    runtime_name, database = foreign_owner.runtime_name, foreign_owner.admin.database
    grant = f'GRANT TEMPORARY ON DATABASE "{database}" TO "{runtime_name}"'
    admin = create_engine_from_url(foreign_owner.admin)

    def rights() -> tuple[bool, bool]:
        with admin.connect() as connection:
            table, column = connection.execute(
                text(
                    "SELECT has_table_privilege(:role, 'health_workers', 'SELECT'), "
                    "has_column_privilege(:role, 'audit_writers', 'n', 'UPDATE')"
                ),
                {"role": runtime_name},
            ).one()
        return bool(table), bool(column)

    def public_temporary(verb: str) -> None:
        preposition = "TO" if verb == "GRANT" else "FROM"
        with admin.begin() as connection:
            connection.execute(
                text(f'{verb} TEMPORARY ON DATABASE "{database}" {preposition} PUBLIC')
            )

    def db_grant() -> subprocess.CompletedProcess[str]:
        return hf_adapter(foreign_owner.owner, "db", "grant", "--role", runtime_name, "--apply")

    try:
        public_temporary("REVOKE")
        refused = db_grant()
        after_refusal = rights()
        public_temporary("GRANT")
        through_public = db_grant()
        after_grant = rights()
    finally:
        admin.dispose()

    assert refused.returncode == 2, refused.stdout
    assert (
        f"hf-adapter: error: role {runtime_name!r} may not create temporary tables in "
        f"database {database!r}, and {foreign_owner.owner_name!r} could not give it that right"
    ) in refused.stderr
    assert (
        f"as the database's owner run {grant}; then run `hf-adapter db grant` again"
    ) in refused.stderr
    assert after_refusal == (False, False), "nothing granted"
    assert through_public.returncode == 0, through_public.stderr
    assert (
        f"hf-adapter: note: role {runtime_name!r} may create temporary tables, but not by a "
        "grant of its own (through PUBLIC or another role, which a hardening may revoke); as "
        f"the database's owner run {grant}"
    ) in through_public.stderr
    assert after_grant == (True, True)
