"""Handlers of the admin API (`/__admin`, contracts/openapi/mock-admin.yaml), both mocks."""

from __future__ import annotations

from typing import Any

from mocks.core.faults import FaultRule, FaultSpecError
from mocks.core.problems import FieldError, MockProblem
from mocks.core.provider_states import ProviderStates
from mocks.core.runtime import MockRuntime
from mocks.core.store import format_timestamp
from mocks.core.webhooks import WebhookPolicy

Response = tuple[Any, int] | tuple[Any, int, dict[str, str]]

DEFAULT_LIST_LIMIT = 100


class AdminHandlers:
    def __init__(self, runtime: MockRuntime) -> None:
        self.runtime = runtime
        self.provider_states = ProviderStates(runtime)

    # -- health and state -------------------------------------------------------------------

    async def get_health(self) -> Response:
        rt = self.runtime
        return {
            "status": "ok",
            "system": rt.system.name,
            "size": rt.settings.size,
            "seed": rt.settings.seed,
            "mismatch_rate": rt.settings.mismatch_rate,
            "records": {name: len(store) for name, store in rt.stores.items()},
            "faults": len(rt.injector.list()),
            "subscriptions": len(rt.subscriptions.list()),
            "started_at": format_timestamp(rt.started_at),
        }, 200

    async def reset_state(self, body: dict[str, Any] | None = None) -> Response:
        options = body or {}
        self.runtime.reset()
        self.runtime.dispatcher.policy = self.runtime.settings.webhook_policy
        if options.get("faults", True):
            self.runtime.injector.clear()
        if options.get("subscriptions", False):
            self.runtime.subscriptions.clear()
        if options.get("deliveries", False):
            self.runtime.dispatcher.clear_log()
        return await self.get_health()

    # -- records --------------------------------------------------------------------------

    async def list_records(
        self, collection: str, limit: int = DEFAULT_LIST_LIMIT, cursor: str | None = None
    ) -> Response:
        page = self.runtime.store(collection).page(limit=limit, cursor=cursor)
        return {
            "data": page.items,
            "page": {"limit": limit, "next_cursor": page.next_cursor, "has_more": page.has_more},
        }, 200

    async def create_record(self, collection: str, body: dict[str, Any]) -> Response:
        stored = self.runtime.create_record(collection, body)
        return stored, 201

    async def get_record(self, collection: str, key: str) -> Response:
        return self.runtime.store(collection).require(key), 200

    async def replace_record(self, collection: str, key: str, body: dict[str, Any]) -> Response:
        return self.runtime.replace_record(collection, key, body), 200

    async def patch_record(self, collection: str, key: str, body: dict[str, Any]) -> Response:
        return self.runtime.patch_record(collection, key, body), 200

    async def delete_record(self, collection: str, key: str) -> Response:
        self.runtime.delete_record(collection, key)
        return None, 204

    # -- snapshots --------------------------------------------------------------------------

    async def list_snapshots(self) -> Response:
        return {"data": [{"name": name} for name in self.runtime.snapshots]}, 200

    async def create_snapshot(self, body: dict[str, Any]) -> Response:
        name = str(body["name"])
        self.runtime.save_snapshot(name)
        return {"name": name}, 201

    async def restore_snapshot(self, name: str) -> Response:
        self.runtime.restore_snapshot(name)
        return {"name": name}, 200

    async def delete_snapshot(self, name: str) -> Response:
        if self.runtime.snapshots.pop(name, None) is None:
            raise MockProblem(404, f"no snapshot named {name!r}")
        return None, 204

    # -- faults -----------------------------------------------------------------------------

    async def list_faults(self) -> Response:
        return {"data": [rule.to_dict() for rule in self.runtime.injector.list()]}, 200

    async def create_fault(self, body: dict[str, Any]) -> Response:
        try:
            rule = self.runtime.injector.add(FaultRule.from_dict(body))
        except FaultSpecError as exc:
            raise MockProblem(422, str(exc), errors=[FieldError("body", "", str(exc))]) from exc
        return rule.to_dict(), 201

    async def get_fault(self, fault_id: str) -> Response:
        rule = self.runtime.injector.get(fault_id)
        if rule is None:
            raise MockProblem(404, f"no fault with id {fault_id!r}")
        return rule.to_dict(), 200

    async def delete_fault(self, fault_id: str) -> Response:
        if self.runtime.injector.get(fault_id) is None:
            raise MockProblem(404, f"no fault with id {fault_id!r}")
        self.runtime.injector.remove(fault_id)
        return None, 204

    async def clear_faults(self) -> Response:
        self.runtime.injector.clear()
        return None, 204

    # -- webhooks ---------------------------------------------------------------------------

    async def list_deliveries(
        self,
        limit: int = DEFAULT_LIST_LIMIT,
        subscription_id: str | None = None,
        event_type: str | None = None,
        status: str | None = None,
        event_id: str | None = None,
    ) -> Response:
        deliveries = self.runtime.dispatcher.deliveries(
            subscription_id=subscription_id,
            event_type=event_type,
            status=status,
            event_id=event_id,
            limit=limit,
        )
        return {"data": [d.to_dict() for d in deliveries]}, 200

    async def get_delivery(self, delivery_id: str) -> Response:
        delivery = self.runtime.dispatcher.get(delivery_id)
        if delivery is None:
            raise MockProblem(404, f"no delivery with id {delivery_id!r}")
        return delivery.to_dict(), 200

    async def clear_deliveries(self) -> Response:
        self.runtime.dispatcher.clear_log()
        return None, 204

    async def redeliver(self, delivery_id: str) -> Response:
        if self.runtime.dispatcher.get(delivery_id) is None:
            raise MockProblem(404, f"no delivery with id {delivery_id!r}")
        self.runtime.dispatcher.ensure_room(1)
        delivery = self.runtime.dispatcher.redeliver(delivery_id)
        return delivery.to_dict(), 202

    async def emit_events(self, body: dict[str, Any]) -> Response:
        if body.get("key") is not None and body.get("count") not in (None, 1):
            raise MockProblem(
                422,
                "give either a record key or a count, not both",
                errors=[FieldError("body", "count", "count needs no key")],
            )
        drafts, scheduled = self.runtime.emit_events(
            str(body["type"]),
            key=body.get("key"),
            count=int(body.get("count") or 1),
            mode=str(body.get("mode") or "normal"),
            copies=int(body.get("copies") or 2),
            subscription_id=body.get("subscription_id"),
        )
        return {
            "events": [{"event_id": eid, "type": d.type, "key": d.key} for eid, d in drafts],
            "deliveries_scheduled": scheduled,
        }, 202

    async def get_webhook_policy(self) -> Response:
        return self.runtime.dispatcher.policy.to_dict(), 200

    async def put_webhook_policy(self, body: dict[str, Any]) -> Response:
        policy = WebhookPolicy(
            max_attempts=int(body["max_attempts"]),
            base_delay_ms=int(body["base_delay_ms"]),
            max_delay_ms=int(body["max_delay_ms"]),
            timeout_ms=int(body["timeout_ms"]),
            jitter=bool(body.get("jitter", True)),
        )
        if policy.base_delay_ms > policy.max_delay_ms:
            raise MockProblem(
                422,
                "base_delay_ms must not exceed max_delay_ms",
                errors=[FieldError("body", "base_delay_ms", "greater than max_delay_ms")],
            )
        self.runtime.dispatcher.policy = policy
        return policy.to_dict(), 200

    # -- Pact provider states -------------------------------------------------------------

    async def set_provider_state(self, body: dict[str, Any]) -> Response:
        result = self.provider_states.apply(
            str(body["state"]), dict(body.get("params") or {}), str(body.get("action") or "setup")
        )
        return {"state": body["state"], "result": result}, 200
