"""STR numbers: opaque strings of up to 50 uppercase letters and digits.

Two shapes are known: the new SATUSEHAT SDMK STR, two letters and 14 digits (observed numbers
continue with 0000 or 0001), and the old 16-digit KKI doctor STR. Other shapes stay valid.
"""

from __future__ import annotations

import re
from typing import Literal

STR_MAX_LENGTH = 50

StrKind = Literal["new", "old_kki", "unknown"]

NEW_STR_PATTERN = re.compile(r"[A-Z]{2}[0-9]{14}")
OLD_KKI_STR_PATTERN = re.compile(r"[0-9]{16}")
_ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def classify_str(s: str) -> StrKind:
    """`new` (`^[A-Z]{2}\\d{14}$`), `old_kki` (16 digits) or `unknown`."""
    if NEW_STR_PATTERN.fullmatch(s):
        return "new"
    if OLD_KKI_STR_PATTERN.fullmatch(s):
        return "old_kki"
    return "unknown"


def validate_str(s: str) -> list[str]:
    """Every reason `s` can't be stored as an STR number; empty if it can.

    Only the opaque rules apply (1-50 characters of A-Z and 0-9): an unknown shape is not a
    problem, because old KTKI numbers have no published format.
    """
    if not s:
        return ["STR number is empty"]
    problems: list[str] = []
    if len(s) > STR_MAX_LENGTH:
        problems.append(
            f"STR number is {len(s)} characters long; at most {STR_MAX_LENGTH} are allowed"
        )
    for position, char in enumerate(s, start=1):
        if char not in _ALLOWED:
            problems.append(
                f"STR number may contain only A-Z and 0-9; character {position} "
                f"({char!r}) is not allowed"
            )
            break
    return problems
