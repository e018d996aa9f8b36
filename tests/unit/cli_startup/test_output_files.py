"""`check_output_file`: the one check `hf-adapter` (metrics files, anchors) and `hf-conformance`
(reports) make of a file before the work that writes it; `write_atomically`, how a report is
written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_startup.output_files import OutputFileError, check_output_file, write_atomically


def test_a_new_file_in_an_existing_folder_is_accepted(tmp_path: Path) -> None:
    assert check_output_file(tmp_path / "out.prom") == tmp_path / "out.prom"


def test_an_existing_file_is_accepted_and_left_as_it_was(tmp_path: Path) -> None:
    existing = tmp_path / "anchors.jsonl"
    existing.write_text("kept\n")

    check_output_file(existing)

    assert existing.read_text() == "kept\n"


@pytest.mark.parametrize("create_folders", [False, True])
def test_a_folder_is_refused_naming_it(tmp_path: Path, create_folders: bool) -> None:
    with pytest.raises(OutputFileError, match=r"^report .* is a folder; name a file in it$"):
        check_output_file(tmp_path, what="report", create_folders=create_folders)


def test_a_missing_folder_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "out.prom"

    with pytest.raises(OutputFileError, match=r"^no folder .*missing; create it or name another"):
        check_output_file(path)

    assert not path.parent.exists()


def test_missing_folders_are_created_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "kki.xml"

    check_output_file(path, what="report", create_folders=True)

    assert path.parent.is_dir()
    assert not path.exists()


def test_a_folder_that_is_a_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    path = tmp_path / "taken" / "kki.json"

    with pytest.raises(OutputFileError) as refused:
        check_output_file(path, what="report", create_folders=True)

    message = str(refused.value)
    assert message.startswith(f"cannot create the folder {tmp_path / 'taken'} for report {path}")
    assert message.endswith("; name another file")
    assert "\n" not in message


@pytest.mark.parametrize("create_folders", [False, True])
def test_a_path_that_cannot_be_looked_at_is_refused_not_raised(
    tmp_path: Path, create_folders: bool
) -> None:
    # os.stat fails with ENAMETOOLONG here (EACCES for a folder this user may not enter, which
    # root, who runs these tests, never meets); Path.is_dir lets both through.
    path = tmp_path / ("a" * 300) / "x.prom"
    with pytest.raises(OutputFileError, match=r"cannot be checked \(File name too long\)"):
        check_output_file(path, create_folders=create_folders)


def test_a_file_written_atomically_replaces_the_old_one_whole_with_a_plain_files_mode(
    tmp_path: Path,
) -> None:
    report = tmp_path / "report.json"
    report.write_text("old")

    write_atomically(report, b'{"verdict": "conforming"}')

    assert report.read_bytes() == b'{"verdict": "conforming"}'
    umask = os.umask(0)
    os.umask(umask)
    assert report.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "report.json"
    report.write_text("old")

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomically(report, b"new")

    assert report.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_what_is_not_a_regular_file_is_written_into_never_renamed_over(tmp_path: Path) -> None:
    target = tmp_path / "kept.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_atomically(link, b"through the link")
        write_atomically(pipe, b"down the pipe")
        assert os.read(reader, 100) == b"down the pipe"
    finally:
        os.close(reader)
    assert link.is_symlink()
    assert target.read_text() == "through the link"
    assert pipe.is_fifo()


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text("old")
    report.chmod(0o600)

    write_atomically(report, b"new")

    assert report.stat().st_mode & 0o777 == 0o600
