"""A blind-index key change against real PostgreSQL and SQLite: a store digested under the old
key, BLIND_INDEX_KEY replaced, look-ups and upserts during the change, `reindex_blind_index`,
and the start refused while stored digests are under a key not configured."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from adapter.audit import command_line_operator, verify_chain
from adapter.composition import build_services
from adapter.settings import load_settings
from adapter.store.crypto import BlindIndex, FieldContext, Key
from adapter.store.models import AuditEvent, BlindIndexKey, HealthWorker, IdentityFinding
from adapter.store.reindex import (
    AUDIT_ACTION,
    BatchDone,
    BlindIndexKeyError,
    check_stored_keys,
    count_stale,
    reindex_blind_index,
    stored_key_ids,
)
from adapter.store.repositories import HealthWorkerRepository
from adapter.workforce.directory import WorkforceDirectory
from tests.integration.adapter.keys.store import (
    FETCHED_AT,
    KEY_A,
    NEW_BLIND_INDEX_KEY,
    REGISTRATIONS,
    WORKERS,
    Store,
    cipher_of,
    raw_dump,
    settings_env,
)
from tests.support.databases import BLIND_INDEX_KEY
from tests.support.documents import bumped, kki_registration

pytestmark = pytest.mark.integration

NEW_KEY = NEW_BLIND_INDEX_KEY
OLD = BlindIndex(BLIND_INDEX_KEY)
NEW = BlindIndex(NEW_KEY)
DURING = BlindIndex(NEW_KEY, BLIND_INDEX_KEY)
CIPHER = cipher_of(KEY_A)
BATCH = 40
MISMATCHES = 6  # workers whose KKI registration spells the name another way
RESOLVED = 2  # of them, corrected by KKI afterwards
LATER = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def with_findings(store: Store) -> list[dict[str, Any]]:
    """Mismatches between KKI and SISDMK under the old key: open ones, and resolved ones."""
    docs = []
    with store.sessions.begin() as session:
        repository = HealthWorkerRepository(session, CIPHER, OLD)
        for worker in store.workers[REGISTRATIONS : REGISTRATIONS + MISMATCHES]:
            doc = kki_registration(worker, full_name=f"{worker['full_name']} Spelled Otherwise")
            repository.upsert_registration_from_kki(doc, fetched_at=FETCHED_AT)
            docs.append(doc)
    with store.sessions.begin() as session:
        repository = HealthWorkerRepository(session, CIPHER, OLD)
        for doc, worker in zip(docs[:RESOLVED], store.workers[REGISTRATIONS:], strict=False):
            repository.upsert_registration_from_kki(
                bumped(doc, full_name=worker["full_name"]), fetched_at=FETCHED_AT
            )
    return docs


def count_rows(store: Store, nik: str) -> int:
    """Health-worker rows for `nik`, found by decrypting every row (not through any index)."""
    with store.engine.connect() as connection:
        rows = connection.execute(select(HealthWorker.id, HealthWorker.nik)).all()
    return sum(
        CIPHER.decrypt(token, context=FieldContext("health_workers", "nik", str(row_id))) == nik
        for row_id, token in rows
    )


def findings(store: Store) -> dict[str, tuple[Any, ...]]:
    with store.sessions() as session:
        return {
            str(row.id): (row.digest_kid, row.kki_digest, row.sisdmk_digest, row.resolved_at)
            for row in session.scalars(select(IdentityFinding))
        }


def test_new_key_alone_misses_stored_worker_and_kki_upsert_stores_person_twice(
    store: Store,
) -> None:
    """The finding: BLIND_INDEX_KEY replaced with nothing else done."""
    worker = store.workers[3]
    with store.sessions.begin() as session:
        repository = HealthWorkerRepository(session, CIPHER, NEW)
        assert repository.find_by_nik(worker["nik"]) is None
        repository.upsert_registration_from_kki(kki_registration(worker), fetched_at=LATER)

    assert count_rows(store, worker["nik"]) == 2


def test_start_is_refused_while_stored_digests_are_under_a_key_not_configured(
    store: Store,
) -> None:
    url = store.engine.url.render_as_string(hide_password=False)

    with pytest.raises(BlindIndexKeyError) as refused:
        build_services(load_settings(settings_env(url, NEW_KEY, None)), engine=store.engine)

    message = str(refused.value)
    assert "\n" not in message
    assert "'bidx-1'" in message
    assert "BLIND_INDEX_PREVIOUS_KEY" in message
    assert "hf-adapter keys reindex" in message
    # With the previous key configured the services start, and so they do with the old key.
    for blind_index_key, previous in ((NEW_KEY, BLIND_INDEX_KEY), (BLIND_INDEX_KEY, None)):
        settings = load_settings(settings_env(url, blind_index_key, previous))
        build_services(settings, engine=store.engine).close()


def test_start_with_the_replaced_key_after_the_reindex_is_told_its_key_is_out_of_date(
    store: Store,
) -> None:
    """A process left on the old key once the change is done: re-indexing as the first refusal
    says would move every digest back to the key the others no longer have."""
    url = store.engine.url.render_as_string(hide_password=False)
    # Step 2 of the change: both keys configured (this start records them, the new one last).
    build_services(
        load_settings(settings_env(url, NEW_KEY, BLIND_INDEX_KEY)), engine=store.engine
    ).close()
    # Until the re-index, the new key alone is still told to add the previous one.
    with pytest.raises(BlindIndexKeyError) as too_early:
        build_services(load_settings(settings_env(url, NEW_KEY, None)), engine=store.engine)
    reindex_blind_index(store.engine, store.sessions, CIPHER, DURING, actor=command_line_operator())

    with pytest.raises(BlindIndexKeyError) as left_behind:
        build_services(load_settings(settings_env(url, BLIND_INDEX_KEY, None)), engine=store.engine)

    assert "set BLIND_INDEX_PREVIOUS_KEY to that key" in str(too_early.value)
    message = str(left_behind.value)
    assert "\n" not in message
    assert "this process's BLIND_INDEX_KEY is out of date" in message
    assert "set it to key 'bidx-2'" in message
    assert "BLIND_INDEX_PREVIOUS_KEY" not in message
    assert "hf-adapter keys reindex" not in message
    assert stored_key_ids(store.engine)["health_workers"] == ("bidx-2",)
    build_services(load_settings(settings_env(url, NEW_KEY, None)), engine=store.engine).close()


def test_a_reindex_with_the_replaced_key_is_refused_and_moves_no_digest_back(
    store: Store,
) -> None:
    """The refusal above tells a process left on the old key not to re-index; the re-index
    itself did not check, and moved every digest back to the key the others no longer have."""
    url = store.engine.url.render_as_string(hide_password=False)
    build_services(
        load_settings(settings_env(url, NEW_KEY, BLIND_INDEX_KEY)), engine=store.engine
    ).close()
    reindex_blind_index(store.engine, store.sessions, CIPHER, DURING, actor=command_line_operator())
    before = raw_dump(store.engine)

    with pytest.raises(BlindIndexKeyError) as refused:
        reindex_blind_index(
            store.engine, store.sessions, CIPHER, OLD, actor=command_line_operator()
        )

    assert "this process's BLIND_INDEX_KEY is out of date" in str(refused.value)
    assert "do not re-index" in str(refused.value)
    assert stored_key_ids(store.engine)["health_workers"] == ("bidx-2",)
    assert raw_dump(store.engine) == before


def test_a_previous_key_first_recorded_after_the_new_one_is_still_the_older(
    store: Store,
) -> None:
    """The old key's digests predate the key table (no row for it); a re-index run with the new
    key alone records the new key and stops early; the operator then adds the old key as
    BLIND_INDEX_PREVIOUS_KEY. Recorded at that moment, the old key looked newer than the new
    one, and every later re-index was refused as 'out of date'."""
    with store.engine.begin() as connection:
        connection.execute(delete(BlindIndexKey))
    first = reindex_blind_index(
        store.engine, store.sessions, CIPHER, NEW, actor=command_line_operator(), stop=lambda: True
    )
    assert first.interrupted

    finished = reindex_blind_index(
        store.engine, store.sessions, CIPHER, DURING, actor=command_line_operator()
    )

    assert finished.remaining == 0
    assert stored_key_ids(store.engine)["health_workers"] == ("bidx-2",)


def test_a_row_that_does_not_decrypt_is_named_and_the_reindex_goes_on_past_it(
    store: Store,
) -> None:
    """A NIK token copied from another row (its associated data names that row) made every run
    fail at the same row: the rest of its key's rows and the findings were never reached."""
    with store.engine.begin() as connection:
        first, second = connection.execute(
            select(HealthWorker.id, HealthWorker.nik).order_by(HealthWorker.id).limit(2)
        ).all()
        connection.execute(
            update(HealthWorker).where(HealthWorker.id == second.id).values(nik=first.nik)
        )

    report = reindex_blind_index(
        store.engine,
        store.sessions,
        CIPHER,
        DURING,
        actor=command_line_operator(),
        batch_size=BATCH,
    )

    assert report.undecryptable == [second.id]
    assert report.undecryptable_count == 1
    assert report.tables["health_workers"].rows == WORKERS - 1
    assert report.remaining == 1
    assert count_stale(store.engine, NEW)["health_workers"] == 1


def test_start_is_refused_when_a_key_id_comes_back_with_another_key(store: Store) -> None:
    """The finding again, with the new key given the old key's id: the check value tells."""
    url = store.engine.url.render_as_string(hide_password=False)
    impostor = Key(BLIND_INDEX_KEY.kid, NEW_KEY.material)
    # The first start with a key id records its check value.
    build_services(load_settings(settings_env(url, BLIND_INDEX_KEY, None)), engine=store.engine)

    with pytest.raises(BlindIndexKeyError) as current:
        build_services(load_settings(settings_env(url, impostor, None)), engine=store.engine)
    with pytest.raises(BlindIndexKeyError) as previous:
        build_services(
            load_settings(settings_env(url, Key("bidx-3", bytes(range(7, 39))), impostor)),
            engine=store.engine,
        )
    with pytest.raises(BlindIndexKeyError):
        reindex_blind_index(
            store.engine,
            store.sessions,
            CIPHER,
            BlindIndex(impostor),
            actor=command_line_operator(),
        )

    assert "BLIND_INDEX_KEY 'bidx-1' is not the key that id was first used with" in str(
        current.value
    )
    assert "needs a new id" in str(current.value)
    assert "BLIND_INDEX_PREVIOUS_KEY 'bidx-1' is not the key" in str(previous.value)
    assert stored_key_ids(store.engine)["health_workers"] == ("bidx-1",)
    with store.sessions() as session:
        assert (
            HealthWorkerRepository(session, CIPHER, OLD).find_by_nik(store.workers[0]["nik"])
            is not None
        )


def test_during_the_change_lookups_find_rows_under_either_key_and_upserts_keep_one_row(
    store: Store,
) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    services = build_services(
        load_settings(settings_env(url, NEW_KEY, BLIND_INDEX_KEY)), engine=store.engine
    )
    worker, other = store.workers[5], store.workers[6]

    with services.sessions.begin() as session:
        repository = services.repository(session)
        found = repository.find_by_nik(worker["nik"])
        repository.upsert_registration_from_kki(kki_registration(worker), fetched_at=LATER)
        repository.upsert_from_sisdmk(bumped(other, phone="081299990000"), fetched_at=LATER)
    with services.sessions() as session:
        directory_hit = WorkforceDirectory(session, CIPHER, DURING).find_by_nik(
            store.workers[7]["nik"], clear=False
        )

    assert found is not None
    assert found.full_name == worker["full_name"]
    assert count_rows(store, worker["nik"]) == 1
    assert count_rows(store, other["nik"]) == 1
    assert directory_hit is not None
    # The rewritten row moved to the new key by itself.
    services.close()
    with store.engine.connect() as connection:
        kids = dict(
            connection.execute(
                select(HealthWorker.nik_bidx_kid, func.count()).group_by(HealthWorker.nik_bidx_kid)
            ).all()
        )
    assert kids == {"bidx-1": WORKERS - 1, "bidx-2": 1}


def test_reindex_moves_every_digest_to_the_new_key_then_new_key_alone_finds_everyone(
    store: Store,
) -> None:
    mismatched = with_findings(store)
    before = findings(store)
    open_before = {id_ for id_, (_, _, _, resolved) in before.items() if resolved is None}
    assert len(open_before) == MISMATCHES - RESOLVED
    assert count_stale(store.engine, NEW) == {"health_workers": WORKERS, "identity_findings": 6}
    batches: list[BatchDone] = []

    report = reindex_blind_index(
        store.engine,
        store.sessions,
        CIPHER,
        DURING,
        actor=command_line_operator(),
        batch_size=BATCH,
        progress=batches.append,
    )

    assert not report.interrupted
    assert (report.remaining, report.conflicts) == (0, [])
    assert report.tables["health_workers"].rows == WORKERS
    assert report.tables["identity_findings"].rows == MISMATCHES - RESOLVED
    assert report.tables["identity_findings"].withdrawn == RESOLVED
    assert report.batches == WORKERS // BATCH + 1
    assert batches[-1] == BatchDone("identity_findings", 6, 6, 6)
    assert stored_key_ids(store.engine) == {
        "health_workers": ("bidx-2",),
        "identity_findings": ("bidx-2",),
    }
    check_stored_keys(store.engine, NEW)  # the previous key can go
    with pytest.raises(BlindIndexKeyError):
        check_stored_keys(store.engine, OLD)
    # The new key alone finds every worker; an upsert finds the person instead of adding one.
    with store.sessions.begin() as session:
        repository = HealthWorkerRepository(session, CIPHER, NEW)
        assert all(repository.find_by_nik(doc["nik"]) is not None for doc in store.workers)
        repository.upsert_registration_from_kki(
            kki_registration(store.workers[3]), fetched_at=LATER
        )
        # A mismatch KKI sends again (unchanged) keeps its finding: the digests compare equal.
        for doc in mismatched[RESOLVED:]:
            repository.upsert_registration_from_kki(bumped(doc), fetched_at=LATER)
    assert count_rows(store, store.workers[3]["nik"]) == 1
    after = findings(store)
    assert set(after) == set(before)
    for id_ in open_before:
        kid, kki_digest, sisdmk_digest, resolved = after[id_]
        assert (kid, resolved) == ("bidx-2", None)
        assert kki_digest is not None
        assert kki_digest != before[id_][1]
        assert sisdmk_digest is not None
        assert sisdmk_digest != before[id_][2]
    for id_ in set(before) - open_before:
        assert after[id_][:3] == (None, None, None)
    # The API: an open mismatch still says both sides have a value; a withdrawn one cannot.
    with store.sessions() as session:
        listed = WorkforceDirectory(session, CIPHER, NEW).findings(
            cursor=None, limit=200, open_only=False, rule="identity_mismatch"
        )
    has_value = {
        item["id"]: (item["kki_has_value"], item["sisdmk_has_value"]) for item in listed.items
    }
    assert has_value == {
        id_: (True, True) if id_ in open_before else (None, None) for id_ in before
    }
    # One audit entry per batch, naming the rows and no value; the chain verifies.
    with store.sessions() as session:
        entries = session.scalars(select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION))
        details = [(entry.resource_type, json.loads(entry.detail or "{}")) for entry in entries]
        assert verify_chain(session).intact
    assert len(details) == report.batches
    assert sum(d["reindexed"] for table, d in details if table == "health_workers") == WORKERS
    dump = raw_dump(store.engine)
    assert [doc["nik"] for doc in store.workers if doc["nik"] in dump] == []
    # A second run finds nothing to do.
    again = reindex_blind_index(
        store.engine, store.sessions, CIPHER, NEW, actor=command_line_operator()
    )
    assert (again.rows, again.batches, again.remaining) == (0, 0, 0)


def test_reindex_stopped_after_two_batches_resumes_and_lookups_work_in_between(
    store: Store,
) -> None:
    batches: list[BatchDone] = []

    first = reindex_blind_index(
        store.engine,
        store.sessions,
        CIPHER,
        DURING,
        actor=command_line_operator(),
        batch_size=BATCH,
        progress=batches.append,
        stop=lambda: len(batches) >= 2,
    )

    assert first.interrupted
    assert first.tables["health_workers"].rows == 2 * BATCH
    assert first.remaining == WORKERS - 2 * BATCH
    with store.sessions() as session:
        repository = HealthWorkerRepository(session, CIPHER, DURING)
        assert all(repository.find_by_nik(doc["nik"]) is not None for doc in store.workers)

    resumed = reindex_blind_index(
        store.engine, store.sessions, CIPHER, DURING, actor=command_line_operator()
    )

    assert (resumed.tables["health_workers"].rows, resumed.remaining) == (
        WORKERS - 2 * BATCH,
        0,
    )
    assert stored_key_ids(store.engine)["health_workers"] == ("bidx-2",)


def test_reindex_leaves_a_person_stored_twice_under_the_old_key_and_names_the_row(
    store: Store,
) -> None:
    """The finding's duplicate (stored with the new key alone) is reported, not overwritten."""
    worker = store.workers[9]
    with store.sessions.begin() as session:
        HealthWorkerRepository(session, CIPHER, NEW).upsert_registration_from_kki(
            kki_registration(worker), fetched_at=LATER
        )
        old_row = session.scalars(
            select(HealthWorker.id).where(
                HealthWorker.nik_bidx == OLD.digest(worker["nik"], purpose="nik")
            )
        ).one()

    report = reindex_blind_index(
        store.engine, store.sessions, CIPHER, DURING, actor=command_line_operator()
    )

    assert report.conflicts == [old_row]
    assert report.tables["health_workers"].rows == WORKERS - 1
    assert report.remaining == 1
    with pytest.raises(BlindIndexKeyError):
        check_stored_keys(store.engine, NEW)


def test_kki_records_stored_during_the_reindex_land_on_the_stored_workers(store: Store) -> None:
    """A writer with both keys, interleaved with the re-index's batches: nobody stored twice."""
    progress = threading.Condition()
    written: list[str] = []
    errors: list[Exception] = []
    people = store.workers[::5]

    def write() -> None:
        try:
            for worker in people:
                with store.sessions.begin() as session:
                    HealthWorkerRepository(session, CIPHER, DURING).upsert_registration_from_kki(
                        kki_registration(worker), fetched_at=LATER
                    )
                with progress:
                    written.append(worker["nik"])
                    progress.notify_all()
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    def on_batch(batch: BatchDone) -> None:
        # Between batches (no lock held), let the writer commit, so the two really interleave.
        with progress:
            progress.wait_for(lambda: len(written) >= batch.done // 10 or bool(errors), 10)

    writer = threading.Thread(target=write)
    writer.start()
    report = reindex_blind_index(
        store.engine,
        store.sessions,
        CIPHER,
        DURING,
        actor=command_line_operator(),
        batch_size=10,
        progress=on_batch,
    )
    writes_during_reindex = len(written)
    writer.join(timeout=60)

    assert not writer.is_alive()
    assert errors == []
    assert writes_during_reindex >= 10
    assert report.conflicts == []
    final = reindex_blind_index(
        store.engine, store.sessions, CIPHER, DURING, actor=command_line_operator()
    )
    assert final.remaining == 0
    with store.engine.connect() as connection:
        workers = connection.execute(select(func.count()).select_from(HealthWorker)).scalar_one()
    assert workers == WORKERS
    with store.sessions() as session:
        repository = HealthWorkerRepository(session, CIPHER, NEW)
        for worker in people:
            found = repository.find_by_nik(worker["nik"])
            assert found is not None
            assert len(repository.registrations_of_nik(worker["nik"])) >= 1
