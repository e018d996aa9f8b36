"""`hf-adapter serve`: the Flask app under gunicorn (gthread workers), or Flask's server with --dev.

Each gunicorn worker builds its own app after the fork (engine pools and broker connections
must not cross a fork). Several workers share their metrics through ``PROMETHEUS_MULTIPROC_DIR``
when it is set.
"""

from __future__ import annotations

import os
from typing import Any, Final

from flask import Flask
from gunicorn.app.base import BaseApplication

from adapter.settings import Settings, load_settings

DEFAULT_BIND: Final = "127.0.0.1:8000"
GRACEFUL_TIMEOUT_S: Final = 30


class AdapterServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application configured from the command line, not from a config file."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from adapter.app import create_app

        return create_app(load_settings())


def serve(*, bind: str, workers: int, threads: int, dev: bool) -> int:
    # Validate once in the parent: a bad configuration stops here with the usual message.
    settings: Settings = load_settings()
    if dev:
        from adapter.app import create_app

        host, _, port = bind.rpartition(":")
        create_app(settings).run(host=host or "127.0.0.1", port=int(port), threaded=True)
        return 0
    multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    options: dict[str, Any] = {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "accesslog": None,
        "loglevel": "info",
    }
    if multiprocess_dir:
        from prometheus_client import multiprocess

        def child_exit(server: Any, worker: Any) -> None:
            multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

        options["child_exit"] = child_exit
    AdapterServer(options).run()
    return 0
