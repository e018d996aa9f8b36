"""The check every command makes of a file it will write (a report, metrics, an anchor) before
its work starts: a path it cannot write is refused in a second, not after a long run."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


class OutputFileError(ValueError):
    """A file the command cannot write; the message names it and says what to do."""


def check_output_file(path: Path, *, what: str = "", create_folders: bool = False) -> Path:
    """`path`, once checked that this process can create or replace it: not a folder, in a
    folder that exists (with `create_folders`, its missing folders are created) and that this
    user may write and enter, and, if the file exists, writable. `OutputFileError` otherwise;
    `what` ("report") comes before the path in its message."""
    named = f"{what} {path}" if what else str(path)
    try:
        return _checked(path, named, create_folders=create_folders)
    except OSError as exc:
        # Looking at the path failed: a folder on the way this user may not enter (EACCES),
        # a name too long (ENAMETOOLONG), a loop of links.
        raise OutputFileError(
            f"{named} cannot be checked ({exc.strerror}); name another file"
        ) from None


def _checked(path: Path, named: str, *, create_folders: bool) -> Path:
    folder = path.parent
    if path.is_dir():
        raise OutputFileError(f"{named} is a folder; name a file in it")
    if create_folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFileError(
                f"cannot create the folder {exc.filename} for {named} ({exc.strerror}); "
                "name another file"
            ) from None
    if not folder.is_dir():
        raise OutputFileError(f"no folder {folder}; create it or name another file")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputFileError(f"{named} cannot be written by this user; name another file")
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: into a new file beside it, then renamed over
    it, so a reader (a CI job collecting the report) never sees half of one, and an earlier
    file stays as it was if the write fails. A file replaced keeps its mode and owner; a new one
    gets the mode a plain write would give it.

    Only a regular file (or a new one) is replaced so: anything else at `path` — a link, a
    device such as ``/dev/stdout``, a pipe — is written into as it is, never renamed over."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        with path.open("wb") as out:
            out.write(data)
        return
    previous = path.stat() if path.exists() else None
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if previous is not None:  # the file it replaces keeps its mode (a 0600 report stays so)
            os.chmod(temporary, stat.S_IMODE(previous.st_mode))
            with contextlib.suppress(PermissionError):  # only root may give a file away
                os.chown(temporary, previous.st_uid, previous.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
