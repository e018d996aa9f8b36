"""The live state of one mock process: records, tokens, faults, subscriptions and deliveries.

Every entry point (public handlers, admin API, provider states) changes records through
`MockRuntime`, so each change bumps the version and fires the webhooks it should.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import multiprocessing
import random
import secrets
import ssl
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from connexion.json_schema import Draft4ResponseValidator, resolve_refs
from jsonschema import FormatChecker

from mocks.core.faults import FaultInjector, FaultRule
from mocks.core.population import generate_population
from mocks.core.problems import FieldError, MockProblem
from mocks.core.startup_cache import StartupCache
from mocks.core.store import (
    DocumentCheck,
    MonotonicClock,
    RecordStore,
    StoreSnapshot,
    parse_timestamp,
)
from mocks.core.system import EventDraft, MockSystem
from mocks.core.validation import field_errors
from mocks.core.webhooks import Dispatcher, SubscriptionRegistry, WebhookEvent, WebhookPolicy
from openapi_schemas import compiled_validator, load_yaml

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts" / "openapi"
MAX_SNAPSHOTS = 20
# Live tokens a mock keeps (SISDMK client credentials); past it the oldest are forgotten.
MAX_LIVE_TOKENS = 100_000
# From this many people, a data set missing from the start-up cache is generated in a child.
GENERATE_APART_FROM = 10_000

log = logging.getLogger("hf_mock")


@dataclass(slots=True)
class MockSettings:
    host: str = "127.0.0.1"
    port: int = 0
    size: int = 1000
    seed: int = 42
    mismatch_rate: float = 0.02
    credentials: Mapping[str, str] = field(default_factory=dict)
    faults: list[FaultRule] = field(default_factory=list)
    webhook_policy: WebhookPolicy = field(default_factory=WebhookPolicy)
    token_ttl_s: int = 14_399
    # Where generated data sets are kept between starts (mocks/core/startup_cache.py); None: off.
    cache_dir: Path | None = None
    # HTTPS: the PEM certificate (chain) and key the mock serves with; None: plain HTTP.
    certfile: Path | None = None
    keyfile: Path | None = None
    # PEM CA certificates webhook deliveries verify https receivers against; None: the
    # system's trust store (certifi). Verification is never off.
    webhook_ca_bundle: Path | None = None


class StartupProgress(Protocol):
    """Told what start-up is doing: a phase's description, how far it is, and its total."""

    def __call__(self, phase: str, done: int, total: int) -> None: ...


@dataclass(frozen=True, slots=True)
class IssuedToken:
    client_id: str
    scopes: frozenset[str]
    expires_at: dt.datetime


def load_spec(filename: str) -> dict[str, Any]:
    with (CONTRACTS_DIR / filename).open(encoding="utf-8") as fh:
        spec: dict[str, Any] = load_yaml(fh)
    return spec


def merge_specs(base: dict[str, Any], extension: dict[str, Any]) -> dict[str, Any]:
    """One spec from the common admin API and a system's admin additions (same base path)."""
    merged = dict(base)
    merged["paths"] = {**base.get("paths", {}), **extension.get("paths", {})}
    components = dict(base.get("components", {}))
    for section, entries in extension.get("components", {}).items():
        components[section] = {**components.get(section, {}), **entries}
    merged["components"] = components
    merged["tags"] = [*base.get("tags", []), *extension.get("tags", [])]
    return merged


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


@functools.cache
def _resolved_spec(filename: str) -> dict[str, Any]:
    resolved: dict[str, Any] = resolve_refs(load_spec(filename))
    return resolved


def contract_problems(
    system: MockSystem, collection: str, doc: Mapping[str, Any]
) -> list[FieldError]:
    """Problems that would make `doc` an invalid response of the public API."""
    schema_name = system.collection_schema(collection)
    schema = _resolved_spec(system.spec_file)["components"]["schemas"][schema_name]
    fast = compiled_validator(schema)
    if fast is not None and fast.is_valid(doc):
        return []
    validator = Draft4ResponseValidator(schema, format_checker=FormatChecker())
    return field_errors(validator.iter_errors(doc))


def contract_check(system: MockSystem) -> Callable[[str], DocumentCheck]:
    """The check each store runs on every state it stores: 422 for what the API can't serve."""

    def check_for(collection: str) -> DocumentCheck:
        schema_name = system.collection_schema(collection)
        fast = compiled_validator(
            _resolved_spec(system.spec_file)["components"]["schemas"][schema_name]
        )

        def check(doc: Mapping[str, Any]) -> None:
            if fast is not None and fast.is_valid(doc):
                return
            errors = contract_problems(system, collection, doc)
            if errors:
                raise MockProblem(
                    422,
                    f"the document is not a valid {schema_name}; "
                    "the mock only stores what its API could serve",
                    errors=errors,
                )

        return check

    return check_for


def _report(progress: StartupProgress, phase: str, total: int, done: int) -> None:
    progress(phase, done, total)


def fill_generated(
    system: MockSystem,
    settings: MockSettings,
    stores: dict[str, RecordStore],
    on_progress: StartupProgress | None = None,
) -> None:
    """Generate the population and load each store with its documents (checked, stored)."""

    def report(phase: str) -> Callable[[int], None] | None:
        if on_progress is None:
            return None
        return functools.partial(_report, on_progress, phase, settings.size)

    population = generate_population(
        size=settings.size,
        seed=settings.seed,
        mismatch_rate=settings.mismatch_rate,
        on_progress=report("generating people"),
    )
    people_collection = next(iter(stores))  # the first; the others are small
    for name, documents in system.generated_documents(population).items():
        stores[name].load(
            documents,
            on_progress=report("checking and storing records")
            if name == people_collection
            else None,
        )


def _generate_in_child(
    system: MockSystem, settings: MockSettings, on_progress: StartupProgress | None
) -> None:
    """Run `_write_cache` in a child process, passing its progress on; it may fail (logged)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_write_cache,
        args=(system.name, settings.size, settings.seed, settings.mismatch_rate),
        kwargs={"cache_dir": settings.cache_dir, "progress": sender},
        name=f"hf-mock-{system.name}-generate",
        daemon=True,
    )
    child.start()
    sender.close()
    while True:
        try:
            phase, done, total = receiver.recv()
        except EOFError:
            break
        if on_progress is not None:
            on_progress(phase, done, total)
    child.join()
    if child.exitcode != 0:
        log.warning(
            "generating in a child process failed (exit %s); generating here", child.exitcode
        )


def _write_cache(
    system_name: str,
    size: int,
    seed: int,
    mismatch_rate: float,
    *,
    cache_dir: Path,
    progress: Connection,
) -> None:
    """In the child: generate the data set and write it to the start-up cache."""
    from mocks.registry import system_named

    system = system_named(system_name)
    settings = MockSettings(size=size, seed=seed, mismatch_rate=mismatch_rate, cache_dir=cache_dir)

    def send(phase: str, done: int, total: int) -> None:
        progress.send((phase, done, total))

    stores = system.create_stores(MonotonicClock(), contract_check(system))
    fill_generated(system, settings, stores, send)
    StartupCache(cache_dir, system, size, seed, mismatch_rate).save(stores, send)
    progress.close()


class MockRuntime:
    def __init__(
        self,
        system: MockSystem,
        settings: MockSettings,
        fill: Callable[[dict[str, RecordStore]], None],
    ) -> None:
        """A runtime whose stores `fill` loads (from a generated population or the cache)."""
        self.system = system
        # Documented development defaults for any credential the caller did not set.
        settings.credentials = {**system.default_credentials().values, **settings.credentials}
        self.settings = settings
        self.clock = MonotonicClock()
        self.stores: dict[str, RecordStore] = system.create_stores(
            self.clock, contract_check(system)
        )
        fill(self.stores)
        newest = max((s.newest_updated_at() or "" for s in self.stores.values()), default="")
        if newest:
            self.clock.observe(parse_timestamp(newest))
        self.injector = FaultInjector(seed=settings.seed)
        for rule in settings.faults:
            self.injector.add(rule)
        self.subscriptions = SubscriptionRegistry(event_types=system.event_types)
        self.dispatcher = Dispatcher(
            self.subscriptions,
            policy=settings.webhook_policy,
            seed=settings.seed,
            user_agent=f"hf-mock/{system.name}",
            verify=(
                ssl.create_default_context(cafile=settings.webhook_ca_bundle)
                if settings.webhook_ca_bundle is not None
                else True
            ),
        )
        self.tokens: OrderedDict[str, IssuedToken] = OrderedDict()
        self.snapshots: dict[str, dict[str, StoreSnapshot]] = {}
        self._initial = self._snapshot_stores()
        self._emit_rng = random.Random(settings.seed)
        self.started_at = dt.datetime.now(dt.UTC)
        self.loaded_from: Path | None = None  # the cache file the records came from, if any
        self.generated = True  # False when the records came from an existing cache file

    @classmethod
    def build(
        cls,
        system: MockSystem,
        settings: MockSettings,
        on_progress: StartupProgress | None = None,
    ) -> MockRuntime:
        """Generate the data set (or load it from the start-up cache) and build the runtime."""
        cache = (
            StartupCache(
                settings.cache_dir, system, settings.size, settings.seed, settings.mismatch_rate
            )
            if settings.cache_dir is not None
            else None
        )
        loaded_from: list[Path] = []
        generated: list[bool] = []

        def fill(stores: dict[str, RecordStore]) -> None:
            if cache is not None and cache.load(stores, on_progress):
                loaded_from.append(cache.path)
                return
            generated.append(True)
            # A directory that cannot take the file (a read-only mount) is found first: the
            # child would generate, fail to save, and this process generate it all again.
            saving = cache is not None and cache.writable()
            if cache is not None and saving and settings.size >= GENERATE_APART_FROM:
                # Generated in a child that writes the cache, then loaded: the generator's
                # objects never fragment this process's heap (~650 instead of ~180 MiB RSS
                # at 100,000 people).
                _generate_in_child(system, settings, on_progress)
                if cache.load(stores, on_progress):
                    loaded_from.append(cache.path)
                    return
            fill_generated(system, settings, stores, on_progress)
            if cache is not None and saving:
                cache.save(stores, on_progress)

        runtime = cls(system, settings, fill)
        runtime.loaded_from = loaded_from[0] if loaded_from else None
        runtime.generated = bool(generated)
        return runtime

    # -- serving -----------------------------------------------------------------------------

    async def serve(self, on_ready: Callable[[int], None] | None = None) -> None:
        from mocks.core.app import create_asgi_app
        from mocks.core.listener import serve

        app = create_asgi_app(self)
        self.dispatcher.start()
        try:
            await serve(
                app,
                host=self.settings.host,
                port=self.settings.port,
                control_ready=self._attach_listener,
                on_ready=on_ready,
                ssl_certfile=self.settings.certfile,
                ssl_keyfile=self.settings.keyfile,
            )
        finally:
            await self.dispatcher.aclose()

    def _attach_listener(self, control: Any) -> None:
        self.injector.on_down = control.go_down

    # -- specs and validation ------------------------------------------------------------------

    @cached_property
    def public_spec(self) -> dict[str, Any]:
        return load_spec(self.system.spec_file)

    @cached_property
    def admin_spec(self) -> dict[str, Any]:
        spec = load_spec("mock-admin.yaml")
        if self.system.admin_extension_file:
            spec = merge_specs(spec, load_spec(self.system.admin_extension_file))
        return spec

    def validate_document(self, collection: str, doc: Mapping[str, Any]) -> list[FieldError]:
        """Problems that would make `doc` an invalid response of the public API."""
        return contract_problems(self.system, collection, doc)

    # -- records ----------------------------------------------------------------------------

    def store(self, collection: str) -> RecordStore:
        store = self.stores.get(collection)
        if store is None:
            known = ", ".join(sorted(self.stores))
            raise MockProblem(
                404,
                f"the {self.system.name} mock has no collection {collection!r} (it has {known})",
            )
        return store

    def _checked(self, collection: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        stamped = {
            "version": 1,
            "updated_at": "1970-01-01T00:00:00.000000Z",
            **doc,
        }  # placeholders so schemas requiring them validate; the store overwrites both
        errors = self.validate_document(collection, stamped)
        if errors:
            raise MockProblem(
                422,
                f"the document is not a valid {self.system.collection_schema(collection)}; "
                "the mock only stores what its API could serve",
                errors=errors,
            )
        return stamped

    def ensure_room_for_changes(self, collection: str, changes: int = 1) -> None:
        """Refuse (409) before `changes` records of `collection` change when their events could
        not all wait to be sent: each change announces itself once to every subscription of
        the collection's event types (a status change twice: the cap is soft by that much).
        Nothing to announce — no subscription, a collection no event is about — never refuses."""
        types = [
            event_type
            for event_type in self.system.event_types
            if self.system.collection_for_event(event_type) == collection
        ]
        listening = sum(
            1
            for subscription in self.subscriptions.list()
            if any(subscription.matches(event_type) for event_type in types)
        )
        if listening:
            self.dispatcher.ensure_room(changes * listening)

    def create_record(self, collection: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(collection)
        self.ensure_room_for_changes(collection)  # before the change: its events are never dropped
        stored = store.create(self._checked(collection, doc))
        self.publish(self.system.events_for_change(collection, None, stored))
        return stored

    def replace_record(self, collection: str, key: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(collection)
        before = store.require(key)
        self.ensure_room_for_changes(collection)
        stored = store.replace(key, self._checked(collection, doc))
        self.publish(self.system.events_for_change(collection, before, stored))
        return stored

    def patch_record(self, collection: str, key: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        before = self.store(collection).require(key)
        merged = merge_patch(before, patch)
        return self.replace_record(collection, key, merged)

    def delete_record(self, collection: str, key: str) -> dict[str, Any]:
        before = self.store(collection).delete(key)
        self.publish(self.system.events_for_change(collection, before, None))
        return before

    # -- state ---------------------------------------------------------------------------------

    def _snapshot_stores(self) -> dict[str, StoreSnapshot]:
        return {name: store.snapshot() for name, store in self.stores.items()}

    def reset(self) -> None:
        """Back to the seeded data set, and the random choices (the records `emit` picks, the
        webhook retry jitter) back to the seed: a reset mock answers as a fresh one, but that a
        record it removes is made again at its next version (`RecordStore.restore`). Faults and
        subscriptions are separate."""
        for name, store in self.stores.items():
            store.restore(self._initial[name])
        self._emit_rng = random.Random(self.settings.seed)
        self.dispatcher.reseed(self.settings.seed)

    def save_snapshot(self, name: str) -> None:
        if name not in self.snapshots and len(self.snapshots) >= MAX_SNAPSHOTS:
            raise MockProblem(409, f"at most {MAX_SNAPSHOTS} snapshots are kept; delete one first")
        self.snapshots[name] = self._snapshot_stores()

    def restore_snapshot(self, name: str) -> None:
        saved = self.snapshots.get(name)
        if saved is None:
            raise MockProblem(404, f"no snapshot named {name!r}")
        for store_name, store in self.stores.items():
            store.restore(saved[store_name])

    # -- tokens (SISDMK client credentials) -------------------------------------------------

    def issue_token(self, client_id: str, scopes: frozenset[str]) -> tuple[str, IssuedToken]:
        token = secrets.token_urlsafe(24)
        issued = IssuedToken(
            client_id=client_id,
            scopes=scopes,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.settings.token_ttl_s),
        )
        self.tokens[token] = issued
        # Oldest first (in the order they were issued): expired ones go from the front, and
        # past `MAX_LIVE_TOKENS` the oldest live ones too (its holder gets a 401 and a new
        # token, as after an expiry). Amortised O(1) a token (an OrderedDict's front is a
        # linked list's), whatever a token-per-request client has left behind.
        now = issued.expires_at - dt.timedelta(seconds=self.settings.token_ttl_s)
        while self.tokens:
            first = next(iter(self.tokens.values()))
            if first.expires_at > now and len(self.tokens) <= MAX_LIVE_TOKENS:
                break
            self.tokens.popitem(last=False)
        return token, issued

    def token_info(self, token: str) -> IssuedToken | None:
        issued = self.tokens.get(token)
        if issued is None or issued.expires_at <= dt.datetime.now(dt.UTC):
            return None
        return issued

    # -- webhooks --------------------------------------------------------------------------

    def publish(
        self,
        drafts: list[EventDraft],
        *,
        mode: str = "normal",
        copies: int = 2,
        subscription_id: str | None = None,
    ) -> tuple[list[WebhookEvent], int]:
        """Send events to every matching subscription; returns them and deliveries scheduled."""
        events = [self._event(d) for d in drafts]
        if not events:
            return events, 0
        if mode == "out_of_order":
            deliveries = self.dispatcher.publish_batch(
                events, mode=mode, subscription_id=subscription_id
            )
            return events, len(deliveries)
        scheduled = 0
        for event in events:
            scheduled += len(
                self.dispatcher.publish(
                    event, mode=mode, copies=copies, subscription_id=subscription_id
                )
            )
        return events, scheduled

    def _event(self, draft: EventDraft) -> WebhookEvent:
        return WebhookEvent(
            event_id=str(uuid.uuid4()),
            type=draft.type,
            occurred_at=draft.occurred_at or self.clock.tick(),
            source=self.system.name,
            subject=dict(draft.subject),
            data=dict(draft.data),
            nik=draft.nik,
        )

    def emit_events(
        self,
        event_type: str,
        *,
        key: str | None,
        count: int,
        mode: str,
        copies: int,
        subscription_id: str | None,
    ) -> tuple[list[tuple[str, EventDraft]], int]:
        """Touch records (new version) and announce them, for traffic and delivery tests.

        Returns (event id, draft) pairs and the number of deliveries scheduled.
        """
        if event_type not in self.system.event_types:
            raise MockProblem(
                422,
                f"event type {event_type!r} is not one the {self.system.name} mock sends",
                errors=[FieldError("body", "type", "unknown event type")],
            )
        if subscription_id is not None:
            self.subscriptions.get(subscription_id)  # raises when unknown
        collection = self.system.collection_for_event(event_type)
        store = self.store(collection)
        if key is not None:
            store.require(key)
            keys = [key]
        else:
            if len(store) == 0:
                raise MockProblem(409, f"the {collection} collection is empty")
            pool = [record.key for record in store.records()]
            keys = [self._emit_rng.choice(pool) for _ in range(count)]
        self.dispatcher.ensure_room(
            self.dispatcher.deliveries_for(event_type, len(keys), mode, copies, subscription_id)
        )
        drafts: list[EventDraft] = []
        for record_key in keys:
            doc = store.touch(record_key)
            drafts.append(self.system.event_about(event_type, doc))
        events, scheduled = self.publish(
            drafts, mode=mode, copies=copies, subscription_id=subscription_id
        )
        return [(e.event_id, d) for e, d in zip(events, drafts, strict=True)], scheduled
