"""Structured logs: structlog for our lines, stdlib logging routed through the same processors.

`LOG_FORMAT=json` (the default when stderr is not a terminal) writes one JSON object per line;
`console` writes readable lines. Every line written inside a span carries its `trace_id` and
`span_id`. A last processor redacts what must never be logged: values under personal-data or
secret keys, and anything in a message that looks like a NIK (16 digits) or a bearer token.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from adapter.observability.tracing import current_ids
from adapter.store.personal_fields import PERSONAL_FIELDS

REDACTED: Final = "[redacted]"
# Keys whose values are secrets (or whole bodies, which may hold anything), wherever they appear.
SECRET_KEYS: Final = frozenset(
    {
        "password",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "authorization",
        "cookie",
        "payload",
        "body",
    }
)
# Keys whose values are redacted: every personal field and every secret.
SENSITIVE_KEYS: Final = PERSONAL_FIELDS | SECRET_KEYS
_NIK_LIKE: Final = re.compile(r"(?<!\d)\d{16}(?!\d)")
# Public: hf-conformance's masking scrubs the same credentials out of its reports.
CREDENTIAL: Final = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
WEBHOOK_SECRET: Final = re.compile(r"whsec_[A-Za-z0-9+/=]{8,}")
# A JWS in compact form (a JWT: access, refresh or ID token) wherever it stands: its header is
# base64url of JSON, so it starts "eyJ".
JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def redact_text(text: str) -> str:
    """`text` with NIK-like numbers, bearer/basic credentials, JWTs and webhook secrets
    blanked."""
    text = _NIK_LIKE.sub(REDACTED, text)
    text = CREDENTIAL.sub(lambda match: f"{match.group(1)} {REDACTED}", text)
    text = JWT.sub(REDACTED, text)
    return WEBHOOK_SECRET.sub(REDACTED, text)


def _redact_value(key: str, value: Any) -> Any:
    if key.lower() in SENSITIVE_KEYS:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", item) for item in value]
    return value


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last line of defence against personal data in logs."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value)
    return event_dict


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """The current span's ids, so a line can be found from a trace and a trace from a line."""
    ids = current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids.trace_id)
        event_dict.setdefault("span_id", ids.span_id)
    return event_dict


def _stdlib_extras(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> MutableMapping[str, Any]:
    """Bring `extra={...}` of stdlib log calls into the structured line."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                event_dict.setdefault(key, value)
    return event_dict


_RECORD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


def configure_logging(
    *,
    level: str | None = None,
    fmt: str | None = None,
    stream: Any = None,
) -> None:
    """Set up structlog and stdlib logging once per process (`LOG_LEVEL`, `LOG_FORMAT`)."""
    # Stripped as the settings strip it: a value from a mounted file often ends in a newline.
    level_name = (level or os.environ.get("LOG_LEVEL") or "").strip().upper() or "INFO"
    numeric = logging.getLevelName(level_name)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    output = stream if stream is not None else sys.stderr
    chosen = (fmt or os.environ.get("LOG_FORMAT") or "").strip().lower()
    if chosen not in {"json", "console"}:
        chosen = "console" if output.isatty() else "json"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if chosen == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _stdlib_extras],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Third-party chatter: URLs with query strings (httpx), a line per migration step (alembic;
    # `hf-adapter db upgrade` says what it did itself).
    for noisy in ("httpx", "httpcore", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
