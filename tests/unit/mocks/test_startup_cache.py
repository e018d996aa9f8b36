"""The start-up cache: a restart serves exactly what generation served; a bad file is ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from mocks.core import runtime as runtime_module
from mocks.core import startup_cache as startup_cache_module
from mocks.core.runtime import MockRuntime, MockSettings
from mocks.core.startup_cache import StartupCache
from mocks.core.system import MockSystem
from mocks.kki.system import KkiSystem
from mocks.sisdmk.system import SisdmkSystem


def build(system: MockSystem, cache_dir: Path | None, size: int = 300) -> MockRuntime:
    return MockRuntime.build(system, MockSettings(size=size, seed=11, cache_dir=cache_dir))


def served(runtime: MockRuntime) -> dict[str, list[tuple[str, str, bytes]]]:
    """Every record as served (key, updated_at, body), per collection."""
    return {
        name: [(r.key, r.updated_at, store.body(r)) for r in store.records()]
        for name, store in runtime.stores.items()
    }


@pytest.mark.parametrize("system", [KkiSystem(), SisdmkSystem()], ids=lambda s: s.name)
def test_second_start_loads_the_same_records_from_the_cache(
    system: MockSystem, tmp_path: Path
) -> None:
    first = build(system, tmp_path)
    assert first.generated
    assert first.loaded_from is None
    second = build(system, tmp_path)
    assert not second.generated
    assert second.loaded_from is not None
    assert second.loaded_from.parent == tmp_path
    assert served(second) == served(build(system, None))
    assert served(second) == served(first)


def test_indexes_and_changes_work_on_cached_records(tmp_path: Path) -> None:
    build(KkiSystem(), tmp_path)
    runtime = build(KkiSystem(), tmp_path)
    store = runtime.store("registrations")
    doc = next(store.documents())
    assert store.keys_for("nik", doc["nik"]) >= {doc["str_number"]}
    assert doc["str_number"] in store.keys_for("status", doc["certification"]["status"])
    changed = runtime.patch_record("registrations", doc["str_number"], {"full_name": "Budi"})
    assert changed["version"] == doc["version"] + 1
    assert store.require(doc["str_number"])["full_name"] == "Budi"
    runtime.reset()
    assert store.require(doc["str_number"]) == doc


def test_a_cache_that_cannot_be_marked_as_used_still_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache shared read-only (a volume mounted :ro) loaded, then os.utime's PermissionError
    # ended the mock's start with a traceback.
    build(KkiSystem(), tmp_path)

    def refused(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(startup_cache_module.os, "utime", refused)
    runtime = build(KkiSystem(), tmp_path)
    assert runtime.loaded_from is not None
    assert not runtime.generated


def test_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    build(KkiSystem(), tmp_path)
    (cache_file,) = tmp_path.glob("*.cache")
    cache_file.write_bytes(cache_file.read_bytes()[:-10])
    runtime = build(KkiSystem(), tmp_path)
    assert runtime.loaded_from is None
    assert served(runtime) == served(build(KkiSystem(), None))
    assert build(KkiSystem(), tmp_path).loaded_from == cache_file


def test_each_data_set_has_its_own_file(tmp_path: Path) -> None:
    names = {
        StartupCache(tmp_path, KkiSystem(), 300, 11, 0.02).path.name,
        StartupCache(tmp_path, KkiSystem(), 301, 11, 0.02).path.name,
        StartupCache(tmp_path, KkiSystem(), 300, 12, 0.02).path.name,
        StartupCache(tmp_path, KkiSystem(), 300, 11, 0.03).path.name,
        StartupCache(tmp_path, KkiSystem(), 300, 11, 0.02000001).path.name,  # was 0.02's
        StartupCache(tmp_path, SisdmkSystem(), 300, 11, 0.02).path.name,
    }
    assert len(names) == 6


def test_no_cache_dir_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runtime = build(KkiSystem(), None, size=20)
    assert runtime.loaded_from is None
    assert list(tmp_path.iterdir()) == []


def test_large_data_set_is_generated_in_a_child_and_loaded_from_its_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "GENERATE_APART_FROM", 100)
    phases: list[str] = []
    runtime = MockRuntime.build(
        SisdmkSystem(),
        MockSettings(size=300, seed=11, cache_dir=tmp_path),
        on_progress=lambda phase, done, total: phases.append(phase),
    )
    assert runtime.generated
    assert runtime.loaded_from is not None
    assert "generating people" in phases  # reported by the child
    assert phases[-1].startswith("loading")
    assert served(runtime) == served(build(SisdmkSystem(), None))


def test_a_directory_that_cannot_take_the_cache_generates_once_in_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child generated, could not save, and this process generated everything again:
    # minutes more at 100,000 people.
    monkeypatch.setattr(runtime_module, "GENERATE_APART_FROM", 100)
    monkeypatch.setattr(StartupCache, "writable", lambda self: False)
    children: list[object] = []
    monkeypatch.setattr(runtime_module, "_generate_in_child", lambda *args: children.append(args))
    runtime = MockRuntime.build(
        SisdmkSystem(), MockSettings(size=300, seed=11, cache_dir=tmp_path / "ro")
    )
    assert runtime.generated
    assert runtime.loaded_from is None
    assert children == []
    assert served(runtime) == served(build(SisdmkSystem(), None))


def test_a_read_only_directory_is_found_not_writable(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    assert not StartupCache(blocked / "cache", KkiSystem(), 3, 1, 0.0).writable()
    assert StartupCache(tmp_path / "made", KkiSystem(), 3, 1, 0.0).writable()


def test_the_cache_key_changes_with_the_contract_checks_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Cached records are not re-checked on load: the schema compiler and the validators'
    versions are part of the key, so a tightened check never serves records it did not pass."""
    import openapi_schemas
    from mocks.core import startup_cache

    system = KkiSystem()
    before = startup_cache.generator_digest(system)
    compiler = tmp_path / "openapi_schemas"
    compiler.mkdir()
    (compiler / "__init__.py").write_text("# a changed schema compiler\n")
    monkeypatch.setattr(openapi_schemas, "__file__", str(compiler / "__init__.py"))
    assert startup_cache.generator_digest(system) != before
    monkeypatch.undo()
    real_version = startup_cache.importlib.metadata.version
    monkeypatch.setattr(
        startup_cache.importlib.metadata,
        "version",
        lambda name: "0.0.1" if name == "jsonschema-rs" else real_version(name),
    )
    assert startup_cache.generator_digest(system) != before
