"""The mocks' versioned record store: ordering, cursors, updated_since, snapshots."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Mapping
from typing import Any

import pytest

from mocks.core import store as store_module
from mocks.core.store import (
    Cursor,
    InvalidCursor,
    MonotonicClock,
    RecordConflict,
    RecordNotFound,
    RecordStore,
    format_timestamp,
    parse_timestamp,
)

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def fixed_clock() -> MonotonicClock:
    # Every tick asks for the same instant: the clock must still move forward.
    return MonotonicClock(now=lambda: EPOCH)


def make_store(n: int, clock: MonotonicClock | None = None) -> RecordStore:
    store = RecordStore(
        "things",
        key_of=lambda d: str(d["id"]),
        clock=clock or fixed_clock(),
        indexes={"colour": lambda d: [str(d["colour"])]},
    )
    store.load(
        {
            "id": f"k{i:05d}",
            "colour": ["red", "green"][i % 2],
            "version": 1,
            "updated_at": format_timestamp(EPOCH - dt.timedelta(days=n - i)),
        }
        for i in range(n)
    )
    return store


def walk(store: RecordStore, limit: int, **kwargs: object) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(10_000):
        page = store.page(limit=limit, cursor=cursor, **kwargs)  # type: ignore[arg-type]
        seen += [str(d["id"]) for d in page.items]
        if not page.has_more:
            return seen
        cursor = page.next_cursor
    raise AssertionError("pagination never ended")


def test_paging_visits_every_record_once_in_updated_order() -> None:
    store = make_store(250)
    assert walk(store, 7) == [f"k{i:05d}" for i in range(250)]


def test_last_page_has_no_cursor_when_size_divides_evenly() -> None:
    # The store looks one record ahead, so clients never fetch a trailing empty page.
    store = make_store(20)
    first = store.page(limit=10)
    assert first.has_more
    second = store.page(limit=10, cursor=first.next_cursor)
    assert len(second.items) == 10
    assert not second.has_more


def test_updated_since_is_exclusive() -> None:
    store = make_store(10)
    boundary = EPOCH - dt.timedelta(days=5)  # k00005 has exactly this timestamp
    ids = walk(store, 100, updated_since=boundary)
    assert ids == ["k00006", "k00007", "k00008", "k00009"]


def test_change_while_paging_is_seen_again_later_and_nothing_is_skipped() -> None:
    store = make_store(30)
    first = store.page(limit=10)
    store.replace("k00003", {**store.require("k00003"), "colour": "blue"})  # already paged
    store.replace("k00025", {**store.require("k00025"), "colour": "blue"})  # not yet paged
    rest = walk_from(store, first.next_cursor)
    assert rest.count("k00025") == 1
    assert rest[-2:] == ["k00003", "k00025"]
    assert set(rest) | {str(d["id"]) for d in first.items} == {f"k{i:05d}" for i in range(30)}


def walk_from(store: RecordStore, cursor: str | None) -> list[str]:
    seen: list[str] = []
    while cursor is not None:
        page = store.page(limit=4, cursor=cursor)
        seen += [str(d["id"]) for d in page.items]
        cursor = page.next_cursor
    return seen


def test_replace_bumps_version_and_timestamp() -> None:
    store = make_store(3)
    before = store.require("k00001")
    after = store.replace("k00001", {**before, "colour": "blue"})
    assert after["version"] == 2
    assert after["updated_at"] > before["updated_at"]
    assert before["colour"] == "green", "stored documents must never be mutated in place"


def test_clock_never_repeats_even_when_wall_clock_stands_still() -> None:
    clock = fixed_clock()
    ticks = [clock.tick() for _ in range(100)]
    assert all(a < b for a, b in itertools.pairwise(ticks))


@pytest.mark.parametrize("sorted_up_to", [1_000, 5], ids=["sorted", "walked"])
def test_filtered_page_uses_index_and_keeps_order(
    sorted_up_to: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Few matches are sorted; many are found walking the order (sorting 95,000 matches cost
    # 150 ms a page): both ways give the same pages, from a cursor or an instant alike.
    monkeypatch.setattr(store_module, "SORT_AMONG_UP_TO", sorted_up_to)
    store = make_store(40)
    reds = store.keys_for("colour", "red")
    ids = walk(store, 3, among=reds)
    assert ids == [f"k{i:05d}" for i in range(0, 40, 2)]
    since = parse_timestamp(store.require("k00020")["updated_at"])
    assert walk(store, 4, among=reds, updated_since=since) == [
        f"k{i:05d}" for i in range(22, 40, 2)
    ]
    store.replace("k00002", {**store.require("k00002"), "colour": "red"})  # moves to the end
    assert walk(store, 3, among=store.keys_for("colour", "red"))[-1] == "k00002"


def test_index_follows_changes_and_deletes() -> None:
    store = make_store(4)
    store.replace("k00000", {**store.require("k00000"), "colour": "blue"})
    assert store.keys_for("colour", "blue") == {"k00000"}
    assert "k00000" not in store.keys_for("colour", "red")
    store.delete("k00000")
    assert store.keys_for("colour", "blue") == frozenset()


def test_create_duplicate_is_conflict() -> None:
    store = make_store(2)
    with pytest.raises(RecordConflict, match="already exists"):
        store.create({"id": "k00000", "colour": "red"})


def test_missing_record_is_not_found() -> None:
    with pytest.raises(RecordNotFound, match="'nope'"):
        make_store(1).require("nope")


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        "bm90IGpzb24",
        "WzEsMl0",
        "",
        "WyJ4IiwieSJd",  # ["x","y"]: well formed, never issued (it was an empty last page)
        # ["2026-01-01T00:00:00.000000Z","k/1"]: a real position, without the tag
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwLjAwMDAwMFoiLCJrLzEiXQ",
    ],
)
def test_foreign_cursor_is_rejected(token: str) -> None:
    with pytest.raises(InvalidCursor, match="start again without a cursor"):
        make_store(1).page(limit=1, cursor=token)


def test_cursor_round_trips() -> None:
    cursor = Cursor("2026-01-01T00:00:00.000000Z", "k/1")
    assert Cursor.decode(cursor.encode("things"), "things") == cursor


def test_a_cursor_of_another_collection_is_rejected() -> None:
    issued = Cursor("2026-01-01T00:00:00.000000Z", "k/1").encode("facilities")
    with pytest.raises(InvalidCursor):
        Cursor.decode(issued, "health-workers")


def test_restore_brings_back_state_and_clock_stays_ahead() -> None:
    clock = fixed_clock()
    store = make_store(5, clock)
    snap = store.snapshot()
    store.delete("k00001")
    changed = store.replace("k00002", {**store.require("k00002"), "colour": "blue"})
    store.restore(snap)
    assert len(store) == 5
    assert store.require("k00002")["version"] == 1
    assert store.keys_for("colour", "blue") == frozenset()
    again = store.replace("k00002", {**store.require("k00002"), "colour": "blue"})
    assert again["updated_at"] > changed["updated_at"]


def test_a_state_failing_the_check_is_never_stored() -> None:
    def no_blue(doc: Mapping[str, Any]) -> None:
        if doc.get("colour") == "blue":
            raise ValueError("blue is not in the contract")

    store = RecordStore(
        "things",
        key_of=lambda d: str(d["id"]),
        clock=fixed_clock(),
        indexes={"colour": lambda d: [str(d["colour"])]},
        check=no_blue,
    )
    store.load({"id": f"k{i}", "colour": "red", "version": 1, "updated_at": "x"} for i in range(3))
    before = store.require("k1")
    with pytest.raises(ValueError, match="not in the contract"):
        store.replace("k1", {**before, "colour": "blue"})
    with pytest.raises(ValueError, match="not in the contract"):
        store.create({"id": "k9", "colour": "blue"})
    assert store.require("k1") == before
    assert store.get("k9") is None
    assert store.keys_for("colour", "blue") == frozenset()
    assert [r.key for r in store.records()] == ["k0", "k1", "k2"]


def test_page_bodies_are_the_stored_documents_as_json() -> None:
    store = make_store(50)
    store.replace("k00003", {**store.require("k00003"), "colour": "blue"})
    page = store.page(limit=50)
    assert [json.loads(body) for body in page.bodies] == page.items
    assert page.items[-1] == store.require("k00003")


def test_a_record_created_again_after_its_deletion_goes_on_from_its_last_version() -> None:
    store = make_store(1)
    key = store.key_of(next(store.documents()))
    document = store.require(key)
    store.replace(key, document)
    store.replace(key, document)
    last = int(store.require(key)["version"])

    store.delete(key)
    again = store.create(document)

    assert again["version"] == last + 1


def test_a_record_a_restore_removed_goes_on_from_its_last_version_when_made_again() -> None:
    # `POST /__admin/reset` (or a snapshot's restore) removed a record created since: made
    # again it started at version 1, which a client holding version 2 kept its own over.
    store = make_store(3)
    seeded = store.snapshot()
    document = {"id": "k99999", "colour": "red"}
    store.create(document)
    store.replace("k99999", document)
    assert store.require("k99999")["version"] == 2

    store.restore(seeded)
    assert store.get("k99999") is None
    again = store.create(document)

    assert again["version"] == 3
