"""One real Keycloak per test run, shared by every module (and every xdist worker) that asks for
it, with a realm of its own per module; without the install the tests fail saying what to run.

Registered as a plugin by tests/conftest.py. The session fixture `keycloak_server` follows
pytest-xdist's pattern for a shared resource: in the run's shared temp folder (the parent of each
worker's basetemp; the basetemp itself without xdist) a lock file serialises the workers, and a
state file says where the server is and how many sessions use it. The first session starts the
server, the others reuse it, the last one out stops it. A session whose selected tests need the
server begins acquiring it as soon as collection ends, on a thread, so it boots beside the first
tests (under xdist every worker collects every test, so each worker holds the server till its
session ends). The controller (or the lone session) stops whatever is still recorded when the run
ends, so no Keycloak outlives pytest, even when a worker died. Starting Keycloak takes 20-80 s
on a 2-core machine, by its load; a realm import about 1 s.

Isolation: `module_realm` imports a copy of the realm export under a name of the module's own
(through the admin REST API) and deletes it at the end of the module. Everything a module
changes (keys rotated, users and clients added, token lifespans) is in its own realm, which no
other module's issuer, tokens or admin calls name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.clients.http import tls_context
from harness.idp import load_realm
from harness.keycloak import (
    REALM,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    KeycloakRealm,
    KeycloakServer,
    KeycloakUnavailable,
)
from harness.processes import free_port

STATE_FILE = "hf-keycloak.json"
LOCK_FILE = "hf-keycloak.lock"

# The server this process started (if any): it stops it through its own handle when last out.
_started: KeycloakServer | None = None
# This session's acquisition, begun when collection ended (`pytest_collection_finish`), and the
# server it is starting, until it answers (closed at session end if it never did).
_early: Future[str] | None = None
_starting: KeycloakServer | None = None


def new_keycloak() -> KeycloakServer:
    """A Keycloak server (not started); a missing install fails the test, never skips it."""
    try:
        server = KeycloakServer()
    except KeycloakUnavailable as exc:
        message = str(exc)
    else:
        return server
    # Outside the except block: the failure shows the one line, not a chained traceback.
    pytest.fail(message, pytrace=False)


# -- one server per run -------------------------------------------------------------------------


def _is_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's folder shared by the controller and its workers (never another run's)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if _is_worker() else base


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[Path]:
    """The state file's path, with the run's lock held (the other workers wait)."""
    with open(folder / LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield folder / STATE_FILE
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read(state_file: Path) -> dict[str, Any] | None:
    if not state_file.is_file():
        return None
    state: dict[str, Any] = json.loads(state_file.read_text(encoding="utf-8"))
    return state


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(
            f"{base_url}/realms/master", timeout=5.0, verify=tls_context(None)
        ).is_success
    except httpx.HTTPError:
        return False


def _serving(state: dict[str, Any]) -> bool:
    """Whether the recorded server serves. A slow answer on a busy machine is not a death: while
    its process group lives it is asked again, for as long as a start may take; only a group
    that is gone (its owner killed) or a server that never answers again counts as dead."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while _group_alive(int(state["pgid"])):
        if _answers(str(state["base_url"])):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return False


def _group_alive(pgid: int) -> bool:
    """Any process of the group still running (a zombie waiting for its parent does not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # proc(5): state is field 3, pgrp field 5 (0 and 2 after the command name).
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop_group(state: Mapping[str, Any]) -> None:
    """Stop a server another process started: TERM its process group, KILL it if it lingers."""
    pgid = int(state["pgid"])
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.1)
        if not _group_alive(pgid):
            break
    shutil.rmtree(state["instance"], ignore_errors=True)


def acquire(folder: Path) -> str:
    """The shared server's base URL, starting it if this session is the first to ask."""
    global _started, _starting
    with _locked(folder) as state_file:
        state = _read(state_file)
        if state is not None and _serving(state):
            state["users"] += 1
            state_file.write_text(json.dumps(state), encoding="utf-8")
            return str(state["base_url"])
        if state is not None:  # recorded but dead (its owner was killed): clear it away
            _stop_group(state)
            state_file.unlink()
        server = new_keycloak()
        _starting = server
        try:
            server.start()
        except BaseException:
            server.close()
            raise
        finally:
            _starting = None
        assert server.pid is not None
        assert server.instance_home is not None
        _started = server
        state = {
            "base_url": server.base_url,
            "pgid": os.getpgid(server.pid),
            "instance": str(server.instance_home),
            "users": 1,
            "start_s": server.last_start_s,
        }
        state_file.write_text(json.dumps(state), encoding="utf-8")
        return server.base_url


def release(folder: Path) -> None:
    """This session is done with the server; the last one out stops it."""
    global _started
    with _locked(folder) as state_file:
        state = _read(state_file)
        if state is None:
            return
        state["users"] -= 1
        if state["users"] > 0:
            state_file.write_text(json.dumps(state), encoding="utf-8")
            return
        # Stopped before its record goes: interrupted half-way, the controller finishes the job.
        if _started is not None and _started.base_url == state["base_url"]:
            _started.close()
            _started = None
        else:
            _stop_group(state)
        state_file.unlink()


def stop_leftover(folder: Path) -> None:
    """At the end of the run: stop a server a crashed or interrupted worker left recorded."""
    if not (folder / STATE_FILE).exists():
        return
    with _locked(folder) as state_file:
        state = _read(state_file)
        if state is not None:
            _stop_group(state)
            state_file.unlink()


def pytest_collection_finish(session: pytest.Session) -> None:
    """When a selected test needs the server, begin acquiring it now, on a thread: it boots
    (20-40 s) while this session's first tests run, not when the first module using it begins
    and its worker would sit waiting. Released when the session finishes."""
    global _early
    if session.config.option.collectonly:
        return
    if not any("keycloak_server" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    folder = shared_folder(session.config._tmp_path_factory)  # type: ignore[attr-defined]
    starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keycloak-start")
    _early = starter.submit(acquire, folder)
    starter.shutdown(wait=False)


@pytest.fixture(scope="session")
def keycloak_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the run's one Keycloak (realm export imported); see the module doc."""
    if _early is not None:
        # What the start raised (a missing install's `pytest.fail` too) fails the test here.
        yield _early.result()
        return
    folder = shared_folder(tmp_path_factory)
    base_url = acquire(folder)
    try:
        yield base_url
    finally:
        release(folder)


@pytest.hookimpl(trylast=True)  # after xdist has shut its workers down
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Each session lets go of the server it began acquiring; then the controller (or the only
    session) stops any server still recorded for the run."""
    global _early
    factory = getattr(session.config, "_tmp_path_factory", None)
    if _early is not None and factory is not None:
        # The session ended (interrupted, `-x`, nothing left to run) before its server answered:
        # stop it, again until the start gives up (its process may not have existed yet), so
        # the start fails and clears up after itself. A start blocked on the lock is another
        # session's; the controller stops what that one records.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not _early.done() and time.monotonic() < deadline:
            starting = _starting
            if starting is not None:
                starting.close()
            wait([_early], timeout=0.5)
        if _early.done() and _early.exception() is None:
            release(shared_folder(factory))
        _early = None
    if _is_worker():
        return
    if factory is not None:
        stop_leftover(factory.getbasetemp())


# -- a realm per module -------------------------------------------------------------------------


def realm_name(request: pytest.FixtureRequest) -> str:
    """``healthforce-<module>[-<xdist worker>]``: the module's own copy of the realm export. The
    worker's name keeps the copies apart when ``--dist load`` runs a module on several workers."""
    module = request.path.stem.removeprefix("test_").replace("_", "-")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"{REALM}-{module}-{worker}" if worker else f"{REALM}-{module}"


@contextlib.contextmanager
def imported_realm(base_url: str, name: str) -> Iterator[KeycloakRealm]:
    """A copy of the realm export (same clients, users, secrets, lifespans) named `name`,
    imported through the admin REST API and deleted afterwards."""
    realm = KeycloakRealm(base_url, name)
    with realm.admin() as admin:
        admin.create_realm(load_realm() | {"realm": name})
    try:
        yield realm
    finally:
        with realm.admin() as admin:
            admin.delete_realm(name)


@contextlib.contextmanager
def module_realm(request: pytest.FixtureRequest, base_url: str) -> Iterator[KeycloakRealm]:
    with imported_realm(base_url, realm_name(request)) as realm:
        yield realm


# -- a door in front of the server --------------------------------------------------------------


class TcpRelay:
    """Forwards 127.0.0.1:<port> to the shared server, byte for byte (Keycloak names the issuer
    after the Host header, so the realm seen through it has the relay's address). `close()`
    makes that Keycloak unreachable, as a stopped server would be, for this relay's users only.
    """

    def __init__(self, target_url: str) -> None:
        target = httpx.URL(target_url)
        self._target = (target.host, target.port or 80)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                inbound, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                outbound = socket.create_connection(self._target, timeout=10)
            except OSError:
                inbound.close()
                continue
            outbound.settimeout(None)
            with self._lock:
                if self._closed:
                    inbound.close()
                    outbound.close()
                    return
                self._sockets += [inbound, outbound]
            for source, sink in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        # shutdown() first: close() alone leaves a socket that another thread is accepting on
        # still listening (Linux), and a new connection would be accepted, then dropped.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
