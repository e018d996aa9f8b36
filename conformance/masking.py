"""Personal data and secrets masked out of evidence before any report is written.

Reuses the adapter's masks (NIK keeps its region and serial, names their initials) and its list
of sensitive keys; free text is scrubbed of NIK/NIP-like numbers (whole, in groups, or glued to
other digits), e-mail addresses and phones.
STR numbers are a registration's identifiers, not a person's: they stay readable, unless a
16-digit one could be a NIK (the provider controls where it puts a number).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from adapter.observability.logging import (
    CREDENTIAL,
    JWT,
    REDACTED,
    SECRET_KEYS,
    SENSITIVE_KEYS,
    WEBHOOK_SECRET,
)
from adapter.workforce.directory import MASK, mask_name, mask_nik
from conformance.findings import Exchange, Finding, cut_body
from indonesian_ids.nik import NIK_LENGTH, could_be_nik
from indonesian_ids.nip import NIP_LENGTH

NAME_KEYS: Final = frozenset({"full_name", "display_name", "name", "holder_name"})
NUMBER_KEYS: Final = frozenset({"nik", "nip"})
# Identifiers of a registration, not of a person (docs/security.md): an old KKI STR number has
# 16 digits like a NIK, but QA needs it to replay a finding, so under these keys it stays whole
# when it cannot be a NIK (`_readable_str`).
IDENTIFIER_KEYS: Final = frozenset({"str_number"})
SECRET_HEADERS: Final = frozenset(
    {"authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"}
)
# Sensitive keys in a form body or query string (the SISDMK token call; a webhook
# subscription's `secret` answered as a form): the adapter's secret keys, bodies aside.
SECRET_FIELDS: Final = SECRET_KEYS - {"body", "payload"}
# A key "body" is a request body in log lines, not here; "birth_date" stays visible because
# the domain findings are about it and a date alone does not identify anyone.
_KEY_MASKED: Final = (SENSITIVE_KEYS - {"body", "payload", "birth_date"}) | NAME_KEYS

# A 16- or 18-digit number may be a NIK or a NIP, unless what precedes it says it is an old
# KKI STR number: "STR <number>", a KKI registration's path, or in the command's own findings
# "record <key>" (a KKI record's key is its STR number; no list is keyed by NIK). The provider
# chooses those numbers, so a label alone is not enough: one that could be a NIK is masked.
# A number is its digits in groups joined by up to three separators: spaces (also no-break and
# figure spaces, tabs), hyphens, en dashes, dots, slashes ("3174 0512 0390 0001",
# "317405-120390-0001", "3.174.051.203.900.001"); a UUID is matched first so that its groups
# are never taken for one.
_SEPARATORS: Final = r"[ \t\u00a0\u2007\u202f.\-\u2013/]"
_LONG_NUMBER: Final = re.compile(
    r"(?P<uuid>\b[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\b)"
    r"|(?P<label>\bSTR(?: number)?\s+|/registrations/|(?P<record>\brecord\s+))?"
    rf"(?<!\d)(?P<number>\d+(?:{_SEPARATORS}{{1,3}}\d+)*)(?!\d)"
)
# The same, one unbroken run of exactly 16 or 18 digits: the rule for the groups of a longer
# number in which no 16 digits have a NIK's shape.
_WHOLE_NUMBER: Final = re.compile(
    r"(?P<label>\bSTR(?: number)?\s+|/registrations/|(?P<record>\brecord\s+))?"
    r"(?<!\d)(?P<number>\d{16}|\d{18})(?!\d)"
)
# Dates next to each other ("2026-12-01 2026-12-31") have 16 digits and are no one's number,
# unless those digits could be a NIK ("3171-01-57 0890-00-42" is one, written as dates).
_DATES: Final = re.compile(r"\d{4}-\d{2}-\d{2}(?: \d{4}-\d{2}-\d{2})+")
_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE: Final = re.compile(r"\+62[\d -]{8,16}\d|(?<!\d)08\d{8,11}(?!\d)")


def mask_text(text: str, *, record_keys: bool = False) -> str:
    """Free text with NIK/NIP-like numbers, e-mail addresses, phones, bearer/basic credentials,
    JWTs and webhook secrets masked.

    `record_keys`: the text is the command's own finding, whose "record <key>" is a record key.
    """

    def named_str(match: re.Match[str], number: str) -> bool:
        """Labelled an STR number (a record key only in the command's own findings), and
        cannot be a NIK: an old KKI STR number, left readable."""
        labelled = match["label"] and (record_keys or not match["record"])
        return bool(labelled) and _readable_str(number)

    def whole_number(match: re.Match[str]) -> str:
        label, number = match["label"] or "", match["number"]
        if named_str(match, number):
            return match[0]
        return f"{label}{mask_nik(number)}"

    def long_number(match: re.Match[str]) -> str:
        number = match["number"]
        if number is None:
            return match[0]  # a UUID
        digits = "".join(str(int(char)) for char in number if char.isdigit())
        if len(digits) < NIK_LENGTH:
            return match[0]
        if _DATES.fullmatch(number) and not _holds_a_nik(digits):
            return match[0]
        if len(digits) in (NIK_LENGTH, NIP_LENGTH) and not number.isdigit():
            # Written in groups: a NIK or NIP all the same, or an old STR number if named one.
            if named_str(match, "".join(char for char in number if char.isdigit())):
                return match[0]
            return f"{match['label'] or ''}{_mask_digits(number)}"
        if len(digits) not in (NIK_LENGTH, NIP_LENGTH) and _holds_a_nik(digits):
            # A NIK glued to other digits is still a NIK.
            return f"{match['label'] or ''}{_mask_digits(number)}"
        return _WHOLE_NUMBER.sub(whole_number, match[0])

    text = _LONG_NUMBER.sub(long_number, text)
    text = _EMAIL.sub(REDACTED, text)
    text = _PHONE.sub(REDACTED, text)
    text = CREDENTIAL.sub(lambda match: f"{match.group(1)} {REDACTED}", text)
    text = JWT.sub(REDACTED, text)
    return WEBHOOK_SECRET.sub(REDACTED, text)


def _holds_a_nik(digits: str) -> bool:
    """Whether any 16 consecutive digits of `digits` have a NIK's shape and codes."""
    return any(
        could_be_nik(digits[start : start + NIK_LENGTH])
        for start in range(len(digits) - NIK_LENGTH + 1)
    )


def _mask_digits(number: str) -> str:
    """`mask_nik` for a number written in groups: its first and last four digits kept, every
    other digit masked, the separators between the groups left where they are."""
    total = sum(char.isdigit() for char in number)
    seen = 0
    masked: list[str] = []
    for char in number:
        if char.isdigit():
            seen += 1
            masked.append(char if seen <= 4 or seen > total - 4 else MASK)
        else:
            masked.append(char)
    return "".join(masked)


def _readable_str(number: str) -> bool:
    """Whether a number named an STR number may be shown: a 16-digit one that cannot be a NIK
    (a provider that puts a NIK into `str_number` must not get it into a report)."""
    # ASCII digits only: a NIK written in other digits (full-width, Arabic-Indic) is no STR.
    return len(number) == 16 and number.isascii() and number.isdigit() and not could_be_nik(number)


def _mask_str_number(value: str) -> str:
    """An STR number field's value: an old 16-digit STR whole, anything else scrubbed as text
    (a new-format STR has no 16-digit run and stays readable)."""
    return value if _readable_str(value) else mask_text(value)


_QUOTED: Final = re.compile(r"""(?P<before>header\s+)?(['"])([^'"\n]{3,200})\2""")
# A media type ('application/json; charset=utf-8', RFC 9110 §8.3.1): a header's value, never a
# person. Only the registered top-level types and `; token=token` parameters, so that a quoted
# 'Siti/Aminah' or 'text/plain; Budi Santoso' is not taken for one.
_RFC9110_NAME: Final = r"[A-Za-z0-9!#$%&*+.^_`|~-]+"
_MEDIA_TYPE: Final = re.compile(
    r"(?i)(?P<type>(?:application|text|image|audio|video|multipart|message|font|model)"
    rf"/{_RFC9110_NAME})(?:[ \t]*;[ \t]*{_RFC9110_NAME}={_RFC9110_NAME})*",
    re.ASCII,
)


def media_type(value: str, longest: int = 100) -> str | None:
    """The type/subtype of a Content-Type header's value (`text/html` of `text/html;
    charset=utf-8`), lower-cased, without its parameters (whose values could be anything); None
    when the value is not a media type or is longer than `longest`."""
    matched = _MEDIA_TYPE.fullmatch(value.strip(" \t")) if len(value) <= longest else None
    return None if matched is None else matched["type"].lower()


def mask_quoted(text: str, keep: Collection[str] = ()) -> str:
    """`mask_text`, and every quoted value reduced to initials: for text that quotes what a
    provider answered (a verifier's mismatch), where a quoted value may be anyone's name.

    Left readable: the values in `keep` (what the caller knows is no one's: the pact's own
    provider-state names), a header's name (`header 'Content-Type'`) and media types.
    """

    def quoted(match: re.Match[str]) -> str:
        before, quote, value = match["before"] or "", match[2], match[3]
        if before or value in keep or _MEDIA_TYPE.fullmatch(value):
            return match[0]
        return f"{before}{quote}{mask_name(value)}{quote}"

    return _QUOTED.sub(quoted, mask_text(text))


def mask_value(key: str, value: Any) -> Any:
    """A JSON value with every personal or secret field under it masked."""
    lowered = key.lower()
    if isinstance(value, str):
        if lowered in IDENTIFIER_KEYS:
            return _mask_str_number(value)
        if lowered in NUMBER_KEYS:
            return mask_nik(value)
        if lowered in NAME_KEYS:
            return mask_name(value)
        if lowered in _KEY_MASKED:
            return REDACTED
        return mask_text(value)
    if value is not None and lowered in _KEY_MASKED and lowered not in NAME_KEYS:
        return REDACTED
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(key if lowered in NAME_KEYS else "", item) for item in value]
    whole = isinstance(value, float) and value.is_integer() and abs(value) < 1e19
    if (isinstance(value, int) and not isinstance(value, bool)) or whole:
        # A NIK sent as a JSON number (3171015708900042, or 3171015708900042.0) is a NIK all
        # the same: masked as its digits would be.
        digits = str(int(value))
        masked = mask_value(key, digits)
        return value if masked == digits else masked
    return value


def mask_body(body: str | None) -> str | None:
    if body is None:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        if body.lstrip()[:1] in ("{", "["):
            # JSON that does not parse (cut short, broken) cannot be masked field by field:
            # names and places would pass the text scrubber, so none of it is shown.
            return f"{REDACTED} (JSON that does not parse, {len(body)} characters)"
        return _mask_form(body)
    return json.dumps(mask_value("", document), ensure_ascii=False)


def _mask_field(name: str, value: str) -> str:
    """A form or query field's value: secrets out, NIK/NIP masked whatever their shape."""
    lowered = name.lower()
    if lowered in SECRET_FIELDS:
        return REDACTED
    if lowered in IDENTIFIER_KEYS:
        return _mask_str_number(value)
    if lowered in NUMBER_KEYS:
        return mask_nik(value) or ""
    return mask_text(value)


def _mask_form(body: str) -> str:
    """A form-encoded body with secret fields masked; other text scrubbed."""
    pairs = parse_qsl(body, keep_blank_values=True)
    if pairs and "=" in body and "\n" not in body:
        return urlencode([(k, _mask_field(k, v)) for k, v in pairs])
    return mask_text(body)


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    masked = urlencode([(k, _mask_field(k, v)) for k, v in query])
    return urlunsplit(parts._replace(path=mask_text(parts.path), query=masked))


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    masked: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            masked[name] = f"{scheme} {REDACTED}".strip()
        else:
            masked[name] = mask_text(value)
    return masked


def mask_exchange(exchange: Exchange) -> Exchange:
    return exchange.with_changes(
        url=mask_url(exchange.url),
        request_headers=mask_headers(exchange.request_headers),
        request_body=cut_body(mask_body(exchange.request_body)),
        response_headers=mask_headers(exchange.response_headers),
        response_body=cut_body(mask_body(exchange.response_body)),
    )


def mask_finding(finding: Finding) -> Finding:
    """A copy of `finding` safe to write into a report."""
    return Finding(
        rule=finding.rule,
        operation=finding.operation,
        message=mask_text(finding.message, record_keys=True),
        severity=finding.severity,
        evidence=None if finding.evidence is None else mask_exchange(finding.evidence),
        accepted=finding.accepted,
        baseline_expired=finding.baseline_expired,
    )
