"""`hf-adapter events` and `/api/v1/webhook-events` are one service: the same audit entries
(only the actor differs), the same errors, the same listing; replays publish through the outbox.
On PostgreSQL and SQLite, with the API over HTTP with real tokens and the CLI in this process
(`adapter.cli.main` with the environment a process gets: the OS user of the real uid, whatever
LOGNAME says)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from adapter.audit import Actor, command_line_operator
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.rabbit import RabbitPublisher
from adapter.queue.topology import QueueTopology
from adapter.queue.worker import OutboxRelay, WorkerStats
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.models import AuditEvent, WebhookEvent
from adapter.webhooks.envelope import EventEnvelope
from adapter.webhooks.event_admin import WebhookEventAdmin
from adapter.webhooks.inbox import WebhookInbox
from harness.idp import IdpProcess
from harness.processes import free_port
from tests.integration.adapter.api.stack import AUDIENCE, OPS, Adapter, served_adapter
from tests.integration.adapter.sync.support import Mock, adapter_environment
from tests.integration.adapter.webhooks.support import own_topology, queued
from tests.support.adapter_cli import hf_adapter_in_process
from tests.support.databases import AUDIT_KEYS, PostgresServer, migrate

pytestmark = pytest.mark.integration

# The OS user the CLI runs as: the real uid's, never LOGNAME (set to another name below).
OPERATOR = command_line_operator().subject


@dataclass
class Stack:
    """The adapter served over HTTP, and the environment its CLI runs with, on one database."""

    api: Adapter
    environment: dict[str, str]
    token: str

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        with self.api.client(self.token) as client:
            return client.post(f"/api/v1/webhook-events{path}", json=body)

    def get(self, **params: Any) -> Any:
        with self.api.client(self.token) as client:
            return client.get("/api/v1/webhook-events", params=params)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    idp: IdpProcess,
    kki_mock: Mock,
    sisdmk_mock: Mock,
) -> Iterator[Stack]:
    if request.param == "postgresql":
        database = postgres_server.create_database()
    else:
        database = make_url(f"sqlite:///{tmp_path_factory.mktemp('events') / 'adapter.sqlite3'}")
    environment = adapter_environment(
        database.render_as_string(hide_password=False), kki_mock.url, sisdmk_mock.url
    ) | {"OIDC_ISSUER": idp.issuer, "OIDC_AUDIENCE": AUDIENCE, "LOGNAME": "ops-ani"}
    with served_adapter(database, idp, kki_mock, sisdmk_mock) as api:
        yield Stack(api, environment, idp.token(OPS))


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`hf-adapter events ARGS` as an operator runs it on `stack`'s database: exit code, stdout,
    stderr."""

    def run(*args: str) -> tuple[int, str, str]:
        done = hf_adapter_in_process(monkeypatch, capsys, stack.environment, "events", *args)
        return done.returncode, done.stdout, done.stderr

    return run


def failed_event(sessions: sessionmaker[Session]) -> uuid.UUID:
    """A dead-lettered KKI event, as the worker leaves one."""
    with sessions.begin() as session:
        inbox = WebhookInbox(session)
        event_id = inbox.record(
            EventEnvelope(
                "kki",
                f"msg_{uuid.uuid4().hex}",
                "registration.updated",
                "QZ00011234567890",
                1,
                dt.datetime.now(dt.UTC),
            ),
            traceparent=None,
            published=True,
        )
        assert event_id is not None
        inbox.mark_failed(event_id, "upstream_unavailable: KKI answered 503", count_attempt=True)
    return event_id


def event(sessions: sessionmaker[Session], event_id: uuid.UUID) -> WebhookEvent:
    with sessions() as session:
        row = WebhookInbox(session).get(event_id)
        assert row is not None
        return row


def audit_entries(sessions: sessionmaker[Session], action: str) -> list[AuditEvent]:
    with sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        return list(session.scalars(query))


def entry_of(sessions: sessionmaker[Session], action: str, event_id: uuid.UUID) -> AuditEvent:
    (entry,) = [e for e in audit_entries(sessions, action) if e.resource_id == str(event_id)]
    return entry


def what(entry: AuditEvent) -> dict[str, Any]:
    """An entry without who, when and its place in the chain."""
    return {
        "action": entry.action,
        "resource_type": entry.resource_type,
        "fields": entry.fields,
        "outcome": entry.outcome,
        "detail": json.loads(entry.detail or "null"),
    }


def api_actor(token: str) -> tuple[str, str, str]:
    subject = str(jwt.decode(token, options={"verify_signature": False})["sub"])
    return ("service", subject, OPS)


CLI_ACTOR = ("user", OPERATOR, "hf-adapter-cli")
SERVICE_ACTOR = Actor("user", OPERATOR, "hf-adapter-cli")


def actor(entry: AuditEvent) -> tuple[str | None, ...]:
    return (entry.actor_kind, entry.actor_subject, entry.actor_client)


# -- the same audit entries from both entry points ------------------------------------------


def test_cli_and_api_replay_leave_the_same_audit_entry(stack: Stack, cli: Cli) -> None:
    sessions = stack.api.sessions
    by_cli, by_api = failed_event(sessions), failed_event(sessions)

    status, stdout, stderr = cli("replay", str(by_cli))
    response = stack.post(f"/{by_api}/replay")

    assert status == 0, stdout + stderr
    assert response.status_code == 200, response.text
    assert response.json() == {"replayed": [str(by_api)], "skipped": 0, "published": True}
    cli_entry = entry_of(sessions, "events.replay", by_cli)
    api_entry = entry_of(sessions, "events.replay", by_api)
    expected = {
        "action": "events.replay",
        "resource_type": "webhook_event",
        "fields": None,
        "outcome": "success",
    }
    assert what(cli_entry) == expected | {
        "detail": {"all": False, "event_ids": [str(by_cli)], "skipped": 0}
    }
    assert what(api_entry) == expected | {
        "detail": {"all": False, "event_ids": [str(by_api)], "skipped": 0}
    }
    assert actor(cli_entry) == CLI_ACTOR
    assert actor(api_entry) == api_actor(stack.token)
    for event_id in (by_cli, by_api):
        row = event(sessions, event_id)
        # Back in the queue and, through the outbox, published (the embedded queue here).
        assert (row.state, row.attempts, row.replays) == ("pending", 0, 1)
        assert row.published_at is not None


def test_cli_and_api_replay_all_leave_the_same_audit_entry(stack: Stack, cli: Cli) -> None:
    sessions = stack.api.sessions
    first = failed_event(sessions)
    status, stdout, stderr = cli("replay", "--all")
    second = failed_event(sessions)
    response = stack.post("/replay")

    assert status == 0, stdout + stderr
    assert response.status_code == 200, response.text
    cli_entry, api_entry = audit_entries(sessions, "events.replay")[-2:]
    assert (actor(cli_entry), actor(api_entry)) == (CLI_ACTOR, api_actor(stack.token))
    assert (cli_entry.resource_id, api_entry.resource_id) == (None, None)
    assert what(cli_entry) | {"detail": None} == what(api_entry) | {"detail": None}
    cli_detail, api_detail = what(cli_entry)["detail"], what(api_entry)["detail"]
    assert set(cli_detail) == set(api_detail) == {"all", "event_ids", "skipped"}
    assert (cli_detail["all"], api_detail["all"]) == (True, True)
    assert str(first) in cli_detail["event_ids"]
    assert str(second) in api_detail["event_ids"]
    assert str(first) not in api_detail["event_ids"]


def test_cli_and_api_purge_are_audited_alike(stack: Stack, cli: Cli) -> None:
    sessions = stack.api.sessions
    by_cli, by_api = failed_event(sessions), failed_event(sessions)

    status, stdout, stderr = cli("purge", str(by_cli), "--reason", "source withdrew it")
    response = stack.post(f"/{by_api}/purge", {"reason": "source withdrew it"})

    assert status == 0, stdout + stderr
    assert response.status_code == 200, response.text
    assert response.json() == {"purged": [str(by_api)], "skipped": 0}
    cli_entry = entry_of(sessions, "events.purge", by_cli)
    api_entry = entry_of(sessions, "events.purge", by_api)
    assert what(cli_entry) | {"detail": None} == what(api_entry) | {"detail": None}
    assert what(cli_entry)["detail"] == {"all": False, "event_ids": [str(by_cli)], "skipped": 0}
    assert what(api_entry)["detail"] == {"all": False, "event_ids": [str(by_api)], "skipped": 0}
    assert (actor(cli_entry), actor(api_entry)) == (CLI_ACTOR, api_actor(stack.token))
    for event_id in (by_cli, by_api):
        row = event(sessions, event_id)
        assert (row.state, row.purge_reason) == ("purged", "source withdrew it")
        # The free-text reason stays on the row, out of the audit trail.
        assert "withdrew" not in (cli_entry.detail or "") + (api_entry.detail or "")


# -- the same errors from both entry points -------------------------------------------------


@pytest.mark.parametrize(
    ("cli_args", "api_path", "body"),
    [
        (("replay",), "/{id}/replay", None),
        (("purge", "--reason", "gone"), "/{id}/purge", {"reason": "gone"}),
    ],
    ids=["replay", "purge"],
)
def test_unknown_event_is_the_same_error_from_cli_and_api(
    stack: Stack,
    cli: Cli,
    cli_args: tuple[str, ...],
    api_path: str,
    body: dict[str, str] | None,
) -> None:
    unknown = uuid.uuid4()
    before = len(audit_entries(stack.api.sessions, "events." + cli_args[0]))

    status, _, stderr = cli(cli_args[0], str(unknown), *cli_args[1:])
    response = stack.post(api_path.format(id=unknown), body)

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["reason"] == "event_not_found"
    assert problem["detail"] == f"no webhook event {unknown}"
    assert status == 1
    assert stderr.strip() == f"hf-adapter: error: {problem['detail']}"
    assert len(audit_entries(stack.api.sessions, "events." + cli_args[0])) == before


def test_show_of_unknown_event_is_the_same_error(stack: Stack, cli: Cli) -> None:
    unknown = uuid.uuid4()
    status, _, stderr = cli("show", str(unknown))
    assert (status, stderr.strip()) == (1, f"hf-adapter: error: no webhook event {unknown}")


def test_event_not_failed_is_refused_alike_and_left_as_it_is(stack: Stack, cli: Cli) -> None:
    sessions = stack.api.sessions
    done = failed_event(sessions)
    assert stack.post(f"/{done}/replay").status_code == 200  # now pending

    status, _, stderr = cli("purge", str(done), "--reason", "not needed")
    response = stack.post(f"/{done}/purge", {"reason": "not needed"})

    assert response.status_code == 409
    assert response.json()["reason"] == "event_not_failed"
    assert (status, stderr.strip()) == (1, f"hf-adapter: error: {response.json()['detail']}")
    assert event(sessions, done).state == "pending"


def test_blank_purge_reason_is_refused_alike(stack: Stack, cli: Cli) -> None:
    target = failed_event(stack.api.sessions)

    status, _, stderr = cli("purge", str(target), "--reason", "   ")
    response = stack.post(f"/{target}/purge", {"reason": "   "})

    assert status == 1
    assert "the reason must say why" in stderr
    assert response.status_code == 422
    assert event(stack.api.sessions, target).state == "failed"


# -- one listing ----------------------------------------------------------------------------


def test_cli_and_api_list_the_same_page_and_cursor(stack: Stack, cli: Cli) -> None:
    for _ in range(3):
        failed_event(stack.api.sessions)

    page = stack.get(limit=2).json()
    status, stdout, stderr = cli("list", "--limit", "2")
    nxt = cli("list", "--limit", "2", "--cursor", page["page"]["next_cursor"])

    assert status == 0
    assert "2 shown" in stdout
    assert all(e["id"] in stdout for e in page["data"])
    assert f"--cursor {page['page']['next_cursor']}" in stderr
    following = stack.get(limit=2, cursor=page["page"]["next_cursor"]).json()["data"]
    assert following
    assert all(e["id"] in nxt[1] for e in following)


# -- the outbox publish, with the real broker -----------------------------------------------


@pytest.fixture
def topology(broker: str) -> Iterator[QueueTopology]:
    with own_topology(broker) as own:
        yield own


def test_replay_publishes_and_marks_published(
    migrated_engine: Engine, broker: str, topology: QueueTopology
) -> None:
    sessions = session_factory(migrated_engine, audit_keys=AUDIT_KEYS)
    registry = CollectorRegistry()
    metrics = EventMetrics.for_registry(registry)
    publisher = RabbitPublisher(broker, topology)
    target = failed_event(sessions)
    try:
        admin = WebhookEventAdmin(sessions=sessions, publisher=publisher, metrics=metrics)
        result = admin.replay(SERVICE_ACTOR, [target])
    finally:
        publisher.close()
    assert (result.replayed, result.published) == ([target], True)
    assert event(sessions, target).published_at is not None
    assert queued(broker, topology) == 1
    assert registry.get_sample_value("hf_events_published_total", {"path": "replay"}) == 1


def test_replay_while_the_broker_is_away_leaves_the_event_to_the_relay(
    migrated_engine: Engine, broker: str, topology: QueueTopology
) -> None:
    sessions = session_factory(migrated_engine, audit_keys=AUDIT_KEYS)
    registry = CollectorRegistry()
    metrics = EventMetrics.for_registry(registry)
    away = RabbitPublisher(f"amqp://guest:guest@127.0.0.1:{free_port()}//", topology)
    target = failed_event(sessions)
    try:
        admin = WebhookEventAdmin(sessions=sessions, publisher=away, metrics=metrics)
        result = admin.replay(SERVICE_ACTOR, [target])
    finally:
        away.close()
    assert (result.replayed, result.published) == ([target], False)
    row = event(sessions, target)
    assert (row.state, row.published_at) == ("pending", None)
    failures = registry.get_sample_value("hf_event_publish_failures_total", {"path": "replay"})
    assert failures == 1

    back = RabbitPublisher(broker, topology)
    try:
        # No grace: the replay that just failed to publish is not going to publish it.
        relay = OutboxRelay(
            sessions,
            back,
            republish_after_s=3600,
            metrics=metrics,
            stats=WorkerStats(),
            unpublished_grace_s=0,
        )
        assert relay.relay_once() >= 1
    finally:
        back.close()
    assert event(sessions, target).published_at is not None
    assert queued(broker, topology) >= 1


class RecordingPublisher:
    """Takes every batch (the broker's part is tested above): what the replay handed over."""

    needs_relay = True

    def __init__(self) -> None:
        self.batches: list[int] = []

    def publish(self, messages: Any, *, path: str) -> None:
        self.batches.append(len(messages))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_replaying_more_failed_events_than_a_statement_binds_replays_them_all(
    empty_database_url: URL,
) -> None:
    """After a long outage: 70,000 failed events. The replay bound one value per event in one
    statement, over PostgreSQL's 65,535, and failed; operations.md sends operators to it."""
    failed = 70_000
    engine = create_engine_from_url(empty_database_url)
    migrate(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO webhook_events (id, source, webhook_id, event_type, resource_id, "
            "resource_version, occurred_at, state, published_at, attempts, last_error) "
            "SELECT gen_random_uuid(), 'kki', 'msg_' || n, 'registration.updated', "
            "'QZ' || lpad(n::text, 14, '0'), 1, now(), 'failed', now(), 5, 'upstream' "
            "FROM generate_series(1, %(failed)s) AS n",
            {"failed": failed},
        )
    sessions = session_factory(engine, audit_keys=AUDIT_KEYS)
    publisher = RecordingPublisher()
    admin = WebhookEventAdmin(
        sessions=sessions,
        publisher=publisher,  # type: ignore[arg-type]
        metrics=EventMetrics.for_registry(CollectorRegistry()),
    )

    result = admin.replay(SERVICE_ACTOR, None)

    assert (len(result.replayed), result.skipped, result.published) == (failed, 0, True)
    assert sum(publisher.batches) == failed
    assert max(publisher.batches) <= 1_000, "confirmed in batches, not one of 70,000"
    with engine.connect() as connection:
        states = dict(
            connection.exec_driver_sql(
                "SELECT state || (published_at IS NOT NULL)::text, count(*) FROM webhook_events "
                "GROUP BY 1"
            ).all()
        )
    assert states == {"pendingtrue": failed}
    engine.dispose()
