"""Structured logs: JSON lines with the trace id; personal data and secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from adapter.api.services import SUMMARY_FIELDS
from adapter.observability.logging import (
    REDACTED,
    SENSITIVE_KEYS,
    configure_logging,
    redact_text,
)
from adapter.observability.tracing import current_ids, start_span
from adapter.store.personal_fields import (
    PERSON_IDENTITY_FIELDS,
    PERSONAL_FIELDS,
    REGISTRATION_PERSONAL_FIELDS,
    WORKER_PERSONAL_FIELDS,
)
from adapter.store.repositories import WORKER_PERSONAL_COLUMNS

NIK = "3171015708900042"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_structlog_lines_are_json_with_the_trace_id_and_no_personal_values(
    output: io.StringIO,
) -> None:
    with start_span("test", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"):
        ids = current_ids()
        structlog.get_logger("adapter.test").info(
            "record refused", nik=NIK, full_name="Siti Aminah", system="kki", detail=f"nik {NIK}"
        )
    (line,) = _lines(output)
    assert ids is not None
    assert line["event"] == "record refused"
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line["span_id"] == ids.span_id
    assert line["system"] == "kki"
    assert line["nik"] == line["full_name"] == REDACTED
    assert NIK not in output.getvalue()
    assert "Siti Aminah" not in output.getvalue()


def test_stdlib_lines_and_their_extras_go_through_the_same_redaction(
    output: io.StringIO,
) -> None:
    logging.getLogger("adapter.sync").warning(
        "sync failed for %s", NIK, extra={"email": "siti@example.id", "run_id": "r-1"}
    )
    (line,) = _lines(output)
    assert line["level"] == "warning"
    assert line["run_id"] == "r-1"
    assert line["email"] == REDACTED
    assert NIK not in output.getvalue()
    assert "siti@example.id" not in output.getvalue()


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"lookup {NIK} failed", "lookup [redacted] failed"),
        ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "Authorization: Bearer [redacted]"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret [redacted]"),
        ("page 3 of 17, 500 records", "page 3 of 17, 500 records"),
        ("STR QZ00011234567890", "STR QZ00011234567890"),
    ],
)
def test_redact_text(text: str, kept: str) -> None:
    assert redact_text(text) == kept


@pytest.mark.parametrize("field", sorted(PERSONAL_FIELDS))
def test_every_personal_field_is_redacted_at_any_depth(output: io.StringIO, field: str) -> None:
    value = "Siti Aminah binti Rahmat"
    structlog.get_logger("adapter.test").info(
        "record seen", **{field: value}, record={field: value, "rows": [{field: value}]}
    )
    (line,) = _lines(output)
    assert line[field] == REDACTED
    assert line["record"] == {field: REDACTED, "rows": [{field: REDACTED}]}
    assert value not in output.getvalue()


def test_redaction_covers_every_list_the_audit_trail_names() -> None:
    for names in (
        WORKER_PERSONAL_FIELDS,
        REGISTRATION_PERSONAL_FIELDS,
        PERSON_IDENTITY_FIELDS,
        SUMMARY_FIELDS,
        WORKER_PERSONAL_COLUMNS,
    ):
        assert set(names) <= SENSITIVE_KEYS


def test_log_level_and_format_from_a_mounted_file_are_read_without_their_newline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug\n")
    monkeypatch.setenv("LOG_FORMAT", " json\n")
    stream = io.StringIO()
    try:
        configure_logging(stream=stream)
        assert logging.getLogger().level == logging.DEBUG
        logging.getLogger("adapter.test").debug("seen")
        assert json.loads(stream.getvalue().splitlines()[-1])["event"] == "seen"
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
