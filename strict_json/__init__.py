"""JSON read as RFC 8259 defines it.

Python's parser also takes `NaN`, `Infinity` and `-Infinity`, which no JSON document may hold:
strict parsers (JavaScript's, Go's, Jackson) refuse them, and a NaN passes every `minimum` and
`maximum` of a schema, as no comparison with it is true. Shared by the adapter's inputs (its
API's bodies, webhooks, the registries' answers) and the mocks' request bodies.
"""

from __future__ import annotations

import json
from typing import Any


class NotJson(ValueError):
    """A constant Python's parser takes and JSON has not; the message names it."""


def loads(data: bytes | str) -> Any:
    """`json.loads`, refusing `NaN` and `±Infinity` with `NotJson` (a `ValueError`). Otherwise
    it raises as `json.loads` does: `JSONDecodeError`, `UnicodeDecodeError`, `RecursionError`,
    and a plain `ValueError` for an integer of more digits than Python converts (4,300)."""
    return json.loads(data, parse_constant=_refuse)


def _refuse(constant: str) -> Any:
    raise NotJson(f"{constant} is not a JSON number")
