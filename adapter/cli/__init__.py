"""The ``hf-adapter`` command: one sub-command per entry point, each a thin layer over a service.

Exit codes: 0 done, 1 the command ran and found a problem (e.g. schema drift), 2 it could not
run (bad configuration, unreachable database, wrong usage, the same sync already running,
a disabled connection).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy.exc import DBAPIError

from adapter.cli.consoles import table_console
from adapter.cli.realtime import add_realtime_commands, positive
from adapter.errors import AdapterError, ConfigurationError
from adapter.observability.logging import configure_logging
from adapter.observability.tracing import configure_tracing
from adapter.sdmk_integration_manager import ConnectionDisabled
from adapter.settings import load_settings
from adapter.store import database
from adapter.store.locks import LockHeld
from cli_startup.output_files import OutputFileError, check_output_file

if TYPE_CHECKING:
    from adapter.audit import ChainReport
    from adapter.composition import Services

EXIT_OK: Final = 0
EXIT_PROBLEM: Final = 1
EXIT_CANNOT_RUN: Final = 2

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        configure_tracing()
        return handler(args)
    except (
        ConfigurationError,
        database.DatabaseUnavailableError,
        LockHeld,
        ConnectionDisabled,
    ) as exc:
        _error(str(exc))
        return EXIT_CANNOT_RUN
    except database.SchemaDriftError as exc:
        _error(str(exc))
        for difference in exc.differences:
            print(f"  {difference}", file=sys.stderr)
        return EXIT_PROBLEM
    except AdapterError as exc:
        _error(str(exc))
        return EXIT_PROBLEM
    except DBAPIError as exc:
        # Whichever command met it: a database it cannot use at all is "could not run" (2),
        # never the "found a problem" (1) that an audit check or a sync reports.
        unusable = database.unusable_database(exc, _shown_database_url())
        if unusable is None:
            raise
        _error(str(unusable))
        return EXIT_CANNOT_RUN


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-adapter",
        description="The HealthForce integration adapter. Configuration comes from environment "
        "variables (docs/configuration.md).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    # One group of subcommands per package (docs/architecture.md, "Packages of the adapter").
    _add_db(commands)
    _add_lookup(commands)
    _add_schedule(commands)
    _add_audit(commands)
    _add_keys(commands)
    _add_sync(commands)
    add_realtime_commands(commands)  # serve, worker, events
    return parser


# -- db -----------------------------------------------------------------------------------


def _add_db(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="database schema: upgrade, check, new revisions")
    db.set_defaults(handler=_usage(db))
    actions = db.add_subparsers(title="actions", metavar="ACTION")

    upgrade = actions.add_parser("upgrade", help="apply the migrations up to the newest")
    upgrade.set_defaults(handler=_db_upgrade)

    check = actions.add_parser(
        "check", help="exit 1 if the database is behind the migrations or they drift from the code"
    )
    check.set_defaults(handler=_db_check)

    revision = actions.add_parser(
        "revision",
        help="write a new migration from the models (developers; against an upgraded database)",
    )
    revision.add_argument("-m", "--message", required=True, help="what the migration does")
    revision.set_defaults(handler=_db_revision)

    grant = actions.add_parser(
        "grant",
        help="print (or --apply) the GRANTs of the runtime role (every command but `db`'s)",
        description="The least rights the runtime role needs on PostgreSQL — the role of "
        "`serve`, `worker`, `schedule` and every other command but `db upgrade`, `db check` "
        "and `db grant`, which the tables' owner runs: "
        "read and write the adapter's tables, append to the audit trail and read it, create "
        "temporary tables (the database's TEMPORARY right); no UPDATE, DELETE or TRUNCATE of "
        "the trail, no change of its head, no DDL. Prints the statements (the database named "
        "by DATABASE_URL, if set); --apply runs them as DATABASE_URL's user, which must own "
        "every one of the tables (the role that runs `db upgrade`) and, unless the role has "
        "TEMPORARY already, the database. Run it again after every `db upgrade`.",
    )
    grant.add_argument("--role", required=True, help="the runtime role (created beforehand)")
    grant.add_argument(
        "--apply", action="store_true", help="run the statements instead of printing them"
    )
    grant.set_defaults(handler=_db_grant)


def _db_upgrade(args: argparse.Namespace) -> int:
    database.upgrade(_database_url())
    print("database upgraded to the newest migration")
    return EXIT_OK


def _db_check(args: argparse.Namespace) -> int:
    database.check(_database_url())
    print("database is at the newest migration and matches the models")
    return EXIT_OK


def _db_revision(args: argparse.Namespace) -> int:
    database.revision(_database_url(), str(args.message))
    print("review the new file in adapter/store/migrations/versions/ before committing it")
    return EXIT_OK


def _db_grant(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from adapter.store.privileges import (
        RoleError,
        grant_runtime_role,
        runtime_grants,
        temporary_grant,
    )

    role = str(args.role)
    try:
        if not args.apply:
            for statement in runtime_grants(role):
                print(f"{statement};")
            try:
                url = make_url(os.environ.get("DATABASE_URL", ""))
            except (ArgumentError, ValueError):  # a bad URL: the statement is left to fill in
                url = None
            postgresql = url is not None and url.get_backend_name() in {"postgresql", "postgres"}
            named = url.database if url is not None and postgresql else None
            comment = "" if named else "-- "
            grant = temporary_grant(named or "<the adapter's database>", role)
            print(f"{comment}{grant};  -- as the database's owner")
            return EXIT_OK
        engine = database.create_engine_from_url(_database_url())
        try:
            granted = grant_runtime_role(engine, role)
        finally:
            engine.dispose()
    except RoleError as exc:
        _error(str(exc))
        return EXIT_CANNOT_RUN
    count = len(granted.statements)
    print(f"role {role!r} now has the runtime rights ({count} statements run)")
    if granted.temporary is not None:
        print(
            f"hf-adapter: note: role {role!r} may create temporary tables, but not by a grant "
            "of its own (through PUBLIC or another role, which a hardening may revoke); as the "
            f"database's owner run {granted.temporary}",
            file=sys.stderr,
        )
    return EXIT_OK


# -- keys ---------------------------------------------------------------------------------


def _add_keys(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser(
        "keys", help="field-encryption and blind-index keys: generate, rotate, reindex"
    )
    keys.set_defaults(handler=_usage(keys))
    actions = keys.add_subparsers(title="actions", metavar="ACTION")

    generate = actions.add_parser(
        "generate",
        help="print a new kid:key entry (for ENCRYPTION_KEYS, AUDIT_KEYS or BLIND_INDEX_KEY)",
    )
    generate.add_argument(
        "--kid", help="the key id, 1-32 of a-z, 0-9, '-' (default: today's date and 4 hex digits)"
    )
    generate.set_defaults(handler=_keys_generate)

    rotate = actions.add_parser(
        "rotate",
        help="re-encrypt stored values under the first (active) key of ENCRYPTION_KEYS; "
        "runs beside the service, safe to interrupt and run again",
    )
    rotate.add_argument(
        "--batch-size",
        type=_batch_size,
        default=500,
        help="rows per transaction (1-10000, default 500)",
    )
    rotate.set_defaults(handler=_keys_rotate)

    reindex = actions.add_parser(
        "reindex",
        help="recompute the stored NIK digests under BLIND_INDEX_KEY after it changed "
        "(BLIND_INDEX_PREVIOUS_KEY set meanwhile); runs beside the service, resumable",
        description="After BLIND_INDEX_KEY changed: recompute every stored blind-index digest "
        "(workers' NIKs, open identity findings) from the decrypted values under the new key, "
        "withdraw resolved findings' digests, in batches of one transaction and one audit entry "
        "each. Stop it (SIGINT, SIGTERM) or kill it and run it again: it resumes. Exit 1 when "
        "rows are left (interrupted, locked, or two rows for one person).",
    )
    reindex.add_argument(
        "--batch-size",
        type=_batch_size,
        default=500,
        help="rows per transaction (1-10000, default 500)",
    )
    reindex.set_defaults(handler=_keys_reindex)


def _keys_generate(args: argparse.Namespace) -> int:
    import datetime as dt
    import secrets

    from adapter.store.crypto import KeyRing

    kid = args.kid or f"{dt.datetime.now(dt.UTC):%Y-%m-%d}-{secrets.token_hex(2)}"
    print(KeyRing.generate_key_entry(kid))
    print(
        "ENCRYPTION_KEYS: put it first (keep the old entries after it); AUDIT_KEYS: add it "
        "after the current entry, roll every process, then move it first; BLIND_INDEX_KEY: use "
        "it alone (the old one as BLIND_INDEX_PREVIOUS_KEY until `keys reindex`); one key per "
        "use, never the same in two; keep it in the secret store (docs/configuration.md)",
        file=sys.stderr,
    )
    return EXIT_OK


def _keys_rotate(args: argparse.Namespace) -> int:
    import signal
    from types import FrameType

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from adapter.audit import command_line_operator
    from adapter.composition import build_services
    from adapter.store.rotation import BatchDone, count_stale, rotate_keys

    # The whole configuration is validated first: bad or missing keys stop here, exit 2.
    services = build_services(load_settings(), check_keys=False)
    cipher, engine = services.cipher, services.engine
    stop_requested: list[int] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)

    try:
        database.require_migrated(engine)
        database.check(engine)
        stale = count_stale(engine, cipher)
        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
            with Progress(*columns, console=Console(stderr=True)) as bar:
                tasks = {name: bar.add_task(name, total=count) for name, count in stale.items()}

                def show(batch: BatchDone) -> None:
                    bar.update(tasks[batch.table], completed=batch.done, total=batch.total)

                report = rotate_keys(
                    services.sessions,
                    cipher,
                    batch_size=args.batch_size,
                    progress=show,
                    stop=lambda: bool(stop_requested),
                    actor=command_line_operator(),
                )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        services.close()

    table = Table(title=f"re-encrypted under key {report.active_kid!r}")
    table.add_column("table")
    table.add_column("rows re-encrypted", justify="right")
    table.add_column("values re-encrypted", justify="right")
    table.add_column("remaining", justify="right")
    table.add_column("failed", justify="right")
    for name, done in report.tables.items():
        table.add_row(
            name, str(done.rows), str(done.tokens), str(done.remaining), str(done.failed_count)
        )
    console = table_console()
    console.print(table)
    console.print(
        f"{report.rows} rows in {report.elapsed_s:.1f} s ({report.rows_per_second:.0f} rows/s)"
    )
    for name, keys in report.failed.items():
        count = report.tables[name].failed_count
        shown = ", ".join(keys[:20]) + (f" and {count - 20} more" if count > 20 else "")
        _error(
            f"{name}: {count} rows left under their old key, a value of theirs does not "
            f"decrypt under the key it names: {shown}. Either that key's secret in "
            "ENCRYPTION_KEYS is wrong (its id is right: check it first, above all when most "
            "rows fail), or these rows are damaged or hold a value moved from another row: "
            "restore them from a backup (or delete them, if their records can be synced again "
            "from their source). Then run `hf-adapter keys rotate` again"
        )
    if report.interrupted:
        _error(f"interrupted; {report.remaining} rows left, run `hf-adapter keys rotate` again")
        return EXIT_PROBLEM
    failed = report.failed_count
    if report.remaining > failed:
        _error(
            f"{report.remaining - failed} rows were locked by other transactions or written "
            "under an old key meanwhile; run `hf-adapter keys rotate` again"
        )
        return EXIT_PROBLEM
    if failed:
        return EXIT_PROBLEM
    console.print(
        f"every value is under key {report.active_kid!r}; the other ENCRYPTION_KEYS entries "
        "can be removed once every process runs with this ring"
    )
    return EXIT_OK


def _keys_reindex(args: argparse.Namespace) -> int:
    from adapter.cli.reindex import run

    return run(batch_size=int(args.batch_size))


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return value


# -- sync ---------------------------------------------------------------------------------


def _add_sync(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sync = commands.add_parser(
        "sync",
        help="pull every health worker from KKI or SISDMK into the store (resumable)",
        description="Batch sync: page through the source from the checkpoint (everything with "
        "--full), upsert each record, commit the checkpoint with each page. Exit 1 when the run "
        "failed; the next run resumes from the last committed page.",
    )
    sync.add_argument("--system", required=True, choices=("kki", "sisdmk"), help="the source")
    sync.add_argument(
        "--full", action="store_true", help="ignore the checkpoint and fetch every record"
    )
    sync.add_argument(
        "--page-size",
        type=_page_size,
        default=500,
        help="records per page and commit (1-500, default %(default)s)",
    )
    sync.add_argument(
        "--metrics-file",
        type=_writable_file,
        help="also write the run's Prometheus metrics to this file "
        "(node_exporter textfile collector format)",
    )
    sync.set_defaults(handler=_sync)


def _add_lookup(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lookup = commands.add_parser(
        "lookup",
        help="look an STR registration up at KKI now (stored copy, marked stale, if KKI is down)",
        description="Live KKI look-up through the store: a fresh answer is stored like a synced "
        "record; when KKI cannot answer, the stored copy is shown marked STALE with its age. "
        "Exit 1 when nothing is found.",
    )
    which = lookup.add_mutually_exclusive_group(required=True)
    which.add_argument("--str", dest="str_number", help="the STR number")
    which.add_argument(
        "--nik-stdin",
        action="store_true",
        help="read the NIK from standard input (never put a NIK on the command line)",
    )
    lookup.set_defaults(handler=_lookup)


def _lookup(args: argparse.Namespace) -> int:
    from adapter.cli.lookup import run

    return run(str_number=args.str_number, nik_from_stdin=bool(args.nik_stdin))


def _add_schedule(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedule = commands.add_parser(
        "schedule",
        help="run the syncs requested through the API and each system's daily batch sync at its "
        "time (SYNC_SCHEDULE), retry degraded ones",
        description="Runs requested through POST /api/v1/sync-runs (checked every "
        "SCHEDULE_POLL_S), and the daily batch sync per system at the times in SYNC_SCHEDULE "
        "(SYNC_TIMEZONE). Safe to run in several processes: each request and each daily sync "
        "runs once. A failed run is retried at the connection's next_attempt_at. Exit 1 if a "
        "run it made failed.",
    )
    schedule.add_argument(
        "--once", action="store_true", help="run what is requested or due now, then exit (for cron)"
    )
    schedule.add_argument(
        "--metrics-port",
        type=positive(65535),
        help="serve the scheduler's Prometheus metrics on --metrics-host:PORT/metrics",
    )
    schedule.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address --metrics-port listens on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    schedule.set_defaults(handler=_schedule)


def _schedule(args: argparse.Namespace) -> int:
    from adapter.cli.schedule import run

    if args.once and args.metrics_port is not None:
        _error(
            "--metrics-port needs a long-running scheduler: with --once nothing would be there "
            "to scrape (run it without --once, or alert on the cron job's exit status)"
        )
        return EXIT_CANNOT_RUN

    return run(
        once=bool(args.once), metrics_port=args.metrics_port, metrics_host=str(args.metrics_host)
    )


def _add_audit(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser(
        "audit",
        help="the audit trail: seal and verify its keyed chain, anchor its head outside the "
        "database",
    )
    actions = audit.add_subparsers(title="actions", metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="walk the trail and report the first broken link (exit 1 if there is one)",
        description="Walk the sealed trail up to the chain's head, checking each entry's place, "
        "link, MAC and chain hash under AUDIT_KEYS, and (with --anchor) that the trail still "
        "passes through every anchor in the file; then check the MACs of the entries not "
        "sealed yet, and that no writer's entry is missing. Exit 1 at the first problem, "
        "naming the entry.",
    )
    verify.add_argument(
        "--anchor",
        type=Path,
        metavar="FILE",
        help="an anchor file written by `hf-adapter audit anchor`: a trail shorter than an "
        "anchor, or with another entry at an anchor's number, is broken",
    )
    verify.add_argument(
        "--metrics-file",
        type=_writable_file,
        metavar="FILE",
        help="also write the outcome as Prometheus metrics to FILE (node_exporter's textfile "
        "collector): hf_audit_chain_intact, _entries, _verified_timestamp_seconds, "
        "hf_audit_pending_entries, hf_audit_oldest_pending_age_seconds",
    )
    verify.set_defaults(handler=_audit_verify)
    anchor = actions.add_parser(
        "anchor",
        help="seal and verify the trail, then append its signed head to a file kept outside the "
        "database",
        description="Seal the entries committed so far, verify the trail (through the anchors "
        "already in FILE), then append one "
        "JSON line to FILE: the newest entry's number and hash, the time and the audit key id, "
        "with an HMAC over them under AUDIT_KEYS. Keep the file where the database's "
        "administrators cannot write (or use --out - and send it elsewhere). Exit 1, writing "
        "nothing, if the trail is broken.",
    )
    anchor.add_argument(
        "--out",
        type=_writable_file_or_stdout,
        required=True,
        metavar="FILE",
        help="the anchor file to append to (created if missing); - for standard output",
    )
    anchor.set_defaults(handler=_audit_anchor)
    seal = actions.add_parser(
        "seal",
        help="chain the entries written since the last seal (serve, worker and schedule do it "
        "in a thread)",
        description="Seal every committed pending audit entry into the chain, in the order "
        "they were committed, after checking each one's MAC; an entry whose MAC does not "
        "verify is left pending and reported (exit 1). Waits while another process seals.",
    )
    seal.add_argument(
        "--batch",
        type=_seal_batch,
        default=1000,
        metavar="N",
        help="entries sealed per transaction (default 1000)",
    )
    seal.set_defaults(handler=_audit_seal)
    audit.set_defaults(handler=_usage(audit))


def _seal_batch(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 100000")
    return int(text)


def _audit_seal(args: argparse.Namespace) -> int:
    from adapter.audit import seal_all

    with _services() as services:
        result = seal_all(services.sessions, batch=int(args.batch))
    print(f"sealed {result.sealed:,} audit entries")
    if result.refused:
        _error(
            f"{result.refused:,} pending entries were left unsealed: their MAC does not verify "
            "or their audit key is not in AUDIT_KEYS; `hf-adapter audit verify` names them"
        )
        return EXIT_PROBLEM
    return EXIT_OK


def _audit_verify(args: argparse.Namespace) -> int:
    anchor_file: Path | None = args.anchor
    with _services() as services:
        report = _verify_audit_trail(services, anchor_file)
    if args.metrics_file is not None:
        _write_audit_metrics(report, args.metrics_file)
    if not report.intact:
        return _audit_broken(report)
    print(f"audit trail intact: {report.entries:,} entries, newest is #{report.last_seq}")
    if report.pending:
        oldest = report.oldest_pending_at
        print(
            f"{report.pending:,} more not sealed yet (their MACs verify; the oldest written at "
            f"{oldest.isoformat(timespec='seconds') if oldest else '?'}): serve, worker and "
            "schedule seal them, or `hf-adapter audit seal`"
        )
    if report.unkeyed:
        print(
            f"entries #1-#{report.unkeyed} were written before the chain was keyed "
            "(plain SHA-256): they show order and removal, not who wrote them"
        )
    if anchor_file is not None:
        print(f"it passes through all {report.anchors} anchor(s) in {anchor_file}")
    return EXIT_OK


def _audit_anchor(args: argparse.Namespace) -> int:
    import datetime as dt

    from adapter.audit import Anchor, seal_all

    anchor_file: Path | None = args.out
    with _services() as services:
        # Sealed first, so the anchor covers every entry committed before the command: an
        # entry still pending is in no anchor, and could be removed unseen until it is sealed.
        try:
            seal_all(services.sessions)
        except DBAPIError as exc:
            # A dropped trail table: the check below reports the broken trail (1).
            if not _trail_table_dropped(exc, services):
                raise
        # The anchors already in the file are checked too: a trail is anchored only if intact.
        report = _verify_audit_trail(
            services, anchor_file if anchor_file is not None and anchor_file.exists() else None
        )
        key = services.audit_keys.active
    if not report.intact:
        return _audit_broken(report)
    anchor = Anchor.sign(report.last_seq, report.last_hash, dt.datetime.now(dt.UTC), key)
    if anchor_file is None:
        print(anchor.to_json())
        return EXIT_OK
    with anchor_file.open("a", encoding="utf-8") as stream:
        stream.write(anchor.to_json() + "\n")
        stream.flush()
        os.fsync(stream.fileno())
    print(f"anchored entry #{anchor.seq} under audit key {anchor.key_id!r} in {anchor_file}")
    return EXIT_OK


def _trail_table_dropped(error: DBAPIError, services: Services) -> bool:
    """Whether `error`, met sealing or checking the trail, is one of its tables missing from a
    database at the newest migration: dropped, which breaks the trail (1). Anything else is
    "could not run" (main, 2)."""
    unusable = database.unusable_database(error, services.engine.url)
    return unusable is not None and unusable.reason == "database_damaged"


def _verify_audit_trail(services: Services, anchor_file: Path | None) -> ChainReport:
    from adapter.audit import ChainReport, read_anchors, verify_chain

    anchors = []
    if anchor_file is not None:
        try:
            lines = anchor_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read the anchor file {anchor_file}: {exc}") from None
        anchors = read_anchors(lines, services.audit_keys)
    try:
        with services.sessions() as session:
            return verify_chain(session, anchors)
    except DBAPIError as exc:
        if not _trail_table_dropped(exc, services):
            raise
        return ChainReport(
            entries=0,
            last_seq=0,
            problem=f"a table of the trail is missing ({database.first_line(exc.orig)}): it "
            "was dropped from the database, which is at the newest migration",
        )


def _write_audit_metrics(report: ChainReport, path: Path) -> None:
    import datetime as dt

    from prometheus_client import CollectorRegistry, write_to_textfile

    from adapter.observability.sync_metrics import AuditMetrics

    registry = CollectorRegistry()
    metrics = AuditMetrics.for_registry(registry)
    metrics.intact.set(1 if report.intact else 0)
    metrics.entries.set(report.entries)
    metrics.verified.set_to_current_time()
    # Entries stay pending only until a sealer's next turn (0.2 s): an old one means no sealer
    # runs, and until it is sealed its deletion would go unnoticed (docs/security.md).
    metrics.pending.set(report.pending)
    oldest = report.oldest_pending_at
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    age = 0.0 if oldest is None else (dt.datetime.now(dt.UTC) - oldest).total_seconds()
    metrics.oldest_pending_age.set(max(age, 0.0))
    write_to_textfile(str(path), registry)  # written aside, then renamed: never half a file


def _audit_broken(report: ChainReport) -> int:
    where = "" if report.broken_at is None else f" at entry #{report.broken_at}"
    verified = f"entries #1-#{report.last_seq}" if report.last_seq else "no entry"
    _error(
        f"audit trail broken{where}: {report.problem}; "
        f"{verified} verified. Restore the trail from a backup and "
        "investigate who had write access to the database"
    )
    return EXIT_PROBLEM


def _writable_file(text: str) -> Path:
    """An argparse type: a file this process can create or replace, checked before the work
    (a metrics file written after a committed sync, an anchor after sealing)."""
    try:
        return check_output_file(Path(text))
    except OutputFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _writable_file_or_stdout(text: str) -> Path | None:
    """`_writable_file`, or ``None`` for ``-`` (standard output)."""
    return None if text == "-" else _writable_file(text)


def _page_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 500:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 500")
    return int(text)


def _sync(args: argparse.Namespace) -> int:
    # Imported here: rich and the HTTP clients load only for this command.
    from adapter.cli.sync import run

    return run(
        str(args.system),
        full=bool(args.full),
        page_size=int(args.page_size),
        metrics_file=args.metrics_file,
    )


# -- helpers ------------------------------------------------------------------------------


def _services() -> Services:
    """The adapter's services for the audit commands (a context manager: it closes them); the
    trail can be checked whatever the blind index's state."""
    from adapter.composition import build_services

    return build_services(load_settings(), check_keys=False)


def _database_url() -> str:
    # The whole configuration is validated, as for `serve`: migrate with the same environment
    # the adapter runs with, so a broken deployment is caught before it is rolled out.
    return load_settings().database_url.get_secret_value()


def _shown_database_url() -> str | None:
    """DATABASE_URL for an error message (its password is hidden there), if it is valid."""
    try:
        return _database_url()
    except ConfigurationError:
        return None


def _usage(parser: argparse.ArgumentParser) -> Handler:
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_CANNOT_RUN

    return show


def _error(message: str) -> None:
    print(f"hf-adapter: error: {message}", file=sys.stderr)
