"""Field encryption, key-ring parsing and the blind index, against the real AES-GCM and HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapter.errors import (
    AdapterError,
    ConfigurationError,
    CryptoError,
    DecryptionError,
    KeyNotFoundError,
)
from adapter.store.crypto import (
    BlindIndex,
    FieldCipher,
    FieldContext,
    Key,
    KeyRing,
    decrypt_fields,
    encrypt_fields,
)

ROW_ID = "0f6b1d8e-3c1a-4c55-9d1e-2b7f4a9e8c01"
OTHER_ROW_ID = "7d2c9a40-58e3-4f0b-a6d2-91c0e5b3f7aa"
CONTEXT = FieldContext("health_worker", "nik", ROW_ID)
NIK = "3174054506900012"  # synthetic
MATERIAL_1 = bytes(range(32))
MATERIAL_2 = bytes(range(100, 132))
MATERIAL_3 = bytes(range(200, 232))
TOKEN_PATTERN = re.compile(r"v1\.[a-z0-9-]{1,32}\.[A-Za-z0-9_-]+")


def b64url(data: bytes, *, padded: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(data).decode("ascii")
    return encoded if padded else encoded.rstrip("=")


def entry(kid: str, material: bytes) -> str:
    return f"{kid}:{b64url(material)}"


def cipher_for(*entries: str) -> FieldCipher:
    return FieldCipher(KeyRing.parse(",".join(entries)))


def secret_renderings(material: bytes) -> list[str]:
    """Every way key bytes could plausibly leak into a message or repr."""
    return [
        b64url(material),
        b64url(material, padded=True),
        base64.b64encode(material).decode("ascii"),
        material.hex(),
        repr(material),
    ]


@pytest.fixture
def cipher() -> FieldCipher:
    return cipher_for(entry("k1", MATERIAL_1))


# -- encryption and decryption ------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext", [NIK, "Siti Rahayu, S.Kep., Ners", "", "Jl. Merdeka No. 1 — Ambon ☀", "x" * 5000]
)
def test_encrypt_round_trips_any_text(cipher: FieldCipher, plaintext: str) -> None:
    token = cipher.encrypt(plaintext, context=CONTEXT)

    assert cipher.decrypt(token, context=CONTEXT) == plaintext


def test_encrypt_produces_an_ascii_v1_token_naming_the_active_key(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NIK, context=CONTEXT)

    assert TOKEN_PATTERN.fullmatch(token)
    assert token.startswith("v1.k1.")
    assert token.isascii()
    assert NIK not in token


def test_encrypt_twice_gives_different_tokens(cipher: FieldCipher) -> None:
    assert cipher.encrypt(NIK, context=CONTEXT) != cipher.encrypt(NIK, context=CONTEXT)


def test_decrypt_accepts_a_token_built_to_the_documented_format() -> None:
    """Pins the on-disk format: AAD is each of label, version, kid, table, column, row id as a
    4-byte big-endian length then UTF-8 bytes. Stored tokens must keep decrypting."""
    nonce = bytes(range(12))
    parts = ["hf-adapter/field/v1", "v1", "k1", "health_worker", "nik", ROW_ID]
    aad = b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)
    sealed = AESGCM(MATERIAL_1).encrypt(nonce, NIK.encode(), aad)
    token = f"v1.k1.{b64url(nonce + sealed)}"
    cipher = cipher_for(entry("k1", MATERIAL_1))

    assert cipher.decrypt(token, context=CONTEXT) == NIK
    # The row helpers build the same associated data (once per row, not per field).
    assert decrypt_fields(cipher, "health_worker", ROW_ID, {"nik": token}) == {"nik": NIK}
    made = encrypt_fields(cipher, "health_worker", ROW_ID, {"nik": NIK})["nik"]
    assert made is not None
    body = base64.urlsafe_b64decode(made.removeprefix("v1.k1.") + "==")
    assert AESGCM(MATERIAL_1).decrypt(body[:12], body[12:], aad) == NIK.encode()


@pytest.mark.parametrize(
    "elsewhere",
    [
        FieldContext("health_worker", "nik", OTHER_ROW_ID),
        FieldContext("health_worker", "full_name", ROW_ID),
        FieldContext("identity_link", "nik", ROW_ID),
        FieldContext("health_worker", "nik", ROW_ID.upper()),
    ],
    ids=["other-row", "other-column", "other-table", "row-id-spelled-differently"],
)
def test_decrypt_fails_when_token_moved_elsewhere(
    cipher: FieldCipher, elsewhere: FieldContext
) -> None:
    token = cipher.encrypt(NIK, context=CONTEXT)

    with pytest.raises(DecryptionError) as caught:
        cipher.decrypt(token, context=elsewhere)

    assert caught.value.reason == "decryption_failed"
    assert NIK not in str(caught.value)


def test_context_parts_cannot_be_shifted_between_fields(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NIK, context=FieldContext("ab", "c", ROW_ID))

    with pytest.raises(DecryptionError):
        cipher.decrypt(token, context=FieldContext("a", "bc", ROW_ID))


def test_decrypt_fails_when_any_byte_of_the_token_body_is_altered(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NIK, context=CONTEXT)
    prefix, body = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))

    for index in range(len(raw)):
        altered = bytearray(raw)
        altered[index] ^= 0x01
        with pytest.raises(DecryptionError):
            cipher.decrypt(f"{prefix}.{b64url(bytes(altered))}", context=CONTEXT)


def test_decrypt_fails_when_token_relabelled_with_another_kid() -> None:
    cipher = cipher_for(entry("k1", MATERIAL_1), entry("k2", MATERIAL_2))
    token = cipher.encrypt(NIK, context=CONTEXT)

    with pytest.raises(DecryptionError):
        cipher.decrypt(token.replace("v1.k1.", "v1.k2.", 1), context=CONTEXT)


def test_decrypt_fails_when_token_truncated(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NIK, context=CONTEXT)

    with pytest.raises(DecryptionError):
        cipher.decrypt(token[:-4], context=CONTEXT)


@pytest.mark.parametrize(
    "token",
    [
        "",
        NIK,
        "v1",
        "v1.k1",
        "v2.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.K1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAA+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "v1.k1.AAAAA",
        "v1.k1.AAAA",
        "v1.k1.AAAA.AAAA",
    ],
)
def test_decrypt_rejects_malformed_tokens(cipher: FieldCipher, token: str) -> None:
    with pytest.raises(DecryptionError) as caught:
        cipher.decrypt(token, context=CONTEXT)

    assert isinstance(caught.value, CryptoError)
    assert isinstance(caught.value, AdapterError)


def test_decrypt_unknown_kid_raises_key_not_found(cipher: FieldCipher) -> None:
    token = cipher_for(entry("k9", MATERIAL_2)).encrypt(NIK, context=CONTEXT)

    with pytest.raises(KeyNotFoundError) as caught:
        cipher.decrypt(token, context=CONTEXT)

    assert caught.value.reason == "unknown_key_id"
    assert caught.value.kid == "k9"
    assert "'k9'" in str(caught.value)
    assert isinstance(caught.value, CryptoError)


# -- rotation -----------------------------------------------------------------------------


def test_old_tokens_decrypt_after_a_new_active_key_is_added() -> None:
    before = cipher_for(entry("k1", MATERIAL_1))
    old_token = before.encrypt(NIK, context=CONTEXT)
    after = cipher_for(entry("k2", MATERIAL_2), entry("k1", MATERIAL_1))

    assert after.decrypt(old_token, context=CONTEXT) == NIK
    assert after.needs_rotation(old_token)
    assert not before.needs_rotation(old_token)
    assert after.encrypt(NIK, context=CONTEXT).startswith("v1.k2.")


def test_reencrypt_moves_a_token_to_the_active_key() -> None:
    old_token = cipher_for(entry("k1", MATERIAL_1)).encrypt(NIK, context=CONTEXT)
    rotating = cipher_for(entry("k2", MATERIAL_2), entry("k1", MATERIAL_1))

    new_token = rotating.reencrypt(old_token, CONTEXT)

    assert new_token.startswith("v1.k2.")
    assert not rotating.needs_rotation(new_token)
    retired = cipher_for(entry("k2", MATERIAL_2))
    assert retired.decrypt(new_token, context=CONTEXT) == NIK
    with pytest.raises(KeyNotFoundError):
        retired.decrypt(old_token, context=CONTEXT)


def test_reencrypt_refuses_a_token_from_another_row() -> None:
    old_token = cipher_for(entry("k1", MATERIAL_1)).encrypt(NIK, context=CONTEXT)
    rotating = cipher_for(entry("k2", MATERIAL_2), entry("k1", MATERIAL_1))

    with pytest.raises(DecryptionError):
        rotating.reencrypt(old_token, FieldContext("health_worker", "nik", OTHER_ROW_ID))


def test_needs_rotation_is_true_for_a_kid_no_longer_in_the_ring(cipher: FieldCipher) -> None:
    token = cipher_for(entry("k0", MATERIAL_2)).encrypt(NIK, context=CONTEXT)

    assert cipher.needs_rotation(token)


def test_needs_rotation_rejects_malformed_tokens(cipher: FieldCipher) -> None:
    with pytest.raises(DecryptionError):
        cipher.needs_rotation("not-a-token")


# -- nonces -------------------------------------------------------------------------------


def test_nonces_are_unique_over_10000_encryptions(cipher: FieldCipher) -> None:
    nonces = set()
    for _ in range(10_000):
        body = cipher.encrypt(NIK, context=CONTEXT).rsplit(".", 1)[1]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        nonces.add(raw[:12])

    assert len(nonces) == 10_000


# -- key parsing --------------------------------------------------------------------------


def test_parse_takes_the_first_entry_as_active() -> None:
    ring = KeyRing.parse(f"{entry('k2', MATERIAL_2)},{entry('k1', MATERIAL_1)}")

    assert ring.active.kid == "k2"
    assert ring.kids == ("k2", "k1")
    assert ring.get("k1").material == MATERIAL_1


def test_parse_accepts_padding_and_spaces_around_entries() -> None:
    value = f"  k1:{b64url(MATERIAL_1, padded=True)} ,\tk2:{b64url(MATERIAL_2)}  "

    assert KeyRing.parse(value).kids == ("k1", "k2")


def test_get_unknown_kid_raises_key_not_found() -> None:
    with pytest.raises(KeyNotFoundError):
        KeyRing.parse(entry("k1", MATERIAL_1)).get("k2")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "ENCRYPTION_KEYS: empty"),
        ("   ", "ENCRYPTION_KEYS: empty"),
        (b64url(MATERIAL_1), "entry 1 of 1: no ':' between the key id and the key"),
        (entry("K1", MATERIAL_1), "entry 1 of 1: key id must be 1-32 characters of a-z"),
        (entry("k" * 33, MATERIAL_1), "entry 1 of 1: key id must be 1-32 characters"),
        (entry("k_1", MATERIAL_1), "entry 1 of 1: key id must be 1-32 characters"),
        (":" + b64url(MATERIAL_1), "entry 1 of 1: key id must be 1-32 characters"),
        ("k1:", "entry 1 of 1: key 'k1' has nothing after ':'"),
        (
            "k1:" + base64.b64encode(b"\xfb" * 32).decode(),
            "key 'k1' is standard base64 ('+' or '/'); write it as base64url",
        ),
        ("k1:" + b64url(MATERIAL_1)[:-1] + "$", "key 'k1' is not base64url"),
        ("k1:" + b64url(MATERIAL_1) + "AA", "key 'k1' is not valid base64url"),
        (
            "k1:" + b64url(MATERIAL_1[:16]),
            "key 'k1' decodes to 16 bytes; AES-256 needs exactly 32",
        ),
        (
            "k1:" + b64url(MATERIAL_1 + b"\x00"),
            "key 'k1' decodes to 33 bytes; AES-256 needs exactly 32",
        ),
        (
            f"{entry('k1', MATERIAL_1)},{entry('k1', MATERIAL_2)}",
            "key id 'k1' is used twice (entries 1 and 2)",
        ),
        (
            f"{entry('k1', MATERIAL_1)},{entry('k2', MATERIAL_1)}",
            "entries 1 and 2 ('k1' and 'k2') hold the same key",
        ),
        (f"{entry('k1', MATERIAL_1)},", "entry 2 of 2: empty (a stray comma?)"),
    ],
)
def test_parse_explains_each_bad_value(value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        KeyRing.parse(value)

    message = str(caught.value)
    assert expected in message
    assert message.startswith("ENCRYPTION_KEYS: ")
    assert "hf-adapter keys generate" in message
    assert caught.value.reason == "configuration"
    for material in (MATERIAL_1, MATERIAL_2):
        for rendering in secret_renderings(material):
            assert rendering not in message


def test_parse_lists_every_bad_entry() -> None:
    value = ",".join(
        ["k1:" + b64url(MATERIAL_1[:8]), entry("k2", MATERIAL_2), "oops", entry("BAD", MATERIAL_3)]
    )

    with pytest.raises(ConfigurationError) as caught:
        KeyRing.parse(value)

    message = str(caught.value)
    assert "entry 1 of 4: key 'k1' decodes to 8 bytes" in message
    assert "entry 3 of 4: no ':'" in message
    assert "entry 4 of 4: key id must be" in message
    assert "entry 2" not in message


def test_parse_blind_index_key_reads_one_entry() -> None:
    key = Key.parse(f" {entry('bidx-1', MATERIAL_3)} ", variable="BLIND_INDEX_KEY")

    assert key.kid == "bidx-1"
    assert key.material == MATERIAL_3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"{entry('b1', MATERIAL_1)},{entry('b2', MATERIAL_2)}", "holds exactly one"),
        ("b1:" + b64url(MATERIAL_3[:31]), "key 'b1' decodes to 31 bytes"),
        ("", "empty"),
    ],
)
def test_parse_blind_index_key_explains_bad_values(value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Key.parse(value, variable="BLIND_INDEX_KEY")

    message = str(caught.value)
    assert message.startswith("BLIND_INDEX_KEY: ")
    assert expected in message
    for material in (MATERIAL_1, MATERIAL_2, MATERIAL_3):
        for rendering in secret_renderings(material):
            assert rendering not in message


def test_generate_key_entry_makes_a_parseable_random_32_byte_key() -> None:
    first = KeyRing.generate_key_entry("2025-06")
    second = KeyRing.generate_key_entry("2025-06")

    kid, _, encoded = first.partition(":")
    assert kid == "2025-06"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", encoded)
    assert KeyRing.parse(first).active.material != KeyRing.parse(second).active.material
    assert len(KeyRing.parse(first).active.material) == 32


@pytest.mark.parametrize("kid", ["", "Key", "k" * 33, "k.1", "k 1"])
def test_generate_key_entry_rejects_bad_kids(kid: str) -> None:
    with pytest.raises(ConfigurationError, match="key id must be"):
        KeyRing.generate_key_entry(kid)


def test_holds_finds_the_same_material_under_any_kid() -> None:
    ring = KeyRing.parse(f"{entry('k1', MATERIAL_1)},{entry('k2', MATERIAL_2)}")

    assert ring.holds(Key("other", MATERIAL_2))
    assert not ring.holds(Key("k1", MATERIAL_3))


def test_key_rejects_wrong_length_material() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Key("k1", b"short")


# -- nothing secret leaks -----------------------------------------------------------------


def test_reprs_never_show_key_material() -> None:
    ring = KeyRing.parse(f"{entry('k2', MATERIAL_2)},{entry('k1', MATERIAL_1)}")
    objects = [
        ring,
        FieldCipher(ring),
        ring.active,
        BlindIndex(Key("bidx", MATERIAL_3)),
    ]

    for shown in [text for obj in objects for text in (repr(obj), str(obj))]:
        for material in (MATERIAL_1, MATERIAL_2, MATERIAL_3):
            for rendering in secret_renderings(material):
                assert rendering not in shown
    assert repr(ring) == "KeyRing(active='k2', decrypt_only=('k1',))"
    assert repr(FieldCipher(ring)) == "FieldCipher(KeyRing(active='k2', decrypt_only=('k1',)))"


def test_decryption_errors_never_show_plaintext_or_keys(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NIK, context=CONTEXT)
    failures: list[CryptoError] = []
    attempts: list[Callable[[], str]] = [
        lambda: cipher.decrypt(token, context=FieldContext("health_worker", "nik", OTHER_ROW_ID)),
        lambda: cipher.decrypt(token[:-3] + "AAA", context=CONTEXT),
        lambda: cipher_for(entry("k2", MATERIAL_2)).decrypt(token, context=CONTEXT),
        lambda: cipher.decrypt(NIK, context=CONTEXT),
    ]
    for attempt in attempts:
        with pytest.raises(CryptoError) as caught:
            attempt()
        failures.append(caught.value)

    for failure in failures:
        for shown in (str(failure), repr(failure)):
            assert NIK not in shown
            assert token not in shown
            for rendering in secret_renderings(MATERIAL_1):
                assert rendering not in shown
        assert failure.__cause__ is None


def test_decryption_error_names_the_field_it_failed_on(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NIK, context=CONTEXT)

    with pytest.raises(DecryptionError, match=f"health_worker.full_name of row {ROW_ID}"):
        cipher.decrypt(token, context=FieldContext("health_worker", "full_name", ROW_ID))


# -- repository helpers -------------------------------------------------------------------


def test_encrypt_fields_round_trips_a_row_and_keeps_nulls(cipher: FieldCipher) -> None:
    row = {"nik": NIK, "full_name": "Siti Rahayu", "phone": None}

    stored = encrypt_fields(cipher, "health_worker", ROW_ID, row)

    assert stored["phone"] is None
    assert all(TOKEN_PATTERN.fullmatch(stored[column] or "") for column in ("nik", "full_name"))
    assert decrypt_fields(cipher, "health_worker", ROW_ID, stored) == row


def test_decrypt_fields_refuses_values_swapped_between_columns(cipher: FieldCipher) -> None:
    stored = encrypt_fields(cipher, "health_worker", ROW_ID, {"nik": NIK, "full_name": "Siti"})
    swapped = {"nik": stored["full_name"], "full_name": stored["nik"]}

    with pytest.raises(DecryptionError):
        decrypt_fields(cipher, "health_worker", ROW_ID, swapped)


def test_field_helpers_treat_a_uuid_and_its_text_as_the_same_row(cipher: FieldCipher) -> None:
    stored = encrypt_fields(cipher, "health_worker", uuid.UUID(ROW_ID), {"nik": NIK})

    assert decrypt_fields(cipher, "health_worker", ROW_ID, stored) == {"nik": NIK}


@pytest.mark.parametrize(
    ("table", "column", "row_id"),
    [("", "nik", ROW_ID), ("health_worker", "", ROW_ID), ("health_worker", "nik", "")],
)
def test_field_context_rejects_empty_parts(table: str, column: str, row_id: str) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        FieldContext(table, column, row_id)


@pytest.mark.parametrize(
    ("table", "column", "row_id"),
    [("", "nik", ROW_ID), ("health_worker", "", ROW_ID), ("health_worker", "nik", "")],
)
def test_field_helpers_reject_empty_parts(
    cipher: FieldCipher, table: str, column: str, row_id: str
) -> None:
    token = cipher.encrypt(NIK, context=CONTEXT)
    with pytest.raises(ValueError, match="must not be empty"):
        encrypt_fields(cipher, table, row_id, {column: NIK})
    with pytest.raises(ValueError, match="must not be empty"):
        decrypt_fields(cipher, table, row_id, {column: token})


# -- blind index --------------------------------------------------------------------------


@pytest.fixture
def blind_index() -> BlindIndex:
    return BlindIndex(Key("bidx-1", MATERIAL_3))


def test_blind_index_matches_a_documented_hmac(blind_index: BlindIndex) -> None:
    """Pins the digest input: label, purpose and normalised value, each length-prefixed."""
    parts = ["hf-adapter/blind-index/v1", "nik", NIK]
    message = b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)
    expected = hmac.new(MATERIAL_3, message, hashlib.sha256).hexdigest()

    assert blind_index.digest(NIK, purpose="nik") == expected
    assert re.fullmatch(r"[0-9a-f]{64}", expected)


@pytest.mark.parametrize(
    "spelling",
    [
        "3174 0545 0690 0012",
        "3174-0545-0690-0012",
        " 3174054506900012\n",
        "\uff13\uff11\uff17\uff14054506900012",  # the first four digits full-width
    ],
)
def test_blind_index_normalises_a_nik_to_its_digits(blind_index: BlindIndex, spelling: str) -> None:
    assert blind_index.digest(spelling, purpose="nik") == blind_index.digest(NIK, purpose="nik")


def test_blind_index_separates_purposes(blind_index: BlindIndex) -> None:
    assert blind_index.digest(NIK, purpose="nik") != blind_index.digest(NIK, purpose="nip")


def test_blind_index_depends_on_the_key(blind_index: BlindIndex) -> None:
    other = BlindIndex(Key("bidx-2", MATERIAL_1))

    assert blind_index.digest(NIK, purpose="nik") != other.digest(NIK, purpose="nik")
    assert blind_index.kid == "bidx-1"


def test_blind_index_during_a_key_change_digests_new_values_under_the_current_key() -> None:
    old = BlindIndex(Key("bidx-1", MATERIAL_3))
    new = BlindIndex(Key("bidx-2", MATERIAL_1))
    during = BlindIndex(Key("bidx-2", MATERIAL_1), Key("bidx-1", MATERIAL_3))

    assert during.kid == "bidx-2"
    assert during.kids == ("bidx-2", "bidx-1")
    assert during.digest(NIK, purpose="nik") == new.digest(NIK, purpose="nik")
    # Look-ups try the current key's digest first, then the previous key's.
    assert during.digests(NIK, purpose="nik") == (
        new.digest(NIK, purpose="nik"),
        old.digest(NIK, purpose="nik"),
    )
    assert new.digests(NIK, purpose="nik") == (new.digest(NIK, purpose="nik"),)
    assert new.kids == ("bidx-2",)


def test_blind_index_check_values_tell_keys_apart_and_not_the_key() -> None:
    during = BlindIndex(Key("bidx-2", MATERIAL_1), Key("bidx-1", MATERIAL_3))
    impostor = BlindIndex(Key("bidx-1", MATERIAL_1))

    values = during.check_values()

    assert list(values) == ["bidx-2", "bidx-1"]
    assert values["bidx-1"] == BlindIndex(Key("bidx-1", MATERIAL_3)).check_values()["bidx-1"]
    assert impostor.check_values()["bidx-1"] != values["bidx-1"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in values.values())
    # Never a digest any value could have.
    assert values["bidx-1"] not in BlindIndex(Key("bidx-1", MATERIAL_3)).digests(NIK, purpose="nik")


@pytest.mark.parametrize(
    "previous", [Key("bidx-1", MATERIAL_1), Key("bidx-0", MATERIAL_3)], ids=["same id", "same key"]
)
def test_blind_index_refuses_a_previous_key_like_the_current_one(previous: Key) -> None:
    with pytest.raises(ConfigurationError, match="must differ from the current one"):
        BlindIndex(Key("bidx-1", MATERIAL_3), previous)


def test_blind_index_normalises_other_purposes_by_case_and_spacing(
    blind_index: BlindIndex,
) -> None:
    assert blind_index.digest("  Siti@Example.ORG ", purpose="email") == blind_index.digest(
        "siti@example.org", purpose="email"
    )


def test_blind_index_refuses_a_value_with_nothing_to_index(blind_index: BlindIndex) -> None:
    with pytest.raises(ValueError, match="nothing left to index"):
        blind_index.digest("n/a", purpose="nik")


@pytest.mark.parametrize("purpose", ["", "NIK", "nik hash", "x" * 65])
def test_blind_index_rejects_bad_purposes(blind_index: BlindIndex, purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose must be"):
        blind_index.digest(NIK, purpose=purpose)


# -- error classes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AdapterError("x"), "adapter_error"),
        (ConfigurationError("x"), "configuration"),
        (CryptoError("x"), "crypto"),
        (KeyNotFoundError("k1"), "unknown_key_id"),
        (DecryptionError("x"), "decryption_failed"),
    ],
)
def test_each_error_class_has_its_reason(error: AdapterError, reason: str) -> None:
    assert error.reason == reason
    assert isinstance(error, AdapterError)
