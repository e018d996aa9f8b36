"""`hf-adapter COMMAND --help` shows the default of every option that has one."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from adapter.cli import build_parser


def _commands(
    parser: argparse.ArgumentParser, prefix: str = "hf-adapter"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


COMMANDS = dict(_commands(build_parser()))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_each_options_default(command: str) -> None:
    parser = COMMANDS[command]
    shown = " ".join(parser.format_help().split())

    for action in parser._actions:
        default = action.default
        # By identity, not `in`: 0 == False, and an option whose default is 0 shows it too.
        if not action.option_strings or any(
            default is none for none in (None, False, argparse.SUPPRESS)
        ):
            continue
        option = action.option_strings[-1]
        # The whole value: "default 5" must not pass on "default 50" (nor "default 1.5").
        whole = rf"\bdefault {re.escape(str(default))}(?!\w|\.\w)"
        assert re.search(whole, shown), (
            f"{command} --help does not show the default of {option} ({default})"
        )
