"""`hf-adapter lookup --str NUMBER | --nik-stdin`: a live KKI look-up with the stored fallback.

The NIK is read from standard input, never from the command line (which `ps` and shell
history keep). Names are not printed: this is an operator's check of status and freshness.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from adapter.audit import command_line_operator
from adapter.clients import NotFound, UpstreamError
from adapter.composition import build_services
from adapter.lookup import LookupAnswer
from adapter.settings import load_settings

EXIT_OK = 0
EXIT_NOT_FOUND = 1


def run(*, str_number: str | None, nik_from_stdin: bool) -> int:
    services = build_services(load_settings())
    operator = command_line_operator()
    try:
        try:
            if str_number is not None:
                answer = services.lookup.by_str(str_number, actor=operator)
            else:
                answer = services.lookup.by_nik(sys.stdin.readline().strip(), actor=operator)
        except NotFound:
            print("hf-adapter: KKI has no such registration", file=sys.stderr)
            return EXIT_NOT_FOUND
        except UpstreamError as exc:
            print(f"hf-adapter: {exc}", file=sys.stderr)
            print(
                "hf-adapter: next step: check KKI_BASE_URL and `hf-adapter sync --system "
                "kki` so the store holds a copy to fall back on",
                file=sys.stderr,
            )
            return EXIT_NOT_FOUND
    finally:
        services.close()
    Console().print(answer_table(answer))
    return EXIT_OK if answer.registrations else EXIT_NOT_FOUND


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
