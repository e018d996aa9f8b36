"""Locust user classes for the adapter: webhook storms, authenticated API reads, a batch sync.

Run it only through Locust's own command (it patches sockets with gevent on import):

    locust -f load/locustfile.py --headless --host http://127.0.0.1:8000 -u 20 -r 5 -t 60s \
        WebhookStorm ApiReader SyncUnderLoad

Every setting is a ``--option`` or the ``LOAD_…`` variable beside it (docs/load.md lists
them); `python -m load.run` sets them all for a local stack.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from locust import constant, constant_throughput, events, task
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

# `locust -f load/locustfile.py` puts load/ on the path, not the checkout holding the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load.messages import (
    SOURCES,
    SYNC_PREFIX,
    Resources,
    SentLog,
    forged_secret,
    new_event,
    signed,
)

# Recently accepted deliveries of this process, resent as duplicates (a sender's retry).
RESEND_POOL = 2_000
# Worker ids the readers found through the search, shared by this process's readers.
KNOWN_WORKERS = 5_000
SEARCH_LIMIT = 50


def _options(parser: LocustArgumentParser) -> None:
    def option(name: str, env: str, default: str, text: str, *, secret: bool = False) -> None:
        # On the parser itself: only its add_argument knows `is_secret` (masked in the web UI).
        parser.add_argument(
            name, env_var=env, default=default, help=text, is_secret=secret, include_in_web_ui=True
        )

    option("--load-output-dir", "LOAD_OUTPUT_DIR", "reports/load/run", "sent ids, sync result")
    option("--load-resources", "LOAD_RESOURCES", "", "JSON file: {kki: [STR], sisdmk: [ids]}")
    option("--kki-webhook-secret", "LOAD_KKI_WEBHOOK_SECRET", "", "whsec_…", secret=True)
    option("--sisdmk-webhook-secret", "LOAD_SISDMK_WEBHOOK_SECRET", "", "whsec_…", secret=True)
    option("--duplicate-share", "LOAD_DUPLICATE_SHARE", "0.1", "share of webhooks resent")
    option("--bad-signature-share", "LOAD_BAD_SIGNATURE_SHARE", "0.05", "share forged (401)")
    option("--webhook-rate", "LOAD_WEBHOOK_RATE", "5", "webhooks/s per WebhookStorm user")
    option("--oidc-issuer", "LOAD_OIDC_ISSUER", "", "the SSO's issuer (discovery base)")
    option("--reader-client-id", "LOAD_READER_CLIENT_ID", "hf-readonly", "reads' client")
    option("--reader-client-secret", "LOAD_READER_CLIENT_SECRET", "", "", secret=True)
    option("--ops-client-id", "LOAD_OPS_CLIENT_ID", "hf-ops", "client with sync:run")
    option("--ops-client-secret", "LOAD_OPS_CLIENT_SECRET", "", "", secret=True)
    option("--token-renew-margin", "LOAD_TOKEN_RENEW_MARGIN_S", "30", "renew this early (s)")
    option("--read-rate", "LOAD_READ_RATE", "2", "requests/s per ApiReader user")
    option("--sync-system", "LOAD_SYNC_SYSTEM", "sisdmk", "kki or sisdmk")
    option("--sync-full", "LOAD_SYNC_FULL", "true", "full (true) or incremental run")
    option("--sync-delay", "LOAD_SYNC_DELAY_S", "5", "seconds of load before the request")


def _options_of(environment: Environment) -> Any:
    if environment.parsed_options is None:
        raise RuntimeError("run this file with the locust command")
    return environment.parsed_options


class _Process:
    """What the users of this Locust process share: the sent log, resources, resend pool."""

    sent: SentLog | None = None
    resources: Resources | None = None
    resend: dict[str, deque[tuple[str, bytes]]] = {
        source: deque(maxlen=RESEND_POOL) for source in SOURCES
    }
    workers: deque[str] = deque(maxlen=KNOWN_WORKERS)


def _open(environment: Environment, **_: Any) -> None:
    options = _options_of(environment)
    if _Process.sent is None:
        _Process.sent = SentLog(Path(options.load_output_dir))
    if options.load_resources and _Process.resources is None:
        _Process.resources = Resources.read(Path(options.load_resources))


def _flush(environment: Environment, **_: Any) -> None:
    if _Process.sent is not None:
        _Process.sent.flush()


def _close(environment: Environment, **_: Any) -> None:
    if _Process.sent is not None:
        _Process.sent.close()


# Locust's EventHook.add_listener carries no annotations.
events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_open)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_flush)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_close)  # type: ignore[no-untyped-call]


class _Token:
    """A client-credentials token from the SSO's token endpoint (found by discovery), fetched
    again before it expires."""

    def __init__(self, user: FastHttpUser, client_id: str, secret: str) -> None:
        self._user, self._client_id, self._secret = user, client_id, secret
        self._token = ""
        self._renew_at = 0.0
        self._endpoint = ""

    def header(self) -> dict[str, str]:
        if time.time() >= self._renew_at:
            self._fetch()
        return {"authorization": f"Bearer {self._token}"}

    def _fetch(self) -> None:
        options = _options_of(self._user.environment)
        client = self._user.client
        if not self._endpoint:
            issuer = options.oidc_issuer.rstrip("/")
            with client.get(
                f"{issuer}/.well-known/openid-configuration",
                name="SSO discovery",
                catch_response=True,
            ) as answer:
                if answer.status_code != 200:
                    answer.failure(f"discovery answered {answer.status_code}")
                    raise _NoToken(self._client_id)
                self._endpoint = answer.json()["token_endpoint"]
        with client.post(
            self._endpoint,
            data=urlencode({"grant_type": "client_credentials"}),
            headers={"content-type": "application/x-www-form-urlencoded"},
            auth=(self._client_id, self._secret),
            name=f"SSO token ({self._client_id})",
            catch_response=True,
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"token endpoint answered {answer.status_code}")
                raise _NoToken(self._client_id)
            document = answer.json()
        lifetime = float(document.get("expires_in", 300))
        margin = min(float(options.token_renew_margin), lifetime / 5)
        self._token = document["access_token"]
        self._renew_at = time.time() + lifetime - margin


class _NoToken(Exception):
    """The SSO gave no token; the task ends (the failure is in the stats already)."""


class WebhookStorm(FastHttpUser):
    """Signed KKI and SISDMK deliveries to ``POST /webhooks/{source}``: new events, resends of
    accepted ones (``duplicate-share``, answered 200) and forged ones (``bad-signature-share``,
    signed with a wrong key, answered 401: counted as success, since that is the right answer).
    """

    weight = 3

    def wait_time(self) -> float:
        rate = float(_options_of(self.environment).webhook_rate)
        return float(constant_throughput(rate)(self))

    @task
    def kki(self) -> None:
        self._send("kki")

    @task
    def sisdmk(self) -> None:
        self._send("sisdmk")

    def _send(self, source: str) -> None:
        options = _options_of(self.environment)
        secret = getattr(options, f"{source}_webhook_secret")
        if _Process.resources is None or not secret:
            raise RuntimeError("WebhookStorm needs --load-resources and both webhook secrets")
        now = dt.datetime.now(dt.UTC)
        draw = random.random()
        bad_share = float(options.bad_signature_share)
        duplicate_share = float(options.duplicate_share)
        pool = _Process.resend[source]
        if bad_share <= draw < bad_share + duplicate_share and pool:
            # A sender's retry of an event already acknowledged: same id and body, new time.
            event_id, body = random.choice(pool)
            kind, expected, key = "duplicate", 200, secret
        else:
            resource = random.choice(_Process.resources.of(source))
            event_id, body = new_event(source, resource, now=now)
            forged = draw < bad_share
            kind, expected = ("forged", 401) if forged else ("new", 202)
            key = forged_secret() if forged else secret
        delivery = signed(source, event_id, body, key, now=now)
        with self.client.post(
            f"/webhooks/{source}",
            data=delivery.body.decode(),  # ASCII JSON: the signed bytes go out as they are
            headers=delivery.headers,
            name=f"POST /webhooks/{source} [{kind}]",
            catch_response=True,
        ) as answer:
            status = int(answer.status_code or 0)
            if status == expected:
                answer.success()
            else:
                answer.failure(f"{kind} answered {status}, expected {expected}")
        if _Process.sent is not None:
            _Process.sent.record(source, event_id, kind, status, now.timestamp())
        if kind == "new" and status == expected:
            _Process.resend[source].append((event_id, body))


class ApiReader(FastHttpUser):
    """An API client of ``hf-readonly``: searches ``GET /api/v1/health-workers`` (filters,
    following cursors) and reads the workers it found with ``GET …/health-workers/{id}``."""

    weight = 2

    def on_start(self) -> None:
        options = _options_of(self.environment)
        self._token = _Token(self, options.reader_client_id, options.reader_client_secret)
        self._cursor: str | None = None

    def wait_time(self) -> float:
        rate = float(_options_of(self.environment).read_rate)
        return float(constant_throughput(rate)(self))

    @task(1)
    def search(self) -> None:
        query: dict[str, Any] = {"limit": SEARCH_LIMIT}
        if self._cursor:
            query["cursor"] = self._cursor
        elif random.random() < 0.5:
            query["active"] = random.choice(["true", "false"])
        try:
            headers = self._token.header()
        except _NoToken:
            return
        with self.client.get(
            f"/api/v1/health-workers?{urlencode(query)}",
            headers=headers,
            name="GET /api/v1/health-workers (search)",
            catch_response=True,
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"search answered {answer.status_code}")
                self._cursor = None
                return
            page = answer.json()
        _Process.workers.extend(item["id"] for item in page["data"])
        # Follow the cursor now and then, so later pages (and their index scans) are read too.
        self._cursor = page["page"]["next_cursor"] if random.random() < 0.5 else None

    @task(4)
    def read_worker(self) -> None:
        if not _Process.workers:
            self.search()
            return
        worker_id = random.choice(_Process.workers)
        try:
            headers = self._token.header()
        except _NoToken:
            return
        with self.client.get(
            f"/api/v1/health-workers/{worker_id}",
            headers=headers,
            name="GET /api/v1/health-workers/{id}",
            catch_response=True,
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"read answered {answer.status_code}")


class SyncUnderLoad(FastHttpUser):
    """One operator (``hf-ops``) who, after ``sync-delay`` seconds of load, requests a batch
    sync through ``POST /api/v1/sync-runs`` and follows it to its end while the others run.

    The whole run is one entry in the stats ("sync run …", its duration); the run's figures
    go to ``sync-run-<pid>.json`` in the output folder. Needs ``hf-adapter schedule`` running
    beside the adapter (it starts requested runs).
    """

    fixed_count = 1
    wait_time = constant(2)

    def on_start(self) -> None:
        options = _options_of(self.environment)
        self._token = _Token(self, options.ops_client_id, options.ops_client_secret)
        self._run: str | None = None
        self._requested_at = 0.0
        self._done = False
        self._started = time.monotonic()

    @task
    def follow(self) -> None:
        options = _options_of(self.environment)
        if self._done or time.monotonic() - self._started < float(options.sync_delay):
            return
        try:
            headers = self._token.header()
        except _NoToken:
            return
        if self._run is None:
            self._request(options, headers)
            return
        with self.client.get(
            f"/api/v1/sync-runs/{self._run}",
            headers=headers,
            name="GET /api/v1/sync-runs/{id}",
            catch_response=True,
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"sync run answered {answer.status_code}")
                return
            run = answer.json()
        if run["status"] in ("succeeded", "failed"):
            self._finish(options, run)

    def _request(self, options: Any, headers: dict[str, str]) -> None:
        body = {"system": options.sync_system, "full": options.sync_full.lower() == "true"}
        self._requested_at = time.time()
        with self.client.post(
            "/api/v1/sync-runs",
            json=body,
            headers=headers,
            name="POST /api/v1/sync-runs",
            catch_response=True,
        ) as answer:
            if answer.status_code == 202:
                self._run = answer.json()["id"]
            elif answer.status_code == 409 and answer.json().get("run_id"):
                # One is already requested or running: follow that one.
                answer.success()
                self._run = answer.json()["run_id"]
            else:
                answer.failure(f"sync request answered {answer.status_code}")
                self._done = True

    def _finish(self, options: Any, run: dict[str, Any]) -> None:
        self._done = True
        elapsed_ms = (time.time() - self._requested_at) * 1000
        self.environment.events.request.fire(
            request_type="SYNC",
            name=f"sync run {options.sync_system} (request to end)",
            response_time=elapsed_ms,
            response_length=0,
            exception=None if run["status"] == "succeeded" else RuntimeError(run.get("error")),
            context={},
        )
        folder = Path(options.load_output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{SYNC_PREFIX}{self._run}.json"
        path.write_text(json.dumps({**run, "request_to_end_s": elapsed_ms / 1000}), "utf-8")
