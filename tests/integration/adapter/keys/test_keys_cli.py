"""`hf-adapter keys generate` and `hf-adapter keys rotate` as operators run them: the environment
a process gets, a real database, exit codes and output; in this process (`adapter.cli.main`),
without a Python start per run (none of these tests is about the process)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from adapter.store.crypto import Key, KeyRing
from adapter.store.models import AuditEvent
from tests.integration.adapter.keys.store import (
    KEY_A,
    KEY_B,
    Store,
    cipher_of,
    kids,
    plaintexts,
)
from tests.integration.adapter.sync.support import python_path
from tests.support.adapter_cli import InProcess

pytestmark = pytest.mark.integration


def _entry(key: Key) -> str:
    return f"{key.kid}:{base64.urlsafe_b64encode(key.material).decode().rstrip('=')}"


def _environment(database: str, encryption_keys: str | None) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        **python_path(),
        "DATABASE_URL": database,
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
        "BLIND_INDEX_KEY": _entry(Key("bidx-1", bytes(range(100, 132)))),
        "AUDIT_KEYS": _entry(Key("audit-1", bytes(range(150, 182)))),
    }
    if encryption_keys is not None:
        env["ENCRYPTION_KEYS"] = encryption_keys
    return env


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def hf_adapter(hf_adapter_here: InProcess) -> Run:
    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return hf_adapter_here(env, *args)

    return run


def test_keys_generate_prints_entry_that_parses_as_key_ring(hf_adapter: Run) -> None:
    generated = hf_adapter("keys", "generate", "--kid", "2026-06", env={"PATH": "/usr/bin:/bin"})
    unnamed = hf_adapter("keys", "generate", env={"PATH": "/usr/bin:/bin"})

    assert generated.returncode == 0
    ring = KeyRing.parse(f"{generated.stdout.strip()},{unnamed.stdout.strip()}")
    assert ring.kids[0] == "2026-06"
    assert ring.active.material != ring.keys[1].material
    # Where the entry goes: an audit key is added after the current one first (in one step, the
    # processes not yet rolled cannot verify what the rolled ones sign).
    assert "ENCRYPTION_KEYS: put it first" in generated.stderr
    assert "AUDIT_KEYS: add it after the current entry, roll every process" in generated.stderr


def test_keys_generate_exits_2_when_kid_is_invalid(hf_adapter: Run) -> None:
    result = hf_adapter("keys", "generate", "--kid", "Not Valid", env={"PATH": "/usr/bin:/bin"})

    assert result.returncode == 2
    assert "key id must be" in result.stderr
    assert result.stdout == ""


def test_keys_rotate_needs_old_key_then_reencrypts_everything_and_reports_tables(
    store: Store, hf_adapter: Run
) -> None:
    before = plaintexts(store.engine, cipher_of(KEY_A))
    url = store.engine.url.render_as_string(hide_password=False)
    # Key A dropped before its values were rotated: nothing can be rewritten, nothing changes.
    without_a = hf_adapter("keys", "rotate", env=_environment(url, _entry(KEY_B)))

    assert without_a.returncode == 1
    assert "'key-a'" in without_a.stderr
    assert "add it back" in without_a.stderr
    assert kids(store.engine) == {KEY_A.kid}

    env = _environment(url, f"{_entry(KEY_B)},{_entry(KEY_A)}")
    result = hf_adapter("keys", "rotate", "--batch-size", "64", env=env)

    assert (result.returncode, result.stderr.count("error")) == (0, 0), result.stderr
    assert "health_workers" in result.stdout
    assert "registrations" in result.stdout
    assert "every value is under key 'key-b'" in result.stdout
    assert kids(store.engine) == {KEY_B.kid}
    assert plaintexts(store.engine, cipher_of(KEY_B)) == before
    # Every value decrypted and written again is on the audit trail, under the operator.
    with store.engine.connect() as connection:
        entries = connection.execute(
            select(
                AuditEvent.resource_type,
                AuditEvent.actor_kind,
                AuditEvent.detail,
                AuditEvent.fields,
            ).where(AuditEvent.action == "keys.rotate")
        ).all()
    rotated: dict[str, int] = {}
    fields: dict[str, set[str]] = {}
    for table, kind, detail, named in entries:
        fields.setdefault(table, set()).update(json.loads(named or "[]"))
        assert kind == "user"
        document = json.loads(detail)
        rotated[table] = rotated.get(table, 0) + document["rows"]
    assert rotated["health_workers"] == 200
    assert rotated["registrations"] == 40
    # The personal fields each table's values hold, KKI's copies of the identity included.
    assert {"full_name", "birth_date", "gelar_depan"} <= fields["registrations"]
    assert {"nik", "full_name", "email"} <= fields["health_workers"]

    again = hf_adapter("keys", "rotate", env=env)

    assert again.returncode == 0
    assert "0 rows in" in again.stdout


@pytest.mark.parametrize(
    ("encryption_keys", "expected"),
    [
        (None, "ENCRYPTION_KEYS: missing"),
        ("key-b:not-a-key", "ENCRYPTION_KEYS"),
        (f"{_entry(KEY_B)},{_entry(KEY_B)}", "used twice"),
    ],
)
def test_keys_rotate_exits_2_when_encryption_keys_are_missing_or_bad(
    tmp_path: Path, encryption_keys: str | None, expected: str, hf_adapter: Run
) -> None:
    env = _environment(f"sqlite:///{tmp_path / 'adapter.sqlite3'}", encryption_keys)

    result = hf_adapter("keys", "rotate", env=env)

    assert result.returncode == 2
    assert expected in result.stderr
    assert "not-a-key" not in result.stderr
