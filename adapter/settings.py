"""All adapter configuration, read from environment variables and validated once at start.

`load_settings()` is the one way in; its `ConfigurationError` names every bad variable and what
to do about it, and never repeats a secret. docs/configuration.md describes each variable.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from adapter.errors import ConfigurationError
from adapter.store.crypto import BlindIndex, FieldCipher, Key, KeyRing

DEFAULT_DATABASE_URL: Final = "sqlite:///var/hf-adapter.sqlite3"
WEBHOOK_SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, not a secret
# Standard Webhooks: a signing secret SHOULD be 24 to 64 bytes.
WEBHOOK_SECRET_MIN_BYTES: Final = 24
WEBHOOK_SECRET_MAX_BYTES: Final = 64

_DATABASE_SCHEMES: Final = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    # psycopg 3 is the installed driver; SQLAlchemy would pick psycopg2 for a bare scheme.
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
_BROKER_SCHEMES: Final = frozenset({"amqp", "amqps"})
# Python's logging reads these as the level named (`logging.getLevelName`).
_LOG_LEVEL_ALIASES: Final = {"WARN": "WARNING", "FATAL": "CRITICAL"}
_SCHEME: Final = re.compile(r"[a-z][a-z0-9+.-]{0,30}")
_STANDARD_BASE64: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_QUEUE_PREFIX: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
MAX_RETRY_TIERS: Final = 10

# What to do when a required variable is missing, by variable name.
_MISSING_HINTS: Final = {
    "OIDC_ISSUER": "Set it to the SSO issuer URL exactly as it appears in the tokens' `iss` "
    "claim, e.g. https://sso.example.go.id/realms/healthforce",
    "OIDC_AUDIENCE": "Set it to the audience the SSO puts in access tokens meant for the "
    "adapter (the `aud` claim), e.g. hf-adapter",
    "KKI_BASE_URL": "Set it to KKI's API base URL, or the mock's (e.g. http://127.0.0.1:8081)",
    "KKI_API_TOKEN": "Set it to the API token KKI issued for HealthForce "
    "(the mock accepts kki-dev-token)",
    "SISDMK_BASE_URL": "Set it to SISDMK's API base URL, or the mock's "
    "(e.g. http://127.0.0.1:8082)",
    "SISDMK_CLIENT_ID": "Set it to the OAuth2 client id SISDMK issued for HealthForce "
    "(the mock accepts sisdmk-dev-client)",
    "SISDMK_CLIENT_SECRET": "Set it to the OAuth2 client secret SISDMK issued for HealthForce "
    "(the mock accepts sisdmk-dev-secret)",
    "KKI_WEBHOOK_SECRET": "Set it to the whsec_... signing secret of the adapter's KKI webhook "
    "subscription",
    "SISDMK_WEBHOOK_SECRET": "Set it to the whsec_... signing secret of the adapter's SISDMK "
    "webhook subscription",
    "ENCRYPTION_KEYS": "Generate one with `hf-adapter keys generate` and set "
    "ENCRYPTION_KEYS=<the printed kid:key>",
    "BLIND_INDEX_KEY": "Generate a separate key with `hf-adapter keys generate` and set "
    "BLIND_INDEX_KEY=<the printed kid:key>",
    "AUDIT_KEYS": "Generate a separate key with `hf-adapter keys generate` and set "
    "AUDIT_KEYS=<the printed kid:key>",
}


def _bad_port(parts: SplitResult) -> bool:
    """Whether a URL's port is not a number from 1 to 65535 (`urlsplit` raises reading it)."""
    try:
        port = parts.port
    except ValueError:
        return True
    return port == 0


class Settings(BaseSettings):
    """The adapter's configuration; build it with `load_settings()`.

    Field names are the environment variable names in lower case. Values holding credentials
    are `SecretStr`, so neither ``repr()`` nor a log line shows them.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        validate_default=True,
        hide_input_in_errors=True,
    )

    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    broker_url: SecretStr | None = None
    # Plain http to KKI, SISDMK and the SSO: only for local development against the mocks.
    # Before the URLs: their check reads it.
    allow_insecure_http: bool = False
    oidc_issuer: str
    oidc_audience: str
    kki_base_url: str
    kki_api_token: SecretStr
    sisdmk_base_url: str
    sisdmk_client_id: str
    sisdmk_client_secret: SecretStr
    kki_webhook_secret: SecretStr
    sisdmk_webhook_secret: SecretStr
    # encryption_keys comes before blind_index_key and audit_keys: their checks need its value.
    encryption_keys: SecretStr
    blind_index_key: SecretStr
    # Only while the blind-index key is changed: the key BLIND_INDEX_KEY replaces, so look-ups
    # find rows `hf-adapter keys reindex` has not reached yet (docs/operations.md).
    blind_index_previous_key: SecretStr | None = None
    # Signs the audit chain and its anchors (docs/security.md): first entry active, the others
    # only verify entries signed under them.
    audit_keys: SecretStr
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    http_connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    http_read_timeout_s: float = Field(default=30.0, gt=0, le=600)
    ca_bundle: Path | None = None
    # -- SSO (docs/auth.md) ----------------------------------------------------------------------
    # Least time between two JWKS fetches caused by tokens with an unknown `kid` (flood guard).
    oidc_jwks_cooldown_s: float = Field(default=30.0, gt=0, le=3600)
    # The key set is refetched after this long even without an unknown `kid` (rotation).
    oidc_jwks_max_age_s: float = Field(default=600.0, gt=0, le=86_400)
    # Clock skew allowed on exp/nbf/iat.
    oidc_leeway_s: float = Field(default=30.0, ge=0, le=300)
    # The adapter's own SSO client (client credentials), for calling other HealthForce services.
    # -- real-time sync: webhooks, broker, worker (docs/webhooks.md) --------------------------
    # The secret being retired while KKI or SISDMK rotates it: either one's signature is accepted.
    kki_webhook_previous_secret: SecretStr | None = None
    sisdmk_webhook_previous_secret: SecretStr | None = None
    webhook_max_body_bytes: int = Field(default=65_536, ge=1024, le=10_485_760)
    webhook_timestamp_tolerance_s: int = Field(default=300, ge=1, le=3600)
    broker_queue_prefix: str = "hf"
    broker_prefetch: int = Field(default=16, ge=1, le=1000)
    # Hand-overs of one message to a worker without a verdict (crashes) before it is dead-lettered.
    broker_delivery_limit: int = Field(default=5, ge=1, le=100)
    # Failed attempts to apply an event (source down, 5xx) before it is dead-lettered.
    event_max_attempts: int = Field(default=8, ge=1, le=50)
    event_retry_delays_s: str = "1,5,30,120,600"
    # How long the worker's circuit breaker for a source, once open (5 failures in a row), refuses
    # calls before it lets one trial call through.
    event_breaker_reset_s: float = Field(default=5.0, ge=0.1, le=600)
    # Embedded queue: how long a worker holds an event before another may take it.
    event_lease_s: float = Field(default=120.0, ge=1, le=3600)
    # Events of one source the worker marks done and writes in one transaction, at most
    # (1: one transaction per event).
    event_apply_batch: int = Field(default=32, ge=1, le=500)
    # The outbox relay publishes again an event still pending this long after its last publish.
    event_republish_after_s: float = Field(default=1800.0, ge=10, le=86_400)
    # A chat webhook's URL carries its secret in the path or query: a secret here.
    alert_webhook_url: SecretStr | None = None
    # -- daily batch sync (hf-adapter schedule) --------------------------------------------------
    # "system=HH:MM" per system, in SYNC_TIMEZONE; SISDMK first (identity), then KKI.
    sync_schedule: str = "sisdmk=01:00,kki=01:30"
    sync_timezone: str = "Asia/Jakarta"
    # How often the scheduler looks for runs requested through the API and for due ones.
    schedule_poll_s: float = Field(default=5.0, gt=0, le=3600)
    # -- HTTP hardening (docs/security.md) -------------------------------------------------------
    # NIK queries (search-by-nik, look-up by NIK) one caller (subject and client) may make, per
    # process, in `limits` notation; several limits separated by ";".
    nik_search_rate_limit: str = "30/minute;500/day"
    # Look-ups by STR number one caller may make, per process, in the same notation: each is a
    # live KKI call (a caller in a loop would use up KKI's capacity for everyone).
    str_lookup_rate_limit: str = "60/minute;5000/day"
    # How long a readiness answer is reused before the checks run again (0: every call).
    readiness_cache_s: float = Field(default=5.0, ge=0, le=300)
    # host:port where `serve` answers /readyz and /metrics instead of on the public --bind.
    ops_bind: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() reads the environment (or the mapping a test passes) itself, so that
        # nothing from the process environment or a stray .env file leaks into a test.
        return (init_settings,)

    @field_validator("sync_schedule")
    @classmethod
    def _check_sync_schedule(cls, value: str) -> str:
        parse_schedule(value)  # raises ValueError with the reason
        return value

    @field_validator("sync_timezone")
    @classmethod
    def _check_sync_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Asia/Jakarta, "
                "Asia/Makassar or Asia/Jayapura"
            ) from None
        return value

    def daily_sync_times(self) -> dict[str, dt.time]:
        """When each system's daily batch sync starts, in `sync_timezone`."""
        return parse_schedule(self.sync_schedule)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        # As `configure_logging` reads it (Python's logging): any case, and its aliases WARN and
        # FATAL.
        if not isinstance(value, str):
            return value
        return _LOG_LEVEL_ALIASES.get(value.upper(), value.upper())

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        scheme, separator, rest = url.partition("://")
        # A bare "sqlite://" is SQLAlchemy's in-memory database; other schemes need a location.
        if not separator or (not rest and not scheme.startswith("sqlite")):
            raise ValueError(
                "is not a URL; use sqlite:///path/to/file.sqlite3 or "
                "postgresql+psycopg://user:password@host:5432/database"
            )
        if scheme not in _DATABASE_SCHEMES:
            shown = f" {scheme!r}" if _SCHEME.fullmatch(scheme) else ""
            raise ValueError(
                f"unsupported scheme{shown}; use sqlite:///path/to/file.sqlite3 or "
                "postgresql+psycopg://user:password@host:5432/database"
            )
        normalized = f"{_DATABASE_SCHEMES[scheme]}://{rest}"
        before_query = rest.partition("?")[0]
        authority = rest.partition("/")[0]
        # Two @ before the query: the password holds one (and perhaps a / before it, which
        # hid the second from a look at the authority alone). One @ after an unencoded / in the
        # password parses as it should, and a query's own @ (a file path) is no password's.
        if authority.count("@") > 1 or (
            not scheme.startswith("sqlite") and before_query.count("@") > 1
        ):
            # SQLAlchemy would take the password's end for the host, and print it back in
            # every error about that "host".
            raise ValueError(
                "has more than one @ before the host; a password with @, : or / must be "
                "percent-encoded, e.g. @ as %40 and / as %2F"
            )
        try:
            make_url(normalized)
        except ArgumentError:
            raise ValueError(
                "is not a database URL; use sqlite:///path/to/file.sqlite3 or "
                "postgresql+psycopg://user:password@host:5432/database"
            ) from None
        except ValueError:  # SQLAlchemy reads the port as a number
            raise ValueError(
                "the port is not a number; write host:5432 or leave the port out for 5432 (a "
                "password with @, : or / must be percent-encoded, e.g. @ as %40)"
            ) from None
        return SecretStr(normalized)

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        scheme, separator, rest = value.get_secret_value().partition("://")
        if not separator or scheme not in _BROKER_SCHEMES or not rest:
            raise ValueError(
                "must be a RabbitMQ URL like amqp://user:password@host:5672/vhost (or amqps://); "
                "leave it unset for the embedded broker"
            )
        parts = urlsplit(value.get_secret_value())
        if not parts.hostname or _bad_port(parts) or parts.netloc.count("@") > 1:
            raise ValueError(
                "must name a host and, if any, a port from 1 to 65535, like "
                "amqp://user:password@host:5672/vhost (a password with @, : or / must be "
                "percent-encoded, e.g. @ as %40)"
            )
        return value

    @field_validator("oidc_issuer", "kki_base_url", "sisdmk_base_url")
    @classmethod
    def _check_http_url(cls, value: str, info: ValidationInfo) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http(s) URL like https://host/path")
        if _bad_port(parts):
            raise ValueError("has a port that is not a number from 1 to 65535")
        if parts.scheme == "http" and not info.data.get("allow_insecure_http", False):
            raise ValueError(
                "must be an https URL: tokens, credentials and personal data travel over it. "
                "Only for local development against the mocks, set ALLOW_INSECURE_HTTP=true"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials in the URL; they have their own variables")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        return value

    @field_validator("nik_search_rate_limit", "str_lookup_rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        rule = (
            "must be one or more limits like 30/minute or 30/minute;500/day "
            "(a count of at least 1 per second, minute, hour or day)"
        )
        try:
            limits = parse_many(value)
        except ValueError:
            raise ValueError(rule) from None
        if any(limit.amount < 1 for limit in limits):
            raise ValueError(rule)
        return value

    @field_validator("ops_bind")
    @classmethod
    def _check_ops_bind(cls, value: str | None) -> str | None:
        if value is not None:
            ops_address(value)  # raises ValueError with the reason
        return value

    @field_validator("kki_webhook_secret", "sisdmk_webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
        rule = (
            f"must be '{WEBHOOK_SECRET_PREFIX}' followed by standard base64 of "
            f"{WEBHOOK_SECRET_MIN_BYTES}-{WEBHOOK_SECRET_MAX_BYTES} bytes "
            "(the Standard Webhooks secret the provider gave for the subscription)"
        )
        if encoded == secret or not _STANDARD_BASE64.fullmatch(encoded):
            raise ValueError(rule)
        try:
            raw = base64.b64decode(encoded.rstrip("=") + "=" * (-len(encoded.rstrip("=")) % 4))
        except binascii.Error:
            raise ValueError(rule) from None
        if not WEBHOOK_SECRET_MIN_BYTES <= len(raw) <= WEBHOOK_SECRET_MAX_BYTES:
            raise ValueError(f"{rule}; it decodes to {len(raw)} bytes")
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _check_encryption_keys(cls, value: SecretStr) -> SecretStr:
        try:
            KeyRing.parse(value.get_secret_value())
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("blind_index_key")
    @classmethod
    def _check_blind_index_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        try:
            key = Key.parse(value.get_secret_value(), variable="BLIND_INDEX_KEY")
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        encryption_keys = info.data.get("encryption_keys")
        # Absent when ENCRYPTION_KEYS itself failed: that error is reported on its own.
        if isinstance(encryption_keys, SecretStr) and KeyRing.parse(
            encryption_keys.get_secret_value()
        ).holds(key):
            raise ValueError(
                "is also one of the ENCRYPTION_KEYS; the blind index needs its own key. "
                "Generate one with `hf-adapter keys generate`"
            )
        return value

    @field_validator("blind_index_previous_key")
    @classmethod
    def _check_blind_index_previous_key(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is None:
            return None
        try:
            previous = Key.parse(value.get_secret_value(), variable="BLIND_INDEX_PREVIOUS_KEY")
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        # Absent from info.data when they failed: those errors are reported on their own.
        current = info.data.get("blind_index_key")
        if isinstance(current, SecretStr):
            key = Key.parse(current.get_secret_value(), variable="BLIND_INDEX_KEY")
            if previous.kid == key.kid or KeyRing([key]).holds(previous):
                raise ValueError(
                    "must differ from BLIND_INDEX_KEY in key id and key: it is the key "
                    "BLIND_INDEX_KEY replaces. Give the new key a new id "
                    "(`hf-adapter keys generate`)"
                )
        encryption_keys = info.data.get("encryption_keys")
        if isinstance(encryption_keys, SecretStr) and KeyRing.parse(
            encryption_keys.get_secret_value()
        ).holds(previous):
            raise ValueError("is also one of the ENCRYPTION_KEYS; the blind index has its own keys")
        return value

    @field_validator("audit_keys")
    @classmethod
    def _check_audit_keys(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        try:
            ring = KeyRing.parse(value.get_secret_value(), variable="AUDIT_KEYS")
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        # The others are absent from info.data when they failed: those errors stand on their own.
        others: list[Key] = []
        encryption_keys = info.data.get("encryption_keys")
        if isinstance(encryption_keys, SecretStr):
            others.extend(KeyRing.parse(encryption_keys.get_secret_value()).keys)
        blind_index_key = info.data.get("blind_index_key")
        if isinstance(blind_index_key, SecretStr):
            others.append(Key.parse(blind_index_key.get_secret_value(), variable="BLIND_INDEX_KEY"))
        previous = info.data.get("blind_index_previous_key")
        if isinstance(previous, SecretStr):
            others.append(
                Key.parse(previous.get_secret_value(), variable="BLIND_INDEX_PREVIOUS_KEY")
            )
        if any(ring.holds(other) for other in others):
            raise ValueError(
                "shares a key with ENCRYPTION_KEYS or a blind-index key; the audit chain needs "
                "keys of its own. Generate one with `hf-adapter keys generate`"
            )
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(
                f"no readable file at {value}; point it at a PEM bundle or leave it unset"
            )
        return value

    @field_validator("kki_webhook_previous_secret", "sisdmk_webhook_previous_secret")
    @classmethod
    def _check_previous_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # The same rules as the current secret's.
        checked: SecretStr = cls._check_webhook_secret(value)
        return checked

    @field_validator("broker_queue_prefix")
    @classmethod
    def _check_broker_queue_prefix(cls, value: str) -> str:
        if not _QUEUE_PREFIX.fullmatch(value):
            raise ValueError(
                "must be 1-40 of a-z, 0-9, '.', '_', '-' starting with a letter or digit "
                "(e.g. hf, or hf-staging when two deployments share one RabbitMQ vhost)"
            )
        return value

    @field_validator("event_retry_delays_s")
    @classmethod
    def _check_event_retry_delays(cls, value: str) -> str:
        rule = (
            "must be 1-10 comma-separated delays in seconds, each 0.05-86400 and none shorter "
            "than the one before, e.g. 1,5,30,120,600"
        )
        try:
            delays = [float(part) for part in value.split(",")]
        except ValueError:
            raise ValueError(rule) from None
        if (
            not 1 <= len(delays) <= MAX_RETRY_TIERS
            or any(not 0.05 <= delay <= 86_400 for delay in delays)
            or delays != sorted(delays)
        ):
            raise ValueError(rule)
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _check_alert_webhook_url(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"http", "https"} or not parts.hostname or _bad_port(parts):
            raise ValueError(
                "must be an http(s) URL that accepts a JSON POST (e.g. an Alertmanager or chat "
                "webhook); leave it unset to alert through metrics and logs only"
            )
        if parts.scheme == "http" and not info.data.get("allow_insecure_http", False):
            raise ValueError(
                "must be an https URL: a chat webhook's URL is its secret. Only for local "
                "development, set ALLOW_INSECURE_HTTP=true"
            )
        return value

    def event_retry_delays(self) -> tuple[float, ...]:
        """The retry tiers' delays, in seconds, shortest first (``EVENT_RETRY_DELAYS_S``)."""
        return tuple(float(part) for part in self.event_retry_delays_s.split(","))

    def webhook_secrets(self, source: str) -> tuple[str, ...]:
        """The signing secrets accepted from `source` (kki or sisdmk), the current one first."""
        if source == "kki":
            current, previous = self.kki_webhook_secret, self.kki_webhook_previous_secret
        else:
            current, previous = self.sisdmk_webhook_secret, self.sisdmk_webhook_previous_secret
        secrets = [current.get_secret_value()]
        if previous is not None:
            secrets.append(previous.get_secret_value())
        return tuple(secrets)

    def field_cipher(self) -> FieldCipher:
        """The cipher for personal fields, from ``ENCRYPTION_KEYS``."""
        return FieldCipher(KeyRing.parse(self.encryption_keys.get_secret_value()))

    def audit_key_ring(self) -> KeyRing:
        """The keys of the audit chain, from ``AUDIT_KEYS`` (the first one signs)."""
        return KeyRing.parse(self.audit_keys.get_secret_value(), variable="AUDIT_KEYS")

    def blind_index(self) -> BlindIndex:
        """The NIK blind index, from ``BLIND_INDEX_KEY`` (and ``BLIND_INDEX_PREVIOUS_KEY``
        during a key change)."""
        previous = self.blind_index_previous_key
        return BlindIndex(
            Key.parse(self.blind_index_key.get_secret_value(), variable="BLIND_INDEX_KEY"),
            None
            if previous is None
            else Key.parse(previous.get_secret_value(), variable="BLIND_INDEX_PREVIOUS_KEY"),
        )


def ops_address(bind: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9000`` for IPv6) as (host, port); `ValueError` saying what's wrong."""
    rule = "must be host:port, e.g. 127.0.0.1:9000 or [::1]:9000 (a TCP address, not a socket)"
    try:
        parts = urlsplit(f"//{bind}")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(rule) from None
    if not host or port is None or port == 0 or parts.path or parts.username is not None:
        raise ValueError(rule)
    return host, port


def parse_schedule(text: str) -> dict[str, dt.time]:
    """``"sisdmk=01:00,kki=01:30"`` as {system: time}; `ValueError` saying what is wrong."""
    times: dict[str, dt.time] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        system, separator, clock = (piece.strip() for piece in entry.partition("="))
        if not separator or system not in ("kki", "sisdmk"):
            raise ValueError(f"{entry!r}: write system=HH:MM with system kki or sisdmk")
        if system in times:
            raise ValueError(f"{system} is listed twice")
        try:
            times[system] = dt.time.fromisoformat(clock)
        except ValueError:
            raise ValueError(f"{entry!r}: {clock!r} is not a time of day (HH:MM)") from None
    if not times:
        raise ValueError("no system listed; e.g. sisdmk=01:00,kki=01:30")
    return times


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env` (the process environment when ``None``), or `ConfigurationError`.

    Only the variables named in docs/configuration.md are read. A variable set to an empty or
    blank string counts as unset, and surrounding whitespace is dropped.
    """
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = source.get(name.upper())
        if raw is not None and raw.strip():
            values[name] = raw.strip()
    try:
        return Settings(**values)
    except ValidationError as exc:
        # `from None`: the pydantic error (and its traceback) must not carry the inputs along.
        raise ConfigurationError(_describe(exc, values)) from None


# pydantic's error types for a number outside a field's bounds.
_OUT_OF_RANGE: Final = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
)


def _describe(error: ValidationError, values: Mapping[str, str]) -> str:
    """One line per problem, by variable name, built from pydantic's messages but never inputs
    (a number out of its range aside: the line shows it, with the range)."""
    order = {name: index for index, name in enumerate(Settings.model_fields)}
    problems: list[tuple[int, str]] = []
    for item in error.errors(include_input=False, include_url=False):
        name = str(item["loc"][0]) if item["loc"] else ""
        variable = name.upper() or "configuration"
        if item["type"] == "missing":
            text = f"{variable}: missing. {_MISSING_HINTS.get(variable, 'Set it.')}"
        elif item["type"] in _OUT_OF_RANGE and name in Settings.model_fields:
            text = f"{variable}: {values[name]} is out of range; set {_allowed_range(name)}"
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            text = message if message.startswith(f"{variable}:") else f"{variable}: {message}"
        problems.append((order.get(name, len(order)), text))
    problems.sort(key=lambda problem: problem[0])
    count = len(problems)
    header = f"invalid adapter configuration ({count} problem{'s' if count != 1 else ''}):"
    return "\n".join([header, *(f"- {text}" for _, text in problems)])


def _allowed_range(name: str) -> str:
    """The bounds of numeric setting `name` in words: "a whole number from 1 to 1000",
    "a number more than 0 and at most 600"."""
    field = Settings.model_fields[name]
    kind = "a whole number" if field.annotation is int else "a number"
    lower = upper = ""
    for bound in field.metadata:  # annotated_types' Ge, Gt, Le, Lt, which Field(ge=...) sets
        if (ge := getattr(bound, "ge", None)) is not None:
            lower = f"at least {ge}"
        elif (gt := getattr(bound, "gt", None)) is not None:
            lower = f"more than {gt}"
        elif (le := getattr(bound, "le", None)) is not None:
            upper = f"at most {le}"
        elif (lt := getattr(bound, "lt", None)) is not None:
            upper = f"less than {lt}"
    if lower.startswith("at least ") and upper.startswith("at most "):
        return f"{kind} from {lower.removeprefix('at least ')} to {upper.removeprefix('at most ')}"
    return f"{kind} {' and '.join(part for part in (lower, upper) if part)}"
