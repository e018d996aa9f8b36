"""Where the commands print their tables (stdout)."""

from __future__ import annotations

from typing import Final

from rich.console import Console

# Off a terminal (a pipe, a file, a cron job's log) a console is 80 columns by default, and a
# wide table cuts its cells short with "…": an STR number, an event id, a timestamp that the
# reader of that log needs whole. There the width is this, wider than any table here.
UNBOUNDED_WIDTH: Final = 10_000


def table_console() -> Console:
    """The terminal's width on a terminal; elsewhere no width that cuts a cell short."""
    console = Console()
    return console if console.is_terminal else Console(width=UNBOUNDED_WIDTH)
