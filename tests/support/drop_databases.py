"""Drops test databases after the test session that made them has ended.

`PostgresServer.drop_all` starts this in a session of its own and does not wait: a drop forces
a checkpoint (15-80 ms each), and a test worker that waited for the last few hundred kept the
whole suite up to 20 s longer. The server's admin URL comes in `HF_TEST_ADMIN_URL`, the
databases as arguments; exit 1 if one could not be dropped (it is then left on the server,
named `hf_test_…`, and `DROP DATABASE` removes it).
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tests.support.databases import drop_database


def main(names: list[str]) -> int:
    engine = create_engine(
        os.environ["HF_TEST_ADMIN_URL"], isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    failed = []
    try:
        with engine.connect() as connection:
            for name in names:
                try:
                    drop_database(connection, name)
                except SQLAlchemyError as exc:
                    failed.append(f"{name}: {type(exc).__name__}")
    finally:
        engine.dispose()
    for line in failed:
        print(f"drop_databases: not dropped: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
