"""`python -m load.run`: a Locust run against the adapter, then its report.

Without ``--host`` it brings a local stack up first — PostgreSQL (a new database), RabbitMQ, the
KKI and SISDMK mocks, the test OpenID Connect provider, ``hf-adapter serve`` (gunicorn),
``worker`` and ``schedule`` — and takes it down after. Locust always runs as its own
process(es): standalone, or one master and ``--workers N`` worker processes. After the load it
waits until every event is applied (or dead-lettered) and the sync run has ended, then counts
from the database (`load.report`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from kombu.connection import Connection
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from adapter.store.models import SyncRun, WebhookEvent
from harness import services
from harness.idp import IdpProcess, realm_clients
from harness.keycloak import KeycloakServer
from harness.processes import ManagedProcess, free_port, start_mock, unwind_on_kill
from load import report
from load.messages import Resources

if TYPE_CHECKING:
    from tests.integration.adapter.webhooks.support import Adapter

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "load" / "locustfile.py"
USER_CLASSES = ("WebhookStorm", "ApiReader", "SyncUnderLoad")
# The realm export's clients the users take tokens as: reads only, and the operator.
READER, OPERATOR = "hf-readonly", "hf-ops"
# Source ids handed to the webhook users (the mocks' first ones; enough to spread the events).
RESOURCE_IDS = 5_000
# Give up on the drain when nothing has moved for this long.
STALL_S = 120.0


@dataclass(frozen=True)
class Shape:
    """How much load, for how long, and of which kind."""

    users: int = 20
    spawn_rate: float = 5.0
    run_time_s: int = 20
    workers: int = 0  # Locust worker processes; 0 runs Locust standalone
    user_classes: Sequence[str] = USER_CLASSES
    options: Mapping[str, str] = field(default_factory=dict)  # LOAD_… variables


@dataclass(frozen=True)
class Target:
    """Where the load goes, what Locust needs to know (``LOAD_…``), and the store to count."""

    host: str
    environment: Mapping[str, str]
    database_url: str


def locust_argv(
    shape: Shape, host: str, csv_prefix: Path, *, role: str = "", port: int = 0
) -> list[str]:
    """The ``locust`` command of one process (standalone, ``master`` or ``worker``)."""
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    if role == "worker":
        return [*argv, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    argv += [
        "--host",
        host,
        "--users",
        str(shape.users),
        "--spawn-rate",
        str(shape.spawn_rate),
        "--run-time",
        f"{shape.run_time_s}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(csv_prefix),
        "--csv-full-history",
        "--only-summary",
        "--exit-code-on-error",
        "0",  # the report decides what is a failure (refused forgeries are not)
        "--loglevel",
        "WARNING",
    ]
    if role == "master":
        argv += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        argv += ["--expect-workers", str(shape.workers)]
    return [*argv, *shape.user_classes]


def run_locust(shape: Shape, target: Target, out: Path) -> dict[str, str]:
    """Run Locust to the end in its own process(es); their output, by process name."""
    out.mkdir(parents=True, exist_ok=True)
    environment = {
        **target.environment,
        "LOAD_OUTPUT_DIR": str(out),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **shape.options,
    }
    csv_prefix = out / report.CSV_PREFIX
    processes: list[ManagedProcess] = []
    try:
        if shape.workers > 0:
            port = free_port()
            argv = locust_argv(shape, target.host, csv_prefix, role="master", port=port)
            main = ManagedProcess("locust-master", argv, env=environment, cwd=ROOT).start()
            processes.append(main)
            for index in range(shape.workers):
                argv = locust_argv(shape, target.host, csv_prefix, role="worker", port=port)
                processes.append(
                    ManagedProcess(
                        f"locust-worker-{index}", argv, env=environment, cwd=ROOT
                    ).start()
                )
        else:
            argv = locust_argv(shape, target.host, csv_prefix)
            main = ManagedProcess("locust", argv, env=environment, cwd=ROOT).start()
            processes.append(main)
        assert main.process is not None
        # Spawning, the run, the stop timeout, and the workers' start-up: bounded, generously.
        code = main.process.wait(timeout=shape.run_time_s + 180)
        for worker in processes[1:]:
            if worker.process is not None:
                worker.process.wait(timeout=30)
        if code != 0:
            raise RuntimeError(
                f"locust exited with {code}; its log is {out / (main.name + '.log')}"
            )
        return {process.name: process.output(20_000) for process in processes}
    finally:
        # Stopped first (what they print while stopping is kept), then their logs kept in
        # `out` however the run ends (their own go with them), each closed whatever happens.
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop()
        for process in processes:
            try:
                with contextlib.suppress(OSError):
                    (out / f"{process.name}.log").write_text(
                        process.output(20_000), encoding="utf-8"
                    )
            finally:
                process.close()


def drain(engine: Engine, *, stall_s: float = STALL_S) -> None:
    """Wait until no event is pending and no sync is running; fail if nothing moves for
    `stall_s` (a stall, not a slow machine)."""

    def state() -> tuple[int, int, int, int]:
        with engine.connect() as connection:
            pending = connection.scalar(select(func.count()).where(WebhookEvent.state == "pending"))
            settled = connection.scalar(select(func.count()).where(WebhookEvent.state != "pending"))
            running, fetched = connection.execute(
                select(func.count(), func.coalesce(func.sum(SyncRun.fetched), 0)).where(
                    SyncRun.status == "running"
                )
            ).one()
            requested = connection.scalar(text("SELECT count(*) FROM sync_requests"))
        # A running sync moves by its page counts; the events by their states.
        return int(pending or 0), int(settled or 0), int(running) + int(requested or 0), fetched

    last, deadline = state(), time.monotonic() + stall_s
    while last[0] or last[2]:
        time.sleep(0.5)
        now = state()
        if now != last:
            last, deadline = now, time.monotonic() + stall_s
        elif time.monotonic() > deadline:
            raise RuntimeError(
                f"no progress for {stall_s:.0f} s: {now[0]} events pending, {now[2]} syncs"
            )


def source_ids(url: str, collection: str, key: str, limit: int = RESOURCE_IDS) -> list[str]:
    """Up to `limit` ids of a mock's records, from its admin API."""
    ids: list[str] = []
    cursor: str | None = None
    with httpx.Client(base_url=f"{url}/__admin", timeout=30) as admin:
        while len(ids) < limit:
            params: dict[str, str | int] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = admin.get(f"/records/{collection}", params=params).raise_for_status().json()
            ids += [str(record[key]) for record in page["data"]]
            cursor = page["page"].get("next_cursor")
            if not cursor:
                break
    return ids[:limit]


def quiet_schedule(now: dt.datetime | None = None) -> dict[str, str]:
    """SYNC_SCHEDULE and SYNC_TIMEZONE under which no daily sync starts for ~12 hours.

    A slot that has passed today with no run since starts one at once, which would land a
    second sync in the measurement. So the slots are 23:59 in a fixed-offset zone where it is
    now about noon: always half a day away, whatever the hour here.
    """
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    offset = (12 - moment.hour + 12) % 24 - 12  # UTC offset, -12..+11, where it is ~noon
    # POSIX sign convention: Etc/GMT-7 is UTC+7.
    zone = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"
    return {"SYNC_TIMEZONE": zone, "SYNC_SCHEDULE": "sisdmk=23:59,kki=23:59"}


@dataclass(frozen=True)
class Sso:
    """The realm the readers get their tokens from: its issuer and the two clients' secrets."""

    issuer: str
    secrets: Mapping[str, str]


@contextmanager
def running_sso(kind: str, token_ttl_s: int | None = None) -> Iterator[Sso]:
    """Keycloak with the realm export (`keycloak`, what production runs) or the test OpenID
    Connect provider configured from the same export (`test-idp`, starts in a second)."""
    clients = realm_clients()
    secrets_of = {client: clients[client].secret for client in (READER, OPERATOR)}
    if kind == "test-idp":
        with IdpProcess(access_token_ttl_s=token_ttl_s) as idp:
            yield Sso(idp.issuer, secrets_of)
        return
    # Keycloak's own JVM options: the load run reports its token requests too.
    server = KeycloakServer(quick_start=False)  # KeycloakUnavailable: run `make keycloak`
    try:
        server.start()
        if token_ttl_s is not None:
            with server.admin() as admin:
                for client in (READER, OPERATOR):
                    admin.set_client_attributes(client, {"access.token.lifespan": str(token_ttl_s)})
        yield Sso(server.issuer(), secrets_of)
    finally:
        server.close()


def stack_settings(sso: Sso | IdpProcess) -> dict[str, str]:
    """The adapter's settings for a load run, beside the usual test stack's: the SSO, quiet
    logs, no daily sync during the run, requested runs started within a second."""
    return {
        "OIDC_ISSUER": sso.issuer,
        "OIDC_AUDIENCE": "hf-adapter",
        "LOG_LEVEL": "WARNING",
        **quiet_schedule(),
        "SCHEDULE_POLL_S": "1",
    }


def prefill(adapter: Adapter, systems: Sequence[str] = ("sisdmk", "kki")) -> None:
    """One `hf-adapter sync` of each system before the load: the readers find workers from
    the start, and the daily schedule has a run since its last slot, so the scheduler starts
    no catch-up run in the middle of the measurement (on an empty store it would at once)."""
    for system in systems:
        argv = [sys.executable, "-m", "adapter", "sync", "--system", system]
        done = subprocess.run(  # noqa: S603 - argv built here
            argv,
            env={**os.environ, **adapter.environment},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the {system} sync before the load failed:\n{done.stderr[-3000:]}")


def start_scheduler(adapter: Adapter) -> None:
    """`hf-adapter schedule` beside the adapter (it starts the runs requested by the API);
    stopped with the adapter's workers."""
    argv = [sys.executable, "-m", "adapter", "schedule"]
    adapter.workers.append(
        ManagedProcess("adapter-schedule", argv, env=adapter.environment).start()
    )


def target_for(
    adapter: Adapter, sso: Sso | IdpProcess, mocks: Mapping[str, str], out: Path
) -> Target:
    """What Locust needs to load `adapter`: secrets, the SSO's clients, the mocks' ids."""
    resources = Resources(
        kki=source_ids(mocks["kki"], "registrations", "str_number"),
        sisdmk=source_ids(mocks["sisdmk"], "health-workers", "worker_id"),
    )
    out.mkdir(parents=True, exist_ok=True)
    resources.write(out / "resources.json")
    url = adapter.engine.url.render_as_string(hide_password=False)
    return Target(
        host=adapter.url,
        database_url=url,
        environment={
            "LOAD_RESOURCES": str(out / "resources.json"),
            "LOAD_KKI_WEBHOOK_SECRET": adapter.environment["KKI_WEBHOOK_SECRET"],
            "LOAD_SISDMK_WEBHOOK_SECRET": adapter.environment["SISDMK_WEBHOOK_SECRET"],
            "LOAD_OIDC_ISSUER": sso.issuer,
            "LOAD_READER_CLIENT_ID": READER,
            "LOAD_READER_CLIENT_SECRET": _secret(sso, READER),
            "LOAD_OPS_CLIENT_ID": OPERATOR,
            "LOAD_OPS_CLIENT_SECRET": _secret(sso, OPERATOR),
        },
    )


def _secret(sso: Sso | IdpProcess, client: str) -> str:
    return sso.secrets[client] if isinstance(sso, Sso) else sso.clients[client].secret


@contextmanager
def local_stack(
    out: Path,
    *,
    size: int,
    seed: int = 7,
    serve_workers: int = 2,
    worker_concurrency: int = 4,
    token_ttl_s: int | None = None,
    prefill_systems: Sequence[str] = ("sisdmk", "kki"),
    sso_kind: str = "keycloak",
) -> Iterator[Target]:
    """Everything the adapter needs, on this machine, for one run; taken down after."""
    # Imported here: the test stack's helpers are not needed against a remote target.
    from tests.integration.adapter.webhooks.support import (
        Adapter,
        delete_topology,
        migrated_engine,
        stack_environment,
        unique_prefix,
    )

    # The broker first: unreachable, nothing has been created yet to be left behind.
    broker, prefix = reachable_broker(), unique_prefix()
    admin = create_engine(services.database_url(), isolation_level="AUTOCOMMIT")
    name = f"hf_load_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database = make_url(services.database_url()).set(database=name)
    processes: list[ManagedProcess] = []
    adapter: Adapter | None = None
    sso_stack = ExitStack()
    try:
        say(f"starting the SSO ({sso_kind})")
        sso = sso_stack.enter_context(running_sso(sso_kind, token_ttl_s))
        mocks = {}
        for system in ("kki", "sisdmk"):
            say(f"starting the {system} mock ({size:,} people)")
            process, url = start_mock(system, size=size, seed=seed, timeout_s=600)
            processes.append(process)
            mocks[system] = url
        environment = stack_environment(
            database.render_as_string(hide_password=False),
            mocks["kki"],
            mocks["sisdmk"],
            broker=broker,
            prefix=prefix,
        )
        say("starting the adapter (serve, worker)")
        adapter = Adapter(environment | stack_settings(sso), migrated_engine(database))
        adapter.serve(workers=serve_workers)
        adapter.start_worker(concurrency=worker_concurrency)
        if prefill_systems:
            say(f"first syncs before the load: {', '.join(prefill_systems)}")
        prefill(adapter, prefill_systems)
        start_scheduler(adapter)
        yield target_for(adapter, sso, mocks, out)
    finally:
        say("stopping the local stack")
        if adapter is not None:
            adapter.close()
        for process in processes:
            process.close()
        sso_stack.close()
        delete_topology(broker, prefix)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def load_run(shape: Shape, target: Target, out: Path) -> dict[str, object]:
    """Load, drain, count, report: the report's JSON document (files in `out`)."""
    started = dt.datetime.now(dt.UTC)
    say(
        f"load: {shape.users} users for {shape.run_time_s} s against {target.host} "
        f"(Locust's logs: {out}/*.log)"
    )
    run_locust(shape, target, out)  # its processes' logs are written into `out`
    engine = create_engine(target.database_url)
    try:
        say("waiting until every event is applied and no sync runs (stops after 2 min still)")
        drain(engine)
        say("counting from the database and writing the report")
        counts = report.count_from_database(engine, out, since=started)
    finally:
        engine.dispose()
    return report.write_report(out, counts, title=_title(shape, target))


def reachable_broker() -> str:
    """The machine's RabbitMQ URL (`make services`), once it answers; `RuntimeError` with what
    to do when it does not."""
    url = services.broker_url()
    connection = Connection(url, connect_timeout=3)  # type: ignore[no-untyped-call]
    try:
        connection.ensure_connection(max_retries=1)  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the same here
        raise RuntimeError(
            f"RabbitMQ is not reachable ({type(exc).__name__}); run `make services`, or set "
            "TEST_BROKER_URL to a RabbitMQ whose user may declare queues"
        ) from None
    finally:
        connection.release()  # type: ignore[no-untyped-call]
    return url


def say(line: str) -> None:
    """One line of progress on stderr (the report itself goes to stdout at the end)."""
    print(f"load.run: {line}", file=sys.stderr, flush=True)


def _title(shape: Shape, target: Target) -> str:
    mode = f"distributed, 1 master + {shape.workers} workers" if shape.workers else "standalone"
    return (
        f"{shape.users} users, spawn rate {shape.spawn_rate}/s, {shape.run_time_s} s, "
        f"Locust {mode}, against {target.host}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--run-time", type=int, default=60, help="seconds of load")
    parser.add_argument("--workers", type=int, default=0, help="Locust worker processes")
    parser.add_argument("--user-classes", nargs="+", default=list(USER_CLASSES))
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="a new or empty directory for the report (default reports/load/<time>)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="empty a --out directory that holds something (everything in it is deleted)",
    )
    parser.add_argument("--host", default="", help="a running adapter (else a local stack)")
    parser.add_argument(
        "--database-url", default=os.environ.get("LOAD_DATABASE_URL", ""), help="with --host"
    )
    parser.add_argument("--size", type=int, default=1000, help="people in each local mock")
    parser.add_argument("--serve-workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument(
        "--sso",
        choices=("keycloak", "test-idp"),
        default="keycloak",
        help="the local stack's realm: Keycloak with the realm export (default; `make keycloak` "
        "installs it) or the test OpenID Connect provider (faster to start)",
    )
    parser.add_argument("--token-ttl", type=int, default=None, help="access token lifetime, s")
    parser.add_argument(
        "--prefill",
        nargs="*",
        choices=("sisdmk", "kki"),
        default=["sisdmk", "kki"],
        help="systems synced before the load (one left out gets its first sync under load)",
    )
    args = parser.parse_args(argv)
    if args.host and not args.database_url:
        parser.error("--host needs --database-url (or LOAD_DATABASE_URL) to count events")
    out = args.out or ROOT / "reports" / "load" / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; give a new or empty directory")
    if out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            parser.error(
                f"--out {out} is not empty; give a new or empty directory, or add --overwrite "
                "to delete what it holds"
            )
        shutil.rmtree(out)
    shape = Shape(
        users=args.users,
        spawn_rate=args.spawn_rate,
        run_time_s=args.run_time,
        workers=args.workers,
        user_classes=args.user_classes,
    )
    unwind_on_kill()  # what the run started is stopped, and its database dropped
    try:
        if args.host:
            target = Target(args.host, {}, args.database_url)  # LOAD_… from this environment
            document = load_run(shape, target, out)
        else:
            with local_stack(
                out,
                size=args.size,
                serve_workers=args.serve_workers,
                worker_concurrency=args.worker_concurrency,
                token_ttl_s=args.token_ttl,
                prefill_systems=args.prefill,
                sso_kind=args.sso,
            ) as target:
                document = load_run(shape, target, out)
    except KeyboardInterrupt:
        say("stopped: every process the run started has been stopped")
        return 130
    except Exception as exc:  # the edge: one line, never a traceback (HF_LOAD_DEBUG shows it)
        if os.environ.get("HF_LOAD_DEBUG"):
            raise
        message = " ".join(str(exc).split())
        # The end of a long message: where a process's output says what went wrong.
        shown = message if len(message) <= 800 else "…" + message[-800:]
        say(f"failed: {type(exc).__name__}: {shown}")
        say("docs/load.md says what each part needs (HF_LOAD_DEBUG=1 shows the traceback)")
        return 2
    print((out / report.MARKDOWN).read_text(encoding="utf-8"))
    return 0 if document["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
