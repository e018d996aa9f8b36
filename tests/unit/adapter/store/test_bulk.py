"""Which updates go through a temporary table (and so need the database's TEMPORARY right):
the rule `update_rows` follows and a worker's start-up check asks about its batch size."""

from __future__ import annotations

import pytest

from adapter.store.bulk import MERGE_FROM_ROWS, merged_from_temporary_table


@pytest.mark.parametrize(
    ("rows", "merged"),
    [(1, False), (32, False), (MERGE_FROM_ROWS - 1, False), (MERGE_FROM_ROWS, True), (500, True)],
)
def test_updates_from_merge_from_rows_on_are_merged_from_a_temporary_table(
    rows: int, merged: bool
) -> None:
    assert MERGE_FROM_ROWS == 64  # docs/operations.md and configuration.md name 64
    assert merged_from_temporary_table(rows) is merged
