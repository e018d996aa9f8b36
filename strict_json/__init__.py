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


def _refuse(constant: str) -> Any:
    raise NotJson(f"{constant} is not a JSON number")


# Made once: `json.loads` with any keyword builds a decoder and its scanner on every call, and
# this runs for every webhook and every answer of a registry.
_DECODER = json.JSONDecoder(parse_constant=_refuse)


def loads(data: bytes | bytearray | str) -> Any:
    """`json.loads`, refusing `NaN` and `±Infinity` with `NotJson` (a `ValueError`). Otherwise
    it raises as `json.loads` does: `JSONDecodeError`, `UnicodeDecodeError`, `RecursionError`,
    and a plain `ValueError` for an integer of more digits than Python converts (4,300)."""
    if isinstance(data, bytes | bytearray):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    elif data.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    return _DECODER.decode(data)
