"""`cli_startup.run`: the command's modules load with the collector paused, then are frozen;
the collector's state comes back as it was, even when the import fails."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from cli_startup import run

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        gc.enable()


def _module(directory: Path, body: str) -> str:
    name = f"command_{uuid.uuid4().hex}"
    (directory / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def test_the_module_loads_with_the_collector_paused_and_main_runs_with_it_enabled(
    module_dir: Path,
) -> None:
    name = _module(
        module_dir,
        """
        import gc
        ENABLED_DURING_IMPORT = gc.isenabled()
        LOADED = [object() for _ in range(1000)]

        def main():
            return 7 if gc.isenabled() else 8
        """,
    )
    frozen_before = gc.get_freeze_count()

    assert run(name) == 7
    assert sys.modules[name].ENABLED_DURING_IMPORT is False
    # What the import created is in the permanent generation now.
    assert gc.get_freeze_count() >= frozen_before + 1000
    assert gc.isenabled()


def test_a_failing_import_still_leaves_the_collector_enabled(module_dir: Path) -> None:
    name = _module(module_dir, "raise RuntimeError('broken configuration module')\n")

    with pytest.raises(RuntimeError, match="broken configuration module"):
        run(name)
    assert gc.isenabled()


def test_a_collector_disabled_by_the_caller_stays_disabled(module_dir: Path) -> None:
    name = _module(module_dir, "def main():\n    return 0\n")
    gc.disable()

    assert run(name) == 0
    assert not gc.isenabled()


def test_the_console_scripts_start_through_it() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    installed = {
        script.name: script.value
        for script in entry_points(group="console_scripts")
        if script.name in declared
    }
    expected = {
        "hf-adapter": "adapter.__main__:main",
        "hf-mock": "mocks.__main__:main",
        "hf-conformance": "conformance.__main__:main",
    }
    assert declared == expected
    assert installed == expected, "reinstall the project: make bootstrap"


@pytest.mark.parametrize(
    ("package", "program"),
    [("adapter", "hf-adapter"), ("mocks", "hf-mock"), ("conformance", "hf-conformance")],
)
def test_python_dash_m_runs_the_command(package: str, program: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", package, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {program} ")
    # Nothing else: no library's warning greets the user (connexion's imports warn).
    assert done.stderr == ""
