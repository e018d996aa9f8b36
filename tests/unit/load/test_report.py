"""`python -m load.report` run again on a run's folder: the title kept, a percentile never above
the maximum, and a folder that is not a run refused in one line."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from load import report

STATS_HEADER = "Type,Name,Request Count,Failure Count,Requests/s,50%,95%,99%,Max Response Time\n"
HISTORY_HEADER = (
    "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,95%,99%,Total Request Count\n"
)
COUNTS = {
    "acknowledged_events": 3,
    "sent": {"new": 3},
    "stored": 3,
    "lost": 0,
    "duplicated": 0,
    "forged_sent": 0,
    "forged_refused": 0,
    "forged_stored": 0,
    "not_applied": 0,
    "states": {"done": 3},
    "unanswered_sends": 0,
    "lag_s": {"events": 3, "p50": 0.1, "p95": 0.2, "p99": 0.2, "max": 0.2},
    "receive_lag_s": {"events": 3, "p50": 0.01, "p95": 0.02, "p99": 0.02, "max": 0.02},
    "sync_runs": [],
}


def a_run(folder: Path) -> Path:
    """A run's folder as `load.run` leaves it: Locust's CSVs and the counts. The sync's p50 and
    p95 are Locust's rounded 2,100 ms against an exact maximum of 2,070 ms."""
    folder.mkdir()
    (folder / f"{report.CSV_PREFIX}_stats.csv").write_text(
        STATS_HEADER
        + "POST,POST /webhooks/kki,3,0,1.5,20,30,40,41\n"
        + "POST,POST /api/v1/sync-runs,2,0,0.1,2100,2100,2100,2070\n"
        + ",Aggregated,5,0,1.6,20,2100,2100,2070\n",
        encoding="utf-8",
    )
    (folder / f"{report.CSV_PREFIX}_stats_history.csv").write_text(
        HISTORY_HEADER
        + "1000,2,POST,POST /webhooks/kki,0,0,20,30,40,1\n"
        + "1000,2,,Aggregated,0,0,20,30,40,1\n"
        + "1009,2,POST,POST /webhooks/kki,1.5,0,20,30,40,3\n"
        + "1009,2,,Aggregated,1.6,0,20,2100,2100,5\n",
        encoding="utf-8",
    )
    (folder / report.COUNTS_FILE).write_text(json.dumps(COUNTS), encoding="utf-8")
    return folder


def test_a_percentile_is_never_reported_above_the_maximum(tmp_path: Path) -> None:
    rows = report.read_stats(a_run(tmp_path / "run") / f"{report.CSV_PREFIX}_stats.csv")
    sync = next(row for row in rows if row["name"] == "POST /api/v1/sync-runs")
    assert (sync["p50_ms"], sync["p95_ms"], sync["p99_ms"], sync["max_ms"]) == (2070,) * 4
    webhooks = next(row for row in rows if row["name"] == "POST /webhooks/kki")
    assert (webhooks["p50_ms"], webhooks["p99_ms"], webhooks["max_ms"]) == (20, 40, 41)


def test_reporting_again_keeps_the_runs_title(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = a_run(tmp_path / "run")
    report.write_report(run, COUNTS, title="steady 50 users against the mocks")
    assert report.main([str(run)]) == 0
    assert json.loads((run / report.JSON_FILE).read_text())["title"] == (
        "steady 50 users against the mocks"
    )
    assert "steady 50 users against the mocks" in capsys.readouterr().out
    # A title given says otherwise.
    assert report.main([str(run), "--title", "renamed"]) == 0
    assert json.loads((run / report.JSON_FILE).read_text())["title"] == "renamed"


def test_a_first_report_without_a_title_is_called_a_locust_run(tmp_path: Path) -> None:
    run = a_run(tmp_path / "run")
    assert report.main([str(run)]) == 0
    assert json.loads((run / report.JSON_FILE).read_text())["title"] == report.DEFAULT_TITLE


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        (None, "is not a folder; give the folder of a run made by `python -m load.run`"),
        (
            f"{report.CSV_PREFIX}_stats.csv",
            "has no locust_stats.csv: is it the folder of a run made by `python -m load.run`?",
        ),
        (report.COUNTS_FILE, "has no database-counts.json; count from the store with --database"),
    ],
    ids=["no folder", "no Locust CSV", "no counts"],
)
def test_a_folder_that_is_not_a_run_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], remove: str | None, expected: str
) -> None:
    run = tmp_path / "missing"
    if remove is not None:
        run = a_run(tmp_path / "run")
        (run / remove).unlink()
    assert report.main([str(run)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("load.report: error: ")
    assert expected in line


def test_a_run_whose_tasks_failed_to_send_anything_fails(tmp_path: Path) -> None:
    """A task raising (a webhook user without --load-resources) sends no request; Locust counts
    it apart from failed requests, and the run was a pass with exit 0."""
    run = a_run(tmp_path / "run")
    (run / f"{report.CSV_PREFIX}_stats.csv").write_text(
        STATS_HEADER + ",Aggregated,0,0,0,0,0,0,0\n", encoding="utf-8"
    )
    (run / f"{report.CSV_PREFIX}_exceptions.csv").write_text(
        "Count,Message,Traceback,Nodes\n"
        '120,"RuntimeError(\'WebhookStorm needs --load-resources\')","Traceback ...","local"\n',
        encoding="utf-8",
    )

    document = report.write_report(run, COUNTS, title="a run that sent nothing")

    assert document["verdict"] == "fail"
    assert document["checks"]["task_errors"] == 120
    assert document["checks"]["nothing_sent"] == 1
    assert "WebhookStorm needs --load-resources" in (run / report.MARKDOWN).read_text()


def test_counting_again_takes_the_sync_runs_since_the_runs_first_sample(tmp_path: Path) -> None:
    """Without --since, a staging store's whole history of sync runs was counted, and one failed
    run of last month failed this report."""
    run = a_run(tmp_path / "run")

    assert report.run_started(run) == dt.datetime.fromtimestamp(1000, dt.UTC)
