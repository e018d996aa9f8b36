"""Field encryption for personal data: the key ring, AES-256-GCM field tokens, the blind index.

``ENCRYPTION_KEYS`` is a comma-separated list of ``kid:key`` entries, e.g.
``2025-06:Jp3...,2025-01:q8Z...``. ``kid`` is 1-32 characters of ``a-z``, ``0-9`` and ``-``,
unique in the list; ``key`` is 32 random bytes in base64url (``-`` and ``_``; the ``=`` padding
may be left out). The first entry is the active key and encrypts everything new; the others only
decrypt, so a key is rotated by putting a new entry first and keeping the old one until every
token has been re-encrypted. Spaces around entries are ignored.

``BLIND_INDEX_KEY`` is a single ``kid:key`` entry of the same shape, used only for the HMAC blind
index; it must not be one of the encryption keys. While the blind-index key is being changed,
``BLIND_INDEX_PREVIOUS_KEY`` holds the key it replaces: look-ups try both until
``hf-adapter keys reindex`` has recomputed every stored digest under the new one.

A field token is ``v1.<kid>.<base64url(nonce || ciphertext || tag)>``: ASCII, unpadded, with a
random 96-bit nonce. The associated data binds the token to its table, column and row id, so a
token copied to another row, column or table fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapter.errors import ConfigurationError, DecryptionError, KeyNotFoundError

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
TOKEN_VERSION: Final = "v1"  # noqa: S105 - a format version, not a secret
KEYS_GENERATE_HINT: Final = "generate one with `hf-adapter keys generate`"

_KID = re.compile(r"[a-z0-9-]{1,32}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_TOKEN_BODY = re.compile(r"[A-Za-z0-9_-]+")
_PURPOSE = re.compile(r"[a-z0-9_.-]{1,64}")
_NOT_ASCII_DIGIT = re.compile(r"[^0-9]")
_KID_RULE: Final = "1-32 characters of a-z, 0-9 and '-'"
# Domain-separation labels: a field token's associated data and a blind-index input can never
# be mistaken for each other, nor for anything a later version computes.
_FIELD_AAD_LABEL: Final = "hf-adapter/field/v1"
_BLIND_INDEX_LABEL: Final = "hf-adapter/blind-index/v1"
_KEY_CHECK_LABEL: Final = "hf-adapter/blind-index-key-check/v1"


@dataclass(frozen=True, eq=False)
class Key:
    """A 256-bit secret and its key id; ``repr()`` shows the id only."""

    kid: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KID.fullmatch(self.kid):
            raise ValueError(f"key id must be {_KID_RULE}")
        if len(self.material) != KEY_BYTES:
            raise ValueError(f"key must be {KEY_BYTES} bytes, got {len(self.material)}")

    @classmethod
    def parse(cls, entry: str, *, variable: str) -> Key:
        """One ``kid:base64url(32 bytes)`` entry, or `ConfigurationError` naming `variable`."""
        if "," in entry:
            raise ConfigurationError(
                f"{variable}: holds exactly one 'kid:key' entry, found {entry.count(',') + 1}"
            )
        key, problem = _parse_entry(entry.strip())
        if key is None:
            raise ConfigurationError(f"{variable}: {problem}; {KEYS_GENERATE_HINT}")
        return key


class KeyRing:
    """The encryption keys: the first is active (encrypts), the others only decrypt."""

    def __init__(self, keys: Sequence[Key]) -> None:
        if not keys:
            raise ConfigurationError("a key ring needs at least one key")
        kids = [key.kid for key in keys]
        if len(set(kids)) != len(kids):
            raise ConfigurationError("key ids in a key ring must be unique")
        self._keys: tuple[Key, ...] = tuple(keys)
        self._by_kid = {key.kid: key for key in keys}

    @classmethod
    def parse(cls, value: str, *, variable: str = "ENCRYPTION_KEYS") -> KeyRing:
        """Parse a key ring (``ENCRYPTION_KEYS``, ``AUDIT_KEYS``); the `ConfigurationError` names
        `variable` and lists every bad entry."""
        if not value.strip():
            raise ConfigurationError(f"{variable}: empty; {KEYS_GENERATE_HINT}")
        entries = value.split(",")
        problems: list[str] = []
        keys: list[tuple[int, Key]] = []
        for position, entry in enumerate(entries, start=1):
            key, problem = _parse_entry(entry.strip())
            if key is None:
                problems.append(f"entry {position} of {len(entries)}: {problem}")
            else:
                keys.append((position, key))
        problems.extend(_duplicate_problems(keys))
        if problems:
            raise ConfigurationError(
                f"{variable}: "
                + "; ".join(problems)
                + f". Each entry is 'kid:base64url(32 bytes)'; {KEYS_GENERATE_HINT}"
            )
        return cls([key for _, key in keys])

    @staticmethod
    def generate_key_entry(kid: str) -> str:
        """A fresh ``kid:key`` entry from the OS random source, for ``hf-adapter keys generate``."""
        if not _KID.fullmatch(kid):
            raise ConfigurationError(f"key id must be {_KID_RULE}")
        return f"{kid}:{_encode_base64url(os.urandom(KEY_BYTES))}"

    @property
    def active(self) -> Key:
        return self._keys[0]

    @property
    def keys(self) -> tuple[Key, ...]:
        return self._keys

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(key.kid for key in self._keys)

    def get(self, kid: str) -> Key:
        try:
            return self._by_kid[kid]
        except KeyError:
            raise KeyNotFoundError(kid) from None

    def holds(self, key: Key) -> bool:
        """Whether any key in the ring has the same secret as `key` (compared in constant time)."""
        return any(hmac.compare_digest(own.material, key.material) for own in self._keys)

    def __repr__(self) -> str:
        return f"KeyRing(active={self.active.kid!r}, decrypt_only={self.kids[1:]!r})"


@dataclass(frozen=True)
class FieldContext:
    """Where a value lives; bound into the token so it only decrypts there.

    `row_id` is the row's stable id as text (a UUID as ``str(uuid)``), never personal data.
    """

    table: str
    column: str
    row_id: str

    def __post_init__(self) -> None:
        for name in ("table", "column", "row_id"):
            if not getattr(self, name):
                raise ValueError(f"FieldContext.{name} must not be empty")

    def __str__(self) -> str:
        return f"{self.table}.{self.column} of row {self.row_id}"


class FieldCipher:
    """AES-256-GCM encryption of single field values, bound to their `FieldContext`."""

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring
        self._aeads = {key.kid: AESGCM(key.material) for key in keyring.keys}

    @property
    def keyring(self) -> KeyRing:
        return self._keyring

    def encrypt(self, plaintext: str, *, context: FieldContext) -> str:
        """A new token for `plaintext` under the active key (a fresh random nonce every call)."""
        return self._encrypt(plaintext, context.table, context.column, _row_part(context.row_id))

    def decrypt(self, token: str, *, context: FieldContext) -> str:
        """The plaintext of `token`; `DecryptionError` if it was altered or belongs elsewhere."""
        return self._decrypt(token, context.table, context.column, _row_part(context.row_id))

    # The row's part of the associated data is computed once per row and the rest once per
    # key, table and column (`_aad_prefix`): `encrypt_fields` and `decrypt_fields` seal a
    # dozen fields of one row without a `FieldContext` each.

    def _encrypt(self, plaintext: str, table: str, column: str, row: bytes) -> str:
        kid = self._keyring.active.kid
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aeads[kid].encrypt(
            nonce, plaintext.encode("utf-8"), _aad_prefix(kid, table, column) + row
        )
        return f"{TOKEN_VERSION}.{kid}.{_encode_base64url(nonce + sealed)}"

    def _decrypt(self, token: str, table: str, column: str, row: bytes) -> str:
        if not table or not column:
            raise ValueError("a field's table and column must not be empty")
        kid, body = _split_token(token, table, column, row)
        aead = self._aeads.get(kid)
        if aead is None:
            raise KeyNotFoundError(kid)
        nonce, sealed = body[:NONCE_BYTES], body[NONCE_BYTES:]
        try:
            plaintext = aead.decrypt(nonce, sealed, _aad_prefix(kid, table, column) + row)
            return plaintext.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise DecryptionError(
                f"cannot decrypt {_where(table, column, row)}: authentication failed (the "
                "token was altered, or belongs to another row, column or table)"
            ) from None

    def needs_rotation(self, token: str) -> bool:
        """Whether `token` was encrypted under a key other than the active one."""
        kid, _ = _split_token(token)
        return kid != self._keyring.active.kid

    def reencrypt(self, token: str, context: FieldContext) -> str:
        """`token`'s value, checked and encrypted again under the active key with a new nonce."""
        return self.encrypt(self.decrypt(token, context=context), context=context)

    def __repr__(self) -> str:
        return f"FieldCipher({self._keyring!r})"


class BlindIndex:
    """Keyed HMAC-SHA256 digests of normalised values, for exact look-ups without plaintext.

    The purpose label separates domains: a NIK digest never equals any other field's digest.
    New digests are made under `key`; `previous` (during a key change) only helps look-ups find
    rows not yet re-indexed.
    """

    def __init__(self, key: Key, previous: Key | None = None) -> None:
        if previous is not None and (
            previous.kid == key.kid or hmac.compare_digest(previous.material, key.material)
        ):
            raise ConfigurationError(
                "the previous blind-index key must differ from the current one in id and secret"
            )
        self._key = key
        self._previous = previous
        # (key id, purpose) → an HMAC under that key that has taken the label and purpose; each
        # digest copies one instead of setting the key up again. Never updated themselves.
        self._prefixes: dict[tuple[str, str], hmac.HMAC] = {}

    @property
    def kid(self) -> str:
        """Stored next to digests so that a re-index after a key change can find stale rows."""
        return self._key.kid

    @property
    def kids(self) -> tuple[str, ...]:
        """The ids of the keys look-ups use: the current one first, then the previous one."""
        return (self._key.kid,) if self._previous is None else (self._key.kid, self._previous.kid)

    def digest(self, value: str, *, purpose: str) -> str:
        """Lowercase hex HMAC-SHA256 of `value` normalised for `purpose` (``nik``: digits only)."""
        return self._digest(self._key, value, purpose)

    def digests(self, value: str, *, purpose: str) -> tuple[str, ...]:
        """`value`'s digest under each key of `kids`, in that order, for look-ups during a key
        change (a row written under either key is found)."""
        current = self._digest(self._key, value, purpose)
        if self._previous is None:
            return (current,)
        return current, self._digest(self._previous, value, purpose)

    def _digest(self, key: Key, value: str, purpose: str) -> str:
        """HMAC-SHA256 under `key` of `_length_prefixed(label, purpose, normalised)`."""
        prefix = self._prefixes.get((key.kid, purpose))
        if prefix is None:
            prefix = self._prefixes[(key.kid, purpose)] = _keyed_prefix(key, purpose)
        mac = prefix.copy()
        normalised = _normalise(value, purpose=purpose)
        if not normalised:
            raise ValueError(f"nothing left to index for purpose {purpose!r} after normalising")
        mac.update(_length_prefixed(normalised))
        return mac.hexdigest()

    def check_values(self) -> dict[str, str]:
        """Key id → a keyed digest of a fixed label: stored with the first digests under a key,
        it tells whether a later key with the same id is the same key (and says nothing of it)."""
        keys = (self._key,) if self._previous is None else (self._key, self._previous)
        return {
            key.kid: hmac.new(
                key.material, _length_prefixed(_KEY_CHECK_LABEL), hashlib.sha256
            ).hexdigest()
            for key in keys
        }

    def __repr__(self) -> str:
        return f"BlindIndex(kids={self.kids!r})"


def encrypt_fields(
    cipher: FieldCipher,
    table: str,
    row_id: str | uuid.UUID,
    values: Mapping[str, str | None],
) -> dict[str, str | None]:
    """Column name → token for one row; ``None`` stays ``None`` (SQL NULL)."""
    row = _row_part(str(row_id))
    return {
        column: None if value is None else cipher._encrypt(value, table, column, row)
        for column, value in values.items()
    }


def decrypt_fields(
    cipher: FieldCipher,
    table: str,
    row_id: str | uuid.UUID,
    values: Mapping[str, str | None],
) -> dict[str, str | None]:
    """Column name → plaintext for one row, the inverse of `encrypt_fields`."""
    row = _row_part(str(row_id))
    return {
        column: None if token is None else cipher._decrypt(token, table, column, row)
        for column, token in values.items()
    }


# -- internals ----------------------------------------------------------------------------


def _parse_entry(entry: str) -> tuple[Key, None] | tuple[None, str]:
    """The key in one ``kid:key`` entry, or what is wrong with it (never echoing the key)."""
    if not entry:
        return None, "empty (a stray comma?)"
    kid, separator, encoded = entry.partition(":")
    if not separator:
        return None, "no ':' between the key id and the key"
    if not _KID.fullmatch(kid):
        return None, f"key id must be {_KID_RULE}"
    if not encoded:
        return None, f"key {kid!r} has nothing after ':'"
    if not _BASE64URL.fullmatch(encoded):
        if "+" in encoded or "/" in encoded:
            return None, (
                f"key {kid!r} is standard base64 ('+' or '/'); write it as base64url "
                "('-' for '+', '_' for '/')"
            )
        return None, f"key {kid!r} is not base64url (allowed: A-Z a-z 0-9 - _ and '=' padding)"
    try:
        material = _decode_base64url(encoded)
    except (binascii.Error, ValueError):
        return None, f"key {kid!r} is not valid base64url (wrong length)"
    if len(material) != KEY_BYTES:
        return None, (
            f"key {kid!r} decodes to {len(material)} bytes; AES-256 needs exactly {KEY_BYTES}"
        )
    return Key(kid, material), None


def _duplicate_problems(keys: Sequence[tuple[int, Key]]) -> Iterable[str]:
    for index, (position, key) in enumerate(keys):
        for earlier_position, earlier in keys[:index]:
            if earlier.kid == key.kid:
                yield (
                    f"key id {key.kid!r} is used twice (entries {earlier_position} and {position})"
                )
            elif hmac.compare_digest(earlier.material, key.material):
                yield (
                    f"entries {earlier_position} and {position} ({earlier.kid!r} and "
                    f"{key.kid!r}) hold the same key; a rotation needs a new random key"
                )


def _keyed_prefix(key: Key, purpose: str) -> hmac.HMAC:
    """An HMAC under `key` that has taken the label and `purpose` (the purpose checked first)."""
    if not _PURPOSE.fullmatch(purpose):
        raise ValueError("purpose must be 1-64 characters of a-z, 0-9, '_', '.' and '-'")
    return hmac.new(key.material, _length_prefixed(_BLIND_INDEX_LABEL, purpose), hashlib.sha256)


def _split_token(
    token: str, table: str | None = None, column: str = "", row: bytes = b""
) -> tuple[str, bytes]:
    """The key id and raw bytes of a v1 token; `DecryptionError` if it is not one (naming
    where it was read, when `table` is given)."""
    where = f" {_where(table, column, row)}" if table is not None else " token"
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise DecryptionError(f"cannot decrypt{where}: not a {TOKEN_VERSION} field token")
    _, kid, encoded = parts
    if not _KID.fullmatch(kid) or not _TOKEN_BODY.fullmatch(encoded):
        raise DecryptionError(f"cannot decrypt{where}: malformed {TOKEN_VERSION} field token")
    try:
        body = _decode_base64url(encoded)
    except (binascii.Error, ValueError):
        raise DecryptionError(f"cannot decrypt{where}: malformed token body") from None
    if len(body) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError(f"cannot decrypt{where}: token too short")
    return kid, body


# A token's associated data is `_length_prefixed(_FIELD_AAD_LABEL, TOKEN_VERSION, kid, table,
# column, row_id)`, built as `_aad_prefix(kid, table, column) + _row_part(row_id)`.


@functools.lru_cache(maxsize=1024)
def _aad_prefix(kid: str, table: str, column: str) -> bytes:
    """The associated data up to the row id (a handful of tables and columns per key)."""
    if not table or not column:
        raise ValueError("a field's table and column must not be empty")
    return _length_prefixed(_FIELD_AAD_LABEL, TOKEN_VERSION, kid, table, column)


def _row_part(row_id: str) -> bytes:
    """The row id's part of the associated data, its last."""
    if not row_id:
        raise ValueError("a field's row id must not be empty")
    return _length_prefixed(row_id)


def _where(table: str, column: str, row: bytes) -> str:
    """`FieldContext.__str__` from the parts the cipher holds."""
    return f"{table}.{column} of row {row[4:].decode('utf-8')}"


def _length_prefixed(*parts: str) -> bytes:
    """An unambiguous encoding of `parts`: no choice of strings makes two lists encode alike."""
    encoded = bytearray()
    for part in parts:
        data = part.encode("utf-8")
        encoded += len(data).to_bytes(4, "big") + data
    return bytes(encoded)


def _normalise(value: str, *, purpose: str) -> str:
    # NFKC first so that full-width or other compatibility digits index like ASCII ones.
    folded = unicodedata.normalize("NFKC", value)
    if purpose == "nik":
        return _NOT_ASCII_DIGIT.sub("", folded)
    return " ".join(folded.casefold().split())


def _encode_base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode_base64url(text: str) -> bytes:
    """Decode base64url with or without padding; the caller has checked the alphabet."""
    unpadded = text.rstrip("=")
    return base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
