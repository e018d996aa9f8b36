"""A list page labelled with a Content-Type the contract does not document fails the run and
stores nothing of that page: a real `hf-mock` behind a real relabelling proxy, both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.models import HealthWorker
from adapter.sync import SyncProgress
from tests.integration.adapter.sync.support import Mock, client_for, run_sync, running_mock, store
from tests.support.breaking_proxy import Breakage, BreakingProxy, Relabelled
from tests.support.databases import BACKENDS

pytestmark = pytest.mark.integration

SIZE = 60
PAGE = 20


@pytest.fixture(scope="module")
def sisdmk() -> Iterator[Mock]:
    yield from running_mock("sisdmk", size=SIZE, seed=13)


@pytest.fixture
def proxy(sisdmk: Mock) -> Iterator[BreakingProxy]:
    broken = BreakingProxy(sisdmk.url)
    try:
        yield broken
    finally:
        broken.close()


@pytest.fixture
def sessions(empty_database_url: URL) -> Iterator[sessionmaker[Session]]:
    with store(empty_database_url) as factory:
        yield factory


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_a_page_labelled_text_plain_fails_the_run_and_none_of_it_is_stored(
    sisdmk: Mock,
    proxy: BreakingProxy,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> None:
    relabel = Relabelled(r"/v1/health-workers", "text/plain")

    def relabel_after_first_page(progress: SyncProgress) -> None:
        if progress.pages == 1:
            proxy.breakage = relabel

    through_proxy = Mock(proxy.url)
    try:
        failed = run_sync(
            "sisdmk",
            through_proxy,
            sessions,
            cipher,
            blind_index,
            page_size=PAGE,
            on_page=relabel_after_first_page,
            read_ahead=False,  # the relabelling must meet the second page's response
            client=client_for("sisdmk", through_proxy),
        )
    finally:
        through_proxy.close()

    assert failed.status == "failed"
    assert failed.error_type == "ContractViolation"
    assert "Content-Type text/plain" in str(failed.error)
    assert relabel.relabelled == 1
    assert failed.counts.fetched == PAGE, "the first page stays committed"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(HealthWorker)) == PAGE

    proxy.breakage = Breakage()
    resumed = run_sync("sisdmk", sisdmk, sessions, cipher, blind_index, page_size=PAGE)
    assert resumed.succeeded, resumed.error
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(HealthWorker)) == SIZE
