"""Which findings to open and which to resolve when a record is stored.

Identity mismatches compare KKI's and SISDMK's spelling of a person field by field; rule
findings follow the breaches of one source record. A finding keeps no value in clear: an
identity mismatch holds keyed digests of both values, made by the `Fingerprint` the caller
passes in (the store's blind index).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from adapter.merge.documents import IDENTITY_FIELDS, Identity, fold
from adapter.merge.rules import Breach, Rule

# A keyed digest of `value` for identity `field` (equal folds, equal digests; never reversible).
Fingerprint = Callable[[str, str], str]


@dataclass(frozen=True)
class StoredFinding:
    """An open finding as stored."""

    id: uuid.UUID
    rule: str
    field: str
    worker_id: uuid.UUID
    registration_id: uuid.UUID | None = None
    source_id: str | None = None
    kki_digest: str | None = None
    sisdmk_digest: str | None = None


@dataclass(frozen=True)
class NewFinding:
    """A finding to open. `source_system`/`source_id` name the record that breaks a rule;
    an identity mismatch, between two records, has neither but the two digests."""

    rule: Rule
    field: str
    worker_id: uuid.UUID
    registration_id: uuid.UUID | None
    source_system: str | None = None
    source_id: str | None = None
    kki_digest: str | None = None
    sisdmk_digest: str | None = None


@dataclass(frozen=True)
class FindingChanges:
    opened: tuple[NewFinding, ...] = ()
    resolved: tuple[uuid.UUID, ...] = ()

    def __add__(self, other: FindingChanges) -> FindingChanges:
        return FindingChanges(self.opened + other.opened, self.resolved + other.resolved)


def reconcile_identity(
    *,
    worker_id: uuid.UUID,
    registration_id: uuid.UUID,
    kki: Identity,
    sisdmk: Identity,
    open_findings: Iterable[StoredFinding],
    fingerprint: Fingerprint,
) -> FindingChanges:
    """A finding per field KKI and SISDMK disagree on; those they now agree on resolved.

    Values are compared folded (case, spacing and compatibility forms do not count); a field
    one side leaves empty differs from one the other fills. An open finding whose worker or
    digests no longer match is resolved and, if the sources still disagree, opened anew.
    """
    digests: dict[str, tuple[str | None, str | None]] = {}
    disagree: set[str] = set()
    for field in IDENTITY_FIELDS:
        kki_value, sisdmk_value = kki.value(field), sisdmk.value(field)
        digests[field] = (
            identity_digest(fingerprint, field, kki_value),
            identity_digest(fingerprint, field, sisdmk_value),
        )
        if fold(kki_value) != fold(sisdmk_value):
            disagree.add(field)
    # One open finding per field at most: two writers meeting on a registration each opened
    # one, and a dict by field kept the last and left the other open for ever.
    kept: set[str] = set()
    resolved: list[uuid.UUID] = []
    for finding in open_findings:
        if finding.rule != Rule.IDENTITY_MISMATCH or finding.field not in digests:
            continue
        if (
            finding.field in disagree
            and finding.field not in kept
            and finding.worker_id == worker_id
            and (finding.kki_digest, finding.sisdmk_digest) == digests[finding.field]
        ):
            kept.add(finding.field)
        else:
            resolved.append(finding.id)
    opened = [
        NewFinding(
            Rule.IDENTITY_MISMATCH,
            field,
            worker_id,
            registration_id,
            kki_digest=digests[field][0],
            sisdmk_digest=digests[field][1],
        )
        for field in IDENTITY_FIELDS
        if field in disagree and field not in kept
    ]
    return FindingChanges(tuple(opened), tuple(resolved))


def reconcile_breaches(
    breaches: Iterable[Breach],
    open_findings: Sequence[StoredFinding],
    *,
    worker_id: uuid.UUID,
    registration_id: uuid.UUID | None,
    source_system: str,
    source_id: str,
) -> FindingChanges:
    """A finding per rule the record now breaks; those it no longer breaks resolved.

    `open_findings` are the record's open findings (identity mismatches among them are left
    alone). One of another worker or record is resolved and, if still broken, opened anew.
    """
    wanted = list(dict.fromkeys(breaches))  # in the rules' order, once each
    kept: set[Breach] = set()
    resolved: list[uuid.UUID] = []
    for finding in open_findings:
        if finding.rule == Rule.IDENTITY_MISMATCH:
            continue
        breach = Breach(Rule(finding.rule), finding.field)
        if (
            breach in wanted
            and breach not in kept
            and (finding.worker_id, finding.registration_id, finding.source_id)
            == (worker_id, registration_id, source_id)
        ):
            kept.add(breach)
        else:
            resolved.append(finding.id)
    opened = tuple(
        NewFinding(
            breach.rule,
            breach.field,
            worker_id,
            registration_id,
            source_system=source_system,
            source_id=source_id,
        )
        for breach in wanted
        if breach not in kept
    )
    return FindingChanges(opened, tuple(resolved))


def identity_digest(fingerprint: Fingerprint, field: str, value: str | None) -> str | None:
    """What a mismatch keeps of one side's `value`: its fingerprint, ``None`` when empty."""
    # Passed as received: the fingerprint folds it the same way `fold` does.
    return None if fold(value) is None else fingerprint(field, str(value))
