"""A command's table printed to a pipe or a log file keeps every cell whole."""

from __future__ import annotations

import pytest
from rich.table import Table

from adapter.cli.consoles import table_console

STR_NUMBER = "TA00014626866263"
FETCHED_AT = "2026-12-04T22:41:39.123456+00:00"


def test_a_table_wider_than_80_columns_is_not_cut_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = Table(title="registrations")
    for name in ("system", "STR", "status", "profession", "fetched at", "stale reason"):
        table.add_column(name)
    table.add_row("kki", STR_NUMBER, "active", "dokter spesialis", FETCHED_AT, "circuit_open")
    table_console().print(table)  # capsys: stdout is not a terminal
    out = capsys.readouterr().out
    assert "…" not in out
    assert STR_NUMBER in out
    assert FETCHED_AT in out
    assert max(len(line) for line in out.splitlines()) > 80
