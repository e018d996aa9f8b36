"""Filtered list pages of a mock's store, in process: `GET /v1/registrations?status=…` and
`?profession=…` at N records, each value's walk of 100-record pages against the unfiltered walk
of the same collection in the same invocation (the baseline), and each way a filtered page can
be found — the matching keys sorted, or the collection's order walked testing membership — so
the threshold `mocks.core.store.SORT_AMONG_UP_TO` is read off the table.
Run: `.venv/bin/python bench/bench_mock_filters.py [--size 100000]` (the start-up cache makes a
second run start in seconds); `make bench` runs it too. Writes reports/bench-mock-filters.json."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from mocks.core import store as store_module  # noqa: E402
from mocks.core.runtime import MockRuntime, MockSettings  # noqa: E402
from mocks.core.store import RecordStore  # noqa: E402
from mocks.kki.system import KkiSystem  # noqa: E402

PAGES = 20
LIMIT = 100
REPORT = ROOT / "reports" / "bench-mock-filters.json"
WAYS = {"sorted": sys.maxsize, "walked": 0}


def ms_per_page(store: RecordStore, index: str | None, value: str | None) -> float:
    """Mean of 5 walks of up to `PAGES` pages, each page's keys looked up as the API does."""
    means = []
    for _ in range(5):
        started, pages, cursor = time.perf_counter(), 0, None
        while pages < PAGES:
            among = None if index is None or value is None else store.keys_for(index, value)
            page = store.page(limit=LIMIT, cursor=cursor, among=among)
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        means.append((time.perf_counter() - started) * 1000 / pages)
    return statistics.median(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    runtime = MockRuntime.build(KkiSystem(), MockSettings(size=args.size, seed=42))
    ready_s = time.perf_counter() - started
    console.print(f"KKI mock of {args.size:,} people ready in {ready_s:.1f} s")
    store = runtime.store("registrations")
    baseline = ms_per_page(store, None, None)
    table = Table(title=f"filtered pages of {LIMIT}, {args.size:,} registrations (ms per page)")
    for column in ("filter", "matches", *WAYS, "in use", "÷ unfiltered"):
        table.add_column(column, justify="left" if column == "filter" else "right")
    threshold = store_module.SORT_AMONG_UP_TO
    measured: list[dict[str, object]] = []
    for index in ("status", "profession"):
        counts = {value: len(store.keys_for(index, value)) for value in store._indexes[index].keys}
        ranked = sorted(counts, key=counts.__getitem__)
        for value in dict.fromkeys([ranked[-1], ranked[len(ranked) // 2], ranked[0]]):
            timings = {}
            for way, up_to in WAYS.items():
                store_module.SORT_AMONG_UP_TO = up_to
                timings[way] = ms_per_page(store, index, value)
            store_module.SORT_AMONG_UP_TO = threshold
            used = ms_per_page(store, index, value)
            table.add_row(
                f"{index}={value}",
                f"{counts[value]:,}",
                *(f"{timings[way]:.2f}" for way in WAYS),
                f"{used:.2f}",
                f"{used / baseline:.1f}x",
            )
            measured.append(
                {
                    "filter": f"{index}={value}",
                    "matches": counts[value],
                    "ms_per_page": {way: round(timings[way], 3) for way in WAYS},
                    "ms_per_page_in_use": round(used, 3),
                }
            )
    table.add_row("(none: the baseline)", f"{len(store):,}", "", "", f"{baseline:.2f}", "1.0x")
    console.print(table)
    console.print(f"threshold: matches sorted up to {threshold:,}, walked past it")
    REPORT.parent.mkdir(exist_ok=True)
    report = {
        "size": args.size,
        "limit": LIMIT,
        "sort_among_up_to": threshold,
        "unfiltered_ms_per_page": round(baseline, 3),
        "filters": measured,
    }
    REPORT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
