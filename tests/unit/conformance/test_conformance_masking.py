"""Personal data and secrets never reach a report: evidence and messages are masked."""

from __future__ import annotations

import json

import pytest

from adapter.observability.logging import REDACTED
from conformance.findings import Exchange, Finding
from conformance.masking import (
    mask_body,
    mask_exchange,
    mask_finding,
    mask_quoted,
    mask_text,
    mask_value,
)

NIK = "3171015708900042"
NIP = "199008172015032001"


def _exchange(body: dict[str, object]) -> Exchange:
    return Exchange(
        method="POST",
        url="https://kki.example/v1/registrations/lookup?client_secret=s3cret&limit=5",
        request_headers={"X-API-Key": "live-key", "Authorization": "Bearer abc.def.ghi"},
        request_body=json.dumps({"nik": NIK}),
        status=200,
        response_headers={"content-type": "application/json"},
        response_body=json.dumps(body),
    )


def test_personal_fields_are_masked_in_bodies() -> None:
    masked = mask_exchange(
        _exchange(
            {
                "data": [
                    {
                        "nik": NIK,
                        "nip": NIP,
                        "full_name": "Siti Rahmawati",
                        "display_name": "dr. Siti Rahmawati, Sp.A",
                        "phone": "+62 812-3456-7890",
                        "email": "siti@example.id",
                        "address": {"line": "Jl. Merdeka 1"},
                        "birth_date": "1990-08-17",
                        "str_number": "QZ00011234567890",
                    }
                ]
            }
        )
    )
    text = (masked.response_body or "") + (masked.request_body or "")
    for secret in (NIK, NIP, "Rahmawati", "+62 812", "siti@example.id", "Merdeka"):
        assert secret not in text
    record = json.loads(masked.response_body or "")["data"][0]
    assert record["nik"].startswith("3171")
    assert record["nik"].endswith("0042")
    assert record["full_name"].startswith("S")
    assert record["str_number"] == "QZ00011234567890"  # not personal: needed to find the record


def test_credentials_are_masked_in_headers_and_query() -> None:
    masked = mask_exchange(_exchange({}))
    assert "live-key" not in json.dumps(masked.request_headers)
    assert "abc.def.ghi" not in json.dumps(masked.request_headers)
    assert masked.request_headers["Authorization"].startswith("Bearer ")
    assert "s3cret" not in masked.url
    assert "limit=5" in masked.url
    assert "live-key" not in masked.curl()


def test_form_body_secret_is_masked() -> None:
    exchange = Exchange(
        method="POST",
        url="https://sisdmk.example/oauth2/v1/accesstoken?grant_type=client_credentials",
        request_headers={},
        request_body="client_id=dev&client_secret=hunter2",
    )
    masked = mask_exchange(exchange)
    assert "hunter2" not in (masked.request_body or "")
    assert "client_id=dev" in (masked.request_body or "")


def test_numbers_and_emails_in_messages_are_masked() -> None:
    text = mask_text(f"NIK {NIK} of siti@example.id, NIP {NIP}, phone +62 812-3456-7890")
    assert NIK not in text
    assert NIP not in text
    assert "siti@example.id" not in text
    assert "3456" not in text


def test_masked_finding_keeps_rule_operation_and_verdict() -> None:
    finding = Finding("domain/nik-structure", "listHealthWorkers", f"NIK {NIK} is impossible")
    finding.accepted = "known"
    masked = mask_finding(finding)
    assert (masked.rule, masked.operation, masked.accepted) == (
        "domain/nik-structure",
        "listHealthWorkers",
        "known",
    )
    assert NIK not in masked.message


def test_a_long_page_is_masked_before_it_is_cut() -> None:
    people = [
        {
            "nik": NIK,
            "full_name": f"Budi Santoso {i}",
            "birth_place": "Pekalongan",
            "phone": "081234567890",
            "str_number": f"QZ{i:014d}",
        }
        for i in range(60)
    ]
    masked = mask_exchange(_exchange({"data": people}))
    body = masked.response_body or ""
    assert "more characters]" in body, "the page is longer than a report shows"
    for secret in (NIK, "Santoso", "Pekalongan", "081234567890"):
        assert secret not in body


def test_json_that_does_not_parse_is_not_shown() -> None:
    broken = '{"data": [{"full_name": "Budi Santoso", "birth_place": "Pekalongan"'
    masked = mask_exchange(_exchange({}).with_changes(response_body=broken))
    assert "Santoso" not in (masked.response_body or "")
    assert "Pekalongan" not in (masked.response_body or "")


def test_a_verifiers_quoted_values_and_local_phones_are_masked() -> None:
    detail = (
        "$.data[0].full_name: Expected 'Siti Rahmawati' to be equal to 'Budi Santoso'; "
        "phone 081234567890"
    )
    masked = mask_quoted(detail)
    for secret in ("Rahmawati", "Santoso", "081234567890"):
        assert secret not in masked
    assert "$.data[0].full_name" in masked


OLD_STR = "3221133367807823"  # an old 16-digit KKI STR number: province, year, serial


def test_an_old_kki_str_number_stays_readable_where_a_nik_is_masked() -> None:
    exchange = Exchange(
        method="GET",
        url=f"https://kki.example/v1/registrations/{OLD_STR}/skp?nik={NIK}&str_number={OLD_STR}",
        request_headers={},
        request_body=None,
        status=200,
        response_headers={},
        response_body=json.dumps({"str_number": OLD_STR, "nik": NIK, "full_name": "Siti R"}),
    )
    finding = Finding(
        "domain/str-citizen-lifetime",
        "listRegistrations",
        f"record {OLD_STR}: STR {OLD_STR} of a citizen has an end date; NIK {NIK}",
        evidence=exchange,
    )
    masked = mask_finding(finding)
    assert masked.message.startswith(f"record {OLD_STR}: STR {OLD_STR} of a citizen")
    assert masked.evidence is not None
    curl = masked.evidence.curl()
    assert f"/v1/registrations/{OLD_STR}/skp" in curl
    assert f"str_number={OLD_STR}" in curl
    assert json.loads(masked.evidence.response_body or "")["str_number"] == OLD_STR
    text = masked.message + curl + (masked.evidence.response_body or "")
    assert NIK not in text
    assert "Siti R" not in text


def test_a_16_digit_number_not_named_an_str_is_masked_as_a_possible_nik() -> None:
    # A provider's own text is not the command's "record <key>": there it proves nothing.
    for text in (f"no record {NIK}", f"value {OLD_STR}", f"NIP STR {NIP}"):
        masked = mask_text(text)
        assert NIK not in masked
        assert OLD_STR not in masked
        assert NIP not in masked


def test_a_pact_mismatch_keeps_header_names_and_media_types_readable_not_names() -> None:
    detail = (
        "HeaderMismatch Content-Type: Mismatch with header 'Content-Type': Expected header "
        "'Content-Type' to have value 'application/json' but was 'text/plain; charset=utf-8'; "
        "BodyMismatch $.data[0].full_name: Expected 'Siti Rahmawati' to be equal to "
        "'Budi Santoso'"
    )
    masked = mask_quoted(detail)
    assert "Mismatch with header 'Content-Type'" in masked
    assert "'application/json' but was 'text/plain; charset=utf-8'" in masked
    for secret in ("Rahmawati", "Santoso"):
        assert secret not in masked


def test_the_pacts_own_state_names_stay_readable_what_the_provider_answered_does_not() -> None:
    detail = "state 'one registration exists' answered 400: no 'Budi Santoso'"
    masked = mask_quoted(detail, keep={"one registration exists"})
    assert "'one registration exists'" in masked
    assert "Santoso" not in masked


def test_a_nik_named_an_str_number_by_the_provider_is_masked_an_old_str_is_not() -> None:
    # The provider chooses what it puts in `str_number` and in its error texts: a NIK there is
    # exactly what the command exists to catch, and must not reach a report in clear.
    exchange = Exchange(
        method="GET",
        url=f"https://kki.example/v1/registrations/{NIK}?str_number={NIK}",
        request_headers={},
        request_body=None,
        status=422,
        response_headers={},
        response_body=json.dumps({"str_number": NIK, "detail": f"STR {NIK} is unknown"}),
    )
    finding = Finding(
        "domain/str-format",
        "listRegistrations",
        f"record {NIK}: STR {NIK} does not match; STR number {NIK}",
        evidence=exchange,
    )
    masked = mask_finding(finding)
    assert masked.evidence is not None
    curl = masked.evidence.curl()
    body = masked.evidence.response_body or ""
    assert NIK not in masked.message + curl + body
    assert masked.message.startswith("record 3171••••••••0042: STR 3171••••••••0042")
    assert "/v1/registrations/3171••••••••0042" in curl
    assert json.loads(body)["str_number"] == "3171••••••••0042"

    readable = mask_finding(
        Finding("domain/str-format", "listRegistrations", f"record {OLD_STR}: x")
    )
    assert readable.message == f"record {OLD_STR}: x"


def test_a_nik_in_a_str_number_form_field_is_masked() -> None:
    exchange = Exchange(
        method="POST",
        url="https://kki.example/v1/registrations/lookup",
        request_headers={},
        request_body=f"str_number={NIK}&other={OLD_STR}",
    )
    body = mask_exchange(exchange).request_body or ""
    assert NIK not in body
    assert OLD_STR not in body  # not named an STR number: a possible NIK


def test_only_a_real_media_type_stays_readable_when_quoted() -> None:
    kept = ("application/problem+json", "text/plain; charset=utf-8", "multipart/form-data")
    for value in kept:
        assert mask_quoted(f"but was '{value}'") == f"but was '{value}'"
    for value in ("Siti/Aminah", "text/plain; Budi Santoso", "person/Budi"):
        masked = mask_quoted(f"but was '{value}'")
        for part in ("Aminah", "Santoso", "Budi"):
            assert part not in masked, value


def test_a_nik_sent_as_a_json_number_is_masked_as_its_digits_would_be() -> None:
    masked = mask_value(
        "",
        {
            "str_number": int(NIK),
            "nik": int(NIK),
            "id": float(NIK),  # 3171015708900042.0
            "total": 42,
            "ratio": 0.5,
            "ok": True,
        },
    )
    assert NIK not in json.dumps(masked)
    assert (masked["total"], masked["ratio"], masked["ok"]) == (42, 0.5, True)


def test_a_nik_in_other_digits_named_an_str_number_is_not_left_readable() -> None:
    fullwidth = NIK.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})
    assert mask_value("", {"str_number": fullwidth})["str_number"] != fullwidth


GROUPED_NIKS = (
    "3171 0157 0890 0042",
    "3171-0157-0890-0042",
    "317101-570890-0042",
    "31710157 08900042",
    # Thousands separators, no-break spaces, spaced hyphens, en dashes, slashes, tabs.
    "3.171.015.708.900.042",
    "3171\u00a00157\u00a00890\u00a00042",
    "3171 - 0157 - 0890 - 0042",
    "3171\u20130157\u20130890\u20130042",
    "3171/0157/0890/0042",
    "3171\t0157\t0890\t0042",
    # As two dates: still a NIK's digits.
    "3171-01-57 0890-00-42",
)


def test_a_nik_written_in_groups_is_masked_whatever_the_separator() -> None:
    for grouped in GROUPED_NIKS:
        masked = mask_text(f"detail: NIK {grouped} is not registered")
        # Its first and last four digits kept, the rest masked, the separators in place.
        assert "".join(char for char in masked if char.isdigit()) == "31710042", grouped
        assert masked.startswith("detail: NIK 3"), grouped
        assert masked.endswith("2 is not registered"), grouped


def test_a_nik_written_in_groups_is_masked_in_an_error_body() -> None:
    exchange = Exchange(
        method="POST",
        url="https://kki.example/v1/registrations/lookup",
        request_headers={},
        request_body=None,
        status=404,
        response_headers={},
        response_body=json.dumps({"detail": "no registration for NIK 3171-0157-0890-0042"}),
    )
    body = mask_exchange(exchange).response_body or ""
    assert "0157-0890" not in body
    assert "3171-••••-••••-0042" in body


def test_a_nik_glued_to_other_digits_is_masked() -> None:
    for text in (f"{NIK}7", f"9{NIK}", f"12{NIK}345", f"ref 1 {NIK}", f"{NIK}-01"):
        masked = mask_text(text)
        assert "57089000" not in masked.replace(" ", "").replace("-", ""), text


def test_an_old_str_written_in_groups_stays_readable_where_named_one() -> None:
    grouped = "3221 1333 6780 7823"
    assert mask_text(f"STR {grouped} is unknown") == f"STR {grouped} is unknown"
    assert "1333 6780" not in mask_text(f"value {grouped}")


def test_timestamps_durations_counts_and_uuids_stay_readable() -> None:
    harmless = (
        "2026-12-01T10:20:30.123456Z",
        "valid 2026-12-01 2026-12-31",
        "took 21.6 s, 241 checks, 3 failing",
        "event 12345678-1234-4321-8123-123456789012 delivered",
        "event 550e8400-e29b-41d4-a716-446655440000 delivered",
        'tests="241" failures="0" time="15.800"',
        "at 1733356800123456789 ns",
        "pages 1 2 3 4 5 6 7 8",
    )
    for text in harmless:
        assert mask_text(text) == text


def test_two_dates_that_cannot_be_a_nik_stay_readable() -> None:
    assert mask_text("valid 2026-12-01 2026-12-31") == "valid 2026-12-01 2026-12-31"


@pytest.mark.parametrize(
    "text",
    [
        "subscribed; secret whsec_c2VjcmV0LXNpZ25pbmcta2V5 for signing",
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
    ],
)
def test_webhook_secrets_and_basic_credentials_are_masked_in_text(text: str) -> None:
    masked = mask_text(text)
    assert "c2VjcmV0" not in masked
    assert "dXNlcjpw" not in masked
    assert REDACTED in masked


def test_secret_fields_of_a_form_body_are_masked() -> None:
    body = mask_body("id=9&secret=whsec_c2VjcmV0LXNpZ25pbmcta2V5&api_key=k-123456&n=1") or ""
    assert "c2VjcmV0" not in body
    assert "k-123456" not in body
    assert "id=9" in body


REFRESH = "eyJhbGciOiJIUzUxMiJ9.eyJ0eXAiOiJSZWZyZXNoIn0.c2lnbmF0dXJlLW9mLXRoZS1yZWZyZXNo"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmMifQ.aWQtdG9rZW4tc2lnbmF0dXJl"


def test_every_token_of_a_token_answer_is_masked_in_evidence_and_text() -> None:
    """A realm may hand out refresh (and ID) tokens for client credentials: usable credentials
    that must not reach a CI artifact, under their keys or quoted in free text."""
    answer = {
        "access_token": "opaque-access",
        "refresh_token": REFRESH,
        "id_token": ID_TOKEN,
        "expires_in": 30,
    }
    masked = json.loads(mask_body(json.dumps(answer)) or "")
    assert masked["refresh_token"] == masked["id_token"] == REDACTED
    assert masked["expires_in"] == 30
    text = mask_text(f"the token answer held {REFRESH} and {ID_TOKEN}")
    assert "eyJ" not in text
    assert text.count(REDACTED) == 2


def test_the_adapters_logs_blank_refresh_and_id_tokens_too() -> None:
    from adapter.observability.logging import redact_text

    assert "eyJ" not in redact_text(f"refresh {REFRESH}")
