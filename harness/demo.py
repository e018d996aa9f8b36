"""`make demo`: bring the harness up on the embedded default and show each part working.

Both mocks, paging through their data, an injected fault seen by a client, a signed webhook to
a local receiver, the adapter's batch sync of both systems into a SQLite store, a live look-up
served from that store (marked stale) while KKI is down, and `hf-adapter serve` + `worker` on
the embedded queue applying an STR revocation that KKI announces by webhook. The conformance
suite joins here when it lands.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from adapter.audit import command_line_operator
from adapter.composition import build_services
from adapter.errors import AdapterError
from adapter.settings import load_settings
from adapter.store import database
from harness.embedded import embedded_environment, webhook_secret
from harness.processes import ManagedProcess, ProcessFailed, free_port, start_mock
from harness.receiver import WebhookReceiver

SIZE = 1000
SEED = 42
KKI_TOKEN = {"X-API-Key": "kki-dev-token"}
SISDMK_CLIENT = {"client_id": "sisdmk-dev-client", "client_secret": "sisdmk-dev-secret"}


@dataclass
class Step:
    name: str
    outcome: str = ""
    ok: bool = False
    seconds: float = 0.0


class Demo:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.steps: list[Step] = []

    def step(self, name: str, action: Callable[[], str]) -> None:
        step = Step(name)
        self.steps.append(step)
        started = time.perf_counter()
        with self.console.status(name + " ..."):
            step.outcome = action()
        step.ok = True
        step.seconds = time.perf_counter() - started
        self.console.print(f"[green]✓[/] {name}: {step.outcome} [dim]({step.seconds:.1f} s)[/]")

    def summary(self) -> Table:
        table = Table(title="HealthForce harness — summary")
        table.add_column("step")
        table.add_column("result")
        table.add_column("time", justify="right")
        for step in self.steps:
            mark = "[green]ok[/]" if step.ok else "[red]FAILED[/]"
            table.add_row(step.name, f"{mark} {step.outcome}", f"{step.seconds:.1f} s")
        return table


def pages(client: httpx.Client, path: str, unwrap: Callable[[Any], Any]) -> Iterator[list[Any]]:
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        response = client.get(path, params=params)
        response.raise_for_status()
        body = unwrap(response.json())
        yield body["data"]
        cursor = body["page"]["next_cursor"]
        if not cursor:
            return


def run(console: Console) -> int:
    demo = Demo(console)
    with ExitStack() as stack:
        procs: dict[str, tuple[ManagedProcess, str]] = {}

        def start(system: str) -> Callable[[], str]:
            def action() -> str:
                process, url = start_mock(system, size=SIZE, seed=SEED)
                stack.callback(process.close)
                procs[system] = (process, url)
                return f"{url} ({SIZE:,} people, seed {SEED})"

            return action

        demo.step("start the KKI mock", start("kki"))
        demo.step("start the SISDMK mock", start("sisdmk"))
        kki_url, sisdmk_url = procs["kki"][1], procs["sisdmk"][1]
        kki = stack.enter_context(httpx.Client(base_url=kki_url, headers=KKI_TOKEN, timeout=10))
        sisdmk = stack.enter_context(httpx.Client(base_url=sisdmk_url, timeout=10))
        niks: dict[str, set[str]] = {}

        def page_kki() -> str:
            found = [r for page in pages(kki, "/v1/registrations", lambda b: b) for r in page]
            niks["kki"] = {r["nik"] for r in found}
            return f"{len(found):,} registrations in {-(-len(found) // 100)} pages"

        def page_sisdmk() -> str:
            token = sisdmk.post(
                "/oauth2/v1/accesstoken",
                params={"grant_type": "client_credentials"},
                data=SISDMK_CLIENT,
            )
            token.raise_for_status()
            sisdmk.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            found = [w for page in pages(sisdmk, "/v1/health-workers", lambda b: b) for w in page]
            niks["sisdmk"] = {w["nik"] for w in found}
            shared = len(niks["kki"] & niks["sisdmk"])
            return (
                f"token (expires_in {token.json()['expires_in']} s), {len(found):,} workers; "
                f"{shared:,} NIKs shared with KKI"
            )

        demo.step("page through KKI registrations", page_kki)
        demo.step("page through SISDMK health workers", page_sisdmk)

        def inject_fault() -> str:
            admin = httpx.Client(base_url=kki_url, timeout=10)
            rule = admin.post(
                "/__admin/faults",
                json={
                    "route": "listRegistrations",
                    "kind": "error",
                    "status": 503,
                    "retry_after_s": 1,
                    "times": 2,
                },
            )
            rule.raise_for_status()
            seen = [kki.get("/v1/registrations", params={"limit": 1}) for _ in range(3)]
            statuses = [r.status_code for r in seen]
            if statuses != [503, 503, 200]:
                raise RuntimeError(f"expected 503, 503, 200 from the fault; saw {statuses}")
            retry_after = seen[0].headers.get("retry-after")
            content_type = seen[0].headers["content-type"]
            return f"503 twice (Retry-After {retry_after}, {content_type}), then 200"

        demo.step("inject a fault (503 twice) and watch a client see it", inject_fault)

        def webhook() -> str:
            receiver = stack.enter_context(WebhookReceiver())
            sub = kki.post("/v1/webhook-subscriptions", json={"url": receiver.url})
            sub.raise_for_status()
            receiver.secret = sub.json()["secret"]
            str_number = kki.get("/v1/registrations", params={"limit": 1}).json()["data"][0][
                "str_number"
            ]
            admin = httpx.Client(base_url=kki_url, timeout=10)
            change = admin.post(
                f"/__admin/registrations/{str_number}/status",
                json={"status": "NONAKTIF_SEMENTARA", "reason": "SKP tidak mencukupi"},
            )
            change.raise_for_status()
            received = receiver.wait_for(2, timeout_s=15)
            types = [r.event["type"] for r in received]
            if not all(r.verified for r in received):
                raise RuntimeError(f"signature did not verify: {received[0].verify_error}")
            return f"{', '.join(types)} — signatures verified (Standard Webhooks)"

        demo.step("subscribe a receiver and change an STR status", webhook)

        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hf-demo-")))
        kki_secret = webhook_secret()
        environment = embedded_environment(
            workdir, kki_url=kki_url, sisdmk_url=sisdmk_url, kki_webhook_secret=kki_secret
        )
        settings = load_settings(environment)
        services = stack.enter_context(build_services(settings))
        database.upgrade(services.engine)

        def sync(system: str) -> Callable[[], str]:
            def action() -> str:
                result = services.sync(system)
                if not result.succeeded:
                    raise RuntimeError(f"sync {system} failed: {result.error}")
                counts = result.counts
                return (
                    f"{counts.fetched:,} fetched, {counts.created:,} created, "
                    f"{result.findings} identity findings, {result.records_per_s:,.0f} records/s"
                )

            return action

        demo.step("adapter: batch sync SISDMK into the encrypted store (SQLite)", sync("sisdmk"))
        demo.step("adapter: batch sync KKI, identity checked against SISDMK", sync("kki"))

        def stale_lookup() -> str:
            str_number = kki.get("/v1/registrations", params={"limit": 1}).json()["data"][0][
                "str_number"
            ]
            admin = stack.enter_context(httpx.Client(base_url=kki_url, timeout=10))
            admin.post(
                "/__admin/faults",
                json={"route": "getRegistration", "kind": "error", "status": 503},
            ).raise_for_status()
            answer = services.lookup.by_str(str_number, actor=command_line_operator())
            admin.delete("/__admin/faults").raise_for_status()
            age = answer.age_s() or 0.0
            return (
                f"KKI answers 503: stored copy of {str_number} served, stale "
                f"({answer.stale_reason}), {age:.0f} s old"
            )

        demo.step("adapter: live look-up while KKI is down", stale_lookup)

        adapter_env = {**os.environ, **environment, "LOG_LEVEL": "WARNING"}
        port = free_port()
        adapter_url = f"http://127.0.0.1:{port}"

        def serve_and_work() -> str:
            server = ManagedProcess(
                "adapter-serve",
                [sys.executable, "-m", "adapter.cli", "serve", "--bind", f"127.0.0.1:{port}"],
                env=adapter_env,
            ).start()
            stack.callback(server.close)
            server.wait_http(f"{adapter_url}/healthz", timeout_s=60)
            worker = ManagedProcess(
                "adapter-worker",
                [sys.executable, "-m", "adapter.cli", "worker", "--concurrency", "2"],
                env=adapter_env,
            ).start()
            stack.callback(worker.close)
            subscription = kki.post(
                "/v1/webhook-subscriptions",
                json={"url": f"{adapter_url}/webhooks/kki", "secret": kki_secret},
            )
            subscription.raise_for_status()
            return f"{adapter_url} (gunicorn) + worker on the embedded queue; KKI subscribed"

        demo.step("adapter: serve + worker (embedded queue, no broker)", serve_and_work)

        def realtime() -> str:
            registration = kki.get("/v1/registrations", params={"limit": 3}).json()["data"][2]
            str_number = registration["str_number"]
            admin = stack.enter_context(httpx.Client(base_url=kki_url, timeout=10))
            changed = time.monotonic()
            admin.post(
                f"/__admin/registrations/{str_number}/status",
                json={"status": "DICABUT", "reason": "Sanksi disiplin (sintetis)"},
            ).raise_for_status()
            deadline = changed + 60
            while time.monotonic() < deadline:
                with services.sessions() as session:
                    stored = services.repository(session).registration(str_number)
                if stored is not None and stored.status == "DICABUT":
                    lag = time.monotonic() - changed
                    return f"STR {str_number} DICABUT in the store {lag:.1f} s after the change"
                time.sleep(0.25)
            raise RuntimeError(f"the status change of {str_number} did not reach the store in 60 s")

        demo.step("adapter: an STR is revoked at KKI and the change arrives by webhook", realtime)
    console.print(demo.summary())
    return 0


def main() -> int:
    console = Console()
    try:
        return run(console)
    except (ProcessFailed, httpx.HTTPError, RuntimeError, TimeoutError, AdapterError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        console.print("Run `make test` to see which part is broken, or see docs/quickstart.md.")
        return 1


if __name__ == "__main__":
    sys.exit(main())
