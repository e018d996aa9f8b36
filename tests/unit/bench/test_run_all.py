"""`make bench`'s goal table: each figure against its baseline from the scripts' own reports."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bench.run_all import markdown, rows


def ok(report: Any) -> dict[str, Any]:
    return {
        "command": [],
        "exit_status": 0,
        "seconds": 1.0,
        "load_average_before": (0.5, 0.4, 0.3),
        "load_average_after": (0.6, 0.5, 0.4),
        "report": report,
    }


SYNC = [
    {
        "system": "kki",
        "size": 10_000,
        "sync_records_per_s": 6_000.0,
        "copy_records_per_s": 10_000.0,
        "ratio": 0.6,
        "peak_rss_mib": 100.0,
        "update_records_per_s": 2_000.0,
        "update_ratio": 0.2,
    },
    {
        "system": "kki",
        "size": 100_000,
        "sync_records_per_s": 6_000.0,
        "copy_records_per_s": 10_000.0,
        "ratio": 0.6,
        "peak_rss_mib": 130.0,
        "update_records_per_s": None,
        "update_ratio": None,
    },
]


def test_sync_rows_judge_rate_ratio_updates_and_memory_growth() -> None:
    table = {row.path: row for row in rows({"sync": ok(SYNC)})}
    assert table["full sync, KKI, N=10,000"].met is True
    assert "0.600x" in table["full sync, KKI, N=10,000"].baseline
    assert table["full sync when every record changed, KKI, N=10,000"].met is False
    growth = table["sync peak RSS, KKI, N=100,000 / N=10,000"]
    assert growth.met is False  # 1.3 > 1.2
    assert growth.baseline == "→ 1.30"


def test_a_fast_sync_below_the_absolute_floor_misses_the_goal() -> None:
    slow = [{**SYNC[0], "sync_records_per_s": 4_000.0}]
    (row, _updates) = rows({"sync": ok(slow)})[:2]
    assert row.met is False


def test_webhook_and_api_rows_need_both_the_ratio_and_the_p99() -> None:
    webhooks = {
        "throughput": {
            "bare": {"requests_per_s": 1000.0, "p99_ms": 10.0},
            "durable": {"requests_per_s": 600.0, "p99_ms": 80.0},
        },
        # The shape bench_webhooks.py writes (lag at its default 200 events/s, a storm).
        "lag": {
            "rate_per_s": 200,
            "achieved_rate_per_s": 198.5,
            "events": 3000,
            "lost": 0,
            "p50_ms": 30.0,
            "p95_ms": 400.0,
        },
        "storm": {"events": 3000, "lost": 0, "seconds": 10.0, "events_per_s": 300.0},
        "fault_run": {"events": 600, "lost": 0, "duplicated": 1},
    }
    api = {
        "bare": {"requests_per_s": 1000.0, "p99_ms": 5.0},
        "authenticated_read": {"requests_per_s": 450.0, "p99_ms": 20.0},
    }
    table = rows({"webhooks": ok(webhooks), "api": ok(api)})
    by_start = {row.path.split(" ")[0] + row.path.split(" ")[1]: row for row in table}
    assert by_start["webhookaccepted"].met is False  # ratio 0.6 but p99 80 ms
    assert by_start["webhook→"].met is True
    assert by_start["faultrun,"].met is False  # one applied twice
    assert by_start["eventsapplied"].met is False  # 300 < 400 events/s
    assert by_start["authenticatedGET"].met is True


def test_a_webhook_run_served_by_one_gunicorn_worker_is_shown_not_judged() -> None:
    durable = {"requests_per_s": 600.0, "p99_ms": 20.0, "balanced": False}
    webhooks = {
        "throughput": {"bare": {"requests_per_s": 1000.0, "p99_ms": 5.0}, "durable": durable}
    }
    (row,) = [row for row in rows({"webhooks": ok(webhooks)}) if row.path.startswith("webhook acc")]
    assert row.met is None
    assert "0.600x" in row.baseline
    assert "one gunicorn worker" in row.baseline


def test_an_api_run_served_by_one_gunicorn_worker_is_shown_not_judged() -> None:
    api = {
        "bare": {"requests_per_s": 1000.0, "p99_ms": 5.0, "balanced": False},
        "authenticated_read": {"requests_per_s": 450.0, "p99_ms": 20.0, "balanced": True},
    }
    (row,) = [row for row in rows({"api": ok(api)}) if row.path.startswith("authenticated")]
    assert row.met is None
    assert "0.450x" in row.baseline
    assert "one gunicorn worker" in row.baseline
    balanced = {name: {**run, "balanced": True} for name, run in api.items()}
    (row,) = [row for row in rows({"api": ok(balanced)}) if row.path.startswith("authenticated")]
    assert row.met is True


def test_a_benchmark_that_failed_or_did_not_run_is_reported_as_not_measured() -> None:
    failed = {**ok(None), "exit_status": 1}
    table = rows({"api": failed})
    assert all(row.met is None for row in table)
    assert {row.path for row in table} >= {"authenticated API read", "mocks vs Prism"}


def test_the_markdown_report_says_when_and_under_which_load() -> None:
    text = markdown(
        {"sync": ok(SYNC)},
        rows({"sync": ok(SYNC)}),
        quick=True,
        when=dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC),
    )
    assert text.startswith("# Benchmarks — 2026-12-03 12:00 UTC (quick: not figures to publish)")
    assert "| sync | 1 | 0.50, 0.40, 0.30 | 0.60, 0.50, 0.40 | 0 |" in text
    assert "| full sync, KKI, N=10,000 | 6,000 rec/s | COPY 10,000 rec/s → 0.600x |" in text


def test_a_report_of_an_unexpected_shape_is_a_row_not_a_crash() -> None:
    table = rows({"api": ok({"bare": {}}), "sync": ok({"not": "a list"})})
    unreadable = [row.path for row in table if "report unreadable" in row.path]
    assert len(unreadable) == 2
    assert all(row.met is None for row in table if "report unreadable" in row.path)


def test_a_fault_run_that_lost_events_still_shows_its_figures() -> None:
    webhooks = {"fault_run": {"events": 600, "lost": 3, "duplicated": 0}}
    table = rows({"webhooks": {**ok(webhooks), "exit_status": 1}})
    fault = next(row for row in table if row.path.startswith("fault run"))
    assert fault.figure == "lost 3, applied twice 0"
    assert fault.met is False


def test_mock_rows_compare_each_scenario_with_prism_and_judge_start_up() -> None:
    def load(server: str, scenario: str, rate: float) -> dict[str, Any]:
        return {"server": server, "system": "kki", "scenario": scenario, "requests_per_s": rate}

    mocks = {
        "loads": [
            load("hf-mock", "GET by id", 300.0),
            load("prism", "GET by id", 100.0),
            load("hf-mock", "page of 100", 40.0),
            load("prism", "page of 100", 100.0),
        ],
        "startups": [
            {"system": "kki", "size": 100_000, "cache": "empty", "startup_s": 60.0},
            {
                "system": "kki",
                "size": 100_000,
                "cache": "filled",
                "startup_s": 3.5,
                "rss_kib_per_record": 1.9,
            },
        ],
    }
    table = {row.path: row for row in rows({"mocks": ok(mocks)})}
    assert table["mock GET by id, KKI"].met is True  # 3x
    assert table["mock page of 100, KKI"].met is False  # 0.4x
    assert table["mock start-up and memory, KKI, N=100,000"].met is True


def test_startup_rows_report_each_command_against_its_old_start() -> None:
    report = {
        "commands": [
            {
                "command": "hf-adapter --help",
                "median_before_cpu_s": 1.25,
                "median_after_cpu_s": 1.0,
            }
        ]
    }
    (row,) = [row for row in rows({"startup": ok(report)}) if row.path.startswith("process")]
    assert row.path == "process CPU: hf-adapter --help (median)"
    assert row.figure == "1.00 CPU s"
    assert row.baseline == "imported with the collector running 1.25 CPU s → 0.80x"
    assert row.met is None


def test_mock_filter_rows_report_each_filter_against_the_unfiltered_page() -> None:
    runs = {
        "mock-filters": {
            "exit_status": 0,
            "report": {
                "size": 100_000,
                "limit": 100,
                "sort_among_up_to": 1024,
                "unfiltered_ms_per_page": 0.02,
                "filters": [
                    {
                        "filter": "status=AKTIF",
                        "matches": 94_632,
                        "ms_per_page": {"sorted": 155.5, "walked": 0.03},
                        "ms_per_page_in_use": 0.03,
                    }
                ],
            },
        }
    }
    [row] = [row for row in rows(runs) if row.path.startswith("mock filtered page")]
    assert row.path == "mock filtered page of 100, N=100,000: status=AKTIF (94,632 matches)"
    assert (row.figure, row.baseline) == ("0.03 ms a page", "unfiltered 0.02 ms → 1.5x")
    assert (row.goal, row.met) == ("— (reported)", None)
