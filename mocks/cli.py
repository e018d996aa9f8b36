"""`hf-mock kki|sisdmk --port P [--size N --seed S]`: run one mock server in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mocks.core.faults import FaultSpecError, RouteTable, load_fault_profile
from mocks.core.runtime import MockRuntime, MockSettings, load_spec
from mocks.core.startup_cache import CACHE_DIR_ENV, default_cache_dir
from mocks.core.system import MockSystem
from mocks.core.webhooks import WebhookConfigError, WebhookPolicy
from mocks.registry import SYSTEMS, system_named

MAX_SIZE = 1_000_000


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"at most {MAX_SIZE:,} people, got {value:,}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def env_name(system: str, credential: str) -> str:
    return f"HF_MOCK_{system.upper()}_{credential.upper()}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-mock",
        description="Run a stateful, fault-injectable mock of KKI or SISDMK that sends signed "
        "webhooks. Admin API under /__admin, API docs under /ui.",
    )
    sub = parser.add_subparsers(dest="system", required=True, metavar="{kki,sisdmk}")
    for name, system in SYSTEMS.items():
        p = sub.add_parser(name, help=f"mock of {system.title}")
        p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
        p.add_argument("--port", type=_port, required=True, help="TCP port (0 = any free port)")
        p.add_argument("--size", type=_size, default=1000, help="synthetic people (default 1000)")
        p.add_argument("--seed", type=int, default=42, help="data set seed (default 42)")
        p.add_argument(
            "--mismatch-rate",
            type=_rate,
            default=0.02,
            help="share of people whose KKI name or birth date differs from SISDMK's "
            "(default 0.02)",
        )
        p.add_argument("--faults", type=Path, help="YAML fault profile applied at start")
        p.add_argument(
            "--cache-dir",
            type=Path,
            default=None,
            help=f"where generated data sets are kept between starts (env {CACHE_DIR_ENV}; "
            "default $XDG_CACHE_HOME/hf-mock or ~/.cache/hf-mock)",
        )
        p.add_argument(
            "--no-cache", action="store_true", help="always generate; neither read nor write"
        )
        p.add_argument("--webhook-max-attempts", type=_positive_int, default=8)
        p.add_argument("--webhook-base-delay-ms", type=_positive_int, default=500)
        p.add_argument("--webhook-max-delay-ms", type=_positive_int, default=60_000)
        p.add_argument("--webhook-timeout-ms", type=_positive_int, default=5_000)
        p.add_argument("--token-ttl", type=_positive_int, default=14_399, help=argparse.SUPPRESS)
        p.add_argument(
            "--certfile",
            type=Path,
            help="serve HTTPS with this PEM certificate (chain, leaf first); needs --keyfile",
        )
        p.add_argument("--keyfile", type=Path, help="the PEM private key of --certfile")
        p.add_argument(
            "--webhook-ca-bundle",
            type=Path,
            help="PEM CA certificates that https webhook receivers are verified against "
            "(default: certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR when set)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress or summary output")
        for credential, default in system.default_credentials().values.items():
            flag = "--" + credential.replace("_", "-")
            variable = env_name(name, credential)
            p.add_argument(
                flag,
                default=os.environ.get(variable, default),
                help=f"development credential (env {variable}; default {default!r})",
            )
    return parser


def settings_from(args: argparse.Namespace, system: MockSystem) -> MockSettings:
    credentials = {
        credential: str(getattr(args, credential))
        for credential in system.default_credentials().values
    }
    routes = RouteTable.from_spec(load_spec(system.spec_file))
    faults = load_fault_profile(args.faults, routes=routes) if args.faults else []
    return MockSettings(
        host=args.host,
        port=args.port,
        size=args.size,
        seed=args.seed,
        mismatch_rate=args.mismatch_rate,
        credentials=credentials,
        faults=faults,
        webhook_policy=WebhookPolicy(
            max_attempts=args.webhook_max_attempts,
            base_delay_ms=args.webhook_base_delay_ms,
            max_delay_ms=args.webhook_max_delay_ms,
            timeout_ms=args.webhook_timeout_ms,
        ),
        token_ttl_s=args.token_ttl,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        certfile=args.certfile,
        keyfile=args.keyfile,
        webhook_ca_bundle=args.webhook_ca_bundle,
    )


class TlsOptionError(ValueError):
    """--certfile, --keyfile or --webhook-ca-bundle is missing its pair or is no readable file."""


def check_tls_options(args: argparse.Namespace) -> None:
    if (args.certfile is None) != (args.keyfile is None):
        raise TlsOptionError("--certfile and --keyfile go together: give both, or neither")
    for option, path in (
        ("--certfile", args.certfile),
        ("--keyfile", args.keyfile),
        ("--webhook-ca-bundle", args.webhook_ca_bundle),
    ):
        if path is not None and not path.is_file():
            raise TlsOptionError(f"{option} {path}: no readable file there")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (not on Windows): its C transports serve ~1.5x the
    requests of the default loop's (bench/bench_mocks.py); else the default loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def build_runtime(
    system: MockSystem, settings: MockSettings, console: Console | None
) -> MockRuntime:
    if console is None:
        return MockRuntime.build(system, settings)
    with Progress(
        TextColumn(f"[bold]{system.name}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=settings.size)

        def on_progress(phase: str, done: int, total: int) -> None:
            progress.update(task, description=phase, completed=done, total=total)

        return MockRuntime.build(system, settings, on_progress=on_progress)


def summary_table(runtime: MockRuntime, url: str, startup_s: float) -> Table:
    table = Table(title=f"hf-mock {runtime.system.name} ready", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("URL", url)
    table.add_row("API docs", f"{url}/ui/")
    table.add_row("admin API", f"{url}/__admin/health")
    table.add_row("people (seed)", f"{runtime.settings.size:,} (seed {runtime.settings.seed})")
    for name, store in runtime.stores.items():
        table.add_row(f"  {name}", f"{len(store):,}")
    if runtime.settings.cache_dir is None:
        table.add_row("data set", "generated (--no-cache)")
    elif runtime.generated:
        table.add_row("data set", f"generated; cached in {runtime.settings.cache_dir}")
    else:
        table.add_row("data set", f"from the start-up cache {runtime.loaded_from}")
    table.add_row("faults at start", str(len(runtime.injector.list())))
    for credential, value in runtime.settings.credentials.items():
        table.add_row(credential, value)
    table.add_row("start-up", f"{startup_s:.2f} s")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    system = system_named(args.system)
    err = Console(stderr=True)
    started = time.perf_counter()
    try:
        check_tls_options(args)
    except TlsOptionError as exc:
        err.print(f"[red]hf-mock: bad TLS option:[/] {exc}")
        return 2
    try:
        settings = settings_from(args, system)
    except FaultSpecError as exc:
        err.print(f"[red]hf-mock: bad fault profile:[/] {exc}\nFix the file and start again.")
        return 2
    except WebhookConfigError as exc:
        err.print(f"[red]hf-mock: bad webhook option:[/] {exc}")
        return 2
    runtime = build_runtime(system, settings, None if args.quiet else err)

    def ready(port: int) -> None:
        scheme = "https" if settings.certfile is not None else "http"
        url = f"{scheme}://{settings.host}:{port}"
        if args.quiet:
            print(f"hf-mock {system.name} listening on {url}", file=sys.stderr, flush=True)
        else:
            err.print(summary_table(runtime, url, time.perf_counter() - started))

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(runtime.serve(on_ready=ready))
    except OSError as exc:
        err.print(
            f"[red]hf-mock: cannot listen on {settings.host}:{settings.port}:[/] {exc.strerror}. "
            "Pick another --port (or 0 for any free one)."
        )
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
