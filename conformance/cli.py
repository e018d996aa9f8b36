"""`hf-conformance SYSTEM --base-url URL`: check an implementation of KKI or SISDMK, an SSO realm
or the adapter's API against its contract and rules. Exit 0 conforming, 1 violations, 2 could
not run."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from conformance import oidc, reports
from conformance.baseline import BaselineEntry, BaselineError, load_baseline
from conformance.context import MAX_PAGES, Clock, Credentials, RunOptions
from conformance.masking import mask_finding, mask_text
from conformance.provider import CannotRun
from conformance.runner import RunResult, execute
from conformance.systems import SYSTEMS

EXIT_CONFORMING, EXIT_VIOLATIONS, EXIT_CANNOT_RUN = 0, 1, 2
# The terminal shows the run's notes after the summary, this many, each cut to one line; the
# reports keep them all in full.
MAX_NOTES_SHOWN = 20
MAX_NOTE_CHARS = 200


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _rate(text: str) -> float:
    # The unit is required: a bare "5" could as well be meant per minute.
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*s\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a rate like 5/s (requests per second, the /s included)"
        )
    return float(match.group(1))


def _positive(kind: type[int] | type[float]) -> argparse._ActionType:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            # inf and nan parse as floats; a timer cannot wait for either.
            raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-conformance",
        description="Check a KKI or SISDMK implementation (a mock, a vendor's staging URL) "
        "against its contract, the protocols and the domain rules; an SSO realm (sso) against "
        "what the adapter needs; the adapter's own API (adapter) with tokens from the realm.",
        epilog="Exit status: 0 conforming, 1 violations, 2 could not run.",
    )
    parser.add_argument("system", choices=sorted(SYSTEMS), help="which system the URL implements")
    parser.add_argument("--base-url", required=True, help="the implementation's base URL")
    creds = parser.add_argument_group("credentials (also from the environment)")
    creds.add_argument("--api-key", default=os.environ.get("HF_CONFORMANCE_API_KEY"))
    creds.add_argument("--client-id", default=os.environ.get("HF_CONFORMANCE_CLIENT_ID"))
    creds.add_argument("--client-secret", default=os.environ.get("HF_CONFORMANCE_CLIENT_SECRET"))
    creds.add_argument(
        "--insecure", action="store_true", help="do not verify TLS certificates (test setups)"
    )
    out = parser.add_argument_group("reports")
    out.add_argument("--junit", type=Path, metavar="FILE")
    out.add_argument("--html", type=Path, metavar="FILE")
    out.add_argument("--json", type=Path, metavar="FILE")
    out.add_argument("--baseline", type=Path, metavar="FILE", help="YAML of accepted deviations")
    bounds = parser.add_argument_group("bounds")
    bounds.add_argument("--spec", type=Path, help="contract to use instead of the bundled one")
    bounds.add_argument("--max-examples", type=_positive(int), default=20, metavar="N")
    bounds.add_argument(
        "--max-pages",
        type=_positive(int),
        default=MAX_PAGES,
        metavar="N",
        help=f"pages read per walk through a list (default {MAX_PAGES})",
    )
    bounds.add_argument(
        "--time-budget", type=_positive(float), default=600.0, metavar="S", help="seconds"
    )
    bounds.add_argument("--include", nargs="+", default=[], metavar="OP", help="operationIds")
    bounds.add_argument("--exclude", nargs="+", default=[], metavar="OP", help="operationIds")
    bounds.add_argument("--seed", type=int, help="makes the generated requests reproducible")
    bounds.add_argument("--rate-limit", type=_rate, metavar="R/s", help="at most R requests/s")
    bounds.add_argument(
        "--phases", nargs="+", default=[], metavar="PHASE", help="run only these phases"
    )
    peer = parser.add_argument_group("cross-registry checks")
    peer.add_argument("--peer", metavar="URL", help="the other registry (SISDMK for kki, ...)")
    peer.add_argument("--peer-api-key", default=os.environ.get("HF_CONFORMANCE_PEER_API_KEY"))
    peer.add_argument("--peer-client-id", default=os.environ.get("HF_CONFORMANCE_PEER_CLIENT_ID"))
    peer.add_argument(
        "--peer-client-secret", default=os.environ.get("HF_CONFORMANCE_PEER_CLIENT_SECRET")
    )
    parser.add_argument(
        "--state-url",
        metavar="URL",
        help="Pact provider-state set-up URL (default: the mocks' /__admin/provider-states "
        "when the target has one; without it only stateless interactions are verified)",
    )
    oidc.add_arguments(parser)
    parser.add_argument("--webhooks", action="store_true", help="also check webhook delivery")
    parser.add_argument(
        "--receiver-listen",
        metavar="HOST:PORT",
        type=_host_port,
        default=("127.0.0.1", 0),
        help="where the --webhooks receiver listens (default 127.0.0.1, a free port)",
    )
    parser.add_argument(
        "--receiver-url",
        metavar="URL",
        help="the URL the provider is subscribed with, when it reaches the receiver by another "
        "address (a tunnel, a public host); default: the listening address",
    )
    parser.add_argument(
        "--webhook-wait",
        type=_positive(float),
        metavar="S",
        help="seconds --webhooks waits for the deliveries (default 10 on the mocks, 120 on a "
        "provider)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument(
        "--as-of",
        metavar="YYYY-MM-DD",
        type=dt.date.fromisoformat,
        help="judge dates as of this day (ages in NIKs, validity periods, baseline expiry); "
        "default today — set it to reproduce an earlier run's report",
    )
    return parser


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:9000)")
    return host, int(port)


def options_from(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        system=args.system,
        base_url=args.base_url.rstrip("/"),
        credentials=Credentials(args.api_key, args.client_id, args.client_secret),
        spec=args.spec,
        max_examples=args.max_examples,
        max_pages=args.max_pages,
        time_budget_s=args.time_budget,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        seed=args.seed,
        rate_limit=args.rate_limit,
        peer_url=args.peer.rstrip("/") if args.peer else None,
        peer_credentials=Credentials(
            args.peer_api_key,
            args.peer_client_id,
            args.peer_client_secret,
            option_prefix="--peer-",
            env_prefix="HF_CONFORMANCE_PEER_",
        ),
        webhooks=args.webhooks,
        receiver_listen=args.receiver_listen,
        receiver_url=args.receiver_url,
        webhook_wait_s=args.webhook_wait,
        state_url=args.state_url,
        tls_verify=not args.insecure,
        phases=tuple(args.phases),
        oidc=oidc.options_from(args),
    )


def main(argv: Sequence[str] | None = None, *, clock: Clock = utc_today) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True, highlight=False)
    try:
        baseline: list[BaselineEntry] = load_baseline(args.baseline) if args.baseline else []
        if args.as_of is not None:
            as_of: dt.date = args.as_of
            clock = lambda: as_of  # noqa: E731 - the one clock of this run
        for path in _report_paths(args):
            reports.prepare_report_path(path)
        result = _run(options_from(args), clock, baseline, err, quiet=args.quiet)
        print_summary(result, Console(highlight=False))
        # The verdict is on the terminal whatever happens to the files; a report that could not
        # be written is still exit 2: the pipeline that asked for it would miss it.
        unwritten = _write_reports(result, args)
    except (CannotRun, BaselineError, reports.ReportPathError, OSError) as exc:
        _say(f"cannot run: {_one_line(exc)}")
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        _say("cannot run: interrupted")
        return EXIT_CANNOT_RUN
    except (
        Exception
    ) as exc:  # the edge: one line, never a traceback (HF_CONFORMANCE_DEBUG shows it)
        if os.environ.get("HF_CONFORMANCE_DEBUG"):
            raise
        _say(f"cannot run: internal error {type(exc).__name__}: {_one_line(exc)}")
        return EXIT_CANNOT_RUN
    for line in unwritten:
        _say(line)
    if result.verdict == "incomplete":
        # Last, as the docs promise: the job's last line names the phases that did not run.
        skipped = ", ".join(f"{phase.name} {phase.status}" for phase in result.incomplete)
        _say(
            f"incomplete: {skipped}; nothing failed in what ran, but the run is not a verdict "
            "(give --time-budget more seconds, or the phase what it needs)"
        )
    return EXIT_CANNOT_RUN if unwritten else result.exit_code


def _say(line: str) -> None:
    """One unwrapped line on stderr (rich would wrap it at the terminal width)."""
    print(f"hf-conformance: {reports.well_formed(line)}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _run(
    options: RunOptions, clock: Clock, baseline: list[BaselineEntry], err: Console, *, quiet: bool
) -> RunResult:
    if quiet or not err.is_terminal:

        def plain(phase: str, state: str) -> None:
            if not quiet and state != "start":
                err.print(f"{phase}: {state}", markup=False)

        return execute(options, clock, baseline, plain)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err
    ) as progress:
        tasks: dict[str, object] = {}

        def show(phase: str, state: str) -> None:
            if state == "start":
                tasks[phase] = progress.add_task(f"{phase} …", total=1)
            else:
                progress.update(tasks[phase], description=f"{phase}: {state}", completed=1)  # type: ignore[arg-type]

        return execute(options, clock, baseline, show)


def _report_paths(args: argparse.Namespace) -> list[Path]:
    return [path for path in (args.junit, args.html, args.json) if path is not None]


def _write_reports(result: RunResult, args: argparse.Namespace) -> list[str]:
    """Write every report asked for; one line for each that could not be written."""
    writers = (
        (args.junit, reports.write_junit),
        (args.html, reports.write_html),
        (args.json, reports.write_json),
    )
    unwritten = []
    for path, write in writers:
        if path is None:
            continue
        try:
            write(result, path)
        except OSError as exc:
            unwritten.append(
                f"report {path} not written ({exc.strerror or _one_line(exc)}); the run "
                f"finished: {result.verdict}, exit {result.exit_code} without this report"
            )
    return unwritten


def _short(text: str) -> str:
    """One terminal line: whitespace collapsed, cut at `MAX_NOTE_CHARS`."""
    line = " ".join(reports.well_formed(text).split())
    return line if len(line) <= MAX_NOTE_CHARS else line[: MAX_NOTE_CHARS - 1] + "…"


def print_summary(result: RunResult, console: Console) -> None:
    findings = [mask_finding(f) for f in result.findings]
    # What a provider sent may hold a lone surrogate, which no terminal encoding takes.
    line = reports.well_formed
    title = f"hf-conformance {result.options.system} — {result.options.base_url}"
    table = Table(title=line(title))
    # Every column counts checks (a rule on an operation), not findings: one check may have many.
    table.add_column("rule")
    table.add_column("operations checked", justify="right")
    table.add_column("failing", justify="right")
    table.add_column("reported only", justify="right")
    checked = Counter(rule for rule, _ in result.checked)
    failing = Counter(rule for rule, _ in {(f.rule, f.operation) for f in findings if f.fails_run})
    reported = Counter(
        rule for rule, _ in {(f.rule, f.operation) for f in findings if not f.fails_run}
    )
    for rule in sorted(checked | failing | reported):
        table.add_row(
            rule,
            str(checked[rule]),
            f"[red]{failing[rule]}[/]" if failing[rule] else "0",
            str(reported[rule]),
        )
    console.print(table)
    for finding in findings[:50]:
        mark = "FAIL" if finding.fails_run else "note"
        console.print(
            line(f"{mark} {finding.rule} {finding.operation}: {finding.message}"),
            markup=False,
            soft_wrap=True,
        )
    if len(findings) > 50:
        console.print(f"… and {len(findings) - 50} more findings (see the reports)")
    shown = Counter(f"{f.rule} {f.operation}" for f in findings)
    for check, total in sorted(result.stats.get("findings_per_check", {}).items()):
        if total > shown[check]:
            console.print(
                line(f"{check}: {total} findings in all, {shown[check]} shown"), markup=False
            )
    skipped = Counter(rule for rule, _ in result.skipped)
    for rule, total in sorted(skipped.items()):
        console.print(
            f"{rule}: {total} skipped, not verified (the notes and reports say which and why)",
            markup=False,
        )
    for phase in result.phases:
        if phase.status != "done":
            console.print(line(f"{phase.name}: {phase.status}"), markup=False)
    for note in result.notes[:MAX_NOTES_SHOWN]:
        console.print(f"note: {_short(mask_text(note))}", markup=False, soft_wrap=True)
    if len(result.notes) > MAX_NOTES_SHOWN:
        console.print(f"… and {len(result.notes) - MAX_NOTES_SHOWN} more notes (see the reports)")
    console.print(
        f"{result.verdict}: {sum(f.fails_run for f in findings)} failing findings, "
        f"{sum(not f.fails_run for f in findings)} reported only, "
        f"{len(result.checked)} checks, "
        + (f"{len(result.skipped)} skipped, " if result.skipped else "")
        + f"{result.seconds:.1f} s",
        markup=False,
    )


if __name__ == "__main__":
    sys.exit(main())
