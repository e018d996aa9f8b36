"""Key rotation against real PostgreSQL and SQLite: data stored under key A, the ring switched
to "B,A", `rotate_keys` re-encrypting in batches, interrupted, crashed, resumed, with a writer."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, select, update

from adapter.store import rotation
from adapter.store.crypto import BlindIndex, FieldCipher, FieldContext, Key, KeyRing
from adapter.store.models import HealthWorker
from adapter.store.rotation import BatchDone, count_stale, rotate_keys
from tests.integration.adapter.keys.store import (
    FETCHED_AT,
    KEY_A,
    KEY_B,
    Store,
    cipher_of,
    kids,
    plaintexts,
    raw_dump,
    tokens,
)
from tests.support.documents import bumped, sisdmk_worker

pytestmark = pytest.mark.integration

BATCH = 50


def test_rotate_reencrypts_every_token_once_under_active_key_when_ring_is_b_then_a(
    store: Store, blind_index: BlindIndex
) -> None:
    before = plaintexts(store.engine, cipher_of(KEY_A))
    stale_rows = count_stale(store.engine, cipher_of(KEY_B, KEY_A))

    report = rotate_keys(store.engine, cipher_of(KEY_B, KEY_A), batch_size=BATCH)

    assert not report.interrupted
    assert {name: table.rows for name, table in report.tables.items()} == stale_rows
    assert report.tables["health_workers"].rows == 200
    assert report.tables["registrations"].rows == 40
    assert report.tables["quarantine"].rows == 1
    assert sum(table.tokens for table in report.tables.values()) == len(before)
    assert report.remaining == 0
    assert kids(store.engine) == {KEY_B.kid}
    # Key A dropped from the ring: everything still decrypts, to the same values.
    assert plaintexts(store.engine, cipher_of(KEY_B)) == before
    with store.sessions() as session:
        worker = store.repository(session, cipher_of(KEY_B), blind_index).find_by_nik(
            store.workers[7]["nik"]
        )
    assert worker is not None
    assert (worker.full_name, worker.email) == (
        store.workers[7]["full_name"],
        store.workers[7]["email"],
    )
    # The raw tables hold tokens only, no value in clear.
    dump = raw_dump(store.engine)
    assert "v1.key-b." in dump
    assert [value for value in before.values() if len(value) >= 8 and value in dump] == []
    # A second run finds nothing to do and changes nothing.
    rotated = tokens(store.engine)

    again = rotate_keys(store.engine, cipher_of(KEY_B, KEY_A), batch_size=BATCH)

    assert (again.rows, again.batches, again.remaining) == (0, 0, 0)
    assert tokens(store.engine) == rotated


def test_each_batch_seeks_past_the_last_key_the_one_before_selected(store: Store) -> None:
    """Each batch selected the stale rows from the table's start: it scanned every row rotated
    so far, quadratic work on a table of millions. It now starts after the previous batch."""
    selects: list[tuple[str, object]] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def record(
        conn: object, cursor: object, statement: str, parameters: object, *a: object
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM health_workers" in statement:
            selects.append((statement, parameters))

    try:
        report = rotate_keys(store.engine, cipher_of(KEY_B, KEY_A), batch_size=BATCH)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)

    assert report.tables["health_workers"].rows == 200
    batches = [(text, params) for text, params in selects if "LIMIT" in text.upper()]
    assert len(batches) == 200 // BATCH + 1  # the last one finds nothing
    assert "health_workers.id >" not in batches[0][0]
    assert all("health_workers.id >" in text for text, _ in batches[1:])


def test_rotation_interrupted_after_two_batches_resumes_to_same_state(store: Store) -> None:
    before = plaintexts(store.engine, cipher_of(KEY_A))
    batches: list[BatchDone] = []
    ring = cipher_of(KEY_B, KEY_A)

    first = rotate_keys(
        store.engine,
        ring,
        batch_size=BATCH,
        progress=batches.append,
        stop=lambda: len(batches) >= 2,
    )

    assert first.interrupted
    assert (first.batches, first.rows) == (2, 2 * BATCH)
    assert first.remaining > 0
    assert kids(store.engine) == {KEY_A.kid, KEY_B.kid}
    assert plaintexts(store.engine, ring) == before  # half-rotated data reads as before

    resumed = rotate_keys(store.engine, ring, batch_size=BATCH)

    assert not resumed.interrupted
    assert resumed.remaining == 0
    assert resumed.tables["health_workers"].rows == 200 - 2 * BATCH
    assert kids(store.engine) == {KEY_B.kid}
    assert plaintexts(store.engine, cipher_of(KEY_B)) == before


class _CrashingCipher(FieldCipher):
    """Once armed, fails on the n-th re-encryption, like a process killed in a batch's middle."""

    def __init__(self, keyring: KeyRing) -> None:
        super().__init__(keyring)
        self.countdown: int | None = None

    def reencrypt(self, token: str, context: FieldContext) -> str:
        if self.countdown is not None:
            self.countdown -= 1
            if self.countdown == 0:
                raise RuntimeError("simulated crash")
        return super().reencrypt(token, context)


def test_rotation_crashed_mid_batch_resumes_to_same_state(store: Store) -> None:
    before = plaintexts(store.engine, cipher_of(KEY_A))
    ring = KeyRing([KEY_B, KEY_A])
    crashing = _CrashingCipher(ring)
    batches: list[BatchDone] = []

    def on_batch(batch: BatchDone) -> None:
        batches.append(batch)
        if len(batches) == 2:
            crashing.countdown = 100  # well inside the third batch (about 9 tokens a row)

    with pytest.raises(RuntimeError, match="simulated crash"):
        rotate_keys(store.engine, crashing, batch_size=BATCH, progress=on_batch)

    # The crashed batch rolled back whole: each row is under one key, nothing is lost.
    row_kids: dict[str, set[str]] = {}
    for (table, _, row_id), token in tokens(store.engine).items():
        if table == "health_workers":
            row_kids.setdefault(row_id, set()).add(token.split(".")[1])
    assert all(len(found) == 1 for found in row_kids.values())
    assert [found for found in row_kids.values()].count({KEY_B.kid}) == 2 * BATCH
    assert plaintexts(store.engine, FieldCipher(ring)) == before

    resumed = rotate_keys(store.engine, FieldCipher(ring), batch_size=BATCH)

    assert resumed.tables["health_workers"].rows == 200 - 2 * BATCH
    assert resumed.remaining == 0
    assert plaintexts(store.engine, cipher_of(KEY_B)) == before


def test_data_written_during_rotation_stays_readable(store: Store, blind_index: BlindIndex) -> None:
    ring = cipher_of(KEY_B, KEY_A)
    progress = threading.Condition()
    written: list[str] = []
    errors: list[Exception] = []
    new_workers = [sisdmk_worker() for _ in range(30)]
    changed = [bumped(doc, full_name=f"{doc['full_name']} Baru") for doc in store.workers[::10]]

    def write() -> None:
        try:
            for doc in [*new_workers, *changed]:
                with store.sessions.begin() as session:
                    store.repository(session, ring, blind_index).upsert_from_sisdmk(
                        doc, fetched_at=FETCHED_AT
                    )
                with progress:
                    written.append(doc["nik"])
                    progress.notify_all()
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    def on_batch(batch: BatchDone) -> None:
        # Between batches (no lock held), let the writer commit, so the two really interleave.
        with progress:
            progress.wait_for(lambda: len(written) >= min(batch.done // 10, 40) or bool(errors), 10)

    writer = threading.Thread(target=write)
    writer.start()
    report = rotate_keys(store.engine, ring, batch_size=10, progress=on_batch)
    writes_during_rotation = len(written)
    writer.join(timeout=60)

    assert not writer.is_alive()
    assert errors == []
    assert report.rows > 0
    assert writes_during_rotation >= 10
    final = rotate_keys(store.engine, ring, batch_size=10)
    assert final.remaining == 0
    assert kids(store.engine) == {KEY_B.kid}
    expected = {doc["nik"]: doc for doc in [*store.workers, *new_workers]}
    expected.update({doc["nik"]: doc for doc in changed})
    with store.sessions() as session:
        repository = store.repository(session, cipher_of(KEY_B), blind_index)
        for nik, doc in expected.items():
            worker = repository.find_by_nik(nik)
            assert worker is not None
            assert (worker.full_name, worker.phone) == (doc["full_name"], doc["phone"])


def test_a_row_whose_value_does_not_decrypt_is_named_and_the_rest_rotated(store: Store) -> None:
    """A token moved from another row (or damaged) used to stop the rotation for good at the
    first batch, on every run; it is now left alone, named, and every other row rotated."""
    workers = HealthWorker.__table__
    with store.engine.begin() as connection:
        first, second = connection.scalars(
            select(workers.c.id).order_by(workers.c.id).limit(2)
        ).all()
        connection.execute(
            update(workers)
            .where(workers.c.id == first)
            .values(
                full_name=connection.execute(
                    select(workers.c.full_name).where(workers.c.id == second)
                ).scalar_one()
            )
        )

    report = rotate_keys(store.engine, cipher_of(KEY_B, KEY_A), batch_size=BATCH)

    assert report.failed == {"health_workers": [str(first)]}
    assert report.tables["health_workers"].rows == 199
    assert report.remaining == 1
    again = rotate_keys(store.engine, cipher_of(KEY_B, KEY_A), batch_size=BATCH)
    assert again.failed == {"health_workers": [str(first)]}
    assert again.rows == 0


def test_an_old_key_with_the_right_id_and_a_wrong_secret_changes_nothing(store: Store) -> None:
    """Every row fails to decrypt: each is left as it was and named, none is rewritten (the
    command's message then names the wrong secret first, then damage)."""
    wrong_a = Key(KEY_A.kid, bytes(range(100, 132)))
    before = tokens(store.engine)

    report = rotate_keys(store.engine, cipher_of(KEY_B, wrong_a), batch_size=BATCH)

    assert report.rows == 0
    assert report.tables["health_workers"].failed_count == 200
    assert len(report.failed["health_workers"]) == 200  # under FAILED_KEYS_KEPT: all listed
    assert tokens(store.engine) == before


def test_failed_rows_past_the_kept_number_are_counted_not_listed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At national scale a wrong key fails millions of rows: their keys are not all held."""
    monkeypatch.setattr(rotation, "FAILED_KEYS_KEPT", 5)
    wrong_a = Key(KEY_A.kid, bytes(range(100, 132)))

    report = rotate_keys(store.engine, cipher_of(KEY_B, wrong_a), batch_size=BATCH)

    assert report.tables["health_workers"].failed_count == 200
    assert len(report.failed["health_workers"]) == 5
