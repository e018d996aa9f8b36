"""Loading and validating the adapter's configuration from environment variables."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from adapter.errors import ConfigurationError
from adapter.settings import DEFAULT_DATABASE_URL, Settings, load_settings
from adapter.store.crypto import FieldCipher, FieldContext

ROOT = Path(__file__).resolve().parents[3]
REQUIRED = (
    "OIDC_ISSUER",
    "OIDC_AUDIENCE",
    "KKI_BASE_URL",
    "KKI_API_TOKEN",
    "SISDMK_BASE_URL",
    "SISDMK_CLIENT_ID",
    "SISDMK_CLIENT_SECRET",
    "KKI_WEBHOOK_SECRET",
    "SISDMK_WEBHOOK_SECRET",
    "ENCRYPTION_KEYS",
    "BLIND_INDEX_KEY",
    "AUDIT_KEYS",
)
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
OLD_ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(50, 82))).decode().rstrip("=")
BLIND_KEY = base64.urlsafe_b64encode(bytes(range(100, 132))).decode().rstrip("=")
AUDIT_KEY = base64.urlsafe_b64encode(bytes(range(150, 182))).decode().rstrip("=")
KKI_TOKEN = "kki-token-5f1e0c9a7b"
SISDMK_SECRET = "sisdmk-secret-2b8d4e6f"
KKI_WEBHOOK_SECRET = "whsec_" + base64.b64encode(bytes(range(1, 25))).decode()
SISDMK_WEBHOOK_SECRET = "whsec_" + base64.b64encode(bytes(range(30, 62))).decode()


def valid_env() -> dict[str, str]:
    return {
        "OIDC_ISSUER": "https://sso.example.go.id/realms/healthforce",
        "OIDC_AUDIENCE": "hf-adapter",
        "KKI_BASE_URL": "https://kki.example.go.id/api",
        "KKI_API_TOKEN": KKI_TOKEN,
        "SISDMK_BASE_URL": "https://sisdmk.example.go.id",
        "SISDMK_CLIENT_ID": "sisdmk-dev-client",
        "SISDMK_CLIENT_SECRET": SISDMK_SECRET,
        "KKI_WEBHOOK_SECRET": KKI_WEBHOOK_SECRET,
        "SISDMK_WEBHOOK_SECRET": SISDMK_WEBHOOK_SECRET,
        "ENCRYPTION_KEYS": f"k2:{ENCRYPTION_KEY},k1:{OLD_ENCRYPTION_KEY}",
        "BLIND_INDEX_KEY": f"bidx-1:{BLIND_KEY}",
        "AUDIT_KEYS": f"audit-1:{AUDIT_KEY}",
    }


def configuration_error(env: dict[str, str]) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env)
    return caught.value


def problem_lines(error: ConfigurationError) -> dict[str, str]:
    """Variable name → its line in the message."""
    lines = str(error).splitlines()[1:]
    return {line[2:].split(":", 1)[0]: line for line in lines}


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


# -- valid configuration ------------------------------------------------------------------


def test_load_settings_accepts_a_complete_environment() -> None:
    settings = load_settings(valid_env())

    assert settings.oidc_issuer == "https://sso.example.go.id/realms/healthforce"
    assert settings.kki_api_token.get_secret_value() == KKI_TOKEN
    assert settings.sisdmk_client_id == "sisdmk-dev-client"


def test_load_settings_applies_the_embedded_defaults() -> None:
    settings = load_settings(valid_env())

    assert settings.database_url.get_secret_value() == DEFAULT_DATABASE_URL
    assert DEFAULT_DATABASE_URL == "sqlite:///var/hf-adapter.sqlite3"
    assert settings.broker_url is None
    assert settings.log_format == "json"
    assert settings.http_connect_timeout_s > 0
    assert settings.http_read_timeout_s > 0
    assert settings.ca_bundle is None


def test_load_settings_reads_every_optional_variable(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    env = valid_env() | {
        "DATABASE_URL": "postgresql+psycopg://hf:pw@db:5432/hf",
        "BROKER_URL": "amqps://hf:pw@mq:5671/hf",
        "LOG_FORMAT": "console",
        "HTTP_CONNECT_TIMEOUT_S": "2.5",
        "HTTP_READ_TIMEOUT_S": "10",
        "CA_BUNDLE": str(bundle),
        "EVENT_BREAKER_RESET_S": "1.5",
    }

    settings = load_settings(env)

    assert settings.database_url.get_secret_value() == "postgresql+psycopg://hf:pw@db:5432/hf"
    assert settings.broker_url is not None
    assert settings.broker_url.get_secret_value() == "amqps://hf:pw@mq:5671/hf"
    assert settings.log_format == "console"
    assert settings.http_connect_timeout_s == 2.5
    assert settings.http_read_timeout_s == 10.0
    assert settings.ca_bundle == bundle
    assert settings.event_breaker_reset_s == 1.5


def test_in_memory_sqlite_is_accepted() -> None:
    settings = load_settings(valid_env() | {"DATABASE_URL": "sqlite://"})

    assert settings.database_url.get_secret_value() == "sqlite://"


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_bare_postgres_urls_mean_psycopg_3(scheme: str) -> None:
    settings = load_settings(valid_env() | {"DATABASE_URL": f"{scheme}://hf:pw@db/hf"})

    assert settings.database_url.get_secret_value() == "postgresql+psycopg://hf:pw@db/hf"


def test_empty_variables_count_as_unset() -> None:
    settings = load_settings(
        valid_env() | {"DATABASE_URL": "", "BROKER_URL": "  ", "CA_BUNDLE": ""}
    )

    assert settings.database_url.get_secret_value() == DEFAULT_DATABASE_URL
    assert settings.broker_url is None
    assert settings.ca_bundle is None


def test_surrounding_whitespace_is_dropped() -> None:
    settings = load_settings(valid_env() | {"KKI_API_TOKEN": f"  {KKI_TOKEN}\n"})

    assert settings.kki_api_token.get_secret_value() == KKI_TOKEN


def test_unrelated_variables_are_ignored() -> None:
    settings = load_settings(valid_env() | {"PATH": "/usr/bin", "HOME": "/root"})

    assert not hasattr(settings, "path")


def test_load_settings_without_a_mapping_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, clean_environ: None
) -> None:
    for name, value in valid_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOG_FORMAT", "console")

    assert load_settings().log_format == "console"


def test_an_explicit_mapping_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, clean_environ: None
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://hf:pw@db/hf")
    monkeypatch.setenv("LOG_FORMAT", "console")

    settings = load_settings(valid_env())

    assert settings.database_url.get_secret_value() == DEFAULT_DATABASE_URL
    assert settings.log_format == "json"


def test_settings_give_a_working_cipher_and_blind_index() -> None:
    settings = load_settings(valid_env())
    context = FieldContext("health_worker", "nik", "row-1")

    cipher = settings.field_cipher()
    token = cipher.encrypt("3174054506900012", context=context)

    assert isinstance(cipher, FieldCipher)
    assert token.startswith("v1.k2.")
    assert cipher.decrypt(token, context=context) == "3174054506900012"
    assert settings.blind_index().kid == "bidx-1"


def test_settings_give_a_blind_index_with_the_previous_key_during_a_key_change() -> None:
    previous = base64.urlsafe_b64encode(bytes(range(200, 232))).decode().rstrip("=")
    settings = load_settings(valid_env() | {"BLIND_INDEX_PREVIOUS_KEY": f"bidx-0:{previous}"})

    assert settings.blind_index().kids == ("bidx-1", "bidx-0")
    assert load_settings(valid_env()).blind_index().kids == ("bidx-1",)


def test_settings_are_immutable() -> None:
    settings = load_settings(valid_env())

    with pytest.raises(ValidationError):
        settings.log_format = "console"


def test_importing_settings_creates_nothing(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key.upper() != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)

    subprocess.run(
        [sys.executable, "-c", "import adapter.settings, adapter.store.crypto"],
        cwd=tmp_path,
        env=env,
        check=True,
    )

    assert list(tmp_path.iterdir()) == []


# -- missing and bad variables ------------------------------------------------------------


def test_an_empty_environment_lists_every_required_variable() -> None:
    error = configuration_error({})

    lines = problem_lines(error)
    assert sorted(lines) == sorted(REQUIRED)
    assert all("missing." in line for line in lines.values())
    assert str(error).startswith(f"invalid adapter configuration ({len(REQUIRED)} problems):")
    assert error.reason == "configuration"


@pytest.mark.parametrize("name", REQUIRED)
def test_each_missing_variable_is_named_with_what_to_do(name: str) -> None:
    env = valid_env()
    del env[name]

    lines = problem_lines(configuration_error(env))

    assert list(lines) == [name]
    assert lines[name].startswith(f"- {name}: missing. ")
    assert len(lines[name]) > len(f"- {name}: missing. Set it.")


def test_missing_encryption_keys_says_how_to_make_one() -> None:
    env = valid_env()
    del env["ENCRYPTION_KEYS"]

    lines = problem_lines(configuration_error(env))

    assert lines["ENCRYPTION_KEYS"] == (
        "- ENCRYPTION_KEYS: missing. Generate one with `hf-adapter keys generate` "
        "and set ENCRYPTION_KEYS=<the printed kid:key>"
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://hf:pw@db/hf", "unsupported scheme 'mysql'"),
        ("DATABASE_URL", "/var/lib/hf.sqlite3", "is not a URL"),
        ("DATABASE_URL", "postgresql+psycopg://", "is not a URL"),
        ("BROKER_URL", "redis://mq:6379/0", "must be a RabbitMQ URL"),
        ("OIDC_ISSUER", "sso.example.go.id", "must be an http(s) URL"),
        ("KKI_BASE_URL", "ftp://kki.example.go.id", "must be an http(s) URL"),
        ("SISDMK_BASE_URL", "https://user:pw@sisdmk.example.go.id", "must not carry credentials"),
        ("KKI_BASE_URL", "https://kki.example.go.id/?token=x", "must not have a query string"),
        ("KKI_WEBHOOK_SECRET", "not-a-whsec-secret", "must be 'whsec_' followed by"),
        ("SISDMK_WEBHOOK_SECRET", "whsec_***", "must be 'whsec_' followed by"),
        (
            "KKI_WEBHOOK_SECRET",
            "whsec_" + base64.b64encode(bytes(8)).decode(),
            "it decodes to 8 bytes",
        ),
        ("ENCRYPTION_KEYS", "k1", "entry 1 of 1: no ':'"),
        ("ENCRYPTION_KEYS", f"k1:{ENCRYPTION_KEY},k1:{OLD_ENCRYPTION_KEY}", "used twice"),
        ("BLIND_INDEX_KEY", f"b:{BLIND_KEY},c:{BLIND_KEY}", "holds exactly one"),
        ("BLIND_INDEX_KEY", f"bidx:{ENCRYPTION_KEY}", "is also one of the ENCRYPTION_KEYS"),
        ("BLIND_INDEX_KEY", f"bidx:{OLD_ENCRYPTION_KEY}", "is also one of the ENCRYPTION_KEYS"),
        ("BLIND_INDEX_PREVIOUS_KEY", "bidx-0", "no ':'"),
        ("BLIND_INDEX_PREVIOUS_KEY", f"bidx-1:{AUDIT_KEY}", "must differ from BLIND_INDEX_KEY"),
        ("BLIND_INDEX_PREVIOUS_KEY", f"bidx-0:{BLIND_KEY}", "must differ from BLIND_INDEX_KEY"),
        (
            "BLIND_INDEX_PREVIOUS_KEY",
            f"bidx-0:{OLD_ENCRYPTION_KEY}",
            "is also one of the ENCRYPTION_KEYS",
        ),
        ("AUDIT_KEYS", "a1", "AUDIT_KEYS: entry 1 of 1: no ':'"),
        ("AUDIT_KEYS", f"a2:{AUDIT_KEY},a1:{OLD_ENCRYPTION_KEY}", "shares a key with"),
        ("AUDIT_KEYS", f"a1:{BLIND_KEY}", "shares a key with"),
        ("LOG_FORMAT", "xml", "'json' or 'console'"),
        ("LOG_LEVEL", "verbose", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        ("LOG_LEVEL", "NOTICE", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        (
            "HTTP_CONNECT_TIMEOUT_S",
            "0",
            "0 is out of range; set a number more than 0 and at most 300",
        ),
        ("HTTP_READ_TIMEOUT_S", "soon", "valid number"),
        (
            "HTTP_READ_TIMEOUT_S",
            "601",
            "601 is out of range; set a number more than 0 and at most 600",
        ),
        ("EVENT_BREAKER_RESET_S", "0", ": 0 is out of range; set a number from 0.1 to 600"),
        ("EVENT_BREAKER_RESET_S", "601", ": 601 is out of range; set a number from 0.1 to 600"),
        ("BROKER_PREFETCH", "0", ": 0 is out of range; set a whole number from 1 to 1000"),
        ("CA_BUNDLE", "/nonexistent/ca.pem", "no readable file at /nonexistent/ca.pem"),
        ("OIDC_ISSUER", "https://sso.example.go.id:8443x/realms/hf", "port that is not a number"),
        ("KKI_BASE_URL", "https://kki.example.go.id:0/api", "port that is not a number"),
        ("BROKER_URL", "amqp://hf:pw@mq:5672x/hf", "a port from 1 to 65535"),
        ("BROKER_URL", "amqp://:", "must name a host"),
        ("ALERT_WEBHOOK_URL", "https://chat.example:99999/hook", "must be an http(s) URL"),
        ("ALERT_WEBHOOK_URL", "http://chat.example/hook?token=x", "must be an https URL"),
    ],
)
def test_each_bad_variable_is_named_with_what_is_wrong(
    name: str, value: str, expected: str
) -> None:
    lines = problem_lines(configuration_error(valid_env() | {name: value}))

    assert list(lines) == [name]
    assert expected in lines[name]


def test_a_database_url_port_that_is_not_a_number_is_named_without_the_url() -> None:
    url = "postgresql+psycopg://hf:db-pw-83c1@127.0.0.1:notaport/hf"

    error = configuration_error(valid_env() | {"DATABASE_URL": url})

    assert list(problem_lines(error)) == ["DATABASE_URL"]
    assert "DATABASE_URL: the port is not a number; write host:5432" in str(error)
    assert "db-pw-83c1" not in str(error)
    assert "notaport" not in str(error)


@pytest.mark.parametrize(
    "password",
    # SQLAlchemy splits at the first @: the rest of the password is read as host and port.
    # A / before the @ hid the second @ from a check that looked only up to the first /.
    ["db@pw:83c1", "db@pw:83c1/x", "Pa@Secret83c1", "Tr@inS/ecret83c1", "Tr/inS@ecret83c1"],
)
def test_a_password_with_a_reserved_character_is_told_to_be_percent_encoded(
    password: str,
) -> None:
    url = f"postgresql+psycopg://hf:{password}@127.0.0.1:5432/hf"

    error = configuration_error(valid_env() | {"DATABASE_URL": url})

    assert list(problem_lines(error)) == ["DATABASE_URL"]
    assert "a password with @, : or / must be percent-encoded, e.g. @ as %40" in str(error)
    assert "83c1" not in str(error)
    assert "ecret" not in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://hf:ab/cd@127.0.0.1:5432/hf",  # a / in the password, one @
        "postgresql+psycopg://hf:pw@127.0.0.1:5432/hf?sslrootcert=/etc/ssl/a@b.pem",
        "postgresql+psycopg://hf:pw@/hf?host=/var/run/postgresql",
    ],
)
def test_urls_with_one_at_before_the_query_are_accepted(url: str) -> None:
    assert load_settings(valid_env() | {"DATABASE_URL": url}).database_url


def test_log_level_is_read_whatever_its_case() -> None:
    assert load_settings(valid_env() | {"LOG_LEVEL": "warning"}).log_level == "WARNING"


@pytest.mark.parametrize(
    ("value", "level"),
    [("WARN", "WARNING"), ("warn", "WARNING"), ("CRITICAL", "CRITICAL"), ("fatal", "CRITICAL")],
)
def test_log_level_accepts_the_names_python_logging_accepts(value: str, level: str) -> None:
    assert load_settings(valid_env() | {"LOG_LEVEL": value}).log_level == level


def test_every_problem_is_listed_at_once() -> None:
    env = valid_env() | {
        "DATABASE_URL": "mysql://hf:pw@db/hf",
        "KKI_BASE_URL": "kki",
        "LOG_FORMAT": "xml",
        "ENCRYPTION_KEYS": "k1:short",
        "CA_BUNDLE": "/nonexistent/ca.pem",
    }
    del env["OIDC_AUDIENCE"]
    del env["SISDMK_CLIENT_SECRET"]

    error = configuration_error(env)

    expected = [
        "DATABASE_URL",
        "OIDC_AUDIENCE",
        "KKI_BASE_URL",
        "SISDMK_CLIENT_SECRET",
        "ENCRYPTION_KEYS",
        "LOG_FORMAT",
        "CA_BUNDLE",
    ]
    assert list(problem_lines(error)) == expected
    assert str(error).startswith("invalid adapter configuration (7 problems):")


def test_the_blind_index_key_is_checked_against_the_keys_even_with_other_errors() -> None:
    env = valid_env() | {"BLIND_INDEX_KEY": f"bidx:{ENCRYPTION_KEY}"}
    del env["OIDC_ISSUER"]

    assert list(problem_lines(configuration_error(env))) == ["OIDC_ISSUER", "BLIND_INDEX_KEY"]


# -- secrets are never echoed -------------------------------------------------------------


def test_errors_never_echo_secret_values() -> None:
    secrets = {
        "DATABASE_URL": "mysql://hf:db-password-91c3@db/hf",
        "BROKER_URL": "redis://:mq-password-7a2e@mq:6379/0",
        "KKI_API_TOKEN": KKI_TOKEN,
        "SISDMK_CLIENT_SECRET": SISDMK_SECRET,
        "KKI_WEBHOOK_SECRET": "whsec_c2hvcnQtc2VjcmV0LXZhbHVl",
        "SISDMK_WEBHOOK_SECRET": "webhook-secret-without-prefix-4d9f",
        "ENCRYPTION_KEYS": f"k1:{ENCRYPTION_KEY}x,k2:{OLD_ENCRYPTION_KEY}",
        "BLIND_INDEX_KEY": f"bidx:{BLIND_KEY[:-2]}",
        "AUDIT_KEYS": f"audit-1:{AUDIT_KEY[:-3]}",
        "KKI_BASE_URL": "https://kki-user:url-password-3b6a@kki.example.go.id",
    }

    error = configuration_error(valid_env() | secrets)

    shown = [str(error), repr(error)]
    assert set(problem_lines(error)) >= set(secrets) - {"KKI_API_TOKEN", "SISDMK_CLIENT_SECRET"}
    for value in [
        *secrets.values(),
        "db-password-91c3",
        "mq-password-7a2e",
        "url-password-3b6a",
        "c2hvcnQtc2VjcmV0LXZhbHVl",
        ENCRYPTION_KEY,
        OLD_ENCRYPTION_KEY,
        BLIND_KEY[:-2],
    ]:
        for text in shown:
            assert value not in text
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_repr_of_settings_hides_secrets() -> None:
    env = valid_env() | {
        "DATABASE_URL": "postgresql+psycopg://hf:db-password-91c3@db/hf",
        "BROKER_URL": "amqp://hf:mq-password-7a2e@mq/hf",
    }

    shown = repr(load_settings(env)) + str(load_settings(env))

    for value in [
        "db-password-91c3",
        "mq-password-7a2e",
        KKI_TOKEN,
        SISDMK_SECRET,
        KKI_WEBHOOK_SECRET,
        SISDMK_WEBHOOK_SECRET,
        ENCRYPTION_KEY,
        OLD_ENCRYPTION_KEY,
        BLIND_KEY,
    ]:
        assert value not in shown


def test_secret_fields_are_secret_str() -> None:
    secret_fields = {
        "database_url",
        "broker_url",
        "kki_api_token",
        "sisdmk_client_secret",
        "kki_webhook_secret",
        "sisdmk_webhook_secret",
        "encryption_keys",
        "blind_index_key",
    }
    settings = load_settings(valid_env() | {"BROKER_URL": "amqp://hf:pw@mq/hf"})

    for name in secret_fields:
        assert isinstance(getattr(settings, name), SecretStr), name


# -- SSO and schedule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("OIDC_LEEWAY_S", "301", "OIDC_LEEWAY_S"),
        ("OIDC_JWKS_COOLDOWN_S", "0", "OIDC_JWKS_COOLDOWN_S"),
        ("SYNC_SCHEDULE", "kki=7", "'7' is not a time of day"),
        ("SYNC_SCHEDULE", "satusehat=01:00", "system kki or sisdmk"),
        ("SYNC_TIMEZONE", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_sso_and_schedule_values_are_refused(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        load_settings({**valid_env(), variable: value})


# -- HTTP hardening ------------------------------------------------------------------------------

INSECURE = {
    "OIDC_ISSUER": "http://sso.example.go.id/realms/healthforce",
    "KKI_BASE_URL": "http://kki.example.go.id/api",
    "SISDMK_BASE_URL": "http://127.0.0.1:8082",
}


def test_plain_http_to_the_registries_and_the_sso_is_refused() -> None:
    lines = problem_lines(configuration_error(valid_env() | INSECURE))

    assert list(lines) == ["OIDC_ISSUER", "KKI_BASE_URL", "SISDMK_BASE_URL"]
    for line in lines.values():
        assert "must be an https URL" in line
        assert "ALLOW_INSECURE_HTTP=true" in line


@pytest.mark.parametrize("variable", sorted(INSECURE))
def test_one_plain_http_url_is_named_alone(variable: str) -> None:
    lines = problem_lines(configuration_error(valid_env() | {variable: INSECURE[variable]}))

    assert list(lines) == [variable]


def test_allow_insecure_http_accepts_plain_http_for_development() -> None:
    settings = load_settings(valid_env() | INSECURE | {"ALLOW_INSECURE_HTTP": "true"})

    assert settings.allow_insecure_http is True
    assert settings.kki_base_url == "http://kki.example.go.id/api"
    assert settings.oidc_issuer == "http://sso.example.go.id/realms/healthforce"


def test_allow_insecure_http_is_off_unless_set() -> None:
    assert load_settings(valid_env()).allow_insecure_http is False
    lines = problem_lines(
        configuration_error(valid_env() | INSECURE | {"ALLOW_INSECURE_HTTP": "false"})
    )
    assert len(lines) == 3


def test_hardening_defaults() -> None:
    settings = load_settings(valid_env())

    assert settings.nik_search_rate_limit == "30/minute;500/day"
    assert settings.str_lookup_rate_limit == "60/minute;5000/day"
    assert settings.readiness_cache_s == 5.0
    assert settings.ops_bind is None


def test_hardening_variables_are_read() -> None:
    settings = load_settings(
        valid_env()
        | {
            "NIK_SEARCH_RATE_LIMIT": "10/minute",
            "STR_LOOKUP_RATE_LIMIT": "5/second;100/hour",
            "READINESS_CACHE_S": "0",
            "OPS_BIND": "[::1]:9100",
        }
    )

    assert settings.nik_search_rate_limit == "10/minute"
    assert settings.str_lookup_rate_limit == "5/second;100/hour"
    assert settings.readiness_cache_s == 0.0
    assert settings.ops_bind == "[::1]:9100"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("NIK_SEARCH_RATE_LIMIT", "lots", "must be one or more limits like 30/minute"),
        ("NIK_SEARCH_RATE_LIMIT", "30/fortnight", "must be one or more limits like 30/minute"),
        ("NIK_SEARCH_RATE_LIMIT", "10/minute;0/day", "a count of at least 1"),
        ("STR_LOOKUP_RATE_LIMIT", "sixty/minute", "must be one or more limits like 30/minute"),
        ("STR_LOOKUP_RATE_LIMIT", "60 per minute please", "must be one or more limits"),
        ("STR_LOOKUP_RATE_LIMIT", "0/minute", "a count of at least 1"),
        ("READINESS_CACHE_S", "-1", ": -1 is out of range; set a number from 0 to 300"),
        ("READINESS_CACHE_S", "301", ": 301 is out of range; set a number from 0 to 300"),
        ("OPS_BIND", "9000", "must be host:port"),
        ("OPS_BIND", "unix:/run/hf-ops.sock", "must be host:port"),
        ("OPS_BIND", "127.0.0.1:70000", "must be host:port"),
        ("OPS_BIND", "127.0.0.1:0", "must be host:port"),
        ("ALLOW_INSECURE_HTTP", "maybe", "valid boolean"),
    ],
)
def test_bad_hardening_values_are_refused(variable: str, value: str, expected: str) -> None:
    lines = problem_lines(configuration_error(valid_env() | {variable: value}))

    assert list(lines) == [variable]
    assert expected in lines[variable]


@pytest.mark.parametrize("name", ["DATABASE_URL", "BROKER_URL"])
def test_a_password_with_an_unencoded_at_is_refused_without_showing_it(name: str) -> None:
    scheme = "postgresql+psycopg" if name == "DATABASE_URL" else "amqp"
    url = f"{scheme}://hf:Pa@SecretTail@db.internal:5432/hf"

    error = configuration_error(valid_env() | {name: url})

    assert list(problem_lines(error)) == [name]
    assert "percent-encoded" in str(error)
    assert "SecretTail" not in str(error)


def test_an_http_alert_url_is_taken_for_local_development_only() -> None:
    env = valid_env() | {"ALERT_WEBHOOK_URL": "http://127.0.0.1:9/T0/secret-77"}
    configuration_error(env)

    settings = load_settings(env | {"ALLOW_INSECURE_HTTP": "true"})

    assert settings.alert_webhook_url is not None
    assert "secret-77" not in repr(settings)  # a secret: not in a repr or a log line
