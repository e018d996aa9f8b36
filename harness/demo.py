"""`make demo`: bring the harness up on the embedded default and show each part working.

Both mocks, paging through their data, an injected fault seen by a client, a signed webhook to
a local receiver, the adapter's batch sync of both systems into a SQLite store, a live look-up
served from that store (marked stale) while KKI is down, `hf-adapter serve` + `worker` on the
embedded queue applying an STR revocation that KKI announces by webhook, the API read with real
tokens from the test OpenID Connect provider (the realm export's clients), the integrations'
status as the integration manager reports it, and a quick `hf-conformance` run against both mocks
and the realm, shown as one table.

`--keep` leaves everything running afterwards and prints the URLs and a token command; Ctrl-C
stops every process the demo started.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adapter.audit import command_line_operator
from adapter.composition import build_services
from adapter.errors import AdapterError
from adapter.settings import load_settings
from adapter.store import database
from harness.conformance_run import REPO, quick_commands, run_all, summary_table
from harness.embedded import embedded_environment, webhook_secret
from harness.idp import IdpProcess
from harness.processes import (
    ManagedProcess,
    ProcessFailed,
    free_port,
    mock_process,
    unwind_on_kill,
)
from harness.receiver import WebhookReceiver

SIZE = 1000
SEED = 42
KKI_TOKEN = {"X-API-Key": "kki-dev-token"}
SISDMK_CLIENT = {"client_id": "sisdmk-dev-client", "client_secret": "sisdmk-dev-secret"}
# Realm clients the demo gets tokens for: a reader without `:pii` and the operators' client.
READER, OPERATOR = "hf-readonly", "hf-ops"


class StepFailed(Exception):
    """A step of the demo failed; the summary with its row has been printed."""

    def __init__(self, step: str, outcome: str) -> None:
        super().__init__(f"step {step!r} failed: {outcome}")
        self.step = step


def _one_line(exc: BaseException) -> str:
    """The error for the summary's row: its type and message on one line, the message's end
    kept when it is long (a process's output ends with what went wrong)."""
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text if len(text) <= 240 else '…' + text[-240:]}"


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
        """Run one step and say how it went; a step that fails is shown in the summary, which
        is printed then, and ends the demo (`StepFailed`, naming it)."""
        step = Step(name)
        self.steps.append(step)
        started = time.perf_counter()
        try:
            with self.console.status(name + " ..."):
                step.outcome = action()
        except Exception as exc:
            step.seconds = time.perf_counter() - started
            step.outcome = _one_line(exc)
            shown = escape(step.outcome)
            self.console.print(f"[red]✗[/] {name}: {shown} [dim]({step.seconds:.1f} s)[/]")
            self.console.print(self.summary())
            # The whole message goes on (a process's output ends with what went wrong).
            raise StepFailed(name, f"{type(exc).__name__}: {exc}") from exc
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
            outcome = step.outcome if step.ok else escape(step.outcome)  # an error's own text
            table.add_row(step.name, f"{mark} {outcome}", f"{step.seconds:.1f} s")
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


def run(console: Console, *, keep: bool = False, stop: threading.Event | None = None) -> int:
    demo = Demo(console)
    with ExitStack() as stack:
        procs: dict[str, tuple[ManagedProcess, str]] = {}

        def start(system: str) -> Callable[[], str]:
            def action() -> str:
                process, url = mock_process(system, size=SIZE, seed=SEED)
                stack.callback(process.close)  # before the start: Ctrl-C while it starts stops it
                process.start()
                process.wait_http(f"{url}/__admin/health", timeout_s=120)
                procs[system] = (process, url)
                return f"{url} ({SIZE:,} people, seed {SEED})"

            return action

        demo.step("start the KKI mock", start("kki"))
        demo.step("start the SISDMK mock", start("sisdmk"))
        kki_url, sisdmk_url = procs["kki"][1], procs["sisdmk"][1]
        idp = IdpProcess()

        def start_idp() -> str:
            stack.callback(idp.close)  # before the start, as for the mocks
            idp.start()
            return f"{idp.issuer} (test OpenID Connect provider, the realm export's clients)"

        demo.step("start the SSO realm", start_idp)
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
            workdir,
            kki_url=kki_url,
            sisdmk_url=sisdmk_url,
            issuer=idp.issuer,
            kki_webhook_secret=kki_secret,
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
                [sys.executable, "-m", "adapter", "serve", "--bind", f"127.0.0.1:{port}"],
                env=adapter_env,
            )
            stack.callback(server.close)  # before the start, as for the mocks
            server.start()
            server.wait_http(f"{adapter_url}/healthz", timeout_s=60)
            worker = ManagedProcess(
                "adapter-worker",
                [sys.executable, "-m", "adapter", "worker", "--concurrency", "2"],
                env=adapter_env,
            )
            stack.callback(worker.close)
            worker.start()
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
        api = stack.enter_context(httpx.Client(base_url=f"{adapter_url}/api/v1", timeout=10))

        def read_through_api() -> str:
            token = {"Authorization": f"Bearer {idp.token(READER)}"}
            listed = api.get("/health-workers", params={"limit": 5}, headers=token)
            listed.raise_for_status()
            if not listed.json()["data"]:
                raise RuntimeError("the API lists no health worker after both syncs")
            worker_id = listed.json()["data"][0]["id"]
            worker = api.get(f"/health-workers/{worker_id}", headers=token)
            worker.raise_for_status()
            if worker.json().get("masked") is not True:
                raise RuntimeError(f"{READER} (no :pii scope) was shown personal fields in clear")
            denied = api.get(f"/health-workers/{worker_id}")
            if denied.status_code != 401:
                raise RuntimeError(f"a read without a token answered HTTP {denied.status_code}")
            return (
                f"{READER} token: worker {worker_id[:8]}… read, personal fields masked; "
                f"without a token: HTTP {denied.status_code}"
            )

        demo.step("API: read a health worker with a realm token", read_through_api)

        def integration_status() -> str:
            token = {"Authorization": f"Bearer {idp.token(OPERATOR)}"}
            answer = api.get("/integrations", headers=token)
            answer.raise_for_status()
            return "; ".join(
                f"{item['system']} {item['status']}"
                f"{'' if item['enabled'] else ' (disabled)'}, breaker {item['breaker_state']}, "
                f"last success {item['lag_s']:.0f} s ago"
                if item["lag_s"] is not None
                else f"{item['system']} {item['status']}, never synced"
                for item in answer.json()["data"]
            )

        demo.step("integration manager: the connections' status", integration_status)
        reports = REPO / "reports" / "demo-conformance"

        def conformance() -> str:
            shutil.rmtree(reports, ignore_errors=True)
            reports.mkdir(parents=True)
            clients = [
                (client.client_id, client.secret)
                for client in idp.clients.values()
                if "hf-adapter" in client.audiences
            ]
            commands = quick_commands(
                {"kki": kki_url, "sisdmk": sisdmk_url}, idp.issuer, clients, reports
            )
            outcomes = run_all(commands, quiet=True)
            statuses.update({name: outcome.status for name, outcome in outcomes.items()})
            could_not = {n: o for n, o in outcomes.items() if o.status not in {0, 1}}
            if could_not:
                raise RuntimeError(
                    "hf-conformance could not run against "
                    + "; ".join(
                        f"{name} (exit {outcome.status}: {outcome.last_error()})"
                        for name, outcome in could_not.items()
                    )
                )
            failed = sorted(name for name, outcome in outcomes.items() if outcome.status == 1)
            if failed:
                console.print(summary_table(_reports(reports, statuses), statuses))
                raise RuntimeError(
                    f"hf-conformance found violations in {', '.join(failed)}; the reports are "
                    f"in {reports}; `make conformance` runs every phase"
                )
            return f"{len(outcomes)} targets conforming (quick phases; `make conformance` for all)"

        statuses: dict[str, int] = {}
        demo.step("hf-conformance: both mocks and the realm", conformance)
        console.print(demo.summary())
        console.print(summary_table(_reports(reports, statuses), statuses))
        if keep:
            _print_endpoints(
                console,
                {
                    "KKI mock": kki_url,
                    "SISDMK mock": sisdmk_url,
                    "SSO issuer": idp.issuer,
                    "adapter": adapter_url,
                    "adapter store": environment["DATABASE_URL"],
                },
                idp,
                adapter_url,
            )
            (stop or threading.Event()).wait()
    return 0


def _reports(folder: Path, statuses: dict[str, int]) -> dict[str, Path]:
    return {name: folder / f"{name}.json" for name in statuses}


def _print_endpoints(
    console: Console, urls: dict[str, str], idp: IdpProcess, adapter_url: str
) -> None:
    table = Table(title="still running (Ctrl-C stops everything)")
    table.add_column("what")
    table.add_column("where")
    for name, url in urls.items():
        table.add_row(name, url)
    console.print(table)
    reader = idp.clients[READER]
    token_command = (
        f"TOKEN=$(curl -s -u {reader.client_id}:{shlex.quote(reader.secret)} "
        f"-d grant_type=client_credentials {idp.token_endpoint} | "
        "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
    )
    console.print("A token for the API (the realm's read-only client):", soft_wrap=True)
    console.print(f"  {token_command}", soft_wrap=True, markup=False, highlight=False)
    console.print(
        '  curl -s -H "Authorization: Bearer $TOKEN" '
        + shlex.quote(f"{adapter_url}/api/v1/health-workers?limit=3"),
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    console.print("Ctrl-C stops the mocks, the SSO, the adapter and its worker.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack running after the summary (Ctrl-C stops it)",
    )
    args = parser.parse_args(argv)
    console = Console()
    unwind_on_kill()  # the processes started are stopped on `kill` or a closed terminal too
    try:
        return run(console, keep=args.keep)
    except KeyboardInterrupt:
        console.print("stopped: every process the demo started has been stopped")
        return 130
    except (
        StepFailed,
        ProcessFailed,
        httpx.HTTPError,
        RuntimeError,
        TimeoutError,
        AdapterError,
    ) as exc:
        console.print(f"[red]demo failed:[/] {escape(str(exc))}")
        console.print("Run `make test` to see which part is broken, or see docs/quickstart.md.")
        return 1


if __name__ == "__main__":
    sys.exit(main())
