"""`make conformance`: both mocks started, `hf-conformance` run against each (with the other as
its peer, webhooks included), reports under reports/conformance/; exits non-zero if either fails.

`quick_commands` and `summary_table` are shared with `make demo`, which ends with a short run
of the same command (no fuzzing, no Pact, no webhooks: well under a minute) on its own mocks
and the realm.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from harness.processes import start_mock, unwind_on_kill

REPO = Path(__file__).resolve().parents[1]
REPORTS = REPO / "reports" / "conformance"
KKI_KEY = "kki-dev-token"
SISDMK_CLIENT = ("sisdmk-dev-client", "sisdmk-dev-secret")
# The checks a quick run keeps: every phase that only reads, none that fuzzes (Schemathesis),
# replaces the mock's data (Pact's provider states) or subscribes (webhooks).
QUICK_PHASES: Final = {
    "kki": ("pagination", "reads", "credentials", "errors", "domain", "skp", "peer"),
    "sisdmk": ("token", "pagination", "reads", "credentials", "errors", "domain", "peer"),
}


def conformance_executable() -> str:
    return str(Path(sys.executable).parent / "hf-conformance")


def _command(system: str, url: str, peer: str, extra: Sequence[str]) -> list[str]:
    kki = ["--api-key", KKI_KEY]
    sisdmk = ["--client-id", SISDMK_CLIENT[0], "--client-secret", SISDMK_CLIENT[1]]
    own, peer_credentials = (kki, sisdmk) if system == "kki" else (sisdmk, kki)
    peer_flags = [
        f"--peer-{flag.removeprefix('--')}" if flag.startswith("--") else flag
        for flag in peer_credentials
    ]
    return [
        conformance_executable(),
        system,
        "--base-url",
        url,
        *own,
        "--peer",
        peer,
        *peer_flags,
        *extra,
    ]


def full_command(system: str, url: str, peer: str, extra: Sequence[str]) -> list[str]:
    """What `make conformance` runs for `system`: every phase, reports under `REPORTS`."""
    return _command(
        system,
        url,
        peer,
        [
            "--webhooks",
            "--junit",
            str(REPORTS / f"{system}.xml"),
            "--html",
            str(REPORTS / f"{system}.html"),
            "--json",
            str(REPORTS / f"{system}.json"),
            *extra,
        ],
    )


def quick_commands(
    urls: Mapping[str, str], issuer: str, clients: Sequence[tuple[str, str]], reports: Path
) -> dict[str, list[str]]:
    """A quick run against both mocks (`urls` by system) and the realm at `issuer`, each
    writing `reports`/<name>.json; `clients` are (client id, secret) pairs to get tokens for."""
    commands = {
        system: _command(
            system,
            urls[system],
            urls[peer],
            [
                "--phases",
                *QUICK_PHASES[system],
                "--quiet",
                "--json",
                str(reports / f"{system}.json"),
            ],
        )
        for system, peer in (("kki", "sisdmk"), ("sisdmk", "kki"))
    }
    client_flags = [flag for pair in clients for flag in ("--client", f"{pair[0]}:{pair[1]}")]
    commands["sso"] = [
        conformance_executable(),
        "sso",
        "--base-url",
        issuer,
        "--issuer",
        issuer,
        *client_flags,
        *(["--allow-http"] if issuer.startswith("http://") else []),
        "--quiet",
        "--json",
        str(reports / "sso.json"),
    ]
    return commands


@dataclass(frozen=True)
class Outcome:
    """How one hf-conformance run ended: 0 conforming, 1 violations, 2 could not run."""

    status: int
    stderr: str = ""

    def last_error(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else "no message"


def run_all(commands: Mapping[str, Sequence[str]], *, quiet: bool = False) -> dict[str, Outcome]:
    """Each command in turn, their output on the terminal; `quiet`: all at once (they check
    different targets and read only), output kept off the terminal except each one's stderr."""
    if not quiet:
        return {
            name: Outcome(
                subprocess.run(list(argv), check=False).returncode  # noqa: S603 - built here
            )
            for name, argv in commands.items()
        }
    running = {
        name: subprocess.Popen(  # noqa: S603 - our own command, argv built here
            list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for name, argv in commands.items()
    }
    try:
        errors = {name: process.communicate()[1] or "" for name, process in running.items()}
        return {name: Outcome(running[name].returncode, errors[name]) for name in running}
    finally:
        for process in running.values():  # Ctrl-C while they run
            if process.poll() is None:
                process.kill()
                process.wait()


def summary_table(reports: Mapping[str, Path], statuses: Mapping[str, int]) -> Table:
    """One row per run: exit status, verdict, what it checked, errors (failing the run) and
    warnings or accepted findings (reported only), its time."""
    table = Table(title="conformance — summary")
    for column in ("target", "exit", "verdict", "checks", "errors", "reported only", "time"):
        table.add_column(column, justify="left" if column in {"target", "verdict"} else "right")
    for name, path in reports.items():
        status = str(statuses.get(name, "?"))
        report = _read(path)
        try:
            if report is None:
                raise ValueError("no report")
            findings = report["findings"]
            failing = sum(1 for f in findings if f["severity"] == "error" and not f.get("accepted"))
            verdict = str(report["verdict"])
            row = (
                f"{name} {report['base_url']}",
                status,
                f"[green]{verdict}[/]" if verdict == "conforming" else f"[red]{verdict}[/]",
                f"{len(report['checked']):,}",
                str(failing),
                str(len(findings) - failing),
                f"{float(report['seconds']):.1f} s",
            )
        except (KeyError, TypeError, ValueError) as exc:
            what = "no report" if report is None else f"unreadable report ({exc!r})"
            row = (name, status, f"[red]{what}[/]", "", "", "", "")
        table.add_row(*row)
    return table


def _read(path: Path) -> dict[str, Any] | None:
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make conformance", description=__doc__)
    parser.add_argument("--size", type=int, default=1000, help="people per mock (default 1000)")
    parser.add_argument("--seed", type=int, default=42, help="the mocks' data seed")
    parser.add_argument("extra", nargs="*", help="more hf-conformance options, after --")
    args = parser.parse_args(argv)
    unwind_on_kill()  # the mocks run in sessions of their own: stopped by the finally blocks
    REPORTS.mkdir(parents=True, exist_ok=True)
    for old in REPORTS.glob("*.*"):  # a run that cannot start writes none: never show the last
        old.unlink()
    kki, kki_url = start_mock("kki", size=args.size, seed=args.seed)
    try:
        sisdmk, sisdmk_url = start_mock("sisdmk", size=args.size, seed=args.seed)
        try:
            outcomes = run_all(
                {
                    "kki": full_command("kki", kki_url, sisdmk_url, args.extra),
                    "sisdmk": full_command("sisdmk", sisdmk_url, kki_url, args.extra),
                }
            )
        finally:
            sisdmk.stop()
    finally:
        kki.stop()
    statuses = {system: outcome.status for system, outcome in outcomes.items()}
    Console().print(
        summary_table({system: REPORTS / f"{system}.json" for system in statuses}, statuses)
    )
    for system, status in statuses.items():
        print(f"conformance {system}: exit {status}; reports in {REPORTS}/{system}.*")
    return max(statuses.values())


if __name__ == "__main__":
    sys.exit(main())
