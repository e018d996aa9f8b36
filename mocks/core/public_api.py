"""What both mocks' public APIs share: response wrapping, paging and webhook subscriptions."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from functools import cached_property, wraps
from typing import Any, ParamSpec

from starlette.responses import Response as HttpResponse

from mocks.core.fast_read import StoredPage, StoredRead
from mocks.core.problems import FieldError, MockProblem
from mocks.core.runtime import MockRuntime
from mocks.core.store import Page, RecordStore, StoredRecord, encode_document
from mocks.core.validation import StoredAnswer, stored_json_response

JsonAnswer = tuple[Any, int] | tuple[Any, int, dict[str, str]]
Response = JsonAnswer | HttpResponse
WEBHOOK_SCOPE = "webhooks:manage"
DEFAULT_LIMIT = 100
# Stands for the stored bodies in an envelope until they are spliced in.
_STORED = "__hf_mock_stored_bodies__"
_STORED_JSON = json.dumps(_STORED).encode()


def splice(envelope: Any, data: bytes) -> bytes:
    """`envelope` as JSON with `data` (raw JSON) where it holds the `_STORED` placeholder."""
    head, tail = encode_document(envelope).split(_STORED_JSON)
    return head + data + tail


def answered(answer: StoredAnswer) -> HttpResponse:
    """The response of a page built from stored bodies (its envelope checked on the way out)."""
    return stored_json_response(answer.body, answer.envelope)


P = ParamSpec("P")


def page_handler(page: Callable[P, StoredAnswer]) -> Callable[P, Awaitable[HttpResponse]]:
    """The connexion handler of a stored page function: its parameters (connexion reads them
    through `__wrapped__`), its page as the response. The handler and the page shortcut
    (`stored_pages()`) thus share one function and one list of parameters."""

    @wraps(page)
    async def handler(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        return answered(page(*args, **kwargs))

    return handler


def parse_datetime(value: str | dt.datetime | None, name: str) -> dt.datetime | None:
    """connexion hands date-time query values over as strings."""
    if value is None or isinstance(value, dt.datetime):
        return value
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise MockProblem(
            400,
            f"{name} must be an RFC 3339 date-time such as 2026-01-31T08:00:00Z",
            errors=[FieldError("query", name, "not an RFC 3339 date-time")],
        ) from exc
    if moment.tzinfo is None:
        raise MockProblem(
            400,
            f"{name} needs a time zone offset (e.g. Z or +07:00)",
            errors=[FieldError("query", name, "no time zone offset")],
        )
    return moment


class PublicApi:
    """Base of a mock's public handlers; subclasses decide the success envelope."""

    def __init__(self, runtime: MockRuntime) -> None:
        self.runtime = runtime

    # -- envelopes --------------------------------------------------------------------------

    def ok(self, data: Any, status: int = 200) -> JsonAnswer:
        """A single resource (KKI sends it bare; SISDMK overrides with its envelope)."""
        return data, status

    def items(self, items: list[Any]) -> JsonAnswer:
        """A short, unpaginated list: `{data}` (SISDMK adds its status and message)."""
        return {"data": items}, 200

    def listing(self, items: list[Any], limit: int, next_cursor: str | None) -> JsonAnswer:
        """A page of a list: `{data, page}` (SISDMK adds its status and message)."""
        page = {"limit": limit, "next_cursor": next_cursor, "has_more": next_cursor is not None}
        return {"data": items, "page": page}, 200

    def page(
        self, page: Page, limit: int, transform: Callable[[Any], Any] | None = None
    ) -> Response:
        if transform is not None:
            return self.listing([transform(d) for d in page.items], limit, page.next_cursor)
        return answered(self.page_answer(page, limit))

    def page_answer(self, page: Page, limit: int) -> StoredAnswer:
        """`page` in the list envelope, spliced from its stored bodies; the envelope without
        them, for the response check."""
        envelope = self.listing([], limit, page.next_cursor)[0]
        body = splice(self.listing([_STORED], limit, page.next_cursor)[0], b",".join(page.bodies))
        return StoredAnswer(body, envelope)

    def stored(self, store: RecordStore, record: StoredRecord) -> Response:
        """One stored record, in the single-resource envelope, from its stored body."""
        return stored_json_response(self.stored_body(store, record), None)

    @cached_property
    def _single_envelope(self) -> tuple[bytes, bytes]:
        head, tail = encode_document(self.ok(_STORED)[0]).split(_STORED_JSON)
        return head, tail

    def stored_body(self, store: RecordStore, record: StoredRecord) -> bytes:
        """The bytes of `stored()`'s answer: the single-resource envelope is fixed."""
        head, tail = self._single_envelope
        return head + store.body(record) + tail

    def stored_reads(self) -> Mapping[str, StoredRead]:
        """GET operations (by operationId) answering one record of a store, keyed by their
        only path parameter, exactly as `stored()` answers: `StoredReadShortcut` may serve
        them without connexion's per-request stack (mocks/core/fast_read.py)."""
        return {}

    def stored_pages(self) -> Mapping[str, StoredPage]:
        """List operations (by operationId) whose handler answers `list_answer` of a store:
        `StoredReadShortcut` may serve them without connexion's per-request stack once it has
        checked their query as connexion would (mocks/core/fast_read.py)."""
        return {}

    def embedded_page(
        self, document: Mapping[str, Any], field: str, limit: int, cursor: str | None
    ) -> Response:
        """A page of the list `field` embedded in one record (trainings, SIPs, employments...):
        its cursors are valid for that list of that record at its current version."""
        scope = f"{field}\x00{self._identity(document)}\x00{document.get('version')}"
        chosen, next_cursor = self.sub_page(list(document[field]), limit, cursor, scope)
        return self.listing(chosen, limit, next_cursor)

    @staticmethod
    def _identity(document: Mapping[str, Any]) -> str:
        return str(document.get("worker_id") or document.get("str_number") or "")

    def list_page(
        self,
        store: RecordStore,
        *,
        limit: int,
        cursor: str | None,
        updated_since: str | None = None,
        filters: Mapping[str, str | None] | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> Response:
        """A page of `store`, narrowed by indexed filters (index name → wanted value)."""
        result = self._page_of(store, limit, cursor, updated_since, filters)
        return self.page(result, limit, transform)

    def list_answer(
        self,
        store: RecordStore,
        *,
        limit: int,
        cursor: str | None,
        updated_since: str | None = None,
        filters: Mapping[str, str | None] | None = None,
    ) -> StoredAnswer:
        """`list_page`'s answer from stored bodies, as bytes and envelope."""
        return self.page_answer(self._page_of(store, limit, cursor, updated_since, filters), limit)

    def _page_of(
        self,
        store: RecordStore,
        limit: int,
        cursor: str | None,
        updated_since: str | None,
        filters: Mapping[str, str | None] | None,
    ) -> Page:
        among: AbstractSet[str] | None = None
        for index, value in (filters or {}).items():
            if value is None:
                continue
            keys = store.keys_for(index, value)
            among = keys if among is None else frozenset(among & keys)
        return store.page(
            limit=limit,
            cursor=cursor,
            updated_since=parse_datetime(updated_since, "updated_since"),
            among=among,
            scope="&".join(
                f"{index}={value}"
                for index, value in sorted((filters or {}).items())
                if value is not None
            ),
        )

    @staticmethod
    def sub_page(
        items: list[Any], limit: int, cursor: str | None, scope: str
    ) -> tuple[list[Any], str | None]:
        """Offset paging over a small embedded list. The cursor is the offset tagged with
        `scope` (the list, its record and the record's version): a cursor the server did not
        issue, or issued before the record changed, or past the list's end, is a 400."""
        start = 0
        if cursor is not None:
            start = _embedded_offset(cursor, scope)
            if not 0 < start < len(items):
                raise _unknown_cursor()
        end = start + limit
        return items[start:end], (_embedded_cursor(end, scope) if end < len(items) else None)

    # -- webhook subscriptions ------------------------------------------------------------

    def _require_webhook_scope(self, token_info: Mapping[str, Any] | None) -> None:
        scopes = (token_info or {}).get("scope") or []
        if WEBHOOK_SCOPE not in scopes:
            raise MockProblem(
                403,
                "these credentials may read data but not manage webhook subscriptions",
            )

    async def list_webhook_subscriptions(
        self, token_info: Mapping[str, Any] | None = None
    ) -> Response:
        self._require_webhook_scope(token_info)
        return self.items([s.to_dict() for s in self.runtime.subscriptions.list()])

    async def create_webhook_subscription(
        self, body: Mapping[str, Any], token_info: Mapping[str, Any] | None = None
    ) -> Response:
        self._require_webhook_scope(token_info)
        subscription = self.runtime.subscriptions.create(
            url=str(body["url"]),
            event_types=list(body.get("event_types") or []),
            secret=body.get("secret"),
        )
        return self.ok(subscription.to_dict(include_secret=True), 201)

    async def get_webhook_subscription(
        self, subscription_id: str, token_info: Mapping[str, Any] | None = None
    ) -> Response:
        self._require_webhook_scope(token_info)
        return self.ok(self.runtime.subscriptions.get(subscription_id).to_dict())

    async def delete_webhook_subscription(
        self, subscription_id: str, token_info: Mapping[str, Any] | None = None
    ) -> Response:
        self._require_webhook_scope(token_info)
        self.runtime.subscriptions.delete(subscription_id)
        return None, 204


# Not a secret: the tag tells the cursors this mock issued from others, it protects nothing.
_EMBEDDED_TAG_KEY = b"hf-mock embedded cursor v1"


def _embedded_tag(offset: int, scope: str) -> str:
    message = f"{offset}\x00{scope}".encode()
    return hmac.new(_EMBEDDED_TAG_KEY, message, hashlib.sha256).hexdigest()[:16]


def _embedded_cursor(offset: int, scope: str) -> str:
    return f"{offset}_{_embedded_tag(offset, scope)}"


def _embedded_offset(cursor: str, scope: str) -> int:
    offset, _, tag = cursor.partition("_")
    if not (offset.isascii() and offset.isdigit() and len(offset) <= 6):
        raise _unknown_cursor()
    if not hmac.compare_digest(tag, _embedded_tag(int(offset), scope)):
        raise _unknown_cursor()
    return int(offset)


def _unknown_cursor() -> MockProblem:
    return MockProblem(
        400,
        "cursor is not one this server issued for this list as it is now (the record may have "
        "changed since); start again without a cursor",
        errors=[FieldError("query", "cursor", "unknown cursor")],
    )
