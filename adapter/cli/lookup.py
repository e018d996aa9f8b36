"""`hf-adapter lookup --str NUMBER | --nik-stdin`: a live KKI look-up with the stored fallback.

The NIK is read from standard input, never from the command line (which `ps` and shell
history keep). Names are not printed: this is an operator's check of status and freshness.
"""

from __future__ import annotations

import re
import sys

from rich.table import Table

from adapter.api.spec import load_spec
from adapter.audit import command_line_operator
from adapter.cli.consoles import table_console
from adapter.clients import NotFound, UpstreamError
from adapter.composition import build_services
from adapter.lookup import LookupAnswer
from adapter.settings import load_settings
from indonesian_ids.nik import NIK_LENGTH, validate_nik

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_CANNOT_RUN = 2


def run(*, str_number: str | None, nik_from_stdin: bool) -> int:
    nik = sys.stdin.readline().strip() if nik_from_stdin else None
    problem = nik_problem(nik) if nik is not None else str_problem(str(str_number))
    if problem is not None:
        print(f"hf-adapter: error: {problem}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    services = build_services(load_settings())
    operator = command_line_operator()
    try:
        try:
            if nik is not None:
                answer = services.lookup.by_nik(nik, actor=operator)
            else:  # argparse requires --str or --nik-stdin
                answer = services.lookup.by_str(str(str_number), actor=operator)
        except NotFound:
            print("hf-adapter: KKI has no such registration", file=sys.stderr)
            return EXIT_NOT_FOUND
        except UpstreamError as exc:
            print(f"hf-adapter: {exc}", file=sys.stderr)
            step = (
                "enable the kki connection (PATCH /api/v1/integrations/kki with "
                '{"enabled": true}); a sync is refused while it is disabled'
                if exc.reason == "connection_disabled"
                else "check KKI_BASE_URL and `hf-adapter sync --system kki` so the store holds "
                "a copy to fall back on"
            )
            print(f"hf-adapter: next step: {step}", file=sys.stderr)
            return EXIT_NOT_FOUND
    finally:
        services.close()
    table_console().print(answer_table(answer))
    return EXIT_OK if answer.registrations else EXIT_NOT_FOUND


def str_problem(str_number: str) -> str | None:
    """Why `str_number` is not an STR number as the API takes one (the contract's
    `StrNumber`: 1 to 50 capital letters and digits), or ``None``: the console asks KKI what
    the API would have refused."""
    pattern = load_spec()["components"]["schemas"]["StrNumber"]["pattern"]
    if re.fullmatch(pattern, str_number):
        return None
    return (
        f"--str takes an STR number: 1 to 50 capital letters and digits (got "
        f"{len(str_number)} characters that are not one)"
    )


def nik_problem(nik: str) -> str | None:
    """Why `nik` cannot be a NIK (KKI would refuse it), in words that never quote it — its
    digits are a region, a birth date and a serial — or ``None``."""
    problems = validate_nik(nik)
    if not problems:
        return None
    if len(nik) != NIK_LENGTH or not (nik.isascii() and nik.isdigit()):
        what = problems[0]  # its length, or the position of a character that is not a digit
    else:
        what = "its region, birth date or serial part is impossible"
    return (
        f"the NIK read from standard input is not a valid NIK ({what}); pipe the person's "
        "16-digit NIK, one line, e.g. from a file only you can read"
    )


def answer_table(answer: LookupAnswer) -> Table:
    if answer.live:
        title = "from KKI just now"
    else:
        age = answer.age_s()
        title = f"STALE: stored copy ({answer.stale_reason})" + (
            f", {age / 60:,.0f} min old" if age is not None else ""
        )
    table = Table(title=title)
    for column in ("STR", "status", "valid until", "profession", "version", "fetched at"):
        table.add_column(column)
    for registration in answer.registrations:
        table.add_row(
            registration.str_number,
            registration.status,
            str(registration.valid_until or "for life"),
            registration.profession,
            str(registration.source_version),
            registration.fetched_at.isoformat(timespec="seconds"),
        )
    return table
