"""The start-up cache: the stored records of a generated data set, so a restart skips generation.

One file per system, seed, size, mismatch rate and *generator digest* (a hash of the mocks' and
`indonesian_ids`' source, the system's contract and Faker's version): any change to what makes
the records makes a new key, so a stale file is never read. Records were checked against the
contract when they were first stored, before the file was written.
"""

from __future__ import annotations

import array
import hashlib
import importlib.metadata
import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import zstandard

import indonesian_ids
import mocks
import openapi_schemas
from mocks.core.store import BodyCodec, RecordStore, StoreError

if TYPE_CHECKING:
    from mocks.core.system import MockSystem

log = logging.getLogger("hf_mock.cache")

FORMAT = b"hf-mock-startup-cache 2\n"
CACHE_DIR_ENV = "HF_MOCK_CACHE_DIR"
# Files not read for this long are removed when a new one is written.
UNUSED_FOR_S = 7 * 24 * 3600
# Faker draws the people; the others decide whether a record passes the contract check.
_DISTRIBUTIONS = ("faker", "jsonschema-rs", "jsonschema", "connexion")
_CONTRACTS = Path(str(mocks.__file__)).resolve().parents[1] / "contracts" / "openapi"

Progress = Callable[[str, int, int], None]


def default_cache_dir() -> Path:
    """`$HF_MOCK_CACHE_DIR`, else `$XDG_CACHE_HOME/hf-mock`, else `~/.cache/hf-mock`."""
    if configured := os.environ.get(CACHE_DIR_ENV):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hf-mock"


def generator_digest(system: MockSystem) -> str:
    """Hash of everything that decides the stored records and their contract check: the code
    (the mocks, the ID rules, the schema compiler), the contract, and the versions of Faker (its
    name lists) and of the validators."""
    digest = hashlib.sha256(FORMAT)
    for distribution in _DISTRIBUTIONS:
        digest.update(f"{distribution}={importlib.metadata.version(distribution)}\n".encode())
    for package in (mocks, indonesian_ids, openapi_schemas):
        root = Path(str(package.__file__)).resolve().parent
        for source in sorted(root.rglob("*.py")):
            digest.update(str(source.relative_to(root)).encode())
            digest.update(source.read_bytes())
    digest.update((_CONTRACTS / system.spec_file).read_bytes())
    return digest.hexdigest()[:16]


class StartupCache:
    """The cache file of one data set; `load` fills empty stores from it, `save` writes it."""

    def __init__(
        self, directory: Path, system: MockSystem, size: int, seed: int, mismatch_rate: float
    ) -> None:
        self.directory = directory
        name = (
            f"{system.name}-n{size}-seed{seed}-mismatch{mismatch_rate!r}-"
            f"{generator_digest(system)}.cache"
        )
        self.path = directory / name

    def writable(self) -> bool:
        """Whether a cache file can be written in the directory (made when missing); says why
        not once, in the log."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".probe-"):
                return True
        except OSError as exc:
            log.warning(
                "start-up cache directory %s is not writable (%s): generating in this process, "
                "nothing cached",
                self.directory,
                exc,
            )
            return False

    def load(self, stores: dict[str, RecordStore], on_progress: Progress | None = None) -> bool:
        """Fill the (empty) stores from the file; False when there is no usable file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("start-up cache %s unreadable (%s); generating instead", self.path, exc)
            return False
        try:
            self._fill(stores, data, on_progress)
        except (ValueError, KeyError, TypeError, StoreError, zstandard.ZstdError) as exc:
            log.warning("start-up cache %s is damaged (%s); generating instead", self.path, exc)
            for store in stores.values():  # start again from empty stores
                store.clear()
            return False
        try:
            os.utime(self.path)  # recently used: not pruned
        except OSError as exc:  # a read-only cache (a shared volume mounted :ro) still serves
            log.info("start-up cache %s not marked as used (%s)", self.path, exc)
        return True

    def _fill(
        self, stores: dict[str, RecordStore], data: bytes, on_progress: Progress | None
    ) -> None:
        if not data.startswith(FORMAT):
            raise ValueError("not a start-up cache file")
        view = memoryview(data)
        offset = len(FORMAT)
        end = data.index(b"\n", offset)
        header = json.loads(view[offset:end].tobytes())["collections"]
        offset = end + 1
        if sorted(header) != sorted(stores):
            raise ValueError("the file's collections differ from the system's")
        for name, store in stores.items():
            entry = header[name]
            count = int(entry["count"])
            if on_progress is not None:
                on_progress(f"loading {name} from the cache", 0, count)
            parts: dict[str, memoryview] = {}
            for part in ("dictionary", "keys", "updated_at", "lengths", *entry["indexes"]):
                length = int(entry["indexes"][part] if part in entry["indexes"] else entry[part])
                parts[part] = view[offset : offset + length]
                offset += length
            keys = _lines(parts["keys"], count)
            lengths = array.array("I")
            lengths.frombytes(parts["lengths"].tobytes())
            if len(lengths) != count:
                raise ValueError(f"{name}: {len(lengths)} bodies, the header says {count}")
            ends = list(itertools.accumulate(lengths, initial=offset))
            packed = [view[a:b].tobytes() for a, b in itertools.pairwise(ends)]
            offset = ends[-1]
            store.load_columns(
                BodyCodec(parts["dictionary"].tobytes() or None),
                keys,
                _lines(parts["updated_at"], count),
                packed,
                {index: _pairs(parts[index], keys) for index in entry["indexes"]},
            )
            if on_progress is not None:
                on_progress(f"loading {name} from the cache", count, count)
        if offset != len(data):
            raise ValueError("trailing bytes after the last collection")

    def save(self, stores: dict[str, RecordStore], on_progress: Progress | None = None) -> None:
        """Write the stores' records (atomically: readers see the old file or the new one)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.directory, prefix=".writing-", suffix=".cache", delete=False
            ) as out:
                try:
                    self._write(out, stores, on_progress)
                except BaseException:
                    Path(out.name).unlink(missing_ok=True)
                    raise
            os.replace(out.name, self.path)
        except (OSError, ValueError) as exc:
            log.warning("could not write the start-up cache %s: %s", self.path, exc)
            return
        self._prune()

    def _write(
        self, out: IO[bytes], stores: dict[str, RecordStore], on_progress: Progress | None
    ) -> None:
        header: dict[str, dict[str, Any]] = {}
        blobs: list[bytes] = []
        for name, store in stores.items():
            keys: list[str] = []
            updated_at: list[str] = []
            lengths = array.array("I")
            bodies: list[bytes] = []
            index_lines: list[list[str]] = [[] for _ in store.index_names]
            for done, (key, stamp, packed, values) in enumerate(store.rows(), 1):
                keys.append(key)
                updated_at.append(stamp)
                lengths.append(len(packed))
                bodies.append(packed)
                for lines, index_values in zip(index_lines, values, strict=True):
                    lines.append(_joined(index_values))
                if on_progress is not None and done % 10_000 == 0:
                    on_progress(f"writing the start-up cache ({name})", done, len(store))
            parts = {
                "dictionary": store.codec.dictionary or b"",
                "keys": _text(keys),
                "updated_at": _text(updated_at),
                "lengths": lengths.tobytes(),
            }
            indexes = {
                index: _text(lines)
                for index, lines in zip(store.index_names, index_lines, strict=True)
            }
            header[name] = {
                "count": len(keys),
                **{part: len(blob) for part, blob in parts.items()},
                "indexes": {index: len(blob) for index, blob in indexes.items()},
            }
            blobs += [*parts.values(), *indexes.values(), b"".join(bodies)]
        out.write(FORMAT)
        out.write(json.dumps({"collections": header}).encode() + b"\n")
        for blob in blobs:
            out.write(blob)

    def _prune(self) -> None:
        cutoff = time.time() - UNUSED_FOR_S
        for stale in self.directory.glob("*.cache"):
            try:
                if stale != self.path and stale.stat().st_mtime < cutoff:
                    stale.unlink()
            except OSError:
                continue  # another process removed or replaced it first


# Column layout: one line per record ("\n"-separated, UTF-8); an index's values of one record
# are joined by the unit separator, so a record with no value is an empty line.
_VALUE_SEPARATOR = "\x1f"


def _text(lines: list[str]) -> bytes:
    return "\n".join(lines).encode()


def _joined(values: list[str]) -> str:
    for value in values:
        if not value or "\n" in value or _VALUE_SEPARATOR in value:
            raise ValueError(f"index value {value!r} can't be cached")
    return _VALUE_SEPARATOR.join(values)


def _lines(blob: memoryview | bytes, count: int) -> list[str]:
    raw = blob.tobytes() if isinstance(blob, memoryview) else blob
    lines = raw.decode().split("\n") if count else []
    if len(lines) != count:
        raise ValueError(f"{len(lines)} lines where {count} records were written")
    return lines


def _pairs(blob: memoryview, keys: list[str]) -> Iterator[tuple[str, str]]:
    """(value, key) for every value of an index column."""
    raw = blob.tobytes()
    lines = _lines(raw, len(keys))
    if _VALUE_SEPARATOR.encode() not in raw:
        return ((value, key) for value, key in zip(lines, keys, strict=True) if value)
    return (
        (value, key)
        for line, key in zip(lines, keys, strict=True)
        for value in line.split(_VALUE_SEPARATOR)
        if value
    )
