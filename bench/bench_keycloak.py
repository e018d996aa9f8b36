"""Keycloak's start-up (wall and CPU seconds) and RSS as the tests start it: a never-built fresh
unpack, the built install with a new database, a restart on that database. docs/benchmarks.md
says more. Run: .venv/bin/python bench/bench_keycloak.py [--runs 3] (writes reports/)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.keycloak import KeycloakServer, keycloak_version  # noqa: E402

ZIP_IN_MAVEN_REPO = "org/keycloak/keycloak-quarkus-dist/{v}/keycloak-quarkus-dist-{v}.zip"
TOKEN_REQUESTS = 200
MIB = 1024 * 1024


def load_average() -> float:
    return os.getloadavg()[0]


def fresh_unpack(version: str, into: Path) -> Path:
    """The Maven-cached zip unpacked as is: never built, so its first start augments."""
    repository = Path.home() / ".m2" / "repository"
    archive = repository / ZIP_IN_MAVEN_REPO.format(v=version)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(into)
    home = into / f"keycloak-{version}"
    for script in (home / "bin").glob("*.sh"):
        script.chmod(0o755)  # zipfile drops the executable bits
    return home


def measured_start(server: KeycloakServer) -> dict[str, float]:
    load = load_average()
    server.start()
    assert server.last_start_s is not None
    return {
        "start_s": round(server.last_start_s, 1),
        "cpu_s": round(server.cpu_seconds(), 1),
        "rss_mib": round(server.rss_bytes() / MIB),
        "load_before": round(load, 1),
    }


def token_burst(server: KeycloakServer) -> float:
    started = time.monotonic()
    for _ in range(TOKEN_REQUESTS):
        server.realm().client_credentials("hf-readonly", "dev-only-readonly-secret-change-me")
    return TOKEN_REQUESTS / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    version = keycloak_version()
    results: dict[str, Any] = {"version": version, "cpus": os.cpu_count(), "runs": []}
    for run in range(args.runs):
        row: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="hf-kc-bench-") as scratch:
            unpacked = fresh_unpack(version, Path(scratch))
            fresh = KeycloakServer(home=unpacked)
            try:
                row["fresh_unpack"] = measured_start(fresh)
            finally:
                fresh.close()
        server = KeycloakServer()
        try:
            row["built_new_database"] = measured_start(server)
            row["tokens_per_s"] = round(token_burst(server), 1)
            row["rss_after_tokens_mib"] = round(server.rss_bytes() / MIB)
            stop_started = time.monotonic()
            server.stop()
            row["stop_s"] = round(time.monotonic() - stop_started, 1)
            row["restart_same_database"] = measured_start(server)
        finally:
            server.close()
        print(f"run {run + 1}: {json.dumps(row)}", flush=True)
        results["runs"].append(row)
    for key in ("fresh_unpack", "built_new_database", "restart_same_database"):
        for measure in ("start_s", "cpu_s", "rss_mib"):
            results[f"median_{key}_{measure}"] = statistics.median(
                r[key][measure] for r in results["runs"]
            )
    out = ROOT / "reports" / "bench-keycloak.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
