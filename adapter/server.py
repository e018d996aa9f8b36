"""`hf-adapter serve`: the Flask app under gunicorn (gthread workers), or Flask's server with --dev.

Each gunicorn worker builds its own app after the fork (engine pools and broker connections
must not cross a fork). Several workers share their metrics through ``PROMETHEUS_MULTIPROC_DIR``
when it is set. With ``OPS_BIND``, gunicorn listens there too and `health.ByListener` sends
what arrives on it to the ops app (``/readyz``, ``/metrics``), which the public bind lacks.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from flask import Flask
from gunicorn.app.base import BaseApplication
from werkzeug.serving import make_server

from adapter import health
from adapter.errors import ConfigurationError
from adapter.settings import Settings, load_settings, ops_address

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from adapter.composition import Services

DEFAULT_BIND: Final = "127.0.0.1:8000"
GRACEFUL_TIMEOUT_S: Final = 30
# Threads of a served process that use the database beside the request threads: the audit
# sealer and the webhook receiver's committing and publishing batchers.
SERVE_POOL_BESIDE_THREADS: Final = 3


@dataclass(frozen=True)
class TlsFiles:
    """The certificate (chain) and private key `serve` answers HTTPS with."""

    certfile: Path
    keyfile: Path

    @classmethod
    def from_options(cls, certfile: Path | None, keyfile: Path | None) -> TlsFiles | None:
        """Both files or neither; each must be readable and the pair must load together."""
        if certfile is None and keyfile is None:
            return None
        if certfile is None or keyfile is None:
            raise ConfigurationError(
                "--certfile and --keyfile go together: give both to serve HTTPS, or neither"
            )
        for option, path in (("--certfile", certfile), ("--keyfile", keyfile)):
            if not path.is_file():
                raise ConfigurationError(f"{option} {path}: no readable file there")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigurationError(
                f"--certfile {certfile} and --keyfile {keyfile} do not load as a PEM "
                f"certificate and its private key ({exc.__class__.__name__}: {exc})"
            ) from None
        return cls(certfile, keyfile)


class AdapterServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application configured from the command line, not from a config file."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._services: Services | None = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        self.cfg.set("worker_exit", self._worker_exit)

    def load(self) -> WSGIApplication:
        from adapter.app import create_app

        settings = load_settings()
        app = create_app(settings, seal=True, pool_size=serve_pool_size(self.cfg.threads))
        self._services = app.extensions["hf_services"]
        return served_app(app, settings)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        """In a worker leaving (its requests answered): commit and publish what its webhook
        threads still hold, seal once more, close its connections. Without it the process's
        threads die with it, and events committed but not yet published wait for the relay.
        The arbiter calls this hook too, for a worker it could not signal: nothing of its own
        to close then."""
        services, self._services = self._services, None
        if services is not None and os.getpid() == worker.pid:
            services.close()


def serve_pool_size(threads: int) -> int:
    """PostgreSQL connections a served process keeps: one per request thread plus the audit
    threads beside them (`SERVE_POOL_BESIDE_THREADS`). A smaller pool opens a new
    connection (a server process forked, authenticated) beyond it on every burst and closes
    it again when it is checked in."""
    return threads + SERVE_POOL_BESIDE_THREADS


def served_app(app: Flask, settings: Settings) -> WSGIApplication:
    """`app`, behind `health.ByListener` when ``OPS_BIND`` moves the ops routes off it."""
    ops = app.extensions.get(health.OPS_APP)
    if settings.ops_bind is None or ops is None:
        return app
    return health.ByListener(app, ops, ops_address(settings.ops_bind)[1])


def serve(*, bind: str, workers: int, threads: int, dev: bool, tls: TlsFiles | None = None) -> int:
    # Validate once in the parent: a bad configuration stops here with the usual message.
    settings: Settings = load_settings()
    # Refused here with the usual one-line message, not in each worker after the fork, when
    # stored digests are under a blind-index key not configured.
    from adapter.composition import build_services

    build_services(settings).close()
    binds = [bind]
    if settings.ops_bind is not None:
        _check_ops_bind(bind, settings.ops_bind)
        binds.append(settings.ops_bind)
    if dev:
        from adapter.app import create_app

        app = create_app(settings, seal=True)
        ssl_context = (str(tls.certfile), str(tls.keyfile)) if tls is not None else None
        if settings.ops_bind is not None:
            ops_host, ops_port = ops_address(settings.ops_bind)
            ops = make_server(
                ops_host,
                ops_port,
                app.extensions[health.OPS_APP],
                threaded=True,
                ssl_context=ssl_context,
            )
            threading.Thread(target=ops.serve_forever, name="ops-http", daemon=True).start()
        host, _, port = bind.rpartition(":")
        app.run(host=host or "127.0.0.1", port=int(port), threaded=True, ssl_context=ssl_context)
        return 0
    multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    options: dict[str, Any] = {
        "bind": binds,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "accesslog": None,
        "loglevel": "info",
        # gunicorn's control socket (`gunicornc`: scale, reload, stop) is not part of the
        # service, and every server on a host would take the same default path.
        "control_socket_disable": True,
    }
    if tls is not None:
        # Every listener (the public bind and OPS_BIND) then answers HTTPS only.
        options["certfile"] = str(tls.certfile)
        options["keyfile"] = str(tls.keyfile)
    if multiprocess_dir:
        from prometheus_client import multiprocess

        def child_exit(server: Any, worker: Any) -> None:
            multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

        options["child_exit"] = child_exit
    AdapterServer(options).run()
    return 0


def _check_ops_bind(bind: str, ops_bind: str) -> None:
    # The ops app is chosen by the listener's port: both must be TCP addresses, on two ports.
    try:
        _, port = ops_address(bind)
    except ValueError:
        raise ConfigurationError(
            f"--bind {bind}: with OPS_BIND set, bind a TCP host:port (not a unix socket), "
            "so that requests can be told apart by the port they arrived on"
        ) from None
    if port == ops_address(ops_bind)[1]:
        raise ConfigurationError(
            f"OPS_BIND {ops_bind} uses the port of --bind {bind}; give it a port of its own"
        )
