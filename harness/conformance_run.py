"""`make conformance`: both mocks started, `hf-conformance` run against each (with the other as
its peer, webhooks included), reports under reports/conformance/; exits non-zero if either fails."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.processes import start_mock

REPO = Path(__file__).resolve().parents[1]
REPORTS = REPO / "reports" / "conformance"
KKI_KEY = "kki-dev-token"
SISDMK_CLIENT = ("sisdmk-dev-client", "sisdmk-dev-secret")


def _command(system: str, url: str, peer: str, extra: Sequence[str]) -> list[str]:
    kki = ["--api-key", KKI_KEY]
    sisdmk = ["--client-id", SISDMK_CLIENT[0], "--client-secret", SISDMK_CLIENT[1]]
    own, peer_credentials = (kki, sisdmk) if system == "kki" else (sisdmk, kki)
    peer_flags = [
        f"--peer-{flag.removeprefix('--')}" if flag.startswith("--") else flag
        for flag in peer_credentials
    ]
    return [
        str(Path(sys.executable).parent / "hf-conformance"),
        system,
        "--base-url",
        url,
        *own,
        "--peer",
        peer,
        *peer_flags,
        "--webhooks",
        "--junit",
        str(REPORTS / f"{system}.xml"),
        "--html",
        str(REPORTS / f"{system}.html"),
        "--json",
        str(REPORTS / f"{system}.json"),
        *extra,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make conformance", description=__doc__)
    parser.add_argument("--size", type=int, default=1000, help="people per mock (default 1000)")
    parser.add_argument("--seed", type=int, default=42, help="the mocks' data seed")
    parser.add_argument("extra", nargs="*", help="more hf-conformance options, after --")
    args = parser.parse_args(argv)
    REPORTS.mkdir(parents=True, exist_ok=True)
    kki, kki_url = start_mock("kki", size=args.size, seed=args.seed)
    try:
        sisdmk, sisdmk_url = start_mock("sisdmk", size=args.size, seed=args.seed)
        try:
            statuses = {
                system: subprocess.run(  # noqa: S603 - our own command, argv built here
                    _command(system, url, peer, args.extra), check=False
                ).returncode
                for system, url, peer in (
                    ("kki", kki_url, sisdmk_url),
                    ("sisdmk", sisdmk_url, kki_url),
                )
            }
        finally:
            sisdmk.stop()
    finally:
        kki.stop()
    for system, status in statuses.items():
        print(f"conformance {system}: exit {status}; reports in {REPORTS}/{system}.*")
    return max(statuses.values())


if __name__ == "__main__":
    sys.exit(main())
