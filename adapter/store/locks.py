"""Named locks that hold across processes and machines, released when their holder dies.

PostgreSQL: a session-level advisory lock on a connection kept open for the lock's life; the
server drops it when that connection ends (exit, SIGKILL, a lost network), so a crashed sync
never blocks the next one. SQLite (the embedded default, one machine): an exclusive `flock` on
a file next to the database, which the kernel releases when the process ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from adapter.errors import AdapterError

# One namespace for the adapter's advisory lock keys, so they don't meet another application's.
_NAMESPACE: Final = "healthforce-adapter"
log = logging.getLogger(__name__)
# A session-level advisory lock of this database under a bigint key, which pg_locks lists as
# its high and low 32 bits (classid, objid) with objsubid 1.
_ADVISORY = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND classid = CAST(CAST(:high AS bigint) AS oid)"
    " AND objid = CAST(CAST(:low AS bigint) AS oid)"
)
_HELD: Final = text(_ADVISORY + ")")
_HELD_HERE: Final = text(_ADVISORY + " AND pid = pg_backend_pid())")
_in_process: dict[str, threading.Lock] = {}
_in_process_guard = threading.Lock()


class LockHeld(AdapterError):
    """Someone else holds the lock: the work it guards is already being done."""

    default_reason = "lock_held"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name} is already running in another process (a sync, the scheduler or a "
            "worker); wait for it to finish, or look at sync_runs for the run in progress"
        )
        self.name = name


class LockLost(AdapterError):
    """The lock's holder lost it while working: on PostgreSQL its connection ended (a server
    restart, a fail-over, a network cut), so another process may hold it by now."""

    default_reason = "lock_lost"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name}: the lock was lost (its database connection ended); this run stops so "
            "that no two run at once, and the next run resumes from its last committed page"
        )
        self.name = name


class HeldLock:
    """What `exclusive` yields: `verify`, just before the guarded work commits, raises
    `LockLost` if the lock is no longer this process's."""

    def __init__(self, name: str, connection: Connection | None = None) -> None:
        self.name = name
        self._connection = connection  # the lock's own, on PostgreSQL

    def verify(self) -> None:
        """Ask on the lock's own connection whether its session still holds the lock: a
        connection that ended (a server restart, a fail-over, a pooler's idle timeout) fails
        the question, and a session given to someone else since holds no lock of ours."""
        if self._connection is None:  # a file or process lock: held until the process ends
            return
        try:
            held = bool(self._connection.scalar(_HELD_HERE, _halves(advisory_key(self.name))))
            self._connection.commit()  # idle between pages, not idle in a transaction
        except SQLAlchemyError:
            held = False
        if not held:
            raise LockLost(self.name)


def advisory_key(name: str) -> int:
    """The signed 64-bit PostgreSQL advisory lock key for `name`."""
    digest = hashlib.sha256(f"{_NAMESPACE}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _halves(key: int) -> dict[str, int]:
    return {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[HeldLock]:
    """Hold the lock `name` for the body, or raise `LockHeld` at once if someone else has it."""
    if engine.dialect.name == "postgresql":
        with _advisory(engine, name) as held_lock:
            yield held_lock
        return
    path = _lock_file(engine, name)
    if path is not None:
        with _file_lock(path, name):
            yield HeldLock(name)
        return
    # An in-memory database lives in one process: a process-local lock is the whole truth.
    with _process_lock(name):
        yield HeldLock(name)


def held(engine: Engine, name: str) -> bool:
    """Whether a process (this one included) holds the lock `name` now.

    On PostgreSQL the server's lock table is read, and on SQLite on Linux the kernel's
    (``/proc/locks``): the lock is never taken, so a process starting the guarded work at this
    instant is not refused because of the look. Without ``/proc/locks`` (another OS), and for
    an in-memory database's in-process lock, it is taken and released at once.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            return bool(connection.scalar(_HELD, _halves(advisory_key(name))))
    path = _lock_file(engine, name)
    if path is not None:
        listed = _flock_listed(path)
        if listed is not None:
            return listed
    try:
        with exclusive(engine, name):
            return False
    except LockHeld:
        return True


@contextmanager
def _advisory(engine: Engine, name: str) -> Iterator[HeldLock]:
    key = advisory_key(name)
    connection = engine.connect()
    try:
        taken = bool(connection.scalar(select(func.pg_try_advisory_lock(key))))
        # Session-level lock: it outlives this transaction, so end the transaction now rather
        # than hold a snapshot open for the whole sync.
        connection.commit()
        if not taken:
            raise LockHeld(name)
        try:
            yield HeldLock(name, connection)
        finally:
            try:
                connection.scalar(select(func.pg_advisory_unlock(key)))
                connection.commit()
            except SQLAlchemyError as exc:
                # The lock's connection failed (the server restarted, the network went): the
                # connection is closed for good, not pooled, so the server ends its session
                # and the lock with it; the body's own outcome is what the caller gets.
                connection.invalidate()
                log.warning(
                    "lock %s: its connection failed (%s); the server released the lock with it",
                    name,
                    type(exc).__name__,
                )
    finally:
        connection.close()


def _lock_file(engine: Engine, name: str) -> Path | None:
    """The file `name` is locked on, next to an SQLite database on disk (None: no file)."""
    database = engine.url.database
    on_disk = database and database != ":memory:" and not database.startswith("file:")
    if engine.dialect.name == "sqlite" and on_disk:
        return Path(f"{database}.{_slug(name)}.lock")
    return None


def _flock_listed(path: Path, table: Path = Path("/proc/locks")) -> bool | None:
    """Whether the kernel lists a `flock` held on `path` (None: it cannot tell).

    A line of ``/proc/locks`` reads ``1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF``: the
    holder's pid, then the file as ``major:minor:inode`` (the two device numbers in hex); a
    process waiting for the lock is listed under it, after ``->``. The device is the file
    system's, which is not always the one `stat` shows (a btrfs subvolume, some overlay
    set-ups): a lock on the same inode number under another device is ours if its holder has
    our file open (a holder whose open files cannot be read is not counted: inode numbers
    repeat across file systems, and a stranger's lock must not hold off every sync).

    Not seen: a lock held from another PID namespace (another container; the kernel lists only
    its own namespace's) or another host (a network file system) — the SQLite store is for one
    machine and one container.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False  # never locked on this machine: a holder creates it first
    except OSError:
        return None
    try:
        listing = table.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        if fields[5] == wanted:
            return True
        if fields[5].rpartition(":")[2] == str(stat.st_ino) and _has_open(fields[4], path):
            return True
    return False


def _has_open(pid: str, path: Path) -> bool:
    """Whether process `pid` has `path` open, by the links of its open files (read, never
    followed: a file on a hung mount does not hang the look)."""
    target = os.path.realpath(path)
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False  # gone, or not ours to read
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{descriptor}") == target:
                return True
        except OSError:
            continue  # closed meanwhile
    return False


@contextmanager
def _file_lock(path: Path, name: str) -> Iterator[None]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(name) from None
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


@contextmanager
def _process_lock(name: str) -> Iterator[None]:
    with _in_process_guard:
        lock = _in_process.setdefault(name, threading.Lock())
    if not lock.acquire(blocking=False):
        raise LockHeld(name)
    try:
        yield
    finally:
        lock.release()


def _slug(name: str) -> str:
    return "".join(char if char.isalnum() or char in "-_" else "-" for char in name)
