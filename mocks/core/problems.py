"""Errors a mock handler raises, and the two wire formats the mocks render them in.

KKI answers RFC 9457 `application/problem+json`; SISDMK answers its own JSON envelope
`{status, message, errors}`. Each mock picks one `ErrorFormat` and every error path uses it.
"""

from __future__ import annotations

import http
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

PROBLEM_TYPE_BASE = "https://healthforce.example.id/problems/"


@dataclass(slots=True)
class FieldError:
    location: str  # "body" | "query" | "path" | "header"
    name: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"location": self.location, "name": self.name, "message": self.message}


@dataclass(slots=True)
class MockProblem(Exception):
    """An error response a handler wants sent, in the mock's own error format."""

    status: int
    detail: str
    title: str | None = None
    errors: Sequence[FieldError] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.detail)
        if self.title is None:
            self.title = http.HTTPStatus(self.status).phrase


class ErrorFormat(Protocol):
    def render(
        self,
        status: int,
        title: str,
        detail: str,
        errors: Sequence[FieldError] = (),
    ) -> tuple[bytes, str]:
        """Body and content type of an error response."""


class ProblemJson:
    """RFC 9457 problem details."""

    content_type = "application/problem+json"

    def render(
        self,
        status: int,
        title: str,
        detail: str,
        errors: Sequence[FieldError] = (),
    ) -> tuple[bytes, str]:
        slug = title.lower().replace(" ", "-").replace("'", "")
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + slug,
            "title": title,
            "status": status,
            "detail": detail,
        }
        if errors:
            body["errors"] = [e.to_dict() for e in errors]
        return json.dumps(body).encode(), self.content_type


class SisdmkEnvelope:
    """SISDMK's envelope: the same `status`/`message` keys as its successful answers."""

    content_type = "application/json"

    def render(
        self,
        status: int,
        title: str,
        detail: str,
        errors: Sequence[FieldError] = (),
    ) -> tuple[bytes, str]:
        body: dict[str, Any] = {"status": status, "message": f"{title}: {detail}"}
        if errors:
            body["errors"] = [e.to_dict() for e in errors]
        return json.dumps(body).encode(), self.content_type


FHIR_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    429: "throttled",
}


class OperationOutcomeFormat:
    """FHIR OperationOutcome: what SATUSEHAT's gateway (SISDMK's token endpoint) answers."""

    content_type = "application/json"

    def render(
        self,
        status: int,
        title: str,
        detail: str,
        errors: Sequence[FieldError] = (),
    ) -> tuple[bytes, str]:
        code = FHIR_ISSUE_CODES.get(status, "exception" if status >= 500 else "processing")
        issues = [{"severity": "error", "code": code, "details": {"text": f"{title}: {detail}"}}]
        issues += [
            {"severity": "error", "code": "invalid", "details": {"text": f"{e.name}: {e.message}"}}
            for e in errors
        ]
        body = {"resourceType": "OperationOutcome", "issue": issues}
        return json.dumps(body).encode(), self.content_type
