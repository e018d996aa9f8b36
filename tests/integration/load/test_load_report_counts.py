"""The report counts lost, duplicated, forged and unapplied events from the store itself: a
store and a sent log that disagree in each way give each count, and a failing verdict."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from adapter.store.database import create_engine_from_url
from adapter.store.models import WebhookEvent
from load import report
from load.messages import SentLog
from tests.support.databases import migrate

OCCURRED = dt.datetime(2026, 2, 1, 9, 30, tzinfo=dt.UTC)
STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
HISTORY_HEADER = (
    "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,"
    "99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,"
    "Total Average Response Time,Total Min Response Time,Total Max Response Time,"
    "Total Average Content Size"
)


def inbox_row(event_id: str, state: str, applied: int) -> WebhookEvent:
    return WebhookEvent(
        id=uuid.uuid4(),
        source="kki",
        webhook_id=event_id,
        event_type="registration.corrected",
        resource_id="QZ00011234567890",
        resource_version=1,
        occurred_at=OCCURRED,
        received_at=OCCURRED + dt.timedelta(seconds=1),
        available_at=OCCURRED,
        state=state,
        applied_count=applied,
        processed_at=OCCURRED + dt.timedelta(seconds=3) if state == "done" else None,
    )


def write_locust_csvs(folder: Path) -> None:
    row = "POST,POST /webhooks/kki [new],4,1,20,25,5,90,20,2.0,0.5,20,20,30,30,40,80,90,90,90,90,90"
    aggregated = ",Aggregated" + row.removeprefix("POST,POST /webhooks/kki [new]")
    (folder / "locust_stats.csv").write_text(f"{STATS_HEADER}\n{row}\n{aggregated}\n")
    history = [HISTORY_HEADER]
    for second, total in ((0, 0), (3, 2), (6, 4)):
        counts = f"{total},0,20,25,5,90,20"
        history.append(f"{1000 + second},5,POST,POST /webhooks/kki [new],1,0,{'20,' * 11}{counts}")
        history.append(f"{1000 + second},5,,Aggregated,1,0,{'20,' * 11}{counts}")
    (folder / "locust_stats_history.csv").write_text("\n".join(history) + "\n")


def test_report_counts_each_disagreement_from_the_store(tmp_path: Path) -> None:
    engine = create_engine_from_url(URL.create("sqlite", database=str(tmp_path / "s.sqlite3")))
    migrate(engine)
    ids = {name: str(uuid.uuid4()) for name in ("ok", "lost", "twice", "forged", "pending")}
    with Session(engine) as session, session.begin():
        session.add_all(
            [
                inbox_row(ids["ok"], "done", 1),
                inbox_row(ids["twice"], "done", 2),
                inbox_row(ids["forged"], "done", 1),
                inbox_row(ids["pending"], "pending", 0),
            ]
        )
    sent = SentLog(tmp_path, "host-1")
    for name in ("ok", "lost", "twice", "pending"):
        sent.record("kki", ids[name], "new", 202, OCCURRED.timestamp())
    sent.record("kki", ids["ok"], "duplicate", 200, OCCURRED.timestamp())
    sent.record("kki", ids["forged"], "forged", 401, OCCURRED.timestamp())
    sent.close()

    counts = report.count_from_database(engine, tmp_path, since=OCCURRED)
    engine.dispose()
    write_locust_csvs(tmp_path)
    document = report.write_report(tmp_path, counts, title="disagreements")

    assert (counts["acknowledged_events"], counts["stored"]) == (4, 3)
    assert (counts["lost"], counts["duplicated"], counts["forged_stored"]) == (1, 1, 1)
    assert (counts["not_applied"], counts["states"]) == (1, {"done": 2, "pending": 1})
    assert (counts["forged_sent"], counts["forged_refused"]) == (1, 1)
    assert counts["sent"] == {"new": 4, "duplicate": 1, "forged": 1}
    assert counts["lag_s"]["events"] == 2
    assert counts["lag_s"]["p50"] == 3.0
    assert document["verdict"] == "fail"
    assert document["checks"]["unexpected_failures"] == 1
    assert json.loads((tmp_path / "report.json").read_text())["checks"] == document["checks"]
    assert (
        "**lost** (acknowledged, not in the inbox) | **1**" in (tmp_path / "report.md").read_text()
    )
    assert document["series"]["throughput"]["webhooks"][-1] == (6.0, 4 / 6)
