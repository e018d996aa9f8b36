"""The start-up cache: the stored records of a generated data set, so a restart skips generation.

One file per system, seed, size, mismatch rate and *generator digest* (a hash of the mocks' and
`indonesian_ids`' source, the system's contract and Faker's version): any change to what makes
the records makes a new key, so a stale file is never read. Records were checked against the
contract when they were first stored, before the file was written.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import zstandard

import indonesian_ids
import mocks
from mocks.core.store import BodyCodec, RecordRow, RecordStore

if TYPE_CHECKING:
    from mocks.core.system import MockSystem

log = logging.getLogger("hf_mock.cache")

FORMAT = b"hf-mock-startup-cache 1\n"
CACHE_DIR_ENV = "HF_MOCK_CACHE_DIR"
# Files not read for this long are removed when a new one is written.
UNUSED_FOR_S = 7 * 24 * 3600
_CONTRACTS = Path(str(mocks.__file__)).resolve().parents[1] / "contracts" / "openapi"

Progress = Callable[[str, int, int], None]


def default_cache_dir() -> Path:
    """`$HF_MOCK_CACHE_DIR`, else `$XDG_CACHE_HOME/hf-mock`, else `~/.cache/hf-mock`."""
    if configured := os.environ.get(CACHE_DIR_ENV):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hf-mock"


def generator_digest(system: MockSystem) -> str:
    """Hash of everything that decides the stored records: code, contract, Faker's lists."""
    digest = hashlib.sha256(FORMAT)
    digest.update(importlib.metadata.version("faker").encode())
    for package in (mocks, indonesian_ids):
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
            f"{system.name}-n{size}-seed{seed}-mismatch{mismatch_rate:g}-"
            f"{generator_digest(system)}.cache"
        )
        self.path = directory / name

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
        except (ValueError, KeyError, IndexError, TypeError, zstandard.ZstdError) as exc:
            log.warning("start-up cache %s is damaged (%s); generating instead", self.path, exc)
            for store in stores.values():  # start again from empty stores
                store.clear()
            return False
        os.utime(self.path)  # recently used: not pruned
        return True

    def _fill(
        self, stores: dict[str, RecordStore], data: bytes, on_progress: Progress | None
    ) -> None:
        view = memoryview(data)
        if not data.startswith(FORMAT):
            raise ValueError("not a start-up cache file")
        offset = len(FORMAT)
        end = data.index(b"\n", offset)
        header = json.loads(view[offset:end].tobytes())
        offset = end + 1
        if sorted(header["collections"]) != sorted(stores):
            raise ValueError("the file's collections differ from the system's")
        for name, store in stores.items():
            entry = header["collections"][name]
            dictionary_length = int(entry["dictionary"])
            codec = BodyCodec(view[offset : offset + dictionary_length].tobytes() or None)
            offset += dictionary_length
            end = data.index(b"\n", offset)
            rows = json.loads(view[offset:end].tobytes())
            offset = end + 1
            if len(rows) != int(entry["count"]):
                raise ValueError(f"{name}: {len(rows)} rows, the header says {entry['count']}")

            def records(rows: list[list[object]], start: int) -> Iterable[RecordRow]:
                position = start
                for key, updated_at, length, values in rows:
                    assert isinstance(length, int)
                    packed = view[position : position + length].tobytes()
                    position += length
                    yield str(key), str(updated_at), packed, values  # type: ignore[misc]

            if on_progress is not None:
                on_progress(f"loading {name} from the cache", 0, len(rows))
            store.load_rows(codec, records(rows, offset))
            offset += sum(int(row[2]) for row in rows)
            if on_progress is not None:
                on_progress(f"loading {name} from the cache", len(rows), len(rows))
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
        except OSError as exc:
            log.warning("could not write the start-up cache %s: %s", self.path, exc)
            return
        self._prune()

    def _write(
        self, out: IO[bytes], stores: dict[str, RecordStore], on_progress: Progress | None
    ) -> None:
        parts: list[tuple[bytes, bytes, list[bytes]]] = []
        header: dict[str, dict[str, int]] = {}
        for name, store in stores.items():
            rows: list[list[object]] = []
            blobs: list[bytes] = []
            for done, (key, updated_at, packed, values) in enumerate(store.rows(), 1):
                rows.append([key, updated_at, len(packed), values])
                blobs.append(packed)
                if on_progress is not None and done % 10_000 == 0:
                    on_progress(f"writing the start-up cache ({name})", done, len(store))
            dictionary = store.codec.dictionary or b""
            header[name] = {"count": len(rows), "dictionary": len(dictionary)}
            parts.append((dictionary, json.dumps(rows, separators=(",", ":")).encode(), blobs))
        out.write(FORMAT)
        out.write(json.dumps({"collections": header}).encode() + b"\n")
        for dictionary, rows_json, blobs in parts:
            out.write(dictionary)
            out.write(rows_json + b"\n")
            out.write(b"".join(blobs))

    def _prune(self) -> None:
        cutoff = time.time() - UNUSED_FOR_S
        for stale in self.directory.glob("*.cache"):
            try:
                if stale != self.path and stale.stat().st_mtime < cutoff:
                    stale.unlink()
            except OSError:
                continue  # another process removed or replaced it first
