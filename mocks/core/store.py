"""Versioned in-memory records for one collection, listed by `(updated_at, key)` with cursors.

Documents are never mutated in place (every change stores a new dict), so a snapshot is a cheap
shallow copy and a page handed to a client can't change under it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedKeyList

Document = dict[str, Any]
KeyFunction = Callable[[Mapping[str, Any]], str]
IndexFunction = Callable[[Mapping[str, Any]], Iterable[str]]

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_timestamp(moment: dt.datetime) -> str:
    """The one timestamp spelling the mocks emit: UTC, microseconds, `Z` (sorts as text)."""
    return moment.astimezone(dt.UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)


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


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the record `(updated_at, key)`; opaque base64url JSON on the wire."""

    updated_at: str
    key: str

    def encode(self) -> str:
        raw = json.dumps([self.updated_at, self.key], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            updated_at, key = json.loads(raw)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise InvalidCursor(_CURSOR_HELP) from exc
        if not isinstance(updated_at, str) or not isinstance(key, str):
            raise InvalidCursor(_CURSOR_HELP)
        return cls(updated_at, key)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Document]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


@dataclass(slots=True)
class StoreSnapshot:
    documents: dict[str, Document]
    indexes: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)


def _sort_key(doc: Mapping[str, Any], key_of: KeyFunction) -> tuple[str, str]:
    return (str(doc["updated_at"]), key_of(doc))


class RecordStore:
    """One collection: documents by key, ordered by `(updated_at, key)`, with secondary indexes."""

    def __init__(
        self,
        name: str,
        key_of: KeyFunction,
        clock: MonotonicClock,
        indexes: Mapping[str, IndexFunction] | None = None,
    ) -> None:
        self.name = name
        self._key_of = key_of
        self._clock = clock
        self._index_functions = dict(indexes or {})
        self._documents: dict[str, Document] = {}
        self._order: SortedKeyList = SortedKeyList(key=lambda d: _sort_key(d, key_of))
        self._indexes: dict[str, dict[str, set[str]]] = {n: {} for n in self._index_functions}

    def __len__(self) -> int:
        return len(self._documents)

    def key_of(self, doc: Mapping[str, Any]) -> str:
        return self._key_of(doc)

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> Document | None:
        return self._documents.get(key)

    def require(self, key: str) -> Document:
        doc = self._documents.get(key)
        if doc is None:
            raise RecordNotFound(f"no {self.name} record with key {key!r}")
        return doc

    def keys_for(self, index: str, value: str) -> frozenset[str]:
        return frozenset(self._indexes[index].get(value, ()))

    def documents(self) -> Iterator[Document]:
        """All documents in `(updated_at, key)` order."""
        return iter(self._order)

    def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        updated_since: dt.datetime | None = None,
        where: Callable[[Mapping[str, Any]], bool] | None = None,
        among: frozenset[str] | None = None,
    ) -> Page:
        """Up to `limit` documents after `cursor` (or with `updated_at > updated_since`).

        `among` narrows to a set of keys (from an index) so a filtered list doesn't scan
        the whole collection.
        """
        start: tuple[str, str] | None = None
        if cursor is not None:
            position = Cursor.decode(cursor)
            start = (position.updated_at, position.key)
        elif updated_since is not None:
            # "\uffff" sorts after every key, so records stamped exactly then are excluded.
            start = (format_timestamp(updated_since), "\uffff")

        candidates: Iterable[Document]
        if among is not None:
            docs = (self._documents[k] for k in among if k in self._documents)
            ordered = sorted(docs, key=lambda d: _sort_key(d, self._key_of))
            candidates = (d for d in ordered if start is None or _sort_key(d, self._key_of) > start)
        elif start is None:
            candidates = iter(self._order)
        else:
            candidates = self._order.irange_key(min_key=start, inclusive=(False, True))

        items: list[Document] = []
        next_cursor: str | None = None
        for doc in candidates:
            if where is not None and not where(doc):
                continue
            if len(items) == limit:
                last = items[-1]
                next_cursor = Cursor(str(last["updated_at"]), self._key_of(last)).encode()
                break
            items.append(doc)
        return Page(items, next_cursor)

    # -- writing ---------------------------------------------------------------------------

    def load(self, documents: Iterable[Document]) -> None:
        """Bulk-load generated documents (already stamped with `updated_at` and `version`)."""
        for doc in documents:
            key = self._key_of(doc)
            if key in self._documents:
                raise RecordConflict(f"duplicate {self.name} key {key!r} in the generated data")
            self._documents[key] = doc
            self._index(key, doc)
        self._order.update(self._documents.values())

    def create(self, doc: Document) -> Document:
        key = self._key_of(doc)
        if key in self._documents:
            raise RecordConflict(f"a {self.name} record with key {key!r} already exists")
        stored = {**doc, "version": 1, "updated_at": format_timestamp(self._clock.tick())}
        self._documents[key] = stored
        self._order.add(stored)
        self._index(key, stored)
        return stored

    def replace(self, key: str, doc: Document) -> Document:
        """Store `doc` as the new state of `key`: version + 1, a fresh `updated_at`."""
        old = self.require(key)
        if self._key_of(doc) != key:
            raise StoreError(f"the document's key {self._key_of(doc)!r} differs from {key!r}")
        stored = {
            **doc,
            "version": int(old["version"]) + 1,
            "updated_at": format_timestamp(self._clock.tick()),
        }
        self._order.remove(old)
        self._unindex(key, old)
        self._documents[key] = stored
        self._order.add(stored)
        self._index(key, stored)
        return stored

    def touch(self, key: str) -> Document:
        """Record a change made elsewhere (e.g. an emitted event): same content, new version."""
        return self.replace(key, dict(self.require(key)))

    def delete(self, key: str) -> Document:
        old = self.require(key)
        del self._documents[key]
        self._order.remove(old)
        self._unindex(key, old)
        return old

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> StoreSnapshot:
        return StoreSnapshot(
            documents=dict(self._documents),
            indexes={
                name: {value: frozenset(keys) for value, keys in index.items()}
                for name, index in self._indexes.items()
            },
        )

    def restore(self, snapshot: StoreSnapshot) -> None:
        self._documents = dict(snapshot.documents)
        self._order = SortedKeyList(self._documents.values(), key=self._order.key)
        self._indexes = {
            name: {value: set(keys) for value, keys in index.items()}
            for name, index in snapshot.indexes.items()
        }
        if self._documents:
            newest = max(str(doc["updated_at"]) for doc in self._documents.values())
            self._clock.observe(parse_timestamp(newest))

    # -- internals -------------------------------------------------------------------------

    def _index(self, key: str, doc: Mapping[str, Any]) -> None:
        for name, values_of in self._index_functions.items():
            for value in values_of(doc):
                self._indexes[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, doc: Mapping[str, Any]) -> None:
        for name, values_of in self._index_functions.items():
            for value in values_of(doc):
                keys = self._indexes[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indexes[name][value]
