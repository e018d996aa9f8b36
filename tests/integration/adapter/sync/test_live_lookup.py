"""Live KKI look-ups with the stored fallback: a real KKI mock, real PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adapter.audit import Actor
from adapter.clients import (
    HttpKkiClient,
    NotFound,
    RetryPolicy,
    Timeouts,
    UpstreamUnavailable,
)
from adapter.lookup import RegistryLookup
from adapter.observability.sync_metrics import SyncMetrics
from adapter.sdmk_integration_manager import connection_state, set_enabled
from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.models import Registration
from adapter.store.repositories import HealthWorkerRepository
from tests.integration.adapter.sync.support import Mock, client_for, run_sync, running_mock, store
from tests.support.databases import BACKENDS

pytestmark = pytest.mark.integration

SIZE = 40
ONE_TRY = RetryPolicy(max_attempts=1)
CALLER = Actor("user", "lookup-tester", "hf-tests")


@pytest.fixture(scope="module")
def kki() -> Iterator[Mock]:
    yield from running_mock("kki", size=SIZE, seed=5)


@pytest.fixture
def mock(kki: Mock) -> Iterator[Mock]:
    kki.reset()
    yield kki
    kki.wait_until_up()
    kki.reset()


@pytest.fixture
def sessions(empty_database_url: URL) -> Iterator[sessionmaker[Session]]:
    with store(empty_database_url) as factory:
        yield factory


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def client(mock: Mock, request: pytest.FixtureRequest) -> Iterator[HttpKkiClient]:
    overrides: dict[str, Timeouts] = {}
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("rule", {}).get("kind") == "timeout":
        # The lookup waits out the read timeout against the held answer: 2 s, not 5.
        overrides["timeouts"] = Timeouts(connect_s=1.0, read_s=2.0)
    kki_client = client_for("kki", mock, policy=ONE_TRY, **overrides)
    assert isinstance(kki_client, HttpKkiClient)
    with kki_client:
        yield kki_client


@pytest.fixture
def lookup(
    client: HttpKkiClient,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    registry: CollectorRegistry,
) -> RegistryLookup:
    return RegistryLookup(
        client,
        sessions,
        lambda session: HealthWorkerRepository(session, cipher, blind_index),
        blind_index,
        SyncMetrics.for_registry(registry),
    )


def _rule(mock: Mock, rule: dict[str, object]) -> str:
    """Add a fault rule; its id, whose `matched` count tells how often the route was called."""
    created = mock.admin.post("/faults", json=rule).raise_for_status().json()
    return str(created["id"])


def _matched(mock: Mock, rule_id: str) -> int:
    return int(mock.admin.get(f"/faults/{rule_id}").raise_for_status().json()["matched"])


def _age_registration(sessions: sessionmaker[Session], str_number: str, hours: int) -> None:
    with sessions.begin() as session:
        session.execute(
            update(Registration)
            .where(Registration.str_number == str_number)
            .values(fetched_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours))
        )


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_live_answer_is_stored_and_served_fresh(
    mock: Mock,
    lookup: RegistryLookup,
    sessions: sessionmaker[Session],
    registry: CollectorRegistry,
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    assert run_sync("kki", mock, sessions, cipher, blind_index).succeeded
    registration = mock.records("registrations")[0]
    mock.patch(
        "registrations",
        registration["str_number"],
        {"certification": {"status": "DICABUT", "status_reason": "Sanksi disiplin (sintetis)"}},
    )

    answer = lookup.by_str(registration["str_number"], decrypt=True, actor=CALLER)

    assert answer.live
    assert not answer.stale
    assert answer.age_s() == 0.0
    (found,) = answer.registrations
    assert found.status == "DICABUT"
    assert found.kki_full_name == registration["full_name"]
    with sessions() as session:
        repository = HealthWorkerRepository(session, cipher, blind_index)
        stored = repository.registration(registration["str_number"])
        assert stored is not None
        assert stored.status == "DICABUT", "the live answer went through the store"
        assert connection_state(session, "kki").status == "healthy"
    assert registry.get_sample_value("hf_live_lookups_total", {"system": "kki", "answer": "live"})


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "down", "duration_ms": 1000, "times": 1},
        {"kind": "error", "status": 503, "retry_after_s": 0},
        {"kind": "timeout", "timeout_ms": 7000, "times": 1},
    ],
    ids=["down", "503", "timeout"],
)
def test_kki_unreachable_serves_the_stored_copy_marked_stale_with_its_age(
    mock: Mock,
    lookup: RegistryLookup,
    sessions: sessionmaker[Session],
    registry: CollectorRegistry,
    cipher: FieldCipher,
    blind_index: BlindIndex,
    rule: dict[str, object],
) -> None:
    assert run_sync("kki", mock, sessions, cipher, blind_index).succeeded
    registration = mock.records("registrations")[1]
    _age_registration(sessions, registration["str_number"], hours=5)
    mock.fault({"route": "getRegistration", **rule})

    answer = lookup.by_str(registration["str_number"], actor=CALLER)

    assert answer.stale
    assert not answer.live
    assert answer.stale_reason == "upstream_unavailable"
    age = answer.age_s()
    assert age is not None
    assert 5 * 3600 <= age < 5 * 3600 + 600
    (found,) = answer.registrations
    assert found.str_number == registration["str_number"]
    with sessions() as session:
        state = connection_state(session, "kki")
        assert state.status == "degraded"
        assert state.next_attempt_at is not None
    assert registry.get_sample_value("hf_live_lookups_total", {"system": "kki", "answer": "stale"})


def test_an_open_breaker_serves_the_stored_copy_without_calling_kki(
    mock: Mock,
    lookup: RegistryLookup,
    client: HttpKkiClient,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    assert run_sync("kki", mock, sessions, cipher, blind_index).succeeded
    registration = mock.records("registrations")[2]
    failing = _rule(
        mock, {"route": "getRegistration", "kind": "error", "status": 503, "retry_after_s": 0}
    )
    while client.breaker.state.name != "OPEN":
        lookup.by_str(registration["str_number"], actor=CALLER)
    calls = _matched(mock, failing)

    answer = lookup.by_str(registration["str_number"], actor=CALLER)

    assert answer.stale
    assert answer.stale_reason == "circuit_open"
    assert _matched(mock, failing) == calls, "the open breaker kept the call from KKI"
    with sessions() as session:
        assert connection_state(session, "kki").breaker_state == "open"


def test_nothing_stored_and_kki_unreachable_is_an_error_that_says_so(
    mock: Mock, lookup: RegistryLookup
) -> None:
    mock.fault({"route": "getRegistration", "kind": "error", "status": 503, "retry_after_s": 0})
    with pytest.raises(UpstreamUnavailable, match="store holds no copy"):
        lookup.by_str(mock.records("registrations")[0]["str_number"], actor=CALLER)


def test_an_str_kki_does_not_know_is_not_found_even_with_a_store(
    mock: Mock, lookup: RegistryLookup, sessions: sessionmaker[Session]
) -> None:
    with pytest.raises(NotFound):
        lookup.by_str("QZ99999999999999", actor=CALLER)
    with sessions() as session:
        assert connection_state(session, "kki").status == "healthy", "KKI answered"


def test_look_up_by_nik_live_and_stale(
    mock: Mock,
    lookup: RegistryLookup,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    registration = mock.records("registrations")[3]
    live = lookup.by_nik(registration["nik"], actor=CALLER)
    assert live.live
    assert registration["str_number"] in {found.str_number for found in live.registrations}

    mock.fault({"route": "lookupRegistrationsByNik", "kind": "error", "status": 502})
    stale = lookup.by_nik(registration["nik"], actor=CALLER)
    assert stale.stale
    assert {found.str_number for found in stale.registrations} == {
        found.str_number for found in live.registrations
    }


def test_a_disabled_connection_serves_the_stored_copy_without_calling_kki(
    mock: Mock,
    lookup: RegistryLookup,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    assert run_sync("kki", mock, sessions, cipher, blind_index).succeeded
    registration = mock.records("registrations")[4]
    with sessions.begin() as session:
        set_enabled(session, "kki", False)
    # Never fires (probability 0); it only counts the calls of the route.
    counter = _rule(
        mock, {"route": "getRegistration", "kind": "error", "status": 503, "probability": 0}
    )
    answer = lookup.by_str(registration["str_number"], actor=CALLER)
    assert answer.stale_reason == "connection_disabled"
    assert [found.str_number for found in answer.registrations] == [registration["str_number"]]
    # Nothing stored: not an empty answer, which would read as "not registered".
    with pytest.raises(UpstreamUnavailable) as nothing:
        lookup.by_str("QZ99999999999999", actor=CALLER)
    assert nothing.value.reason == "connection_disabled"
    assert "the connection is disabled and the store holds no copy" in str(nothing.value)
    assert _matched(mock, counter) == 0


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_look_up_that_fails_for_any_other_reason_is_audited_as_an_error(
    mock: Mock,
    client: HttpKkiClient,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    registry: CollectorRegistry,
) -> None:
    """One entry whatever the outcome: a failure that is neither KKI's nor the record's (here
    the store refusing the write under the look-up) still leaves the attempt on the trail."""
    from sqlalchemy import func, select

    from adapter.store.models import AuditEvent

    class Broken(HealthWorkerRepository):
        def upsert_registration_from_kki(self, *args: object, **kwargs: object) -> object:
            raise MemoryError("the store gave out")  # not an error the look-up expects

    broken = RegistryLookup(
        client,
        sessions,
        lambda session: Broken(session, cipher, blind_index),
        blind_index,
        SyncMetrics.for_registry(registry),
    )
    number = mock.records("registrations")[0]["str_number"]
    with pytest.raises(MemoryError):
        broken.by_str(str(number), actor=CALLER)
    with sessions() as session:
        entries = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "registration.lookup")
        ).all()
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == len(entries)
    assert [(e.outcome, e.actor_subject) for e in entries] == [("error", "lookup-tester")]
    assert '"reason": "MemoryError"' in (entries[0].detail or "")
