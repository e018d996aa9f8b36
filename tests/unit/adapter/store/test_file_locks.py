"""The SQLite store's locks: an exclusive `flock` on a file next to the database. `held` looks
the lock up in the kernel's list (``/proc/locks``) instead of taking it for a moment, which
refused a sync starting at that instant."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from adapter.store import locks
from adapter.store.locks import LockHeld, exclusive, held


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = create_engine(f"sqlite:///{tmp_path / 'adapter.sqlite3'}")
    yield engine
    engine.dispose()


@contextmanager
def held_elsewhere(engine: Engine, name: str) -> Iterator[None]:
    """`name` held by another thread (its own open file: a lock of its own) for the body."""
    ready, done = threading.Event(), threading.Event()

    def hold() -> None:
        with exclusive(engine, name):
            ready.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert ready.wait(30)
        yield
    finally:
        done.set()
        holder.join(30)


def test_a_lock_held_elsewhere_is_seen_and_its_release_too(engine: Engine) -> None:
    assert not held(engine, "sync-kki")  # no lock file yet
    with held_elsewhere(engine, "sync-kki"):
        assert held(engine, "sync-kki")
        assert not held(engine, "sync-sisdmk")
        with pytest.raises(LockHeld), exclusive(engine, "sync-kki"):
            pass
    assert not held(engine, "sync-kki")  # the file stays, unlocked


def test_looking_never_takes_the_lock(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with exclusive(engine, "sync-kki"):
        pass  # the lock file exists, unlocked
    taken: list[int] = []
    real_flock = fcntl.flock

    def flock(descriptor: int, operation: int) -> None:
        taken.append(operation)
        real_flock(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    assert not held(engine, "sync-kki")
    with exclusive(engine, "sync-kki"):
        taken.clear()
        assert held(engine, "sync-kki")
    assert taken == [fcntl.LOCK_UN]  # the release of `exclusive`, nothing of the looks


def test_the_kernels_list_is_read_by_device_and_inode_waiters_apart(tmp_path: Path) -> None:
    path = tmp_path / "adapter.sqlite3.sync-kki.lock"
    path.touch()
    stat = path.stat()
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}"
    other = f"{(os.major(stat.st_dev) + 1) % 256:02x}:{os.minor(stat.st_dev):02x}"
    table = tmp_path / "locks"

    def listed(*lines: str) -> bool | None:
        table.write_text("".join(f"{line}\n" for line in lines))
        return locks._flock_listed(path, table)

    assert listed() is False
    assert listed(f"1: FLOCK  ADVISORY  WRITE 4321 {device}:{stat.st_ino} 0 EOF") is True
    # The same inode number on another file system (its holder gone), or a POSIX lock, is not
    # this lock.
    assert listed(f"1: FLOCK  ADVISORY  WRITE 0 {other}:{stat.st_ino} 0 EOF") is False
    assert listed(f"1: POSIX  ADVISORY  WRITE 4321 {device}:{stat.st_ino} 0 EOF") is False
    # Listed under the file system's device, not the one `stat` shows (a btrfs subvolume): ours
    # when its holder has our file open, not when it has another file of that inode number.
    with path.open("rb"):
        mine = f"1: FLOCK  ADVISORY  WRITE {os.getpid()} {other}:{stat.st_ino} 0 EOF"
        assert listed(mine) is True
    assert listed(mine) is False
    # A process waiting for it is listed under its holder, after "->".
    assert (
        listed(
            f"1: FLOCK  ADVISORY  WRITE 4321 {device}:{stat.st_ino + 1} 0 EOF",
            f"1: -> FLOCK  ADVISORY  WRITE 4322 {device}:{stat.st_ino} 0 EOF",
        )
        is False
    )
    assert locks._flock_listed(path, tmp_path / "missing") is None  # cannot tell: take it


def test_without_the_kernels_list_the_lock_is_taken_for_a_moment_to_look(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locks, "_flock_listed", lambda path: None)
    with exclusive(engine, "sync-kki"):
        pass
    assert not held(engine, "sync-kki")
    with held_elsewhere(engine, "sync-kki"):
        assert held(engine, "sync-kki")
