"""CPU the benchmarks charge to processes: a process and its descendants, the PostgreSQL
backends serving a database, and their user + system CPU seconds (Linux /proc); a command's
own peak memory and CPU."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
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


# Run by a small Python of its own: starts the command, waits for it with wait4 and writes its
# rusage to the file named first. A child's ru_maxrss starts at its parent's peak resident set
# (Linux counts the memory a child had before its exec), so a command started straight from a
# benchmark that holds hundreds of MiB (COPY dumps) reports them as its own; started from this
# one, the floor is this small interpreter's (about 11 MiB).
_MEASURE = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    cpu = usage.ru_utime + usage.ru_stime
    json.dump([os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss, cpu], out)
"""


@dataclass(frozen=True)
class Measured:
    """A command's exit code, wall seconds, peak resident set (MiB), user + system CPU seconds
    and standard output."""

    exit_code: int
    wall_s: float
    peak_rss_mib: float
    cpu_s: float
    stdout: str


def run_measured(argv: list[str], env: Mapping[str, str]) -> Measured:
    """`argv` with `env`, its standard error dropped, measured by `_MEASURE`: its own peak
    memory, not this process's, and its wall time from its start to its end (the measuring
    interpreter's start left out)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, report.name, *argv],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            check=False,
        )
        measured = Path(report.name).read_text()
    if not measured:
        raise RuntimeError(
            f"{argv[0]}: not measured (its measuring process ended {done.returncode})"
        )
    exit_code, wall_s, maxrss_kib, cpu_s = json.loads(measured)
    return Measured(exit_code, wall_s, maxrss_kib / 1024, cpu_s, done.stdout)


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
            services.drop_database(connection, name)
        admin.dispose()
