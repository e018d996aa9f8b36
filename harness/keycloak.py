"""A real Keycloak server (the distribution scripts/keycloak.sh fetched) as a process, with the
realm export imported, and the few admin REST calls the tests need (keys, realms, clients).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import httpx

from harness.processes import ManagedProcess, free_port, shared_verify

REPO: Final = Path(__file__).resolve().parents[1]
REALM_EXPORT: Final = REPO / "deploy" / "keycloak" / "healthforce-realm.json"
VERSION_FILE: Final = REPO / "deploy" / "keycloak" / "keycloak-version"
INSTALL_ROOT: Final = REPO / "var" / "keycloak"
FETCH_SCRIPT: Final = "scripts/keycloak.sh"
# Written by scripts/keycloak.sh once the unpacked server is built for start-dev.
READY_STAMP: Final = ".hf-ready"
REALM: Final = "healthforce"
OIDC_PATH: Final = "/protocol/openid-connect"
# A fresh H2 database plus the realm import: about 15 s on an idle 2-core machine, more when busy.
START_TIMEOUT_S: Final = 240.0
# Keycloak shuts down in a few seconds; past this its process group is killed.
STOP_TIMEOUT_S: Final = 30.0
HTTP_TIMEOUT_S: Final = 30.0
# For test stacks only, like every secret in the realm export.
ADMIN_USER: Final = "admin"
ADMIN_PASSWORD: Final = "dev-only-admin-password-change-me"  # noqa: S105
# The realm export's test-only login client and user (direct access grants).
LOGIN_CLIENT: Final = "hf-test-login"
TEST_USER: Final = "hf-test-user"
KEY_PROVIDER_TYPE: Final = "org.keycloak.keys.KeyProvider"
# JVM options for short-lived test servers (`quick_start`), before any ``JAVA_OPTS_APPEND`` of
# the caller's, whose flags therefore win: the client compiler only (C2's compiler threads were
# about 17 of a built start's 45 CPU seconds on a 2-core machine, for code a server living a few
# minutes never runs long enough to profit from: docs/benchmarks.md, "Keycloak start-up"), and
# the serial collector in place of G1's background threads (about 100 MiB less resident).
QUICK_START_COMPILER: Final = "-XX:TieredStopAtLevel=1"
QUICK_START_COLLECTOR: Final = "-XX:-UseG1GC -XX:+UseSerialGC"
# A collector the caller chose: adding ours beside it would stop the JVM ("Multiple garbage
# collectors selected").
_CHOSEN_COLLECTOR: Final = re.compile(r"-XX:\+Use\w*GC\b")


def quick_start_java_opts(environ: Mapping[str, str]) -> str:
    """``JAVA_OPTS_APPEND`` for a quick start: ours, then the caller's; without our collector
    when the caller's ``JAVA_OPTS`` or ``JAVA_OPTS_APPEND`` already names one."""
    theirs = environ.get("JAVA_OPTS_APPEND", "")
    chosen = any(
        _CHOSEN_COLLECTOR.search(environ.get(name, ""))
        for name in ("JAVA_OPTS_APPEND", "JAVA_OPTS")
    )
    ours = QUICK_START_COMPILER if chosen else f"{QUICK_START_COMPILER} {QUICK_START_COLLECTOR}"
    return f"{ours} {theirs}".strip()


class KeycloakUnavailable(RuntimeError):
    """The Keycloak distribution or a Java runtime is missing: the server cannot run."""


class KeycloakRequestFailed(RuntimeError):
    """Keycloak refused a request; the message has the status and its error."""


def keycloak_version() -> str:
    """The pinned version (deploy/keycloak/keycloak-version), or ``KEYCLOAK_VERSION``."""
    return os.environ.get("KEYCLOAK_VERSION") or VERSION_FILE.read_text(encoding="utf-8").strip()


def installed_home(version: str | None = None) -> Path:
    """The unpacked, built distribution; `KeycloakUnavailable` saying what to run if missing."""
    version = version or keycloak_version()
    home = INSTALL_ROOT / f"keycloak-{version}"
    if not (home / READY_STAMP).is_file():
        raise KeycloakUnavailable(
            f"Keycloak {version} is not installed under var/keycloak/; run {FETCH_SCRIPT} "
            "(needs Maven and Java 17+; it fetches org.keycloak:keycloak-quarkus-dist from "
            "Maven Central) and run the tests again"
        )
    return home


def java_home() -> str:
    """``JAVA_HOME`` if it holds a java, else the JDK of the ``java`` on PATH (17 here)."""
    configured = os.environ.get("JAVA_HOME")
    if configured and (Path(configured) / "bin" / "java").is_file():
        return configured
    java = shutil.which("java")
    if java is None:
        raise KeycloakUnavailable(
            "Keycloak needs Java 17 or newer and no `java` is on PATH (nor JAVA_HOME set); "
            "install a JDK (Debian: apt-get install -y openjdk-17-jdk-headless)"
        )
    return str(Path(java).resolve().parents[1])


@dataclass(frozen=True)
class KeycloakTls:
    """HTTPS for a `KeycloakServer`: its certificate and key, and the CA clients verify it by."""

    certfile: Path
    keyfile: Path
    ca_bundle: Path


class KeycloakServer:
    """``kc.sh start-dev`` on 127.0.0.1 with its own H2 database and the realm export imported.

    With `tls` it answers HTTPS only (plain HTTP off), and every call this class makes to it
    verifies the certificate against `tls.ca_bundle`.

    Each server gets its own Keycloak home: a copy of ``bin/`` (kc.sh derives the home from its
    own path), links to the shared read-only ``lib``, ``conf``, ``themes`` and ``providers``, and
    a ``data/`` folder of its own (database, transaction log, imports). `stop()` keeps that
    folder, so `start()` brings the same realm and keys back on the same port (same issuer).
    """

    def __init__(
        self,
        *,
        realm_exports: Sequence[Path] = (REALM_EXPORT,),
        port: int | None = None,
        java_opts_heap: str | None = None,
        home: Path | None = None,
        tls: KeycloakTls | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        quick_start: bool = True,
    ) -> None:
        # `home`: another unpacked distribution (the benchmark's fresh, not yet built unpack).
        # `quick_start`: the JVM options of `quick_start_java_opts` (test servers); without it,
        # Keycloak's own (a load run, which measures token throughput too).
        self.home = home if home is not None else installed_home()
        self.version = keycloak_version()
        self.java_home = java_home()
        self.realm_exports = tuple(realm_exports)
        self.port = port or free_port()
        self.management_port = free_port()
        self.java_opts_heap = java_opts_heap
        self.tls = tls
        self.start_timeout_s = start_timeout_s
        self.quick_start = quick_start
        self._instance: Path | None = None
        self._process: ManagedProcess | None = None
        self.last_start_s: float | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx verifies this server's certificate with."""
        if self.tls is None:
            return True
        return ssl.create_default_context(cafile=self.tls.ca_bundle)

    def issuer(self, realm: str = REALM) -> str:
        return f"{self.base_url}/realms/{realm}"

    def discovery_url(self, realm: str = REALM) -> str:
        return self.issuer(realm) + "/.well-known/openid-configuration"

    def token_endpoint(self, realm: str = REALM) -> str:
        return self.issuer(realm) + OIDC_PATH + "/token"

    @property
    def instance_home(self) -> Path | None:
        """This server's own Keycloak home (bin copy, data/), once `start()` made it."""
        return self._instance

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.is_running() else None

    def __enter__(self) -> KeycloakServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> KeycloakServer:
        """Start and wait until the realm's discovery document answers (polled, no fixed sleep)."""
        if self._process is not None and self._process.is_running():
            return self
        instance = self._instance_home()
        env = {
            "JAVA_HOME": self.java_home,
            "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        if self.quick_start:
            env["JAVA_OPTS_APPEND"] = quick_start_java_opts(os.environ)
        if self.java_opts_heap is not None:
            env["JAVA_OPTS_KC_HEAP"] = self.java_opts_heap
        argv = [
            str(instance / "bin" / "kc.sh"),
            "start-dev",
            "--http-host=127.0.0.1",
            f"--http-management-port={self.management_port}",
            # The H2 file database of start-dev lives in this server's own data/ folder.
            "--import-realm",
        ]
        if self.tls is None:
            argv.append(f"--http-port={self.port}")
        else:
            argv += [
                "--http-enabled=false",
                f"--https-port={self.port}",
                f"--https-certificate-file={self.tls.certfile}",
                f"--https-certificate-key-file={self.tls.keyfile}",
            ]
        if self._process is not None:
            self._process.close()
        started = time.monotonic()
        self._process = ManagedProcess(f"keycloak-{self.port}", argv, env=env)  # close() knows it
        self._process.start()
        self._process.wait_http(
            self.discovery_url(), timeout_s=self.start_timeout_s, verify=self.verify
        )
        self.last_start_s = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop the server (its whole process group); its data stays for a later `start()`."""
        if self._process is not None:
            self._process.stop(timeout_s=STOP_TIMEOUT_S)

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None
        if self._instance is not None:
            shutil.rmtree(self._instance, ignore_errors=True)
            self._instance = None

    def output(self, tail: int = 8000) -> str:
        return self._process.output(tail) if self._process else ""

    def rss_bytes(self) -> int:
        """Resident memory of the server's process group (kc.sh and its JVM), from /proc."""
        total_kib = 0
        for status, _ in self._group_proc_files():
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        return total_kib * 1024

    def cpu_seconds(self) -> float:
        """CPU time the process group has used, waited-for children included (load-independent,
        unlike wall time on a shared machine)."""
        ticks = 0
        for _, stat in self._group_proc_files():
            # Fields after the ")" that ends the command name: utime, stime, cutime, cstime
            # are fields 14-17 of proc(5), i.e. 11-14 counted from the state field.
            fields = stat.rsplit(")", 1)[1].split()
            ticks += sum(int(value) for value in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def _group_proc_files(self) -> list[tuple[str, str]]:
        """(status, stat) of every live process in the server's process group."""
        if self._process is None or not self._process.is_running():
            return []
        group = os.getpgid(self._process.pid)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) != group:
                    continue
                found.append(
                    (
                        (entry / "status").read_text(encoding="ascii"),
                        (entry / "stat").read_text(encoding="ascii"),
                    )
                )
            except (OSError, ProcessLookupError):
                continue  # the process ended while we looked
        return found

    def realm(self, name: str = REALM) -> KeycloakRealm:
        """One realm of this server: its issuer and the token endpoint's grants."""
        return KeycloakRealm(self.base_url, name, self.verify)

    def admin(self) -> KeycloakAdmin:
        return KeycloakAdmin(self.base_url, ADMIN_USER, ADMIN_PASSWORD, verify=self.verify)

    def _instance_home(self) -> Path:
        if self._instance is not None:
            return self._instance
        instance = Path(tempfile.mkdtemp(prefix="hf-keycloak-"))
        shutil.copytree(self.home / "bin", instance / "bin")
        for shared in ("lib", "conf", "providers", "themes", "version.txt"):
            (instance / shared).symlink_to(self.home / shared)
        imports = instance / "data" / "import"
        imports.mkdir(parents=True)
        for export in self.realm_exports:
            # Keycloak imports every *.json here; one file per realm, named after it.
            realm = json.loads(export.read_text(encoding="utf-8"))["realm"]
            shutil.copyfile(export, imports / f"{realm}-realm.json")
        self._instance = instance
        return instance


@dataclass(frozen=True)
class KeycloakRealm:
    """One realm of a running Keycloak: its issuer, token calls and an admin acting on it.

    The methods take another `realm` of the same server where a caller needs one."""

    base_url: str
    realm: str = REALM
    verify: ssl.SSLContext | bool = True

    def issuer(self, realm: str | None = None) -> str:
        return f"{self.base_url}/realms/{realm or self.realm}"

    def discovery_url(self, realm: str | None = None) -> str:
        return self.issuer(realm) + "/.well-known/openid-configuration"

    def token_endpoint(self, realm: str | None = None) -> str:
        return self.issuer(realm) + OIDC_PATH + "/token"

    def through(self, base_url: str) -> KeycloakRealm:
        """The same realm reached at another address (a relay in front of the server)."""
        return replace(self, base_url=base_url)

    def token_response(
        self, form: Mapping[str, str], *, client_id: str, secret: str, realm: str | None = None
    ) -> httpx.Response:
        return httpx.post(
            self.token_endpoint(realm),
            data=dict(form),
            auth=(client_id, secret),
            timeout=HTTP_TIMEOUT_S,
            verify=shared_verify(self.verify),
        )

    def client_credentials(
        self,
        client_id: str,
        secret: str,
        scopes: Sequence[str] = (),
        *,
        realm: str | None = None,
    ) -> dict[str, Any]:
        """The token endpoint's answer to a client-credentials grant."""
        form = {"grant_type": "client_credentials"}
        if scopes:
            form["scope"] = " ".join(scopes)
        return _ok_json(self.token_response(form, client_id=client_id, secret=secret, realm=realm))

    def password_grant(
        self,
        client_id: str,
        secret: str,
        username: str,
        password: str,
        *,
        scope: str = "openid",
        realm: str | None = None,
    ) -> dict[str, Any]:
        """The answer to a direct access grant: access, ID (with ``openid``) and refresh token."""
        form = {"grant_type": "password", "username": username, "password": password}
        form["scope"] = scope
        return _ok_json(self.token_response(form, client_id=client_id, secret=secret, realm=realm))

    def admin(self) -> KeycloakAdmin:
        """The bootstrap admin; its calls act on this realm unless given another."""
        return KeycloakAdmin(
            self.base_url, ADMIN_USER, ADMIN_PASSWORD, verify=self.verify, realm=self.realm
        )


class KeycloakAdmin:
    """Keycloak's admin REST API, as the bootstrap admin of the master realm."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        verify: ssl.SSLContext | bool = True,
        realm: str = REALM,
    ) -> None:
        self.base_url = base_url
        # The realm the calls below act on when not given one (a test's own copy of the export).
        self.default_realm = realm
        self._username = username
        self._password = password
        self._http = httpx.Client(
            base_url=base_url, timeout=HTTP_TIMEOUT_S, verify=shared_verify(verify)
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KeycloakAdmin:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _headers(self) -> dict[str, str]:
        # Admin tokens live 60 s: a new one per call costs a few ms and never goes stale.
        answer = self._http.post(
            "/realms/master" + OIDC_PATH + "/token",
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": self._username,
                "password": self._password,
            },
        )
        return {"Authorization": f"Bearer {_ok_json(answer)['access_token']}"}

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        response = self._http.request(
            method, "/admin/realms" + path, json=body, headers=self._headers()
        )
        if not response.is_success:
            raise KeycloakRequestFailed(
                f"{method} /admin/realms{path}: HTTP {response.status_code} {response.text[:300]}"
            )
        return response

    def realm(self, realm: str | None = None) -> dict[str, Any]:
        realm = realm or self.default_realm
        body: dict[str, Any] = self._request("GET", f"/{realm}").json()
        return body

    def create_realm(self, representation: Mapping[str, Any]) -> None:
        self._request("POST", "", dict(representation))

    def delete_realm(self, realm: str) -> None:
        self._request("DELETE", f"/{realm}")

    def create_user(
        self, username: str, password: str, *, realm: str | None = None, **profile: str
    ) -> None:
        """An enabled user with a permanent password; `profile` sets email, firstName ..."""
        realm = realm or self.default_realm
        credential = {"type": "password", "value": password, "temporary": False}
        user = {"username": username, "enabled": True, "credentials": [credential], **profile}
        self._request("POST", f"/{realm}/users", user)

    def realm_keys(self, realm: str | None = None) -> list[dict[str, Any]]:
        """The realm's keys (kid, algorithm, status ACTIVE/PASSIVE, providerId ...)."""
        realm = realm or self.default_realm
        keys: list[dict[str, Any]] = self._request("GET", f"/{realm}/keys").json()["keys"]
        return keys

    def key_providers(self, realm: str | None = None) -> list[dict[str, Any]]:
        realm = realm or self.default_realm
        providers: list[dict[str, Any]] = self._request(
            "GET", f"/{realm}/components?type={KEY_PROVIDER_TYPE}"
        ).json()
        return providers

    def add_rsa_key(
        self,
        name: str,
        *,
        priority: int,
        realm: str | None = None,
        private_key_pem: str | None = None,
        active: bool = True,
    ) -> str:
        """A new RS256 key provider (generated, or the given key); returns its component id."""
        realm = realm or self.default_realm
        config: dict[str, list[str]] = {
            "priority": [str(priority)],
            "enabled": ["true"],
            "active": ["true" if active else "false"],
            "algorithm": ["RS256"],
        }
        if private_key_pem is None:
            provider = "rsa-generated"
            config["keySize"] = ["2048"]
        else:
            provider = "rsa"
            config["privateKey"] = [private_key_pem]
        response = self._request(
            "POST",
            f"/{realm}/components",
            {
                "name": name,
                "providerId": provider,
                "providerType": KEY_PROVIDER_TYPE,
                "parentId": self.realm(realm)["id"],
                "config": config,
            },
        )
        # 201 Created with the new component's URL; its id is the last path segment.
        return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]

    def set_key_active(self, component_id: str, active: bool, *, realm: str | None = None) -> None:
        """Make a key provider active (signs) or passive (still published, verifies only)."""
        realm = realm or self.default_realm
        component: dict[str, Any] = self._request(
            "GET", f"/{realm}/components/{component_id}"
        ).json()
        component["config"]["active"] = ["true" if active else "false"]
        self._request("PUT", f"/{realm}/components/{component_id}", component)

    def client(self, client_id: str, *, realm: str | None = None) -> dict[str, Any]:
        realm = realm or self.default_realm
        found: list[dict[str, Any]] = self._request(
            "GET", f"/{realm}/clients?clientId={client_id}"
        ).json()
        if len(found) != 1:
            raise KeycloakRequestFailed(f"realm {realm} has no client {client_id}")
        return found[0]

    def set_client_attributes(
        self, client_id: str, attributes: Mapping[str, str], *, realm: str | None = None
    ) -> None:
        realm = realm or self.default_realm
        client = self.client(client_id, realm=realm)
        client["attributes"] = {**client.get("attributes", {}), **attributes}
        self._request("PUT", f"/{realm}/clients/{client['id']}", client)


def _ok_json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise KeycloakRequestFailed(
            f"{response.request.method} {response.request.url.path}: HTTP "
            f"{response.status_code} {response.text[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body
