"""deploy/compose/subscribe.py, the `subscribe` one-shot of docker-compose.test.yml, against the
real mocks: with the compose file's own environment (the mocks' URLs pointed at the test's), it
subscribes the adapter's webhook URLs, the mocks then sign with the secrets the adapter checks,
and running it again subscribes nothing twice."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import httpx
import pytest

from harness.receiver import WebhookReceiver
from tests.integration.adapter.sync.support import Mock
from tests.integration.adapter.webhooks.support import emit
from tests.support.deploy import SUBSCRIBE, command, environment

pytestmark = pytest.mark.integration


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_subscribe", SUBSCRIBE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subscriptions(mock: Mock, headers: dict[str, str]) -> list[dict[str, Any]]:
    listed = httpx.get(f"{mock.url}/v1/webhook-subscriptions", headers=headers, timeout=10)
    items: list[dict[str, Any]] = listed.raise_for_status().json()["data"]
    return items


def test_subscribe_makes_each_mock_sign_with_the_adapters_secret_once(
    mocks: tuple[Mock, Mock],
) -> None:
    kki, sisdmk = mocks
    script = load_script()
    # The compose service's environment, with the mocks where this test runs them.
    env = {**environment("subscribe"), "KKI_BASE_URL": kki.url, "SISDMK_BASE_URL": sisdmk.url}
    argv = command("subscribe")[2:]
    with WebhookReceiver() as receiver:
        adapter_url = receiver.url.removesuffix("/hooks")
        argv[argv.index("--adapter-url") + 1] = adapter_url
        assert script.main(argv, env) == 0
        assert script.main(argv, env) == 0  # again: nothing new

        with httpx.Client(timeout=10) as client:
            kki_headers = script.kki_headers(client, env)
            sisdmk_headers = script.sisdmk_headers(client, env)
        assert [s["url"] for s in subscriptions(kki, kki_headers)] == [
            f"{adapter_url}/webhooks/kki"
        ]
        assert [s["url"] for s in subscriptions(sisdmk, sisdmk_headers)] == [
            f"{adapter_url}/webhooks/sisdmk"
        ]

        receiver.secret = env["KKI_WEBHOOK_SECRET"]
        emit(kki, "registration.issued")
        first = receiver.wait_for(1)[0]
        assert first.verified, first.verify_error
        receiver.secret = env["SISDMK_WEBHOOK_SECRET"]
        emit(sisdmk, "worker.updated")
        second = receiver.wait_for(2)[1]
        assert second.verified, second.verify_error
