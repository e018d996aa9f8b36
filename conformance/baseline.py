"""Accepted deviations: a YAML file of (rule, operation, reason, expires) entries.

A finding an entry covers is reported but does not fail the run until the entry expires.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conformance.findings import Finding


class BaselineError(ValueError):
    """The baseline file is missing or does not parse; the message says where."""


@dataclass(frozen=True, slots=True)
class BaselineEntry:
    rule: str
    operation: str  # an operationId, or "*" for every operation
    reason: str
    expires: dt.date

    def covers(self, finding: Finding) -> bool:
        return self.rule == finding.rule and self.operation in ("*", finding.operation)


def load_baseline(path: Path) -> list[BaselineEntry]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"baseline {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BaselineError(f"baseline {path}: not valid YAML{where}") from None
    return parse_baseline(document, str(path))


def parse_baseline(document: Any, name: str = "baseline") -> list[BaselineEntry]:
    if not isinstance(document, dict) or not isinstance(document.get("accepted"), list):
        raise BaselineError(f"{name}: expected a mapping with a list under `accepted`")
    entries = []
    for index, raw in enumerate(document["accepted"], start=1):
        where = f"{name}: entry {index}"
        if not isinstance(raw, dict):
            raise BaselineError(f"{where} is not a mapping")
        missing = [key for key in ("rule", "operation", "reason", "expires") if key not in raw]
        if missing:
            raise BaselineError(f"{where} lacks {', '.join(missing)}")
        expires = raw["expires"]
        if isinstance(expires, str):
            try:
                expires = dt.date.fromisoformat(expires)
            except ValueError:
                raise BaselineError(f"{where}: expires {expires!r} is not a date") from None
        if not isinstance(expires, dt.date) or isinstance(expires, dt.datetime):
            raise BaselineError(f"{where}: expires must be a date (YYYY-MM-DD)")
        for key in ("rule", "operation", "reason"):
            if not isinstance(raw[key], str) or not raw[key].strip():
                raise BaselineError(f"{where}: {key} must be a non-empty string")
        entries.append(BaselineEntry(raw["rule"], raw["operation"], raw["reason"], expires))
    return entries


def apply_baseline(
    findings: Iterable[Finding], entries: list[BaselineEntry], today: dt.date
) -> None:
    """Mark findings an entry accepts; an entry past its expiry date accepts nothing."""
    for finding in findings:
        for entry in entries:
            if not entry.covers(finding):
                continue
            if entry.expires >= today:
                finding.accepted = entry.reason
                finding.baseline_expired = None
                break
            finding.baseline_expired = entry.expires.isoformat()
