"""Keyset pagination over store queries: the page-size cap, the opaque cursor, one page query.

A cursor is base64url of the JSON list of the last row's sort key. One the API did not issue
(not base64, not JSON, the wrong length or types, a number no column can hold) is `InvalidQuery`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.types import TypeDecorator

from adapter.errors import AdapterError

MAX_PAGE_SIZE: Final = 200
DEFAULT_PAGE_SIZE: Final = 50
# Integer keys are BIGINT columns: a larger number cannot be a key we issued.
_BIGINT_RANGE: Final = range(-(2**63), 2**63)

R = TypeVar("R")


class InvalidQuery(AdapterError):
    """A search the API cannot run: a bad cursor, page size or filter."""

    default_reason = "invalid_query"


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidQuery(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    return limit


def keyset_page(
    session: Session,
    query: Select[R],
    key: Sequence[InstrumentedAttribute[Any]],
    *,
    cursor: str | None,
    limit: int,
    document: Callable[[R], dict[str, Any]],
    descending: bool = False,
) -> Page:
    """One page of `query` ordered by the columns of `key` (unique together), after `cursor`.

    Key columns hold datetimes, UUIDs or integers; the cursor carries the last row's values.
    """
    limit = page_size(limit)
    after = decode_cursor(cursor, key)
    if after is not None:
        query = query.where(beyond(key, after, descending=descending))
    order = [column.desc() if descending else column.asc() for column in key]
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    more, rows = len(rows) > limit, rows[:limit]
    next_cursor = encode_cursor([getattr(rows[-1], column.key) for column in key]) if more else None
    return Page([document(row) for row in rows], next_cursor)


def encode_cursor(values: Sequence[dt.datetime | uuid.UUID | int]) -> str:
    plain = [
        value.isoformat() if isinstance(value, dt.datetime) else _plain(value) for value in values
    ]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, key: Sequence[InstrumentedAttribute[Any]]
) -> list[Any] | None:
    """The key values in `cursor`, typed as the columns of `key`; `InvalidQuery` if it is not
    a cursor this API issued for this key."""
    if cursor is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise _bad_cursor() from None
    if not isinstance(values, list) or len(values) != len(key):
        raise _bad_cursor()
    return [_typed(value, column) for value, column in zip(values, key, strict=True)]


def beyond(
    key: Sequence[InstrumentedAttribute[Any]], values: Sequence[Any], *, descending: bool = False
) -> ColumnElement[bool]:
    """Rows beyond `values` of `key` in sort order: the next page of a walk that keeps its
    own cursor (a batch job) rather than an opaque one."""
    # (k1, k2, …) beyond (v1, v2, …) in sort order, spelled out rather than as a row value so
    # both backends use the index the same way.
    branches = []
    for position, column in enumerate(key):
        ties = [key[i] == values[i] for i in range(position)]
        past = column < values[position] if descending else column > values[position]
        branches.append(and_(*ties, past))
    return or_(*branches)


def _typed(value: Any, column: InstrumentedAttribute[Any]) -> Any:
    stored = column.type
    # A TypeDecorator (UtcDateTime) does not say what it holds; the type it stores as does.
    kind = (stored.impl_instance if isinstance(stored, TypeDecorator) else stored).python_type
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool) and value in _BIGINT_RANGE:
            return value
        raise _bad_cursor()
    if not isinstance(value, str):
        raise _bad_cursor()
    try:
        if kind is uuid.UUID:
            return uuid.UUID(value)
        if kind is dt.datetime:
            instant = dt.datetime.fromisoformat(value)
            if instant.tzinfo is None:
                return instant.replace(tzinfo=dt.UTC)
            return instant.astimezone(dt.UTC)  # year 1 at +14:00 overflows here, not later
    except (ValueError, OverflowError):
        raise _bad_cursor() from None
    raise TypeError(f"keyset column {column.key} is neither a datetime, a UUID nor an integer")


def _plain(value: uuid.UUID | int) -> str | int:
    return str(value) if isinstance(value, uuid.UUID) else value


def _bad_cursor() -> InvalidQuery:
    return InvalidQuery("cursor is not one this API issued; start again without it")


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "InvalidQuery",
    "Page",
    "beyond",
    "decode_cursor",
    "encode_cursor",
    "keyset_page",
    "page_size",
]
