"""The ``hf-adapter`` command: one sub-command per entry point, each a thin layer over a service.

Exit codes: 0 done, 1 the command ran and found a problem (e.g. schema drift), 2 it could not
run (bad configuration, unreachable database, wrong usage).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final

from adapter.errors import AdapterError, ConfigurationError
from adapter.settings import load_settings
from adapter.store import database

EXIT_OK: Final = 0
EXIT_PROBLEM: Final = 1
EXIT_CANNOT_RUN: Final = 2

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        return handler(args)
    except (ConfigurationError, database.DatabaseUnavailableError) as exc:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-adapter",
        description="The HealthForce integration adapter. Configuration comes from environment "
        "variables (docs/configuration.md).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    # serve, worker, sync and keys are added here as their packages land (DESIGN.md).
    _add_db(commands)
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


# -- helpers ------------------------------------------------------------------------------


def _database_url() -> str:
    # The whole configuration is validated, as for `serve`: migrate with the same environment
    # the adapter runs with, so a broken deployment is caught before it is rolled out.
    return load_settings().database_url.get_secret_value()


def _usage(parser: argparse.ArgumentParser) -> Handler:
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_CANNOT_RUN

    return show


def _error(message: str) -> None:
    print(f"hf-adapter: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
