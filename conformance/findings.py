"""What a conformance run found: findings with the HTTP exchange that shows each one.

A finding names the rule and the operation; its evidence reproduces it (request, response, curl).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import httpx

# Bodies longer than this are cut in reports: a 500-record page is no better evidence than 4 KiB.
MAX_BODY_CHARS = 4000


class Severity(StrEnum):
    """`error` fails the run; `warning` is reported (a documented data-quality deviation)."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its response (if any), as plain text for reports."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str | None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str | None = None

    @classmethod
    def from_response(cls, response: httpx.Response) -> Exchange:
        request = response.request
        return cls(
            method=request.method,
            url=str(request.url),
            request_headers=_headers(request.headers),
            request_body=_text(request.content) if request.content else None,
            status=response.status_code,
            response_headers=_headers(response.headers),
            response_body=_text(response.content) if response.content else None,
        )

    def curl(self) -> str:
        """A shell line that sends the same request again."""
        parts = ["curl", "-i", "-X", self.method]
        for name, value in self.request_headers.items():
            if name.lower() in {"host", "content-length", "accept-encoding", "connection"}:
                continue
            parts += ["-H", f"{name}: {value}"]
        if self.request_body is not None:
            parts += ["--data-raw", self.request_body]
        parts.append(self.url)
        return " ".join(shlex.quote(part) for part in parts)

    def with_changes(self, **changes: Any) -> Exchange:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": {
                "method": self.method,
                "url": self.url,
                "headers": self.request_headers,
                "body": self.request_body,
            },
            "response": None
            if self.status is None
            else {
                "status": self.status,
                "headers": self.response_headers,
                "body": self.response_body,
            },
            "curl": self.curl(),
        }


@dataclass(slots=True)
class Finding:
    """A rule broken by one operation. `accepted` holds the baseline's reason when accepted."""

    rule: str
    operation: str
    message: str
    severity: Severity = Severity.ERROR
    evidence: Exchange | None = None
    accepted: str | None = None
    baseline_expired: str | None = None  # the expiry date of a baseline entry that no longer holds

    @property
    def fails_run(self) -> bool:
        return self.severity is Severity.ERROR and self.accepted is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "operation": self.operation,
            "message": self.message,
            "severity": str(self.severity),
            "accepted": self.accepted,
            "baseline_expired": self.baseline_expired,
            "evidence": None if self.evidence is None else self.evidence.to_dict(),
        }


def _headers(headers: httpx.Headers) -> dict[str, str]:
    return {name: value for name, value in headers.items()}


def _text(content: bytes) -> str:
    # Whole: a body is masked as parsed JSON, so it is cut only after masking (`cut_body`).
    return content.decode("utf-8", "replace")


def cut_body(text: str | None) -> str | None:
    """At most `MAX_BODY_CHARS` of an already masked body, saying how much was left out."""
    if text is None or len(text) <= MAX_BODY_CHARS:
        return text
    return text[:MAX_BODY_CHARS] + f"… [{len(text) - MAX_BODY_CHARS} more characters]"


def pretty_body(body: str | None) -> str:
    """A JSON body indented for people; anything else unchanged."""
    if body is None:
        return ""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body
