"""A small Locust run, distributed (a master and one worker process), against the real stack:
`hf-adapter serve` under gunicorn, the worker and the scheduler over PostgreSQL and RabbitMQ,
both mocks, and the test IdP with 8-second tokens. Locust runs as its own processes only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from harness.idp import IdpProcess
from load.run import Shape, load_run, prefill, stack_settings, start_scheduler, target_for
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import adapter_stack
from tests.support.databases import PostgresServer
from tests.support.fixtures import MOCK_SIZE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMOKE = Shape(
    # Paced users (5 webhooks/s or 2 reads/s each): 10 users for 12 s send ~400 requests, the
    # tokens (8 s) renew once; 20 users for 20 s cost the suite 138 CPU-s for no other check.
    users=10,
    spawn_rate=10,
    run_time_s=12,
    workers=1,
    # Shares high enough that a 12-second run surely sends both kinds.
    options={
        "LOAD_DUPLICATE_SHARE": "0.2",
        "LOAD_BAD_SIGNATURE_SHARE": "0.1",
        "LOAD_SYNC_SYSTEM": "sisdmk",
        "LOAD_SYNC_DELAY_S": "3",
    },
)
TOKEN_TTL_S = 8


def _row(document: dict[str, Any], name: str) -> dict[str, Any]:
    rows = [row for row in document["stats"] if row["name"] == name]
    return rows[0] if rows else {"requests": 0, "failures": 0}


def test_load_smoke_distributed_loses_and_duplicates_no_event(
    postgres_server: PostgresServer,
    broker: str,
    mocks: tuple[Mock, Mock],
    tmp_path: Path,
) -> None:
    kki, sisdmk = mocks
    out = tmp_path / "run"
    with (
        IdpProcess(access_token_ttl_s=TOKEN_TTL_S) as idp,
        adapter_stack(
            postgres_server.create_database(),
            kki,
            sisdmk,
            broker=broker,
            extra_env=stack_settings(idp),
        ) as adapter,
    ):
        adapter.start_worker(concurrency=4)
        prefill(adapter)
        start_scheduler(adapter)
        target = target_for(adapter, idp, {"kki": kki.url, "sisdmk": sisdmk.url}, tmp_path)
        document = load_run(SMOKE, target, out)

    # Locust ran in its own processes: nothing here imported it (or gevent's socket patching).
    assert not {"locust", "gevent"} & sys.modules.keys()
    for name in ("report.md", "report.json", "locust_stats.csv", "locust_stats_history.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Both Locust processes ran: the worker logged what it sent, the master wrote the CSVs.
    assert list(out.glob("sent-*.jsonl"))
    assert document["checks"] == {
        "nothing_sent": 0,
        "task_errors": 0,
        "unexpected_failures": 0,
        "lost": 0,
        "duplicated": 0,
        "forged_stored": 0,
        "not_applied": 0,
        "failed_sync_runs": 0,
    }
    assert document["verdict"] == "pass"
    database = document["database"]
    assert database["acknowledged_events"] > 0
    assert database["stored"] == database["acknowledged_events"]
    assert database["lag_s"]["events"] == database["acknowledged_events"]
    assert database["forged_sent"] > 0
    assert database["forged_refused"] == database["forged_sent"]
    assert database["sent"]["duplicate"] > 0
    # The duplicates were answered 200 (counted as successes only for that answer).
    for source in ("kki", "sisdmk"):
        duplicates = _row(document, f"POST /webhooks/{source} [duplicate]")
        assert duplicates["failures"] == 0
    assert _row(document, "GET /api/v1/health-workers (search)")["requests"] > 0
    assert _row(document, "GET /api/v1/health-workers/{id}")["requests"] > 0
    # Each user looks the token endpoint up once; more tokens than that means renewals.
    tokens = sum(
        row["requests"] for row in document["stats"] if row["name"].startswith("SSO token")
    )
    assert tokens > _row(document, "SSO discovery")["requests"]
    (run,) = database["sync_runs"]
    assert (run["system"], run["mode"], run["status"]) == ("sisdmk", "full", "succeeded")
    # A full run: every worker fetched again (all unchanged since the sync before the load).
    assert (run["fetched"], run["unchanged"]) == (MOCK_SIZE, MOCK_SIZE)
