"""Versioned in-memory records for one collection, listed by `(updated_at, key)` with cursors.

Each state of a record is stored once as its JSON body, checked against the contract and
compressed when the state is stored (`StoredRecord`); pages and single records are served from
those bytes. Records are immutable, so a snapshot is a cheap shallow copy and a page handed to a
client can't change under it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import zstandard
from sortedcontainers import SortedKeyList

Document = dict[str, Any]
KeyFunction = Callable[[Mapping[str, Any]], str]
IndexFunction = Callable[[Mapping[str, Any]], Iterable[str]]
# Raises when a document may not be served (the runtime's contract check); None: no check.
DocumentCheck = Callable[[Mapping[str, Any]], None]

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# zstd with a dictionary trained on the collection's own records: a ~1.8 KB record takes
# ~260 B and decompresses in ~3 µs, so 100,000 records fit in ~30 MB instead of ~180 MB.
COMPRESSION_LEVEL = 3
DICTIONARY_SIZE = 32_768
DICTIONARY_SAMPLES = 2_000
# Below this many records a dictionary is not worth training (and zstd may refuse to).
MIN_DICTIONARY_SAMPLES = 200
PROGRESS_EVERY = 1000


def format_timestamp(moment: dt.datetime) -> str:
    """The one timestamp spelling the mocks emit: UTC, microseconds, `Z` (sorts as text)."""
    return moment.astimezone(dt.UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)


def encode_document(doc: Mapping[str, Any]) -> bytes:
    """The JSON body of a document as the mocks send it (compact UTF-8)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


class StoreError(Exception):
    """A request the store can't satisfy; `status` is the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RecordNotFound(StoreError):
    status = 404


class RecordConflict(StoreError):
    status = 409


class InvalidCursor(StoreError):
    status = 400


class MonotonicClock:
    """Wall-clock UTC timestamps that never repeat or go backwards within one process.

    Incremental sync relies on every change getting a later `updated_at` than anything a client
    has already paged past; equal timestamps would make cursor order ambiguous.
    """

    def __init__(self, now: Callable[[], dt.datetime] | None = None) -> None:
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._last = dt.datetime.min.replace(tzinfo=dt.UTC)

    def observe(self, moment: dt.datetime) -> None:
        """Make sure later ticks come after `moment` (e.g. the newest generated record)."""
        self._last = max(self._last, moment)

    def tick(self) -> dt.datetime:
        moment = self._now()
        if moment <= self._last:
            moment = self._last + dt.timedelta(microseconds=1)
        self._last = moment
        return moment


_CURSOR_HELP = "cursor is not one this server issued; start again without a cursor"


# Tags a cursor with the collection it pages, so that one this server never issued (made up,
# or another list's) is a 400 as the contracts say, not an empty last page. Not a secret: the
# tag tells issued cursors from others, it protects nothing.
_CURSOR_TAG_KEY = b"hf-mock cursor v1"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the record `(updated_at, key)` of a collection; opaque base64url JSON
    on the wire, tagged with the collection."""

    updated_at: str
    key: str

    def encode(self, collection: str) -> str:
        tag = _cursor_tag(collection, self.updated_at, self.key)
        raw = json.dumps([self.updated_at, self.key, tag], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str, collection: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            updated_at, key, tag = json.loads(raw)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise InvalidCursor(_CURSOR_HELP) from exc
        if not (isinstance(updated_at, str) and isinstance(key, str) and isinstance(tag, str)):
            raise InvalidCursor(_CURSOR_HELP)
        try:
            # compare_digest refuses a str that is not ASCII; a lone surrogate cannot encode.
            valid = tag.isascii() and hmac.compare_digest(
                tag, _cursor_tag(collection, updated_at, key)
            )
        except UnicodeEncodeError:
            valid = False
        if not valid:
            raise InvalidCursor(_CURSOR_HELP)
        return cls(updated_at, key)


def _cursor_tag(collection: str, updated_at: str, key: str) -> str:
    message = "\x00".join((collection, updated_at, key)).encode()
    return hmac.new(_CURSOR_TAG_KEY, message, hashlib.sha256).hexdigest()[:16]


class BodyCodec:
    """Compresses stored JSON bodies, with a zstd dictionary trained on the collection."""

    def __init__(self, dictionary: bytes | None = None) -> None:
        self.dictionary = dictionary
        compression_dict = zstandard.ZstdCompressionDict(dictionary) if dictionary else None
        self._compressor = zstandard.ZstdCompressor(
            level=COMPRESSION_LEVEL,
            dict_data=compression_dict,
            write_checksum=False,
            write_dict_id=False,
        )
        self._decompressor = zstandard.ZstdDecompressor(dict_data=compression_dict)
        # The bound C method itself: a page unpacks 100 bodies, ~20% faster without a wrapper.
        self.unpack: Callable[[bytes], bytes] = self._decompressor.decompress

    @classmethod
    def trained_on(cls, samples: Sequence[bytes]) -> BodyCodec:
        """A codec whose dictionary is trained on `samples` (none when there are too few)."""
        if len(samples) < MIN_DICTIONARY_SAMPLES:
            return cls()
        try:
            trained = zstandard.train_dictionary(DICTIONARY_SIZE, list(samples))
        except zstandard.ZstdError:  # samples too small or too alike to learn from
            return cls()
        return cls(trained.as_bytes())

    def pack(self, body: bytes) -> bytes:
        return self._compressor.compress(body)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One state of a record: its key, `updated_at`, and compressed JSON body (checked)."""

    key: str
    updated_at: str
    packed: bytes


@dataclass(frozen=True, slots=True)
class Page:
    records: list[StoredRecord]
    next_cursor: str | None
    codec: BodyCodec

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None

    @property
    def bodies(self) -> list[bytes]:
        """The records' JSON bodies, as stored."""
        return list(map(self.codec.unpack, [r.packed for r in self.records]))

    @property
    def items(self) -> list[Document]:
        return [json.loads(body) for body in self.bodies]


# A filtered page sorts its matching keys up to this many, and past it walks the collection's
# order testing membership: where the two cost alike for 100-record pages of 100,000
# registrations (bench/bench_mock_filters.py: 971 matches sorted 0.5 ms a page, walked 2.0;
# 2,984 sorted 2.1, walked 0.6).
SORT_AMONG_UP_TO = 1_024  # not Final: bench/bench_mock_filters.py tries both ways


class _Index:
    """Keys by indexed value. A value held by one key (most NIKs) maps to that key itself:
    a one-element set per record would cost ~200 bytes each at 100,000 records."""

    __slots__ = ("keys",)

    def __init__(self, keys: Mapping[str, str | frozenset[str] | set[str]] | None = None) -> None:
        self.keys: dict[str, str | set[str]] = {
            value: held if isinstance(held, str) else set(held)
            for value, held in (keys or {}).items()
        }

    def add(self, value: str, key: str) -> None:
        held = self.keys.get(value)
        if held is None:
            self.keys[value] = key
        elif isinstance(held, str):
            if held != key:
                self.keys[value] = {held, key}
        else:
            held.add(key)

    def discard(self, value: str, key: str) -> None:
        held = self.keys.get(value)
        if held is None:
            return
        if isinstance(held, str):
            if held == key:
                del self.keys[value]
            return
        held.discard(key)
        if not held:
            del self.keys[value]

    def add_all(self, pairs: Iterable[tuple[str, str]]) -> None:
        """`add` for many (value, key) pairs, inlined: 100,000 records load in ~0.1 s."""
        keys = self.keys
        for value, key in pairs:
            held = keys.setdefault(value, key)
            if held is key:
                continue
            if isinstance(held, str):
                if held != key:
                    keys[value] = {held, key}
            else:
                held.add(key)

    def lookup(self, value: str) -> AbstractSet[str]:
        """The keys holding `value`: a copy when few (a page sorts them), the index's own set
        when many (a page only tests membership; copying 95,000 keys cost 3 ms a page)."""
        held = self.keys.get(value)
        if held is None:
            return frozenset()
        if isinstance(held, str):
            return frozenset((held,))
        return held if len(held) > SORT_AMONG_UP_TO else frozenset(held)

    def frozen(self) -> dict[str, str | frozenset[str]]:
        return {v: h if isinstance(h, str) else frozenset(h) for v, h in self.keys.items()}


@dataclass(slots=True)
class StoreSnapshot:
    records: dict[str, StoredRecord]
    indexes: dict[str, dict[str, str | frozenset[str]]] = field(default_factory=dict)


def _order_key(record: StoredRecord) -> tuple[str, str]:
    return (record.updated_at, record.key)


# What the start-up cache keeps of a record: key, updated_at, compressed body, and the values
# of each index (in the store's index order), so loading needs no JSON parsing.
RecordRow = tuple[str, str, bytes, list[list[str]]]


class RecordStore:
    """One collection: records by key, ordered by `(updated_at, key)`, with secondary indexes.

    `check` runs on every document before it is stored (the contract check): a state that
    fails it is never stored, so it can never be served.
    """

    def __init__(
        self,
        name: str,
        key_of: KeyFunction,
        clock: MonotonicClock,
        indexes: Mapping[str, IndexFunction] | None = None,
        check: DocumentCheck | None = None,
    ) -> None:
        self.name = name
        self._key_of = key_of
        self._clock = clock
        self._check = check
        self._index_functions = dict(indexes or {})
        self.clear()

    def clear(self) -> None:
        """No records (and no trained dictionary)."""
        self.codec = BodyCodec()
        self._records: dict[str, StoredRecord] = {}
        self._order: SortedKeyList = SortedKeyList(key=_order_key)
        self._indexes: dict[str, _Index] = {n: _Index() for n in self._index_functions}
        # The last version of each record deleted since: one created again under its key goes
        # on from there, so a client that kept the old version does not take the new record
        # for an old one (the adapter drops anything older than what it holds).
        self._retired: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._records)

    def key_of(self, doc: Mapping[str, Any]) -> str:
        return self._key_of(doc)

    # -- reading ---------------------------------------------------------------------------

    def record(self, key: str) -> StoredRecord | None:
        return self._records.get(key)

    def body(self, record: StoredRecord) -> bytes:
        """The JSON body of `record`, exactly as it is served."""
        return self.codec.unpack(record.packed)

    def document(self, record: StoredRecord) -> Document:
        """A fresh dict of `record` (changing it changes nothing stored)."""
        doc: Document = json.loads(self.body(record))
        return doc

    def get(self, key: str) -> Document | None:
        record = self._records.get(key)
        return None if record is None else self.document(record)

    def require(self, key: str) -> Document:
        return self.document(self.require_record(key))

    def require_record(self, key: str) -> StoredRecord:
        record = self._records.get(key)
        if record is None:
            raise RecordNotFound(f"no {self.name} record with key {key!r}")
        return record

    def newest_updated_at(self) -> str | None:
        return self._order[-1].updated_at if self._order else None

    def keys_for(self, index: str, value: str) -> AbstractSet[str]:
        return self._indexes[index].lookup(value)

    def records(self) -> Iterator[StoredRecord]:
        """All records in `(updated_at, key)` order."""
        return iter(self._order)

    def documents(self) -> Iterator[Document]:
        """All documents in `(updated_at, key)` order (each parsed: prefer `records()`)."""
        return (self.document(record) for record in self._order)

    def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        updated_since: dt.datetime | None = None,
        where: Callable[[Mapping[str, Any]], bool] | None = None,
        among: AbstractSet[str] | None = None,
        scope: str = "",
    ) -> Page:
        """Up to `limit` records after `cursor` (or with `updated_at > updated_since`).

        `among` narrows to a set of keys (from an index) so a filtered list doesn't scan
        the whole collection; `scope` names that filter, and its cursors are its own: one from
        another filter's walk is refused, not followed past records it never listed.
        """
        tagged = f"{self.name}?{scope}" if scope else self.name
        start: tuple[str, str] | None = None
        if cursor is not None:
            position = Cursor.decode(cursor, tagged)
            start = (position.updated_at, position.key)
        elif updated_since is not None:
            # "\uffff" sorts after every key, so records stamped exactly then are excluded.
            start = (format_timestamp(updated_since), "\uffff")

        walked: Iterable[StoredRecord] = (
            iter(self._order)
            if start is None
            else self._order.irange_key(min_key=start, inclusive=(False, True))
        )
        candidates: Iterable[StoredRecord]
        if among is None:
            candidates = walked
        elif len(among) > SORT_AMONG_UP_TO:
            # Many: walk the order from the cursor and keep the members — a page reads about
            # limit * collection / matches records, where sorting every match cost 150 ms a
            # page for `status=AKTIF` at 100,000 (and held the event loop meanwhile).
            candidates = (r for r in walked if r.key in among)
        else:  # few (a facility's workers): sorting them beats walking the collection
            chosen = (self._records[k] for k in among if k in self._records)
            ordered = sorted(chosen, key=_order_key)
            candidates = (r for r in ordered if start is None or _order_key(r) > start)

        records: list[StoredRecord] = []
        next_cursor: str | None = None
        for record in candidates:
            if where is not None and not where(self.document(record)):
                continue
            if len(records) == limit:
                last = records[-1]
                next_cursor = Cursor(last.updated_at, last.key).encode(tagged)
                break
            records.append(record)
        return Page(records, next_cursor, self.codec)

    # -- writing ---------------------------------------------------------------------------

    def load(
        self, documents: Iterable[Document], on_progress: Callable[[int], None] | None = None
    ) -> None:
        """Bulk-load generated documents (already stamped with `updated_at` and `version`).

        Each is checked, serialised and compressed here, once; an empty store first trains its
        compression dictionary on the first documents. `on_progress(done)` every 1,000.
        """
        remaining = iter(documents)
        loaded: list[StoredRecord] = []
        if not self._records:
            first = [
                (doc, self._checked_body(doc)) for doc in islice(remaining, DICTIONARY_SAMPLES)
            ]
            self.codec = BodyCodec.trained_on([body for _, body in first])
            loaded += [self._load_one(doc, body) for doc, body in first]
        for doc in remaining:
            loaded.append(self._load_one(doc, self._checked_body(doc)))
            if on_progress is not None and len(loaded) % PROGRESS_EVERY == 0:
                on_progress(len(loaded))
        self._order.update(loaded)
        if on_progress is not None:
            on_progress(len(loaded))

    def _checked_body(self, doc: Document) -> bytes:
        if self._check is not None:
            self._check(doc)
        return encode_document(doc)

    def _load_one(self, doc: Document, body: bytes) -> StoredRecord:
        key = self._key_of(doc)
        if key in self._records:
            raise RecordConflict(f"duplicate {self.name} key {key!r} in the generated data")
        record = StoredRecord(key, str(doc["updated_at"]), self.codec.pack(body))
        self._records[key] = record
        self._index(key, doc)
        return record

    def rows(self) -> Iterator[RecordRow]:
        """Every record with its values of each index (in `index_names` order), for the
        start-up cache; parses every body, so it is for writing the cache only."""
        for record in self._order:
            doc = self.document(record)
            values = [list(values_of(doc)) for values_of in self._index_functions.values()]
            yield record.key, record.updated_at, record.packed, values

    @property
    def index_names(self) -> list[str]:
        return list(self._index_functions)

    def load_columns(
        self,
        codec: BodyCodec,
        keys: Sequence[str],
        updated_at: Sequence[str],
        packed: Sequence[bytes],
        index_pairs: Mapping[str, Iterable[tuple[str, str]]],
    ) -> None:
        """Fill an empty store with records `rows()` wrote, compressed with `codec`, and each
        index's (value, key) pairs. They were checked when first stored."""
        if self._records:
            raise StoreError(f"the {self.name} store is not empty")
        if sorted(index_pairs) != sorted(self._indexes):
            raise StoreError(f"the {self.name} store's indexes are {sorted(self._indexes)}")
        records = list(map(StoredRecord, keys, updated_at, packed))
        if not len(records) == len(keys) == len(updated_at) == len(packed):
            raise StoreError("keys, timestamps and bodies differ in number")
        self.codec = codec
        self._records = dict(zip(keys, records, strict=True))
        if len(self._records) != len(records):
            raise RecordConflict(f"duplicate {self.name} keys in the loaded records")
        self._order = SortedKeyList(records, key=_order_key)
        for name, pairs in index_pairs.items():
            self._indexes[name].add_all(pairs)

    def create(self, doc: Document) -> Document:
        key = self._key_of(doc)
        if key in self._records:
            raise RecordConflict(f"a {self.name} record with key {key!r} already exists")
        version = self._retired.get(key, 0) + 1
        stored = {**doc, "version": version, "updated_at": format_timestamp(self._clock.tick())}
        record = self._new_record(key, stored)
        self._add(record, stored)
        self._retired.pop(key, None)
        return stored

    def replace(self, key: str, doc: Document) -> Document:
        """Store `doc` as the new state of `key`: version + 1, a fresh `updated_at`."""
        old_record = self.require_record(key)
        old = self.document(old_record)
        if self._key_of(doc) != key:
            raise StoreError(f"the document's key {self._key_of(doc)!r} differs from {key!r}")
        stored = {
            **doc,
            "version": int(old["version"]) + 1,
            "updated_at": format_timestamp(self._clock.tick()),
        }
        record = self._new_record(key, stored)  # checked before anything changes
        self._order.remove(old_record)
        self._unindex(key, old)
        self._add(record, stored)
        return stored

    def touch(self, key: str) -> Document:
        """Record a change made elsewhere (e.g. an emitted event): same content, new version."""
        return self.replace(key, self.require(key))

    def delete(self, key: str) -> Document:
        old_record = self.require_record(key)
        old = self.document(old_record)
        del self._records[key]
        self._order.remove(old_record)
        self._unindex(key, old)
        self._retired[key] = max(self._retired.get(key, 0), int(old["version"]))
        return old

    def _new_record(self, key: str, stored: Document) -> StoredRecord:
        """The stored form of a new state: checked, serialised and compressed, once."""
        body = self._checked_body(stored)
        return StoredRecord(key, str(stored["updated_at"]), self.codec.pack(body))

    def _add(self, record: StoredRecord, doc: Document) -> None:
        self._records[record.key] = record
        self._order.add(record)
        self._index(record.key, doc)

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> StoreSnapshot:
        return StoreSnapshot(
            records=dict(self._records),
            indexes={name: index.frozen() for name, index in self._indexes.items()},
        )

    def restore(self, snapshot: StoreSnapshot) -> None:
        # A record the restore removes is retired at its version, as a delete retires it: made
        # again, it goes on from there, never back to 1 (a client holding version 2 would
        # take the new record's 1 for an older state and keep its own).
        for key in self._records.keys() - snapshot.records.keys():
            version = int(self.document(self._records[key])["version"])
            self._retired[key] = max(self._retired.get(key, 0), version)
        self._records = dict(snapshot.records)
        self._order = SortedKeyList(self._records.values(), key=_order_key)
        self._indexes = {name: _Index(keys) for name, keys in snapshot.indexes.items()}
        if self._records:
            newest = max(record.updated_at for record in self._records.values())
            self._clock.observe(parse_timestamp(newest))

    # -- internals -------------------------------------------------------------------------

    def _index(self, key: str, doc: Mapping[str, Any]) -> None:
        for name, values_of in self._index_functions.items():
            for value in values_of(doc):
                self._indexes[name].add(value, key)

    def _unindex(self, key: str, doc: Mapping[str, Any]) -> None:
        for name, values_of in self._index_functions.items():
            for value in values_of(doc):
                self._indexes[name].discard(value, key)
