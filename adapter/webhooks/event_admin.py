"""`WebhookEventAdmin`: operators' actions on the inbox (list, show, replay, purge), for the
``hf-adapter events`` command and the ``/api/v1/webhook-events`` endpoints alike.

Replay and purge append their audit entry in the transaction that changes the events. Listing
and showing are not audited: an event row holds ids, types, states, times and error lines,
never personal data. No web framework here.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.orm import Session, sessionmaker

from adapter.api import listings
from adapter.audit import Actor, record_audit
from adapter.clock import Clock, utc_now
from adapter.errors import AdapterError
from adapter.observability.event_metrics import EventMetrics
from adapter.queue.messages import EventMessage, EventPublisher
from adapter.webhooks.inbox import WebhookInbox
from adapter.webhooks.outbox import publish_events
from adapter.workforce.directory import Page

log = logging.getLogger("adapter.webhooks")

RESOURCE: Final = "webhook_event"
PURGE_REASON_MAX: Final = 500
# Replayed events published (and confirmed, and marked) per batch.
PUBLISH_BATCH: Final = 1_000
# One line with something in it: the rule of adapter.yaml's PurgeRequest, for the CLI too.
PURGE_REASON: Final = re.compile(r"[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*")


class EventNotFound(AdapterError):
    default_reason = "event_not_found"


class EventNotFailed(AdapterError):
    """Only dead-lettered events (state ``failed``) can be replayed or purged."""

    default_reason = "event_not_failed"


class InvalidPurgeReason(AdapterError):
    default_reason = "invalid_purge_reason"


@dataclass(frozen=True)
class EventFilter:
    state: str | None = "failed"  # None: any state
    source: str | None = None


@dataclass(frozen=True)
class Replayed:
    replayed: list[uuid.UUID]
    skipped: int  # failed when asked, no longer failed when replayed (another operator won)
    published: bool  # False: the broker is away and the outbox relay publishes them


@dataclass(frozen=True)
class Purged:
    purged: list[uuid.UUID]
    skipped: int


class WebhookEventAdmin:
    """List, show, replay and purge inbox events; replays publish through the outbox."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        publisher: EventPublisher,
        metrics: EventMetrics,
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._metrics = metrics
        self._clock = clock

    def list(self, where: EventFilter, *, cursor: str | None, limit: int) -> Page:
        """Events newest first, one keyset page (`InvalidQuery` for a bad cursor or limit)."""
        with self._sessions() as session:
            return listings.webhook_events(
                session, state=where.state, source=where.source, cursor=cursor, limit=limit
            )

    def count(self, *, state: str) -> int:
        with self._sessions() as session:
            return WebhookInbox(session).count(state=state)

    def show(self, event_id: uuid.UUID) -> dict[str, Any]:
        """One event in full: the listing's fields, its outbox and purge fields, its trace."""
        with self._sessions() as session:
            event = WebhookInbox(session).get(event_id)
            if event is None:
                raise _not_found([event_id])
            return {
                **listings.webhook_event_document(event),
                "published_at": listings.iso(event.published_at),
                "purge_reason": event.purge_reason,
                "traceparent": event.traceparent,
            }

    def replay(self, actor: Actor, event_ids: Sequence[uuid.UUID] | None) -> Replayed:
        """These failed events (None: every failed one) back to pending with fresh retries,
        then published.

        With ids, nothing changes unless every one is a failed event: `EventNotFound`,
        `EventNotFailed`.
        """
        ids = _unique(event_ids)
        with self._sessions.begin() as session:
            inbox = WebhookInbox(session, clock=self._clock)
            if ids is not None:
                _require_failed(inbox, ids, "replayed")
            result = inbox.replay(ids)
            messages = [
                EventMessage(event_id, source, event_type, traceparent)
                for event_id, source, event_type, traceparent in result.messages
            ]
            record_audit(
                session,
                actor,
                "events.replay",
                RESOURCE,
                resource_id=_resource_id(ids),
                detail=_detail(ids, result.replayed, result.skipped),
            )
        # In batches, each confirmed and marked on its own: one confirm for tens of thousands
        # of events would outlast its timeout and leave them all to the relay.
        unavailable = None
        for start in range(0, len(messages), PUBLISH_BATCH):
            unavailable = publish_events(
                self._sessions,
                self._publisher,
                messages[start : start + PUBLISH_BATCH],
                path="replay",
                metrics=self._metrics,
            )
            if unavailable is not None:
                log.warning("replayed events wait for the outbox relay: %s", unavailable.message)
                break
        return Replayed(result.replayed, result.skipped, published=unavailable is None)

    def purge(self, actor: Actor, event_ids: Sequence[uuid.UUID] | None, *, reason: str) -> Purged:
        """These failed events (None: every failed one) set aside for good, `reason` kept with
        each; `InvalidPurgeReason`, `EventNotFound`, `EventNotFailed` as for `replay`."""
        if len(reason) > PURGE_REASON_MAX or not PURGE_REASON.fullmatch(reason):
            raise InvalidPurgeReason(
                "the reason must say why the events are set aside: one line, not blank, "
                f"at most {PURGE_REASON_MAX} characters"
            )
        reason = reason.strip(" ")
        ids = _unique(event_ids)
        with self._sessions.begin() as session:
            inbox = WebhookInbox(session, clock=self._clock)
            if ids is not None:
                _require_failed(inbox, ids, "purged")
            purged = inbox.purge(ids, reason=reason)
            skipped = 0 if ids is None else len(ids) - len(purged)
            record_audit(
                session,
                actor,
                "events.purge",
                RESOURCE,
                resource_id=_resource_id(ids),
                detail=_detail(ids, purged, skipped),
            )
        return Purged(purged, skipped)


def _unique(event_ids: Sequence[uuid.UUID] | None) -> list[uuid.UUID] | None:
    return None if event_ids is None else list(dict.fromkeys(event_ids))


def _require_failed(inbox: WebhookInbox, ids: Sequence[uuid.UUID], done: str) -> None:
    states = inbox.states(ids)
    unknown = [event_id for event_id in ids if event_id not in states]
    if unknown:
        raise _not_found(unknown)
    for event_id in ids:
        if states[event_id] != "failed":
            raise EventNotFailed(
                f"event {event_id} is {states[event_id]}; only failed events can be {done}"
            )


def _not_found(ids: Sequence[uuid.UUID]) -> EventNotFound:
    return EventNotFound(f"no webhook event {', '.join(str(event_id) for event_id in ids)}")


def _resource_id(ids: Sequence[uuid.UUID] | None) -> str | None:
    return str(ids[0]) if ids is not None and len(ids) == 1 else None


def _detail(
    ids: Sequence[uuid.UUID] | None, changed: Sequence[uuid.UUID], skipped: int
) -> dict[str, Any]:
    # The same shape from every entry point: which events were asked for and which changed.
    return {
        "all": ids is None,
        "event_ids": sorted(str(event_id) for event_id in changed),
        "skipped": skipped,
    }
