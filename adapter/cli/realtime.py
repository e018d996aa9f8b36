"""The real-time sub-commands of ``hf-adapter``: serve, worker, events list|show|replay|purge.

`adapter.cli` registers them with one call; the work is done in `adapter.server`,
`adapter.cli.worker` and `adapter.cli.events`, imported when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapter.store.models import WEBHOOK_EVENT_STATES
from adapter.workforce.directory import MAX_PAGE_SIZE

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def add_realtime_commands(commands: Commands) -> None:
    _add_serve(commands)
    _add_worker(commands)
    _add_events(commands)


def positive(limit: int) -> Any:
    """An argparse type: a whole number from 1 to `limit`."""

    def parse(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= limit:
            raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {limit}")
        return int(text)

    return parse


def start_metrics_server(port: int, host: str) -> None:
    """Serve the default registry's metrics on host:port (a thread); `ConfigurationError`
    naming ``--metrics-port`` when it cannot listen there (taken, or a host not of this
    machine)."""
    from prometheus_client import start_http_server

    from adapter.errors import ConfigurationError

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise ConfigurationError(
            f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "choose a free port, or stop the process that holds it"
        ) from None


def _add_serve(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the web service (webhooks, health, metrics) under gunicorn",
        description="The adapter's HTTP service under gunicorn with gthread workers. "
        "With several workers, set PROMETHEUS_MULTIPROC_DIR so /metrics adds them up.",
    )
    serve.add_argument("--bind", default="127.0.0.1:8000", help="host:port (default %(default)s)")
    serve.add_argument("--workers", type=positive(64), default=2, help="processes (default 2)")
    serve.add_argument(
        "--threads", type=positive(256), default=8, help="threads per process (default 8)"
    )
    serve.add_argument(
        "--dev", action="store_true", help="Flask's single-process server instead (development)"
    )
    serve.add_argument(
        "--certfile",
        type=Path,
        help="serve HTTPS with this PEM certificate (chain first to last); needs --keyfile",
    )
    serve.add_argument("--keyfile", type=Path, help="the PEM private key of --certfile")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from adapter.server import TlsFiles, serve

    tls = TlsFiles.from_options(args.certfile, args.keyfile)
    return serve(bind=args.bind, workers=args.workers, threads=args.threads, dev=args.dev, tls=tls)


def _add_worker(commands: Commands) -> None:
    worker = commands.add_parser(
        "worker",
        help="apply webhook events from the queue (RabbitMQ, or the embedded queue)",
        description="Takes events from RabbitMQ (BROKER_URL) or the embedded database queue, "
        "fetches each resource from its source and upserts it; retries with backoff, "
        "dead-letters what keeps failing. Runs until SIGTERM or Ctrl-C.",
    )
    worker.add_argument(
        "--concurrency", type=positive(64), default=4, help="events applied at once (default 4)"
    )
    worker.add_argument(
        "--metrics-port",
        type=positive(65535),
        help="serve this worker's Prometheus metrics on --metrics-host:PORT/metrics",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address --metrics-port listens on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from adapter.cli.worker import run

    return run(
        concurrency=args.concurrency,
        metrics_port=args.metrics_port,
        metrics_host=str(args.metrics_host),
    )


def _add_events(commands: Commands) -> None:
    events = commands.add_parser(
        "events", help="webhook events: list and show dead letters, replay, purge"
    )
    actions = events.add_subparsers(title="actions", metavar="ACTION")

    def usage(args: argparse.Namespace) -> int:
        events.print_help()
        return 2

    events.set_defaults(handler=usage)

    listing = actions.add_parser("list", help="events by state (dead letters by default)")
    listing.add_argument(
        "--state",
        choices=(*WEBHOOK_EVENT_STATES, "any"),
        default="failed",
        help="the events' state; failed = dead-lettered, any = all (default %(default)s)",
    )
    listing.add_argument("--source", choices=("kki", "sisdmk"))
    listing.add_argument(
        "--limit",
        type=positive(MAX_PAGE_SIZE),
        default=100,
        help="events per page, 1-200 (default 100)",
    )
    listing.add_argument("--cursor", help="the next page: the cursor the previous page printed")
    listing.set_defaults(handler=_events_list)

    show = actions.add_parser("show", help="one event: state, attempts, last error, times")
    show.add_argument("event_id")
    show.set_defaults(handler=_events_show)

    replay = actions.add_parser("replay", help="put failed events back in the queue")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("event_ids", nargs="*", default=[], metavar="EVENT_ID")
    which.add_argument("--all", action="store_true", help="every failed event")
    replay.set_defaults(handler=_events_replay)

    purge = actions.add_parser("purge", help="set failed events aside for good, with a reason")
    purge_which = purge.add_mutually_exclusive_group(required=True)
    purge_which.add_argument("event_ids", nargs="*", default=[], metavar="EVENT_ID")
    purge_which.add_argument("--all", action="store_true", help="every failed event")
    purge.add_argument("--reason", required=True, help="why (kept with each purged event)")
    purge.set_defaults(handler=_events_purge)


def _events_list(args: argparse.Namespace) -> int:
    from adapter.cli.events import list_events

    state = None if args.state == "any" else args.state
    return list_events(state=state, source=args.source, limit=args.limit, cursor=args.cursor)


def _events_show(args: argparse.Namespace) -> int:
    from adapter.cli.events import show_event

    return show_event(args.event_id)


def _events_replay(args: argparse.Namespace) -> int:
    from adapter.cli.events import replay

    return replay(args.event_ids, replay_all=args.all)


def _events_purge(args: argparse.Namespace) -> int:
    from adapter.cli.events import purge

    return purge(args.event_ids, purge_all=args.all, reason=args.reason)
