"""Audit anchors and entry MACs without a database: signed, checked, and hard to forge."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid

import pytest

from adapter.audit import Anchor, AnchorError, entry_hash, read_anchors
from adapter.store.crypto import Key, KeyRing
from adapter.store.models import AUDIT_GENESIS, AuditEvent

OLD = Key("audit-2025", bytes(range(32)))
NEW = Key("audit-2026", bytes(range(32, 64)))
AT = dt.datetime(2026, 3, 1, 2, 30, tzinfo=dt.UTC)
HASH = "ab" * 32


def an_entry(**changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "seq": 7,
        "id": uuid.UUID(int=7),
        "at": AT,
        "actor_kind": "user",
        "actor_subject": "7d1f0c1e-5a7c-4c1e-9a53-2f4d1c0b9e11",
        "actor_client": "healthforce-portal",
        "action": "healthworker.read",
        "resource_type": "health-workers",
        "resource_id": "worker-1",
        "fields": '["nik"]',
        "outcome": "success",
        "trace_id": None,
        "detail": None,
        "prev_hash": AUDIT_GENESIS,
        "key_id": NEW.kid,
    }
    values.update(changes)
    return AuditEvent(**values)


def test_an_anchor_reads_back_and_is_checked_against_the_ring() -> None:
    lines = [
        Anchor.sign(3, HASH, AT, OLD).to_json(),
        "",
        Anchor.sign(9, HASH, AT + dt.timedelta(hours=1), NEW).to_json(),
    ]

    anchors = read_anchors(lines, KeyRing([NEW, OLD]))

    assert [(anchor.seq, anchor.key_id) for anchor in anchors] == [(3, OLD.kid), (9, NEW.kid)]
    assert anchors[1].at == AT + dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", 2), ("hash", "cd" * 32), ("at", "2026-03-01T02:30:00.000001+00:00")],
)
def test_an_altered_anchor_is_refused(field: str, value: object) -> None:
    line = json.loads(Anchor.sign(3, HASH, AT, NEW).to_json()) | {field: value}

    with pytest.raises(AnchorError, match=r"on line 1 .* does not match its signature"):
        read_anchors([json.dumps(line)], KeyRing([NEW]))


def test_an_anchor_under_a_key_not_configured_is_refused() -> None:
    with pytest.raises(AnchorError, match="audit key 'audit-2025', which is not in AUDIT_KEYS"):
        read_anchors([Anchor.sign(3, HASH, AT, OLD).to_json()], KeyRing([NEW]))


def test_an_anchor_under_another_secret_with_the_same_key_id_is_refused() -> None:
    impostor = Key(NEW.kid, bytes(32))

    with pytest.raises(AnchorError, match="does not match its signature"):
        read_anchors([Anchor.sign(3, HASH, AT, impostor).to_json()], KeyRing([NEW]))


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[1, 2]",
        '{"seq": 1}',
        '{"seq": true, "hash": "x", "at": "2026-03-01T00:00:00+00:00", "key_id": "k", "mac": "m"}',
        '{"seq": -1, "hash": "x", "at": "2026-03-01T00:00:00+00:00", "key_id": "k", "mac": "m"}',
        '{"seq": 1, "hash": "x", "at": "2026-03-01T00:00:00", "key_id": "k", "mac": "m"}',
        '{"seq": 1, "hash": "x", "at": "yesterday", "key_id": "k", "mac": "m"}',
        '{"seq": 1, "hash": "x", "at": "2026-03-01T00:00:00+00:00", "key_id": "k", "mac": "m", '
        '"note": "extra"}',
    ],
)
def test_a_line_that_is_not_an_anchor_is_named(line: str) -> None:
    with pytest.raises(AnchorError, match="anchor on line 2 is not an anchor written by"):
        read_anchors(["", line], KeyRing([NEW]))


def test_the_entry_mac_needs_the_key_and_covers_the_key_id() -> None:
    entry = an_entry()
    keyed = entry_hash(entry, NEW)

    assert keyed == entry_hash(an_entry(), NEW)
    assert keyed != entry_hash(entry, Key(NEW.kid, bytes(32)))
    assert keyed != entry_hash(entry, Key("audit-other", NEW.material))
    assert keyed != entry_hash(an_entry(actor_subject="someone-else"), NEW)
    assert keyed != entry_hash(entry, None)


def test_an_unkeyed_entry_hashes_as_before_the_chain_was_keyed() -> None:
    # Revision 0004's hash: SHA-256 of the canonical JSON of these fields, no key id.
    entry = an_entry(key_id=None)
    content = {
        "seq": 7,
        "id": str(uuid.UUID(int=7)),
        "at": "2026-03-01T02:30:00.000000+00:00",
        "actor_kind": "user",
        "actor_subject": entry.actor_subject,
        "actor_client": "healthforce-portal",
        "action": "healthworker.read",
        "resource_type": "health-workers",
        "resource_id": "worker-1",
        "fields": '["nik"]',
        "outcome": "success",
        "trace_id": None,
        "detail": None,
        "prev_hash": AUDIT_GENESIS,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    assert entry_hash(entry, None) == hashlib.sha256(canonical.encode()).hexdigest()
