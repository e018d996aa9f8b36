"""Subscribe the adapter at both mocks: the one-shot `subscribe` of docker-compose.test.yml.

Reads the adapter's own variables (KKI_BASE_URL, KKI_API_TOKEN, SISDMK_BASE_URL,
SISDMK_CLIENT_ID, SISDMK_CLIENT_SECRET, KKI_WEBHOOK_SECRET, SISDMK_WEBHOOK_SECRET), so the
subscriptions are signed with the secrets the adapter checks. Safe to run again: a URL already
subscribed is left as it is.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subscribe",
        description="Subscribe the adapter's webhook URLs at the KKI and SISDMK mocks.",
    )
    parser.add_argument(
        "--adapter-url",
        required=True,
        help="the adapter's public base URL as the mocks reach it, e.g. http://adapter:8000",
    )
    return parser


def kki_headers(client: httpx.Client, env: Mapping[str, str]) -> dict[str, str]:
    return {"X-API-Key": env["KKI_API_TOKEN"]}


def sisdmk_headers(client: httpx.Client, env: Mapping[str, str]) -> dict[str, str]:
    answer = client.post(
        f"{env['SISDMK_BASE_URL']}/oauth2/v1/accesstoken",
        params={"grant_type": "client_credentials"},
        data={"client_id": env["SISDMK_CLIENT_ID"], "client_secret": env["SISDMK_CLIENT_SECRET"]},
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def subscribe(
    client: httpx.Client, base_url: str, headers: Mapping[str, str], url: str, secret: str
) -> str:
    """Subscribe `url` to every event; the subscription id (an existing one's if already there)."""
    listed = client.get(f"{base_url}/v1/webhook-subscriptions", headers=headers)
    listed.raise_for_status()
    for subscription in listed.json()["data"]:
        if subscription["url"] == url:
            return str(subscription["id"])
    created = client.post(
        f"{base_url}/v1/webhook-subscriptions",
        json={"url": url, "secret": secret},
        headers=headers,
    )
    created.raise_for_status()
    body: dict[str, Any] = created.json()
    return str(body.get("data", body)["id"])


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    adapter = str(args.adapter_url).rstrip("/")
    with httpx.Client(timeout=TIMEOUT_S) as client:
        for system, headers in (("kki", kki_headers), ("sisdmk", sisdmk_headers)):
            base_url = env[f"{system.upper()}_BASE_URL"]
            url = f"{adapter}/webhooks/{system}"
            subscription = subscribe(
                client,
                base_url,
                headers(client, env),
                url,
                env[f"{system.upper()}_WEBHOOK_SECRET"],
            )
            print(f"{system}: {url} subscribed at {base_url} ({subscription})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
