"""docker-compose.test.yml, without a Docker engine: the Compose v2 loader accepts it, and what
it resolves to (`docker-compose config --format json`: anchors merged, paths made absolute)
agrees with the code — every command parses with the real CLI parsers, every adapter variable
is a documented setting and the whole environment loads as `Settings`, every host and port one
service uses is one the other listens on, Prometheus scrapes each metrics port, every image is
pinned."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from adapter.cli import build_parser as adapter_parser
from adapter.settings import Settings, load_settings
from mocks.cli import build_parser as mock_parser
from tests.support.deploy import (
    COMPOSE_FILE,
    ROOT,
    SUBSCRIBE,
    command,
    compose,
    environment,
    pinned,
    services,
)
from tests.support.deploy import healthcheck_url as image_healthcheck_url
from tests.unit.deploy.test_alert_rules import promtool

CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
REALM = ROOT / "deploy" / "keycloak" / "healthforce-realm.json"
INIT_ROLES = ROOT / "deploy" / "postgres" / "init-roles.sql"

# What the issue of record asks the stack to hold, plus the one-shot steps.
SERVICES = {
    "postgres",
    "rabbitmq",
    "keycloak",
    "kki-mock",
    "sisdmk-mock",
    "migrate",  # db upgrade, as the owner
    "grant",  # db grant, as the owner
    "subscribe",  # the mocks' webhook subscriptions
    "adapter",  # serve
    "worker",
    "scheduler",
    "prometheus",
    "grafana",
}
# Read by the adapter but not part of `Settings` (documented in docs/configuration.md too).
NON_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR"}


def adapter_services() -> list[str]:
    return [
        name for name in services() if (services()[name].get("command") or [""])[0] == "hf-adapter"
    ]


def load_subscribe_parser() -> Callable[[], argparse.ArgumentParser]:
    spec = importlib.util.spec_from_file_location("compose_subscribe", SUBSCRIBE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser: Callable[[], argparse.ArgumentParser] = module.build_parser
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str], where: str) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: {argv} does not parse (argparse's message above)", pytrace=False)


def parsed(name: str) -> argparse.Namespace:
    program, *argv = command(name)
    if program == "hf-adapter":
        return parse(adapter_parser(), argv, name)
    if program == "hf-mock":
        return parse(mock_parser(), argv, name)
    assert argv[0] == "/deploy/subscribe.py", name
    return parse(load_subscribe_parser()(), argv[1:], name)


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def listens_on(name: str) -> set[int]:
    """The ports the service's own process listens on, from its command and environment."""
    args = parsed(name)
    ports: set[int] = set()
    if getattr(args, "bind", None):
        ports.add(port_of(args.bind))
    if getattr(args, "metrics_port", None):
        ports.add(args.metrics_port)
    if getattr(args, "system", None) in {"kki", "sisdmk"}:
        ports.add(args.port)
    if "OPS_BIND" in environment(name):
        ports.add(port_of(environment(name)["OPS_BIND"]))
    return ports


def healthcheck_url(name: str) -> str:
    test = services()[name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], name
    return re.search(r"'(http://[^']+)'", test[3])[1]  # type: ignore[index]


def test_the_compose_loader_accepts_the_file() -> None:
    checked = compose("config", "--quiet")
    assert checked.returncode == 0, checked.stderr
    assert not checked.stderr.strip(), checked.stderr  # no warnings either (obsolete keys …)


def test_the_stack_has_every_service() -> None:
    assert set(services()) == SERVICES


def test_every_image_is_an_exact_release() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for name, service in services().items():
        image = service["image"]
        assert pinned(image), f"{name}: {image}"
        if "build" in service:
            # The adapter image is built here and tagged with the project's version.
            assert image == f"healthforce-adapter:{project['project']['version']}", name
            assert Path(service["build"]["context"]) == ROOT
            assert service["build"]["dockerfile"] == "Dockerfile"


def test_keycloak_is_the_pinned_version_and_imports_the_realm() -> None:
    keycloak = services()["keycloak"]
    version = (ROOT / "deploy" / "keycloak" / "keycloak-version").read_text().strip()
    assert keycloak["image"] == f"quay.io/keycloak/keycloak:{version}"
    assert keycloak["command"] == ["start-dev", "--import-realm"]
    mounts = {(Path(v["source"]), v["target"]) for v in keycloak["volumes"]}
    assert (REALM, f"/opt/keycloak/data/import/{REALM.name}") in mounts


def test_every_bind_mount_exists() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"
                assert volume.get("read_only"), f"{name}: mount {volume['target']} read-only"


def test_every_command_parses_with_the_real_parsers() -> None:
    for name, service in services().items():
        if "build" not in service:
            continue
        args = parsed(name)
        if command(name)[0] == "hf-adapter":
            assert callable(args.handler), name
    assert {name: parsed(name).handler.__name__ for name in adapter_services()} == {
        "migrate": "_db_upgrade",
        "grant": "_db_grant",
        "adapter": "_serve",
        "worker": "_worker",
        "scheduler": "_schedule",
    }
    assert parsed("kki-mock").system == "kki"
    assert parsed("sisdmk-mock").system == "sisdmk"


def test_every_adapter_variable_is_a_documented_setting() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", CONFIGURATION_DOC.read_text()))
    for name in [*adapter_services(), "subscribe"]:
        for variable in environment(name):
            assert variable in settings | NON_SETTINGS, f"{name}: {variable} is read by nothing"
            assert variable in documented, f"{name}: {variable} is not in docs/configuration.md"


def test_every_adapter_environment_loads_as_settings() -> None:
    for name in adapter_services():
        settings = load_settings(environment(name))  # ConfigurationError names what is wrong
        assert settings.allow_insecure_http, "a plain-HTTP test stack"


def test_adapter_urls_name_the_services_and_ports_that_listen() -> None:
    env = environment("adapter")
    for variable, service in (("KKI_BASE_URL", "kki-mock"), ("SISDMK_BASE_URL", "sisdmk-mock")):
        url = urlsplit(env[variable])
        assert url.hostname == service, variable
        assert url.port in listens_on(service), variable
    issuer = urlsplit(env["OIDC_ISSUER"])
    realm = json.loads(REALM.read_text(encoding="utf-8"))
    assert issuer.hostname == "keycloak"
    assert issuer.port == 8080  # Keycloak's HTTP port in start-dev
    assert issuer.path == f"/realms/{realm['realm']}"
    # Tokens carry this issuer whoever asks (the host through :8080 or the adapter).
    assert environment("keycloak")["KC_HOSTNAME"] == f"{issuer.scheme}://{issuer.netloc}"
    assert env["OIDC_AUDIENCE"] in {client["clientId"] for client in realm["clients"]}
    assert any(port["target"] == 8080 for port in services()["keycloak"]["ports"])


def test_the_database_roles_are_owner_for_migrations_and_runtime_for_the_rest() -> None:
    created = dict(
        re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD '([^']+)'", INIT_ROLES.read_text())
    )
    database = re.search(r"CREATE DATABASE (\w+) OWNER (\w+)", INIT_ROLES.read_text())
    assert database is not None
    owner = database[2]
    runtime = parsed("grant").role
    assert set(created) == {owner, runtime}
    assert parsed("grant").apply, "grant runs the statements"
    for name in [*adapter_services(), "subscribe"]:
        url = urlsplit(load_settings(environment(name)).database_url.get_secret_value())
        expected = owner if name in {"migrate", "grant"} else runtime
        assert (url.hostname, url.port, url.path) == ("postgres", 5432, f"/{database[1]}"), name
        assert url.username == expected, f"{name} connects as {url.username}, not {expected}"
        assert url.password == created[expected], name
    order = services()["grant"]["depends_on"]
    assert order["migrate"]["condition"] == "service_completed_successfully"
    for name in ("adapter", "worker", "scheduler"):
        assert services()[name]["depends_on"]["grant"]["condition"] == (
            "service_completed_successfully"
        )
    mounts = {v["target"]: Path(v["source"]) for v in services()["postgres"]["volumes"]}
    assert mounts[f"/docker-entrypoint-initdb.d/{INIT_ROLES.name}"] == INIT_ROLES


def test_the_broker_url_matches_rabbitmq() -> None:
    rabbit = environment("rabbitmq")
    for name in adapter_services():
        settings = load_settings(environment(name))
        assert settings.broker_url is not None
        url = urlsplit(settings.broker_url.get_secret_value())
        assert (url.hostname, url.port) == ("rabbitmq", 5672), name
        assert url.username == rabbit["RABBITMQ_DEFAULT_USER"], name
        assert url.password == rabbit["RABBITMQ_DEFAULT_PASS"], name
        assert url.path == f"/{rabbit['RABBITMQ_DEFAULT_VHOST']}", name


def test_published_ports_and_health_checks_are_the_ones_listened_on() -> None:
    for name in ("adapter", "kki-mock", "sisdmk-mock", "worker", "scheduler"):
        ports = listens_on(name)
        assert ports, name
        for published in services()[name].get("ports", []):
            assert published["target"] in ports, f"{name} publishes {published['target']}"
            assert published["host_ip"] == "127.0.0.1", f"{name}: only on this machine"
            assert int(published["published"]) == published["target"]
        if "healthcheck" in services()[name]:
            url = urlsplit(healthcheck_url(name))
            assert url.port in ports, f"{name}: health check on {url.port}"
    args = parsed("adapter")
    assert args.bind.startswith("0.0.0.0:"), "reachable from the other containers"
    assert environment("adapter")["OPS_BIND"].startswith("0.0.0.0:")
    for name in ("worker", "scheduler"):
        assert parsed(name).metrics_host == "0.0.0.0", name  # noqa: S104 - in a container
    # The image's own HEALTHCHECK (serve's /healthz) is the adapter service's.
    assert "healthcheck" not in services()["adapter"]
    assert image_healthcheck_url().port == port_of(args.bind)
    subscribe = urlsplit(parsed("subscribe").adapter_url)
    assert (subscribe.hostname, subscribe.port) == ("adapter", port_of(args.bind))
    assert {"kki-mock", "sisdmk-mock"} <= set(services()["subscribe"]["depends_on"])


def prometheus_config() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    return document


def test_prometheus_scrapes_every_metrics_port() -> None:
    targets = {
        target
        for job in prometheus_config()["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    expected = {
        f"adapter:{port_of(environment('adapter')['OPS_BIND'])}",
        f"worker:{parsed('worker').metrics_port}",
        f"scheduler:{parsed('scheduler').metrics_port}",
    }
    assert targets == expected
    for target in targets:
        host, _, port = target.partition(":")
        assert int(port) in listens_on(host), target


def test_prometheus_loads_the_config_and_the_alerts(tmp_path: Path) -> None:
    prometheus = services()["prometheus"]
    mounts = {v["target"]: Path(v["source"]) for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONFIG
    config = prometheus_config()
    # Each rule file is mounted where the config says; promtool checks them at their real path.
    local = []
    for rule_file in config["rule_files"]:
        assert rule_file in mounts, f"{rule_file} is not mounted into the container"
        local.append(str(mounts[rule_file]))
    assert mounts[config["rule_files"][0]] == ROOT / "deploy" / "prometheus" / "alerts.yml"
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump({**config, "rule_files": local}))
    checked = promtool("check", "config", str(copy))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_gets_the_dashboards_and_the_prometheus_it_points_at() -> None:
    grafana = ROOT / "deploy" / "grafana"
    mounts = {v["target"]: Path(v["source"]) for v in services()["grafana"]["volumes"]}
    provider = yaml.safe_load((grafana / "provisioning" / "dashboards.yml").read_text())
    assert mounts[provider["providers"][0]["options"]["path"]] == grafana / "dashboards"
    assert (
        mounts["/etc/grafana/provisioning/dashboards/dashboards.yml"]
        == grafana / "provisioning" / "dashboards.yml"
    )
    assert (
        mounts["/etc/grafana/provisioning/datasources/datasources.yml"]
        == grafana / "provisioning" / "datasources.yml"
    )
    source = yaml.safe_load((grafana / "provisioning" / "datasources.yml").read_text())
    url = urlsplit(source["datasources"][0]["url"])
    assert url.hostname == "prometheus"
    assert url.hostname in services()
    assert any(port["target"] == url.port for port in services()["prometheus"]["ports"])


def test_the_image_runs_hardened_with_a_read_only_root() -> None:
    for name, service in services().items():
        if "build" not in service:
            continue
        assert service.get("read_only") is True, name
        assert "/tmp" in service.get("tmpfs", []), name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert "user" not in service, f"{name}: keep the image's unprivileged user"
    # The one writable folder serve is told about is a tmpfs of its own (empty at start).
    multiprocess = environment("adapter")["PROMETHEUS_MULTIPROC_DIR"]
    assert multiprocess in services()["adapter"]["tmpfs"]
    assert parsed("adapter").workers > 1, "PROMETHEUS_MULTIPROC_DIR is for several workers"


def test_every_secret_is_a_marked_test_value() -> None:
    env = environment("adapter")
    for variable in ("ENCRYPTION_KEYS", "BLIND_INDEX_KEY", "AUDIT_KEYS"):
        for entry in env[variable].split(","):
            assert entry.startswith("compose-test-"), f"{variable}: a test-only key id"
    passwords = [
        urlsplit(load_settings(environment(name)).database_url.get_secret_value()).password
        for name in adapter_services()
    ]
    passwords += [
        environment("postgres")["POSTGRES_PASSWORD"],
        environment("rabbitmq")["RABBITMQ_DEFAULT_PASS"],
        environment("keycloak")["KC_BOOTSTRAP_ADMIN_PASSWORD"],
        environment("grafana")["GF_SECURITY_ADMIN_PASSWORD"],
    ]
    for password in passwords:
        assert password is not None
        assert password.endswith("-test-only"), password
    assert "TEST-ONLY" in COMPOSE_FILE.read_text(encoding="utf-8")
