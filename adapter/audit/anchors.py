"""Anchors: the audit chain's head, signed with the audit key and kept outside the database."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from adapter.audit.trail import canonical, timestamp
from adapter.errors import AdapterError
from adapter.store.crypto import Key, KeyRing

_ANCHOR_LABEL: Final = b"hf-adapter/audit-anchor/v1\n"
_ANCHOR_FIELDS: Final = frozenset({"seq", "hash", "at", "key_id", "mac"})


class AnchorError(AdapterError):
    """An anchor file that cannot be read, or whose anchors are not signed by ``AUDIT_KEYS``."""

    default_reason = "audit_anchor"


@dataclass(frozen=True)
class Anchor:
    """The chain's head (entry `seq` has hash `hash`) at time `at`, signed with the audit key
    `key_id`: one JSON line an operator keeps outside the database (`hf-adapter audit anchor`).
    """

    seq: int
    hash: str
    at: dt.datetime
    key_id: str
    mac: str

    @classmethod
    def sign(cls, seq: int, entry_hash: str, at: dt.datetime, key: Key) -> Anchor:
        at = at.astimezone(dt.UTC)
        return cls(seq, entry_hash, at, key.kid, _anchor_mac(seq, entry_hash, at, key))

    def to_json(self) -> str:
        return json.dumps(
            {
                "seq": self.seq,
                "hash": self.hash,
                "at": timestamp(self.at),
                "key_id": self.key_id,
                "mac": self.mac,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def signed_by(self, keys: KeyRing) -> bool:
        """Whether a key of `keys` made this anchor's MAC (compared in constant time)."""
        if self.key_id not in keys.kids:
            return False
        expected = _anchor_mac(self.seq, self.hash, self.at, keys.get(self.key_id))
        return hmac.compare_digest(expected, self.mac)


def read_anchors(lines: Iterable[str], keys: KeyRing) -> list[Anchor]:
    """The anchors in an anchor file's lines (blank lines skipped), each checked against `keys`;
    `AnchorError` naming the first line that is malformed or not signed by them."""
    anchors: list[Anchor] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        anchor = _parse_anchor(line, number)
        if anchor.key_id not in keys.kids:
            raise AnchorError(
                f"anchor on line {number} is signed with audit key {anchor.key_id!r}, which is "
                "not in AUDIT_KEYS (add it back after the active key to check old anchors)"
            )
        if not anchor.signed_by(keys):
            raise AnchorError(
                f"anchor on line {number} (entry #{anchor.seq}) does not match its signature: "
                "the anchor file was altered, or it belongs to another deployment"
            )
        anchors.append(anchor)
    return anchors


def _parse_anchor(line: str, number: int) -> Anchor:
    problem = f"anchor on line {number} is not an anchor written by `hf-adapter audit anchor`"
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise AnchorError(problem) from None
    if not isinstance(data, dict) or set(data) != _ANCHOR_FIELDS:
        raise AnchorError(problem)
    seq, entry_hash, at, key_id, mac = (
        data[name] for name in ("seq", "hash", "at", "key_id", "mac")
    )
    if (
        not isinstance(seq, int)
        or isinstance(seq, bool)
        or seq < 0
        or not all(isinstance(value, str) for value in (entry_hash, at, key_id, mac))
    ):
        raise AnchorError(problem)
    try:
        moment = dt.datetime.fromisoformat(at)
    except ValueError:
        raise AnchorError(problem) from None
    if moment.tzinfo is None:
        raise AnchorError(problem)
    return Anchor(seq, entry_hash, moment.astimezone(dt.UTC), key_id, mac)


def _anchor_mac(seq: int, entry_hash: str, at: dt.datetime, key: Key) -> str:
    content = {"seq": seq, "hash": entry_hash, "at": timestamp(at), "key_id": key.kid}
    return hmac.new(key.material, _ANCHOR_LABEL + canonical(content), hashlib.sha256).hexdigest()
