"""Benchmark both mocks at N=100,000 people against Prism on the same spec, in one invocation.

Measures, per system: start-up time and memory (RSS, peak RSS) of `hf-mock`, first with an
empty start-up cache (it generates the people and writes the cache) and then again (it loads
the cache); requests/s and p50/p99 latency of GET by id and of a 100-item page, for the second
hf-mock and for `prism mock`. Load comes from `wrk` (apt-get install wrk) on the same machine.
Writes reports/bench-mocks.json, with the load average before and after.

    .venv/bin/python bench/bench_mocks.py [--size 100000] [--duration 10] [--connections 16]
        [--systems kki sisdmk]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.processes import ManagedProcess, free_port, start_mock  # noqa: E402

PRISM = ROOT / "tools" / "node" / "node_modules" / ".bin" / "prism"
SPECS = ROOT / "contracts" / "openapi"


@dataclass
class Load:
    server: str
    system: str
    scenario: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    items: int = 0
    bytes_per_response: int = 0

    @property
    def items_per_s(self) -> float:
        return self.requests_per_s * self.items

    @property
    def mib_per_s(self) -> float:
        return self.requests_per_s * self.bytes_per_response / 2**20


@dataclass
class Startup:
    system: str
    size: int
    cache: str  # "empty" (generates and writes it) or "filled" (loads it)
    startup_s: float
    rss_mib: float
    peak_rss_mib: float

    @property
    def rss_kib_per_record(self) -> float:
        return self.rss_mib * 1024 / self.size


def wrk(
    url: str, headers: dict[str, str], duration: int, connections: int
) -> tuple[float, float, float, int]:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, pct("50"), pct("99"), int(non2xx.group(1)) if non2xx else 0


def response_shape(url: str, headers: dict[str, str]) -> tuple[int, int]:
    """Items in a list answer (1 for a single resource) and the body size in bytes."""
    response = httpx.get(url, headers=headers)
    body = response.json()
    data = body.get("data", body) if isinstance(body, dict) else body
    return (len(data) if isinstance(data, list) else 1), len(response.content)


def memory_mib(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, peak / 1024


def scenario_urls(system: str, base: str, headers: dict[str, str]) -> dict[str, str]:
    if system == "kki":
        first = httpx.get(f"{base}/v1/registrations?limit=1", headers=headers).json()["data"][0]
        return {
            "GET by id": f"{base}/v1/registrations/{first['str_number']}",
            "page of 100": f"{base}/v1/registrations?limit=100",
        }
    first = httpx.get(f"{base}/v1/health-workers?limit=1", headers=headers).json()["data"][0]
    return {
        "GET by id": f"{base}/v1/health-workers/{first['worker_id']}",
        "page of 100": f"{base}/v1/health-workers?limit=100",
    }


def auth_headers(system: str, base: str) -> dict[str, str]:
    if system == "kki":
        return {"X-API-Key": "kki-dev-token"}
    token = httpx.post(
        f"{base}/oauth2/v1/accesstoken",
        params={"grant_type": "client_credentials"},
        data={"client_id": "sisdmk-dev-client", "client_secret": "sisdmk-dev-secret"},
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def start_prism(system: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    process = ManagedProcess(
        f"prism-{system}",
        [str(PRISM), "mock", str(SPECS / f"{system}.yaml"), "-p", str(port), "-h", "127.0.0.1"],
    ).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"prism did not start:\n{process.output()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--systems", nargs="+", choices=("kki", "sisdmk"), default=["kki", "sisdmk"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench-mocks.json")
    args = parser.parse_args()
    console = Console(width=200)
    for tool, hint in (("wrk", "apt-get install wrk"), (str(PRISM), "make bootstrap")):
        if not shutil.which(tool) and not Path(tool).exists():
            console.print(f"[red]{tool} not found[/]: {hint}")
            return 2

    loads: list[Load] = []
    startups: list[Startup] = []
    load_before = os.getloadavg()
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-mocks-cache-"))
    for system in args.systems:
        for cache in ("empty", "filled"):
            with console.status(f"starting hf-mock {system}, {args.size:,} people, {cache} cache"):
                started = time.perf_counter()
                process, base = start_mock(
                    system, size=args.size, timeout_s=900, extra=["--cache-dir", str(cache_dir)]
                )
                startup_s = time.perf_counter() - started
            if cache == "empty":
                startups.append(
                    Startup(system, args.size, cache, startup_s, *memory_mib(process.pid))
                )
                process.close()
        try:
            headers = auth_headers(system, base)
            urls = scenario_urls(system, base, headers)
            for scenario, url in urls.items():
                with console.status(f"hf-mock {system}: {scenario}"):
                    loads.append(
                        Load(
                            "hf-mock",
                            system,
                            scenario,
                            *wrk(url, headers, args.duration, args.connections),
                            *response_shape(url, headers),
                        )
                    )
            startups.append(Startup(system, args.size, cache, startup_s, *memory_mib(process.pid)))
        finally:
            process.close()

        prism, prism_base = start_prism(system)
        try:
            for scenario, url in urls.items():
                prism_url = prism_base + url[len(base) :]
                with console.status(f"prism {system}: {scenario}"):
                    loads.append(
                        Load(
                            "prism",
                            system,
                            scenario,
                            *wrk(prism_url, headers, args.duration, args.connections),
                            *response_shape(prism_url, headers),
                        )
                    )
        finally:
            prism.close()

    table = Table(title=f"Mocks at N={args.size:,} vs Prism (wrk, {args.connections} connections)")
    for column in (
        "system",
        "scenario",
        "server",
        "req/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "items/resp",
        "items/s",
        "MiB/s",
        "req/s vs prism",
        "items/s vs prism",
    ):
        table.add_column(
            column, justify="right" if column not in ("system", "scenario", "server") else "left"
        )
    for load in loads:
        peer = next(
            p
            for p in loads
            if p.server == "prism" and p.system == load.system and p.scenario == load.scenario
        )
        mine = load.server == "hf-mock"
        ratio = f"{load.requests_per_s / peer.requests_per_s:.2f}x" if mine else ""
        item_ratio = ""
        if mine:
            item_ratio = (
                f"{load.items_per_s / peer.items_per_s:.2f}x" if peer.items_per_s else "n/a"
            )
        table.add_row(
            load.system,
            load.scenario,
            load.server,
            f"{load.requests_per_s:,.0f}",
            f"{load.p50_ms:.2f}",
            f"{load.p99_ms:.2f}",
            str(load.non_2xx),
            str(load.items),
            f"{load.items_per_s:,.0f}",
            f"{load.mib_per_s:.1f}",
            ratio,
            item_ratio,
        )
    console.print(table)
    start_table = Table(title="hf-mock start-up (RSS after the load runs for a filled cache)")
    for column in (
        "system",
        "people",
        "cache",
        "start-up s",
        "RSS MiB",
        "KiB/record",
        "peak RSS MiB",
    ):
        start_table.add_column(column)
    for s in startups:
        start_table.add_row(
            s.system,
            f"{s.size:,}",
            s.cache,
            f"{s.startup_s:.1f}",
            f"{s.rss_mib:,.0f}",
            f"{s.rss_kib_per_record:.2f}",
            f"{s.peak_rss_mib:,.0f}",
        )
    console.print(start_table)
    load_after = os.getloadavg()
    shutil.rmtree(cache_dir, ignore_errors=True)
    console.print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "loads": [
                    {**asdict(x), "items_per_s": x.items_per_s, "mib_per_s": x.mib_per_s}
                    for x in loads
                ],
                "startups": [
                    {**asdict(x), "rss_kib_per_record": x.rss_kib_per_record} for x in startups
                ],
                "load_average": {"before": load_before, "after": load_after},
            },
            indent=2,
        )
    )
    console.print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
