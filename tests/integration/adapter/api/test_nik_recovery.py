"""The NIK recovery attack, run through the API with a token without `healthworkers:read:pii`.

A NIK is PPRRDD (province, regency, district) + DDMMYY (birth date, day + 40 for women) + SSSS
(serial). The attack: read the masked workers, take every digit the mask shows, fill in the rest
from what else is in clear (regency, gender, the earliest graduation year for the birth year),
then try the candidates, likeliest first, through search-by-nik until one is found. Against the
store it targets the worker whose NIK comes earliest in its own order, the attacker's best case.
Docs: docs/security.md, "Masking" and "Rate limits".
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from limits import parse_many

from adapter.settings import Settings
from adapter.store.crypto import BlindIndex, FieldCipher
from harness.idp import IdpProcess
from tests.integration.adapter.api.stack import PORTAL, READONLY, Adapter, served_adapter
from tests.integration.adapter.sync.support import Mock, run_sync
from tests.support.databases import PostgresServer

pytestmark = pytest.mark.integration

SEARCH = "/api/v1/health-workers/search-by-nik"
# Tight enough to reach at once, long enough that no run, however slow, outlives the window.
LIMIT = 20
RATE_LIMIT = f"{LIMIT}/hour"
# Probes the attack may spend before giving up (the old code gave a NIK up in fewer).
BUDGET = 5_000
# Age at the first graduation, likeliest first (diploma at 21, bachelor at 22, ...).
GRADUATION_AGES = (21, 22, 23, 20, 24, 25, 19, 26, 27, 18, 28, 29, 30)
DISTRICTS = tuple(range(1, 41))  # kecamatan numbers within a regency
SERIALS = tuple(range(1, 10_000))


@pytest.fixture(scope="module")
def adapter(
    postgres_server: PostgresServer,
    idp: IdpProcess,
    kki: Mock,
    sisdmk: Mock,
    cipher: FieldCipher,
    blind_index: BlindIndex,
) -> Iterator[Adapter]:
    """A store with known workers (a full sync of both mocks), with its own tight NIK limit."""
    database = postgres_server.create_database()
    environment = {"NIK_SEARCH_RATE_LIMIT": RATE_LIMIT}
    with served_adapter(database, idp, kki, sisdmk, environment) as served:
        for system, mock in (("sisdmk", sisdmk), ("kki", kki)):
            result = run_sync(system, mock, served.sessions, cipher, blind_index, full=True)
            assert result.succeeded, result.error
        yield served


# -- what the attacker sees ------------------------------------------------------------------


@dataclass(frozen=True)
class Knowledge:
    """What the masked answers give away about one worker's NIK."""

    worker_id: str
    shown: dict[int, str]  # position in the NIK -> the digit the mask shows there
    regency_code: str | None
    gender: str | None
    first_graduation: int | None


@dataclass(frozen=True)
class Candidates:
    """The NIKs the attacker tries, in order; axes from outermost to innermost."""

    prefix: str
    serials: tuple[int, ...]
    years: tuple[int, ...]
    months: tuple[int, ...]
    days: tuple[int, ...]
    districts: tuple[int, ...]

    def __iter__(self) -> Iterator[str]:
        for serial, year, month, day, district in itertools.product(
            self.serials, self.years, self.months, self.days, self.districts
        ):
            yield f"{self.prefix}{district:02d}{day:02d}{month:02d}{year % 100:02d}{serial:04d}"

    def size(self) -> int:
        return (
            len(self.serials)
            * len(self.years)
            * len(self.months)
            * len(self.days)
            * len(self.districts)
        )

    def rank(self, nik: str) -> int | None:
        """How many probes the attack spends before it tries `nik` (None: it never does)."""
        if not nik.startswith(self.prefix):
            return None
        serial, month, day, district = int(nik[12:]), int(nik[8:10]), int(nik[6:8]), int(nik[4:6])
        year = next((y for y in self.years if y % 100 == int(nik[10:12])), None)
        index = 0
        for axis, value in (
            (self.serials, serial),
            (self.years, year),
            (self.months, month),
            (self.days, day),
            (self.districts, district),
        ):
            if value not in axis:
                return None
            index = index * len(axis) + axis.index(value)
        return index


def knowledge(summary: dict[str, Any], full: dict[str, Any]) -> Knowledge:
    nik = summary["nik"] or ""
    shown = {i: c for i, c in enumerate(nik) if c.isdigit()} if len(nik) == 16 else {}
    years = [e["graduation_year"] for e in full["educations"] if e.get("graduation_year")]
    return Knowledge(
        worker_id=summary["id"],
        shown=shown,
        regency_code=summary.get("regency_code"),
        gender=summary.get("gender"),
        first_graduation=min(years) if years else None,
    )


def candidates(known: Knowledge) -> Candidates | None:
    """The attacker's search space: the digits shown, else the best guess from other fields."""

    def digits(start: int, end: int) -> int | None:
        if all(i in known.shown for i in range(start, end)):
            return int("".join(known.shown[i] for i in range(start, end)))
        return None

    prefix = (
        "".join(known.shown[i] for i in range(4))
        if all(i in known.shown for i in range(4))
        else known.regency_code
    )
    if prefix is None:
        return None
    district, serial = digits(4, 6), digits(12, 16)
    if known.first_graduation is not None:
        years = tuple(known.first_graduation - age for age in GRADUATION_AGES)
    else:
        years = tuple(range(2005, 1954, -1))
    day_offsets = {"female": (40,), "male": (0,)}.get(known.gender or "", (0, 40))
    return Candidates(
        prefix=prefix,
        serials=SERIALS if serial is None else (serial,),
        years=years,
        months=tuple(range(1, 13)),
        days=tuple(day + offset for offset in day_offsets for day in range(1, 32)),
        districts=DISTRICTS if district is None else (district,),
    )


# -- the attack --------------------------------------------------------------------------------


@dataclass
class Outcome:
    recovered: str | None
    answered: int  # probes the API answered (200)
    refusal: httpx.Response | None  # the first answer that was not a 200


def attack(client: httpx.Client, space: Candidates, budget: int) -> Outcome:
    answered = 0
    for nik in itertools.islice(space, budget):
        response = client.post(SEARCH, json={"nik": nik})
        if response.status_code != 200:
            return Outcome(None, answered, response)
        answered += 1
        if response.json()["data"]:
            return Outcome(nik, answered, None)
    return Outcome(None, answered, None)


def masked_workers(client: httpx.Client) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each worker as a caller without `:pii` sees it: the list entry and the full record."""
    listed = client.get("/api/v1/health-workers", params={"limit": 200})
    assert listed.status_code == 200, listed.text
    workers = []
    for summary in listed.json()["data"]:
        full = client.get(f"/api/v1/health-workers/{summary['id']}")
        assert full.status_code == 200, full.text
        workers.append((summary, full.json()))
    return workers


def refused_total(client: httpx.Client, client_id: str) -> float:
    text = client.get("/metrics").text
    pattern = rf'^hf_nik_queries_refused_total\{{client="{re.escape(client_id)}"\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return 0.0 if match is None else float(match.group(1))


def test_nik_recovery_attack_recovers_nothing(
    adapter: Adapter, idp: IdpProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # The ground truth: the store's workers in clear, read with the PII scope.
    with adapter.client(idp.token(PORTAL)) as portal:
        clear = portal.get("/api/v1/health-workers", params={"limit": 200}).json()["data"]
    truth = {w["id"]: w for w in clear}
    assert len(truth) >= 20

    with adapter.client(idp.token(READONLY)) as attacker:
        seen = masked_workers(attacker)
        spaces = {s["id"]: candidates(knowledge(s, f)) for s, f in seen}
        ranks = {
            worker_id: rank
            for worker_id, space in spaces.items()
            if space is not None and (rank := space.rank(truth[worker_id]["nik"])) is not None
        }
        assert ranks, "the attacker's model misses every worker: the test shows nothing"
        target = min(ranks, key=ranks.__getitem__)
        space = spaces[target]
        assert space is not None
        with caplog.at_level(logging.WARNING, logger="adapter.api.rate_limits"):
            outcome = attack(attacker, space, BUDGET)
            again = [attacker.post(SEARCH, json={"nik": n}) for n in itertools.islice(space, 3)]
        refused = refused_total(attacker, "hf-readonly")

    # 1. Nothing recovered, though the attack went for its easiest worker.
    assert outcome.recovered is None, (
        f"recovered worker {target}'s NIK {outcome.recovered} in {outcome.answered} calls "
        f"(search space {space.size():,}, truth at rank {ranks[target]:,})"
    )
    # 2. The rate limit stopped the enumeration: 429 + Retry-After within the limit, and it
    #    keeps refusing; the burst is counted by client and logged once, at warning.
    refusal = outcome.refusal
    assert refusal is not None, f"{outcome.answered} probes went unrefused"
    assert refusal.status_code == 429, refusal.text
    assert refusal.headers["content-type"].startswith("application/problem+json")
    assert refusal.json()["reason"] == "rate_limited"
    assert 1 <= int(refusal.headers["Retry-After"]) <= 3600
    assert outcome.answered <= LIMIT
    assert [r.status_code for r in again] == [429, 429, 429]
    assert refused >= 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "adapter.api.rate_limits"]
    assert len(warnings) == 1
    assert "hf-readonly" in warnings[0]
    # 3. The information is gone: no digit of any NIK, no name or title, no birth date, and
    #    nothing that spells the hidden district + birth-date digits or the birth date.
    for summary, full in seen:
        person = truth[summary["id"]]
        nik, birth_date = person["nik"], person["birth_date"]
        for document in (summary, full):
            assert document["masked"] is True
            assert not any(c.isdigit() for c in document["nik"] or "")
            assert document["birth_date"] is None
            for field in ("full_name", "gelar_depan", "gelar_belakang"):
                assert document[field] in (None, "•••"), field
            text = json.dumps(document)
            for secret in (nik, nik[4:12], nik[6:12], birth_date):
                assert secret not in text, f"worker {summary['id']}: {secret} in a masked answer"
        assert dt.date.fromisoformat(birth_date)  # the truth has a birth date to hide
        space = spaces[summary["id"]]
        assert space is not None
        assert space.size() > 10**8  # no digit narrowed it
    # 4. Even the easiest worker (which the attacker cannot tell apart) lies beyond what the
    #    default limits let one caller try in a day.
    per_day = max(
        limit.amount
        for limit in parse_many(str(Settings.model_fields["nik_search_rate_limit"].default))
        if limit.get_expiry() <= 86_400
    )
    assert ranks[target] > per_day, f"rank {ranks[target]:,} vs {per_day}/day"
