"""The adapter's error root and the errors shared by every part of it.

Each error has a `reason`, a short machine-readable slug for metrics, logs and problem
documents, and a human message that never carries key material, secrets or personal data.
"""

from __future__ import annotations

from typing import ClassVar


class AdapterError(Exception):
    """Root of every error the adapter raises on purpose."""

    default_reason: ClassVar[str] = "adapter_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason if reason is not None else self.default_reason

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class ConfigurationError(AdapterError):
    """The configuration is missing something or holds a value the adapter cannot use."""

    default_reason = "configuration"


class CryptoError(AdapterError):
    """Field encryption or blind indexing failed."""

    default_reason = "crypto"


class KeyNotFoundError(CryptoError):
    """A token names a key id that is not in the key ring."""

    default_reason = "unknown_key_id"

    def __init__(self, kid: str, message: str | None = None) -> None:
        super().__init__(
            message
            if message is not None
            else (
                f"no key with id {kid!r} in ENCRYPTION_KEYS; if it was retired too early, "
                "add it back as a decrypt-only entry (after the active one)"
            )
        )
        self.kid = kid


class DecryptionError(CryptoError):
    """A token is malformed, altered, or belongs to another row, column or table."""

    default_reason = "decryption_failed"
