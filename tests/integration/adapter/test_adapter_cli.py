"""`hf-adapter db ...` as operators run it: a real process, a real database, exit codes."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from adapter.store.database import create_engine_from_url
from tests.integration.adapter.sync.support import python_path

pytestmark = pytest.mark.integration

HF_ADAPTER = Path(sys.executable).parent / "hf-adapter"
DB_PASSWORD = "db-password-7c3e91"


def _environment(database_url: str) -> dict[str, str]:
    def key(start: int) -> str:
        return base64.urlsafe_b64encode(bytes(range(start, start + 32))).decode().rstrip("=")

    return {
        "PATH": "/usr/bin:/bin",
        **python_path(),
        "DATABASE_URL": database_url,
        "ALLOW_INSECURE_HTTP": "true",
        "OIDC_ISSUER": "http://127.0.0.1:8080/realms/healthforce",
        "OIDC_AUDIENCE": "hf-adapter",
        "KKI_BASE_URL": "http://127.0.0.1:8081",
        "KKI_API_TOKEN": "kki-dev-token",
        "SISDMK_BASE_URL": "http://127.0.0.1:8082",
        "SISDMK_CLIENT_ID": "sisdmk-dev-client",
        "SISDMK_CLIENT_SECRET": "sisdmk-dev-secret",
        "KKI_WEBHOOK_SECRET": "whsec_" + base64.b64encode(bytes(range(1, 25))).decode(),
        "SISDMK_WEBHOOK_SECRET": "whsec_" + base64.b64encode(bytes(range(30, 62))).decode(),
        "ENCRYPTION_KEYS": f"k1:{key(0)}",
        "BLIND_INDEX_KEY": f"b1:{key(100)}",
        "AUDIT_KEYS": f"a1:{key(150)}",
    }


def _hf_adapter(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert HF_ADAPTER.exists(), "hf-adapter is not installed; run `make bootstrap`"
    return subprocess.run(
        [str(HF_ADAPTER), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_db_upgrade_creates_schema_when_database_is_a_new_sqlite_file(tmp_path: Path) -> None:
    database = tmp_path / "var" / "adapter.sqlite3"  # the folder does not exist yet
    env = _environment(f"sqlite:///{database}")

    upgraded = _hf_adapter("db", "upgrade", env=env)
    checked = _hf_adapter("db", "check", env=env)

    assert (upgraded.returncode, upgraded.stderr) == (0, "")
    assert (checked.returncode, checked.stderr) == (0, "")
    engine = create_engine_from_url(f"sqlite:///{database}")
    try:
        assert "health_workers" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_db_check_exits_1_when_database_is_not_upgraded(tmp_path: Path) -> None:
    result = _hf_adapter(
        "db", "check", env=_environment(f"sqlite:///{tmp_path / 'adapter.sqlite3'}")
    )

    assert result.returncode == 1
    assert "hf-adapter db upgrade" in result.stderr


def test_db_upgrade_exits_2_when_database_url_is_bad(tmp_path: Path) -> None:
    result = _hf_adapter("db", "upgrade", env=_environment(f"mysql://root:{DB_PASSWORD}@db/x"))

    assert result.returncode == 2
    assert "DATABASE_URL: unsupported scheme 'mysql'" in result.stderr
    assert DB_PASSWORD not in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_exits_2_when_database_is_unreachable() -> None:
    url = f"postgresql+psycopg://hf:{DB_PASSWORD}@127.0.0.1:1/hf"

    result = _hf_adapter("db", "upgrade", env=_environment(url))

    assert result.returncode == 2
    assert "cannot use the database at postgresql+psycopg://hf:***@127.0.0.1:1/hf" in result.stderr
    assert "check DATABASE_URL" in result.stderr
    assert DB_PASSWORD not in result.stderr


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("sync", "--system", "sisdmk"), {}),
        (("schedule", "--once"), {}),
        # A worker checks the TEMPORARY right only when its batches may be merged.
        (("worker",), {"EVENT_APPLY_BATCH": "64"}),
    ],
    ids=["sync", "schedule", "worker-batches-of-64"],
)
def test_commands_that_check_rights_at_start_exit_2_when_the_database_is_unreachable(
    args: tuple[str, ...], extra: dict[str, str]
) -> None:
    url = f"postgresql+psycopg://hf:{DB_PASSWORD}@127.0.0.1:1/hf"

    result = _hf_adapter(*args, env={**_environment(url), **extra})

    assert result.returncode == 2, result.stderr
    assert "cannot use the database at postgresql+psycopg://hf:***@127.0.0.1:1/hf" in result.stderr
    assert "check DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert DB_PASSWORD not in result.stderr


def test_db_exits_2_with_usage_when_action_is_missing() -> None:
    result = _hf_adapter("db", env=_environment("sqlite://"))

    assert result.returncode == 2
    assert "upgrade" in result.stderr
