"""Group commit when the store refuses a row, the database is away or slow, and batches of
several processes overlap: each request gets its own precise answer, innocent rows are stored.

Real PostgreSQL and SQLite; the receiver in process (Flask's test client, or called directly).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adapter.app import create_app
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.embedded import EmbeddedPublisher
from adapter.settings import Settings, load_settings
from adapter.store.database import create_engine_from_url
from adapter.store.models import WebhookEvent
from adapter.webhooks import views as webhook_views
from adapter.webhooks.envelope import MAX_RESOURCE_VERSION, EventEnvelope
from adapter.webhooks.inbox import WebhookInbox
from adapter.webhooks.receiver import WebhookReceiver, WebhookUnavailable
from adapter.webhooks.signature import WebhookRejected, sign
from harness.processes import free_port
from tests.integration.adapter.webhooks.support import stack_environment
from tests.support.databases import migrate

pytestmark = pytest.mark.integration

STR_NUMBER = "QZ00011234567890"
NIK_HASH = "9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab"


def settings_for(url: URL) -> Settings:
    environment = stack_environment(
        url.render_as_string(hide_password=False),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        broker=None,
        prefix=None,
    )
    return load_settings(environment)


def envelope(version: int = 4, webhook_id: str | None = None) -> EventEnvelope:
    return EventEnvelope(
        source="kki",
        event_id=webhook_id or str(uuid.uuid4()),
        event_type="registration.status_changed",
        resource_id=STR_NUMBER,
        resource_version=version,
        occurred_at=dt.datetime(2026, 2, 1, 9, 30, tzinfo=dt.UTC),
    )


def signed_request(secret: str, version: int) -> tuple[str, bytes, dict[str, str]]:
    webhook_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "event_id": webhook_id,
            "type": "registration.status_changed",
            "occurred_at": "2026-02-01T09:30:00.000000Z",
            "source": "kki",
            "subject": {"nik_hash": NIK_HASH, "str_number": STR_NUMBER},
            "data": {"str_number": STR_NUMBER, "version": version, "status": "AKTIF"},
            "version": "1",
        }
    ).encode()
    moment = int(time.time())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(moment),
        "webhook-signature": sign(secret, webhook_id, moment, body),
        "content-type": "application/json",
    }
    return webhook_id, body, headers


def stored(engine: Engine, webhook_id: str) -> int:
    with engine.connect() as connection:
        count = connection.scalar(select(func.count()).where(WebhookEvent.webhook_id == webhook_id))
    return int(count or 0)


def receiver_for(engine: Engine, **options: Any) -> WebhookReceiver:
    return WebhookReceiver(
        settings=settings_for(engine.url),
        sessions=sessionmaker(engine),
        publisher=EmbeddedPublisher(),
        metrics=EventMetrics.for_registry(CollectorRegistry()),
        **options,
    )


def test_a_row_the_store_refuses_fails_alone_and_the_rest_of_the_batch_is_stored(
    migrated_engine: Engine,
) -> None:
    receiver = receiver_for(migrated_engine)
    innocent, bad = envelope(), envelope(version=2**63)  # past SQLite's and PostgreSQL's INTEGER
    try:
        outcomes = receiver.commit_batch([(innocent, None), (bad, None)])
    finally:
        receiver.close()
    assert isinstance(outcomes[0], uuid.UUID)
    refused = outcomes[1]
    assert isinstance(refused, WebhookRejected)
    assert (refused.status, refused.reason) == (422, "store_refused")
    assert (stored(migrated_engine, innocent.event_id), stored(migrated_engine, bad.event_id)) == (
        1,
        0,
    )


def test_a_value_longer_than_its_column_is_refused_never_cut(migrated_engine: Engine) -> None:
    """The batch's arrays are bound unbounded: a cast to the column's VARCHAR(n)[] would cut a
    longer value silently on PostgreSQL, and two ids sharing their first 64 characters would
    then be one event. (SQLite keeps any length: stored whole.)"""
    receiver = receiver_for(migrated_engine)
    innocent = envelope()
    long_id = "long-" + "x" * 64 + "-" + uuid.uuid4().hex
    try:
        outcomes = receiver.commit_batch([(innocent, None), (envelope(webhook_id=long_id), None)])
    finally:
        receiver.close()
    assert isinstance(outcomes[0], uuid.UUID)
    with migrated_engine.connect() as connection:
        kept = connection.scalars(
            select(WebhookEvent.webhook_id).where(WebhookEvent.webhook_id.startswith("long-x"))
        ).all()
    if migrated_engine.url.get_backend_name() == "postgresql":
        refused = outcomes[1]
        assert isinstance(refused, WebhookRejected)
        assert (refused.status, refused.reason) == (422, "store_refused")
        assert long_id[:64] not in kept
    else:
        assert isinstance(outcomes[1], uuid.UUID)
        assert long_id in kept


@pytest.mark.parametrize(
    ("version", "status"),
    [(MAX_RESOURCE_VERSION, 202), (MAX_RESOURCE_VERSION + 1, 422), (2**63, 422)],
)
def test_a_version_past_what_the_store_holds_is_a_precise_422(
    migrated_engine: Engine, version: int, status: int
) -> None:
    settings = settings_for(migrated_engine.url)
    app = create_app(settings, engine=migrated_engine, publisher=EmbeddedPublisher())
    webhook_id, body, headers = signed_request(
        settings.kki_webhook_secret.get_secret_value(), version
    )
    response = app.test_client().post("/webhooks/kki", data=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 422:
        assert response.mimetype == "application/problem+json"
        problem = response.get_json()
        assert problem["reason"] == "version_out_of_range"
        assert str(MAX_RESOURCE_VERSION) in problem["detail"]
    assert stored(migrated_engine, webhook_id) == (1 if status == 202 else 0)


def test_a_database_outage_is_a_503_with_retry_after_counted_once_per_request(
    migrated_engine: Engine,
) -> None:
    if migrated_engine.url.get_backend_name() == "postgresql":
        away = migrated_engine.url.set(port=free_port())  # nothing listens there
    else:  # a file in a directory that does not exist: SQLite cannot open it
        away = migrated_engine.url.set(database=f"/nonexistent-{uuid.uuid4().hex}/db.sqlite3")
    settings = settings_for(migrated_engine.url)
    registry = CollectorRegistry()
    metrics = EventMetrics.for_registry(registry)
    app = create_app(settings, engine=migrated_engine, publisher=EmbeddedPublisher())
    # The app's receiver, over a database that has gone away since the app started.
    engine = create_engine_from_url(away)
    receiver = WebhookReceiver(
        settings=settings,
        sessions=sessionmaker(engine),
        publisher=EmbeddedPublisher(),
        metrics=metrics,
    )
    app.extensions[webhook_views.EXTENSION] = receiver
    try:
        _, body, headers = signed_request(settings.kki_webhook_secret.get_secret_value(), 4)
        response = app.test_client().post("/webhooks/kki", data=body, headers=headers)
    finally:
        receiver.close()
        engine.dispose()
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["reason"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    unavailable = registry.get_sample_value(
        "hf_webhooks_unavailable_total", {"source": "kki", "reason": "database_unavailable"}
    )
    assert unavailable == 1


# What a fail-over to a standby and a deploy ahead of its migration look like to the inbox.
DATABASE_STATES = {
    "read_only": "ALTER DATABASE {database} SET default_transaction_read_only = on",
    "table_missing": "ALTER TABLE webhook_events RENAME TO webhook_events_elsewhere",
}


@pytest.mark.parametrize("state", sorted(DATABASE_STATES))
@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_database_that_takes_no_row_is_a_503_for_each_event_never_a_422(
    empty_database_url: URL, state: str
) -> None:
    """A sender drops an event answered 4xx for good: only a row's own error (SQLSTATE class
    22 or 23) may be a 422; a read-only database or a missing table is the database's state."""
    setup = create_engine_from_url(empty_database_url)
    migrate(setup)
    settings = settings_for(setup.url)
    app = create_app(settings, engine=setup, publisher=EmbeddedPublisher())  # it writes at start
    with setup.begin() as connection:
        connection.execute(
            text(DATABASE_STATES[state].format(database=f'"{empty_database_url.database}"'))
        )
    engine = create_engine_from_url(empty_database_url)  # its sessions start read-only
    registry = CollectorRegistry()
    # The app's receiver, over the database in its new state.
    receiver = WebhookReceiver(
        settings=settings,
        sessions=sessionmaker(engine),
        publisher=EmbeddedPublisher(),
        metrics=EventMetrics.for_registry(registry),
    )
    app.extensions[webhook_views.EXTENSION] = receiver
    try:
        outcomes = receiver.commit_batch([(envelope(), None), (envelope(), None)])
        _, body, headers = signed_request(settings.kki_webhook_secret.get_secret_value(), 4)
        response = app.test_client().post("/webhooks/kki", data=body, headers=headers)
    finally:
        receiver.close()
        engine.dispose()
        setup.dispose()
    assert [type(outcome) for outcome in outcomes] == [WebhookUnavailable, WebhookUnavailable]
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["reason"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_commit_slower_than_the_wait_is_a_503_and_the_retry_a_duplicate(
    empty_database_url: URL,
) -> None:
    engine = create_engine_from_url(empty_database_url)

    migrate(engine)
    event = envelope()
    receiver = receiver_for(engine, commit_wait_s=0.5)
    settings = settings_for(engine.url)
    # Another transaction holds the same (source, webhook-id): the receiver's insert waits on it.
    blocker = Session(engine)
    try:
        WebhookInbox(blocker).record_many([(event, None)], published=True)
        _, body, headers = signed_request(settings.kki_webhook_secret.get_secret_value(), 4)
        body = body.replace(headers["webhook-id"].encode(), event.event_id.encode())
        moment = int(headers["webhook-timestamp"])
        headers["webhook-id"] = event.event_id
        headers["webhook-signature"] = sign(
            settings.kki_webhook_secret.get_secret_value(), event.event_id, moment, body
        )
        with pytest.raises(WebhookUnavailable) as waited:
            receiver.receive("kki", headers, lambda n: body[:n])
        assert waited.value.reason == "commit_timeout"
        blocker.commit()
        receiver._commit_wait_s = 30.0  # the retry must not time out on a busy machine
        again = receiver.receive("kki", headers, lambda n: body[:n])
    finally:
        blocker.close()
        receiver.close()
        engine.dispose()
    assert (again.status, again.result) == (200, "duplicate")


def request_for(settings: Settings, event_id: str) -> tuple[dict[str, str], bytes]:
    """A signed request whose webhook id is `event_id`."""
    secret = settings.kki_webhook_secret.get_secret_value()
    _, body, headers = signed_request(secret, 4)
    body = body.replace(headers["webhook-id"].encode(), event_id.encode())
    moment = int(headers["webhook-timestamp"])
    headers["webhook-id"] = event_id
    headers["webhook-signature"] = sign(secret, event_id, moment, body)
    return headers, body


def waiting_on_a_lock(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            or 0
        )


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_an_event_whose_wait_ends_before_its_batch_starts_is_dropped_and_the_queue_bounded(
    empty_database_url: URL,
) -> None:
    """While a batch hangs in the database, the events behind it wait in the queue. One whose
    request gave up (503) is not committed later, and the queue takes no more than its bound."""
    engine = create_engine_from_url(empty_database_url)
    migrate(engine)
    receiver = receiver_for(engine, commit_wait_s=0.5, max_queued_commits=2)
    settings = settings_for(engine.url)
    hanging, given_up, behind = envelope(), envelope(), envelope()
    blocker = Session(engine)
    answers: dict[str, BaseException] = {}

    def send(event: EventEnvelope) -> None:
        headers, body = request_for(settings, event.event_id)
        try:
            receiver.receive("kki", headers, lambda n: body[:n])
        except WebhookUnavailable as exc:
            answers[event.event_id] = exc

    try:
        # Another transaction holds `hanging`'s id: its batch waits on that row lock.
        WebhookInbox(blocker).record_many([(hanging, None)], published=True)
        first = threading.Thread(target=send, args=(hanging,))
        first.start()
        deadline = time.monotonic() + 10
        while waiting_on_a_lock(engine) == 0:
            assert time.monotonic() < deadline, "the first batch never reached the database"
            time.sleep(0.02)
        # Two fill the queue behind the hanging batch; a third is refused at once.
        filling = [threading.Thread(target=send, args=(e,)) for e in (given_up, behind)]
        for thread in filling:
            thread.start()
        deadline = time.monotonic() + 10
        while receiver._commits._items.qsize() < 2:
            assert time.monotonic() < deadline, "the two events never queued"
            time.sleep(0.01)
        refused = envelope()
        send(refused)
        for thread in (first, *filling):
            thread.join(10)
        blocker.rollback()  # the hanging batch now goes through
        # The dropped two hold their places until the thread passes them, at once now.
        deadline = time.monotonic() + 10
        while receiver._commits._items.qsize():
            assert time.monotonic() < deadline, "the queue never drained"
            time.sleep(0.01)
        headers, body = request_for(settings, given_up.event_id)
        receiver._commit_wait_s = 30.0  # the retry must not time out on a busy machine
        retried = receiver.receive("kki", headers, lambda n: body[:n])
    finally:
        blocker.close()
        receiver.close()
        engine.dispose()
    assert answers[refused.event_id].reason == "receiver_busy"
    assert {answers[e.event_id].reason for e in (hanging, given_up, behind)} == {"commit_timeout"}
    # The hanging one was in the database when its wait ended: committed after all. The two
    # behind it were dropped: not stored, and the retry is a new event.
    assert stored(engine, hanging.event_id) == 1
    assert stored(engine, behind.event_id) == 0
    assert (retried.status, retried.result) == (202, "accepted")


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_overlapping_batches_in_opposite_order_do_not_deadlock(empty_database_url: URL) -> None:
    engine = create_engine_from_url(empty_database_url)

    migrate(engine)
    first, second = (
        envelope(webhook_id="a-" + uuid.uuid4().hex),
        envelope(webhook_id="b-" + uuid.uuid4().hex),
    )
    errors: list[BaseException] = []
    results: list[list[uuid.UUID | None]] = []

    def other_process() -> None:
        with Session(engine) as session:
            try:
                results.append(
                    WebhookInbox(session).record_many(
                        [(second, None), (first, None)], published=True
                    )
                )
                session.commit()
            except Exception as exc:  # noqa: BLE001 - reported to the test's thread
                errors.append(exc)

    holder = Session(engine)
    try:
        WebhookInbox(holder).record_many([(first, None)], published=True)
        thread = threading.Thread(target=other_process)
        thread.start()
        wait_for_a_lock_wait(engine)  # the other batch waits on `first`, held here
        try:
            WebhookInbox(holder).record_many([(second, None)], published=True)
            holder.commit()
        except Exception as exc:  # noqa: BLE001 - the deadlock may be detected on this side
            errors.append(exc)
        thread.join(30)
    finally:
        holder.close()
        engine.dispose()
    assert not errors, [type(error).__name__ for error in errors]
    assert results == [[None, None]]  # both already in, committed by the holder


def wait_for_a_lock_wait(engine: Engine) -> None:
    deadline = time.monotonic() + 30
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting:
                return
            connection.rollback()
            time.sleep(0.05)
    raise AssertionError("the other batch never waited for the held row")


def test_the_relay_leaves_young_unpublished_events_to_the_receiver(
    migrated_engine: Engine,
) -> None:
    now = dt.datetime.now(dt.UTC)
    young, old = envelope(), envelope()
    with Session(migrated_engine) as session:
        WebhookInbox(session, clock=lambda: now - dt.timedelta(seconds=60)).record_many(
            [(old, None)], published=False
        )
        WebhookInbox(session, clock=lambda: now).record_many([(young, None)], published=False)
        session.commit()
        relayed = WebhookInbox(session).to_relay(
            limit=10_000,
            republish_before=now - dt.timedelta(hours=1),
            unpublished_before=now - dt.timedelta(seconds=5),
        )
    ids = {event.webhook_id for event in relayed}
    assert old.event_id in ids
    assert young.event_id not in ids
