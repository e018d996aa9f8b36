"""Helpers for the batch-sync tests: mocks, their admin API, databases, and a sync call."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adapter.clients import ClientMetrics, HttpKkiClient, HttpSisdmkClient, RetryPolicy, Timeouts
from adapter.observability.sync_metrics import SyncMetrics
from adapter.store.crypto import BlindIndex, FieldCipher
from adapter.store.database import create_engine_from_url, session_factory
from adapter.store.repositories import HealthWorkerRepository
from adapter.sync import SyncProgress, SyncRunResult, sync_system
from harness.processes import start_mock
from tests.support.databases import AUDIT_KEY, AUDIT_KEYS, BLIND_INDEX_KEY, ENCRYPTION_KEY, migrate
from tests.support.mock_servers import KEEPALIVE

KKI_TOKEN = "kki-dev-token"
SISDMK_ID, SISDMK_SECRET = "sisdmk-dev-client", "sisdmk-dev-secret"
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=0)
IDENTITY_FIELDS = ("full_name", "gelar_depan", "gelar_belakang", "birth_date", "gender")


class Mock:
    """A running mock's base URL and its admin API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = httpx.Client(base_url=f"{url}/__admin", timeout=10.0, limits=KEEPALIVE)

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.admin.get("/health").raise_for_status().json()
        return body

    def records(self, collection: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            body = self.admin.get(f"/records/{collection}", params=params).raise_for_status()
            page = body.json()
            items.extend(page["data"])
            cursor = page["page"].get("next_cursor")
            if not cursor:
                return items

    def patch(self, collection: str, key: str, patch: dict[str, Any]) -> dict[str, Any]:
        response = self.admin.patch(f"/records/{collection}/{key}", json=patch)
        body: dict[str, Any] = response.raise_for_status().json()
        return body

    def wait_until_up(self, timeout_s: float = 20.0) -> None:
        """Wait out a `down` fault: the admin API answers again when the outage ends."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.admin.get("/health").raise_for_status()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def fault(self, rule: dict[str, Any]) -> None:
        self.admin.post("/faults", json=rule).raise_for_status()

    def reset(self) -> None:
        self.admin.delete("/faults").raise_for_status()
        self.admin.post("/reset").raise_for_status()

    def reset_all(self) -> None:
        """Back to the seeded data set and seed; no faults, subscriptions, deliveries or
        scheduled retries; the started webhook policy."""
        self.admin.post(
            "/reset", json={"faults": True, "subscriptions": True, "deliveries": True}
        ).raise_for_status()

    def close(self) -> None:
        self.admin.close()


def running_mock(system: str, *, size: int, seed: int) -> Iterator[Mock]:
    """A real mock process and its admin client for one test module (use with `yield from`)."""
    process, url = start_mock(system, size=size, seed=seed)
    mock = Mock(url)
    try:
        yield mock
    finally:
        mock.close()
        process.close()


def migrated(url: URL) -> Engine:
    engine = create_engine_from_url(url)
    migrate(engine)
    return engine


def client_for(
    system: str, mock: Mock, *, policy: RetryPolicy = FAST, **overrides: Any
) -> HttpKkiClient | HttpSisdmkClient:
    """A client of the mock with test timeouts and retries; `overrides` go to its constructor."""
    options: dict[str, Any] = {
        "timeouts": Timeouts(connect_s=1.0, read_s=5.0),
        "policy": policy,
        "metrics": ClientMetrics.for_registry(CollectorRegistry()),
        **overrides,
    }
    if system == "kki":
        return HttpKkiClient(mock.url, KKI_TOKEN, **options)
    return HttpSisdmkClient(mock.url, SISDMK_ID, SISDMK_SECRET, **options)


def run_sync(
    system: str,
    mock: Mock,
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    blind_index: BlindIndex,
    *,
    full: bool = False,
    page_size: int = 100,
    on_page: Any = None,
    client: HttpKkiClient | HttpSisdmkClient | None = None,
    metrics: SyncMetrics | None = None,
    run_id: uuid.UUID | None = None,
    read_ahead: bool = True,
) -> SyncRunResult:
    """One sync of `system` from `mock` (through `client` when given; it is closed after);
    with `run_id`, the run requested under that id. A test that changes the source between
    pages (`on_page`) turns `read_ahead` off, so the next page is requested after the change."""
    with client if client is not None else client_for(system, mock) as client:

        def progress(update: SyncProgress) -> None:
            if on_page is not None:
                on_page(update)

        return sync_system(
            system,
            session_factory=sessions,
            client=client,
            repository_factory=lambda session: HealthWorkerRepository(session, cipher, blind_index),
            full=full,
            progress=progress,
            page_size=page_size,
            metrics=metrics
            if metrics is not None
            else SyncMetrics.for_registry(CollectorRegistry()),
            run_id=run_id,
            read_ahead=read_ahead,
        )


@contextmanager
def store(url: URL) -> Iterator[sessionmaker[Session]]:
    engine = migrated(url)
    try:
        yield session_factory(engine, audit_keys=AUDIT_KEYS)
    finally:
        engine.dispose()


def python_path() -> dict[str, str]:
    """PYTHONPATH for a child process, when the tests run with one: a checkout run that way (a
    git worktree beside the installed one) tests its own code in its subprocesses too."""
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def adapter_environment(database_url: str, kki: str, sisdmk: str) -> dict[str, str]:
    def key(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return {
        "PATH": "/usr/bin:/bin",
        **python_path(),
        "DATABASE_URL": database_url,
        "ALLOW_INSECURE_HTTP": "true",  # the mocks and the test IdP speak plain http
        "OIDC_ISSUER": "http://127.0.0.1:8080/realms/healthforce",
        "OIDC_AUDIENCE": "hf-adapter",
        "KKI_BASE_URL": kki,
        "KKI_API_TOKEN": KKI_TOKEN,
        "SISDMK_BASE_URL": sisdmk,
        "SISDMK_CLIENT_ID": SISDMK_ID,
        "SISDMK_CLIENT_SECRET": SISDMK_SECRET,
        "KKI_WEBHOOK_SECRET": "whsec_" + base64.b64encode(bytes(range(1, 25))).decode(),
        "SISDMK_WEBHOOK_SECRET": "whsec_" + base64.b64encode(bytes(range(30, 62))).decode(),
        "ENCRYPTION_KEYS": f"{ENCRYPTION_KEY.kid}:{key(ENCRYPTION_KEY.material)}",
        "BLIND_INDEX_KEY": f"{BLIND_INDEX_KEY.kid}:{key(BLIND_INDEX_KEY.material)}",
        "AUDIT_KEYS": f"{AUDIT_KEY.kid}:{key(AUDIT_KEY.material)}",
    }


def _fold(value: Any) -> str | None:
    if value is None or not str(value).strip():
        return None
    return " ".join(unicodedata.normalize("NFKC", str(value)).casefold().split())


def expected_findings(kki: list[dict[str, Any]], sisdmk: list[dict[str, Any]]) -> int:
    """(registration, field) pairs where KKI's identity differs from SISDMK's for one NIK."""
    people = {worker["nik"]: worker for worker in sisdmk}
    count = 0
    for registration in kki:
        worker = people.get(registration["nik"])
        if worker is None:
            continue
        count += sum(
            _fold(registration.get(name)) != _fold(worker.get(name)) for name in IDENTITY_FIELDS
        )
    return count


def expected_rule_findings(records: list[dict[str, Any]]) -> int:
    """The domain rules KKI or SISDMK `records` break, counted the way the law states them:
    the NIK's DDMMYY (day + 40 for women) against birth date and sex; for KKI also the STR's
    term (a citizen's for life since 8 August 2023, else 5 years; a foreigner's 2 + 2 years)
    and each SIP's (5 years)."""
    count = 0
    for record in records:
        nik, born = record["nik"], dt.date.fromisoformat(record["birth_date"])
        day = int(nik[6:8])
        female = day > 40
        count += (day - 40 * female, int(nik[8:10]), int(nik[10:12])) != (
            born.day,
            born.month,
            born.year % 100,
        )
        count += female != (record["gender"] == "female")
        certification = record.get("certification")
        if certification is None:
            continue  # a SISDMK worker: no STR of its own
        issued = dt.date.fromisoformat(record["issued_at"])
        until = certification["valid_until"]
        end = None if until is None else dt.date.fromisoformat(until)
        if record["citizenship"] == "WNI":
            law = dt.date(2023, 8, 8)
            count += end is not None and (issued >= law or end > _years_later(issued, 5))
        else:
            count += end is None or end > _years_later(issued, 4)
        count += sum(
            dt.date.fromisoformat(sip["valid_until"])
            > _years_later(dt.date.fromisoformat(sip["issued_at"]), 5)
            for sip in record.get("sips") or []
        )
    return count


def _years_later(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)
