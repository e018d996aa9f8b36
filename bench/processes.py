"""CPU the benchmarks charge to processes: a process and its descendants, the PostgreSQL
backends serving a database, and their user + system CPU seconds (Linux /proc)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from harness import services


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        queue += [int(child) for child in children]
    return found


def backends(url: str) -> list[int]:
    """The PostgreSQL server processes serving `url`'s database (pools keep them open)."""
    admin = create_engine(services.database_url())
    with admin.connect() as connection:
        pids = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :name"),
            {"name": make_url(url).database},
        ).scalars()
        found = [int(pid) for pid in pids]
    admin.dispose()
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far (those gone since count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


@contextmanager
def throwaway_database(prefix: str) -> Iterator[URL]:
    """A new, empty database `<prefix>_<random>` on the benchmarks' server (`make services`),
    dropped on the way out, its connections closed by force."""
    admin = create_engine(services.database_url(), isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(services.database_url()).set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
