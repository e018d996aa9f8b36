"""Every `hf-adapter` command on a database it cannot use — unreachable, never migrated, or a
role without the rights — says so in one line and exits 2 ("could not run"), never 1 (which the
audit commands use for a broken trail and `sync` for a failed run).

The commands run in this process (`adapter.cli.main`, the environment set per test); two run as
real `hf-adapter` processes, the path end to end: `audit verify` on an unreachable database and
`db upgrade` meeting a failing migration."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url

from adapter.store.database import adapter_tables, create_engine_from_url, ownership, upgrade
from adapter.store.privileges import grant_runtime_role
from tests.integration.adapter.sync.support import (
    Mock,
    adapter_environment,
    migrated,
    running_mock,
)
from tests.integration.adapter.sync.test_sync_cli_crash import HF_ADAPTER
from tests.support.adapter_cli import InProcess
from tests.support.databases import PostgresServer, drop_runtime_role

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + secrets.token_hex(8)
UNREACHABLE = f"postgresql+psycopg://hf:{PASSWORD}@127.0.0.1:1/hf"
NOBODY = "http://127.0.0.1:9"

Result = subprocess.CompletedProcess[str]
Run = Callable[..., Result]


def _environment(url: str | URL, kki: str) -> dict[str, str]:
    shown = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return adapter_environment(shown, kki, NOBODY)


def _hf_adapter_process(url: str | URL, *args: str) -> Result:
    """`hf-adapter ARGS` as a process of its own."""
    return subprocess.run(
        [str(HF_ADAPTER), *args],
        env=_environment(url, NOBODY),
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def hf_adapter(hf_adapter_here: InProcess) -> Run:
    """`hf-adapter ARGS` on `url`'s database, run in this process (`hf_adapter_here`)."""

    def run(url: str | URL, *args: str, kki: str = NOBODY) -> Result:
        return hf_adapter_here(_environment(url, kki), *args)

    return run


def _assert_cannot_run(result: Result, *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    # One line of its own (log lines, JSON, may come before it).
    lines = [line for line in result.stderr.splitlines() if line.startswith("hf-adapter: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hf-adapter: error: ")
    for text_ in expected:
        assert text_ in lines[0]


def _assert_one_error(result: Result, code: int, *expected: str) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("hf-adapter: ")]
    assert len(lines) == 1, result.stderr
    for text_ in expected:
        assert text_ in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=5, seed=31)


@pytest.fixture(scope="module")
def never_migrated(postgres_server: PostgresServer) -> URL:
    """An empty PostgreSQL database; the cases given it only fail on it."""
    return postgres_server.create_database()


@pytest.fixture(scope="module")
def migrated_owner(postgres_server: PostgresServer) -> URL:
    """A migrated database, by its owner's URL; the cases given it only fail on it."""
    url = postgres_server.create_database()
    migrated(url).dispose()
    return url


@contextmanager
def _runtime_role(owner: URL) -> Iterator[tuple[URL, str]]:
    """A role with the runtime rights on `owner`'s database (what `db grant --apply` gives):
    its URL and its name."""
    name = f"hf_runtime_{secrets.token_hex(4)}"
    admin = create_engine_from_url(owner)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'"))
    try:
        grant_runtime_role(admin, name)
        yield owner.set(username=name, password=PASSWORD), name
    finally:
        drop_runtime_role(admin, str(owner.database), name)
        admin.dispose()


@pytest.fixture(scope="module")
def granted(migrated_owner: URL) -> Iterator[tuple[URL, URL, str]]:
    """The migrated database (its owner's URL), and a role granted its runtime rights (its URL,
    its name); the cases given it change neither."""
    with _runtime_role(migrated_owner) as (url, name):
        yield migrated_owner, url, name


@pytest.fixture(scope="module")
def without_table_rights(migrated_owner: URL) -> Iterator[tuple[URL, str]]:
    """A runtime role of the migrated database whose rights on registrations and audit_events
    were revoked: its URL and its name."""
    with _runtime_role(migrated_owner) as (url, name):
        admin = create_engine_from_url(migrated_owner)
        with admin.begin() as connection:
            connection.execute(text(f"REVOKE ALL ON registrations, audit_events FROM {name}"))
        admin.dispose()
        yield url, name


@pytest.fixture
def runtime(postgres_server: PostgresServer) -> Iterator[tuple[URL, URL, str]]:
    """Like `granted`, for one test: a migrated database of its own and a runtime role."""
    owner = postgres_server.create_database()
    migrated(owner).dispose()
    with _runtime_role(owner) as (url, name):
        yield owner, url, name


@pytest.fixture(scope="module")
def without_trail_table(postgres_server: PostgresServer) -> URL:
    """A migrated database whose audit_events table was dropped; the cases given it only
    read."""
    url = postgres_server.create_database()
    engine = migrated(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_events CASCADE"))
    engine.dispose()
    return url


def test_audit_verify_process_exits_2_when_the_database_is_unreachable() -> None:
    result = _hf_adapter_process(UNREACHABLE, "audit", "verify")

    _assert_cannot_run(
        result, "cannot use the database at postgresql+psycopg://hf:***@127.0.0.1:1/hf"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "seal"),
        ("audit", "anchor", "--out", "-"),
        ("lookup", "--str", "1234567890123456"),
        ("events", "list"),
        ("keys", "rotate"),
    ],
)
def test_commands_exit_2_when_the_database_is_unreachable(
    args: tuple[str, ...], hf_adapter: Run
) -> None:
    result = hf_adapter(UNREACHABLE, *args)

    _assert_cannot_run(
        result, "cannot use the database at postgresql+psycopg://hf:***@127.0.0.1:1/hf"
    )


def test_audit_verify_exits_2_when_the_password_is_wrong(
    never_migrated: URL, hf_adapter: Run
) -> None:
    result = hf_adapter(never_migrated.set(password=PASSWORD), "audit", "verify")

    _assert_cannot_run(result, "password authentication failed", "check DATABASE_URL")


def test_audit_verify_exits_2_when_the_database_does_not_exist(
    never_migrated: URL, hf_adapter: Run
) -> None:
    url = never_migrated.set(database=f"missing_{secrets.token_hex(4)}")

    result = hf_adapter(url, "audit", "verify")

    _assert_cannot_run(result, "does not exist", "check DATABASE_URL")


@pytest.mark.parametrize(
    "args",
    [
        ("sync", "--system", "kki"),
        ("lookup", "--str", "1234567890123456"),
        ("events", "list"),
        ("audit", "verify"),
        ("audit", "seal"),
        ("keys", "rotate"),
        ("keys", "reindex"),
        ("worker",),
    ],
)
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_commands_exit_2_when_the_database_was_never_migrated(
    args: tuple[str, ...], backend: str, never_migrated: URL, tmp_path: Path, hf_adapter: Run
) -> None:
    url = (
        never_migrated
        if backend == "postgresql"
        else make_url(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    )

    result = hf_adapter(url, *args)

    _assert_cannot_run(result, "lacks the adapter's tables", "run `hf-adapter db upgrade`")


def test_db_upgrade_exits_2_when_run_with_the_runtime_role(
    granted: tuple[URL, URL, str], never_migrated: URL, hf_adapter: Run
) -> None:
    _, runtime_url, name = granted
    empty = runtime_url.set(database=never_migrated.database)

    result = hf_adapter(empty, "db", "upgrade")

    _assert_cannot_run(
        result, f"role {name!r} lacks a right", "permission denied for schema public", "db grant"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("lookup", "--str", "1234567890123456"),
        ("audit", "verify"),
        ("keys", "rotate"),
    ],
)
def test_commands_exit_2_when_the_role_lacks_table_rights(
    args: tuple[str, ...], without_table_rights: tuple[URL, str], hf_adapter: Run
) -> None:
    runtime_url, name = without_table_rights

    result = hf_adapter(runtime_url, *args)

    _assert_cannot_run(
        result, f"role {name!r} lacks a right", "permission denied for table", "db grant"
    )


def test_sync_names_db_grant_when_the_role_lacks_table_rights(
    runtime: tuple[URL, URL, str], kki: Mock, hf_adapter: Run
) -> None:
    owner, runtime_url, name = runtime
    admin = create_engine_from_url(owner)
    with admin.begin() as connection:
        connection.execute(text(f"REVOKE ALL ON registrations FROM {name}"))
    admin.dispose()

    result = hf_adapter(runtime_url, "sync", "--system", "kki", kki=kki.url)

    assert result.returncode == 1, result.stderr  # the run started, and failed
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert "permission denied for table registrations" in result.stderr
    assert "next step: " in result.stderr
    assert "`hf-adapter db grant --role ROLE --apply`" in result.stderr


def test_db_upgrade_process_names_the_migration_that_meets_a_missing_table(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    upgrade(url, "0008")
    engine = create_engine_from_url(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_events CASCADE"))

    result = _hf_adapter_process(url, "db", "upgrade")

    line = _assert_one_error(
        result,
        1,
        "migration 0009_sealed_audit_chain failed: UndefinedTable",
        'relation "audit_events"',
    )
    assert "run `hf-adapter db upgrade`" not in line  # not the "never migrated" advice
    with engine.connect() as connection:  # the migrations before it stay applied
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0008"
    engine.dispose()


def _drop_role(admin: Engine, name: str) -> None:
    """Take back what a test granted role `name` on the public schema and its tables; drop it."""
    with admin.begin() as connection:
        connection.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {name}"))
        connection.execute(text(f"REVOKE ALL ON SCHEMA public FROM {name}"))
        connection.execute(text(f"DROP ROLE {name}"))


def test_db_upgrade_exits_2_naming_the_owner_when_the_role_may_create_but_owns_no_table(
    postgres_server: PostgresServer, hf_adapter: Run
) -> None:
    # PostgreSQL 14 and older give PUBLIC the right to create in the schema: a runtime role
    # passed the check, then failed inside migration 0009 (ALTER needs the table's owner).
    owner_url = postgres_server.create_database()
    upgrade(owner_url, "0008")
    name = f"hf_runtime_{secrets.token_hex(4)}"
    admin = create_engine_from_url(owner_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'"))
        connection.execute(text(f"GRANT CREATE, USAGE ON SCHEMA public TO {name}"))
        connection.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}"))
    try:
        result = hf_adapter(owner_url.set(username=name, password=PASSWORD), "db", "upgrade")

        _assert_cannot_run(
            result,
            f"role {name!r} does not own",
            f"`hf-adapter db upgrade` with the URL of their owner, role {owner_url.username!r}",
        )
        with admin.connect() as connection:  # nothing was migrated
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0008"
    finally:
        _drop_role(admin, name)
        admin.dispose()


def test_db_upgrade_exits_2_naming_the_trails_functions_left_with_the_old_owner(
    postgres_server: PostgresServer, hf_adapter: Run
) -> None:
    # The tables given to a new owner one by one (ALTER TABLE ... OWNER TO, as `db grant` used
    # to advise) leave the audit trail's functions with the old one: the check passed, then
    # migration 0010's CREATE OR REPLACE FUNCTION failed, "must be owner of function" (exit 1).
    admin_url = postgres_server.create_database()
    old, new = f"hf_old_{secrets.token_hex(4)}", f"hf_new_{secrets.token_hex(4)}"
    admin = create_engine_from_url(admin_url)
    with admin.begin() as connection:
        for role in (old, new):
            connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'"))
            connection.execute(text(f"GRANT CREATE ON SCHEMA public TO {role}"))
            connection.execute(text(f"GRANT {role} TO CURRENT_USER"))  # to move what it owns
    new_url = admin_url.set(username=new, password=PASSWORD)
    try:
        upgrade(admin_url.set(username=old, password=PASSWORD), "0009")
        with admin.begin() as connection:
            tables = connection.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).all()
            for table in tables:
                connection.execute(text(f"ALTER TABLE {table} OWNER TO {new}"))

        result = hf_adapter(new_url, "db", "upgrade")

        line = _assert_one_error(
            result,
            2,
            f"role {new!r} does not own",
            f"audit_events_seal(), audit_events_seal_only(), audit_no_truncate(), "
            f"audit_writers_count() ({old!r})",
            f'REASSIGN OWNED BY "{old}" TO "{new}";',
        )
        assert "audit_events (" not in line  # the tables it owns are not named
        assert "ALTER TABLE" not in line
        with admin.connect() as connection:  # nothing was migrated
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0009"

        # The advice, followed, is enough.
        with admin.begin() as connection:
            connection.execute(text(f"REASSIGN OWNED BY {old} TO {new}"))
        assert hf_adapter(new_url, "db", "upgrade").returncode == 0
        with admin.connect() as connection:
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0010"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"REASSIGN OWNED BY {old}, {new} TO CURRENT_USER"))
            connection.execute(text(f"DROP OWNED BY {old}, {new}"))
            connection.execute(text(f"DROP ROLE {old}"))
            connection.execute(text(f"DROP ROLE {new}"))
        admin.dispose()


def test_ownership_names_the_bootstrap_superuser_whose_objects_reassign_cannot_move(
    postgres_server: PostgresServer,
) -> None:
    engine = create_engine_from_url(postgres_server.create_database())
    try:
        with engine.connect() as connection:
            owned = ownership(connection, adapter_tables())
            assert owned.bootstrap_superuser is not None
            assert connection.scalar(
                text("SELECT rolsuper FROM pg_roles WHERE rolname = :name"),
                {"name": owned.bootstrap_superuser},
            )
    finally:
        engine.dispose()


def test_audit_verify_reports_a_dropped_trail_table_as_a_broken_trail(
    without_trail_table: URL, tmp_path: Path, hf_adapter: Run
) -> None:
    metrics = tmp_path / "hf_audit.prom"

    result = hf_adapter(without_trail_table, "audit", "verify", "--metrics-file", str(metrics))

    _assert_one_error(
        result, 1, "audit trail broken", "a table of the trail is missing", "audit_events"
    )
    assert "hf_audit_chain_intact 0.0" in metrics.read_text()


def test_audit_anchor_reports_a_dropped_trail_table_as_a_broken_trail(
    without_trail_table: URL, tmp_path: Path, hf_adapter: Run
) -> None:
    # It seals before it checks: the sealing met the missing table first, which read as
    # "damaged, could not run" (2) instead of the broken trail (1).
    anchors = tmp_path / "anchors.jsonl"

    result = hf_adapter(without_trail_table, "audit", "anchor", "--out", str(anchors))

    _assert_one_error(result, 1, "audit trail broken", "a table of the trail is missing")
    assert not anchors.exists()


def test_a_database_behind_its_migrations_is_told_to_upgrade_not_that_the_trail_is_broken(
    postgres_server: PostgresServer, tmp_path: Path, hf_adapter: Run
) -> None:
    # A new release started before `db upgrade`: its tables are missing because the database
    # is behind, not because anyone dropped them. Neither a false tamper alarm (1) nor
    # "restore from a backup".
    url = postgres_server.create_database()
    upgrade(url, "0008")
    metrics = tmp_path / "hf_audit.prom"

    result = hf_adapter(url, "audit", "verify", "--metrics-file", str(metrics))

    line = _assert_one_error(result, 2, "is behind its migrations", "run `hf-adapter db upgrade`")
    assert "damaged" not in line
    assert "backup" not in line
    assert not metrics.exists()


def test_commands_call_a_migrated_database_without_a_table_damaged(
    without_trail_table: URL, hf_adapter: Run
) -> None:
    result = hf_adapter(without_trail_table, "audit", "seal")

    line = _assert_one_error(result, 2, "schema is damaged", "hf-adapter db check", "backup")
    assert "run `hf-adapter db upgrade`" not in line


@pytest.mark.parametrize("granting", ["runtime role", "role without rights"])
def test_db_grant_by_a_role_that_is_not_the_owner_names_the_role_to_grant(
    granting: str, granted: tuple[URL, URL, str], hf_adapter: Run
) -> None:
    owner, runtime_url, _ = granted
    other = f"hf_other_{secrets.token_hex(4)}"
    stranger = f"hf_stranger_{secrets.token_hex(4)}"
    admin = create_engine_from_url(owner)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE ROLE {other}"))
        connection.execute(text(f"CREATE ROLE {stranger} LOGIN PASSWORD '{PASSWORD}'"))
    url = runtime_url if granting == "runtime role" else runtime_url.set(username=stranger)
    try:
        result = hf_adapter(url, "db", "grant", "--role", other, "--apply")

        line = _assert_one_error(
            result, 2, f"`hf-adapter db grant --role {other} --apply`", "tables' owner's URL"
        )
        assert f"--role {url.username}" not in line
    finally:
        _drop_role(admin, other)
        with admin.begin() as connection:
            connection.execute(text(f"DROP ROLE {stranger}"))
        admin.dispose()


def test_db_grant_refuses_a_database_whose_tables_have_mixed_owners_naming_them(
    postgres_server: PostgresServer, hf_adapter: Run
) -> None:
    # Only audit_events' owner was checked: the owner's GRANT on a table of another role,
    # on which it has some right, only warned, and the runtime role was left without it.
    owner_url = postgres_server.create_database()
    migrated(owner_url).dispose()
    owner = owner_url.username
    other, app = f"hf_other_{secrets.token_hex(4)}", f"hf_app_{secrets.token_hex(4)}"
    admin = create_engine_from_url(owner_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE ROLE {other}"))
        connection.execute(text(f"CREATE ROLE {app}"))
        connection.execute(text(f"GRANT {other} TO {owner}"))
        connection.execute(text(f"GRANT CREATE ON SCHEMA public TO {other}"))
        connection.execute(text(f"ALTER TABLE facilities OWNER TO {other}"))
        connection.execute(text(f"GRANT SELECT ON facilities TO {owner}"))
        connection.execute(text(f"REVOKE CREATE ON SCHEMA public FROM {other}"))
        connection.execute(text(f"REVOKE {other} FROM {owner}"))
    try:
        result = hf_adapter(owner_url, "db", "grant", "--role", app, "--apply")

        line = _assert_one_error(
            result,
            2,
            "does not own 1 of the",
            f"facilities ({other!r})",
            f'REASSIGN OWNED BY "{other}" TO "{owner}";',
            f"`hf-adapter db grant --role {app} --apply`",
        )
        assert "registrations" not in line
        assert "ALTER TABLE" not in line  # moves a table alone, not the trail's functions
        with admin.connect() as connection:  # nothing was granted
            assert not connection.scalar(
                text(f"SELECT has_table_privilege('{app}', 'registrations', 'SELECT')")
            )
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"GRANT {other} TO {owner}"))
            connection.execute(text(f"REASSIGN OWNED BY {other} TO {owner}"))
            connection.execute(text(f"DROP OWNED BY {other}"))
            connection.execute(text(f"DROP ROLE {other}"))
            connection.execute(text(f"DROP ROLE {app}"))
        admin.dispose()


def test_sync_on_a_damaged_schema_points_to_db_check_and_backups_not_db_upgrade(
    postgres_server: PostgresServer, kki: Mock, hf_adapter: Run
) -> None:
    # At the newest migration but without a table: `db upgrade` has nothing to run, so
    # advising it sent the operator in a circle.
    url = postgres_server.create_database()
    engine = migrated(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE registrations CASCADE"))
    engine.dispose()

    result = hf_adapter(url, "sync", "--system", "kki", kki=kki.url)

    assert result.returncode == 1, result.stderr  # the run started, and failed
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    steps = [line for line in result.stderr.splitlines() if "next step: " in line]
    assert len(steps) == 1, result.stderr
    assert "schema is damaged" in steps[0]
    assert "`hf-adapter db check`" in steps[0]
    assert "backup" in steps[0]
    assert "run `hf-adapter db upgrade`" not in steps[0]
