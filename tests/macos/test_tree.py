"""The macOS backend in copytree: each file is cloned straight into the private tree."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import cowpath
from cowpath import _select
from cowpath._backend import FileJob
from cowpath._common import Metadata
from cowpath._engine import copy_new_file
from tests.fakes.libsystem import (
    FakeLibSystem,
    names_in,
    source_file,
    xattrs_of,
)

# -- trees --------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"a" * 5000, "sub/b.bin": os.urandom(20_000), "sub/deeper/c": b"c"}
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.setxattr(path, "user.com.apple.quarantine", b"q")
        os.utime(path, ns=(3_000_000_000, 4_000_000_000))
    (root / "sub" / "b.bin").chmod(0o751)
    return files


@pytest.mark.parametrize("workers", [1, 4])
def test_copytree_clones_each_file_straight_into_the_private_tree(
    fake: FakeLibSystem, tmp_path: Path, workers: int
) -> None:
    files = _tree(tmp_path / "src")
    report = cowpath.CopyReport()
    cowpath.copytree(tmp_path / "src", tmp_path / "dst", report=report, workers=workers)
    assert (report.files_cloned, report.files_copied) == (3, 0)
    for relative, data in files.items():
        path = tmp_path / "dst" / relative
        assert path.read_bytes() == data
        assert xattrs_of(path) == {}
        assert os.stat(path).st_mtime_ns == 4_000_000_000
    assert stat.S_IMODE(os.stat(tmp_path / "dst" / "sub" / "b.bin").st_mode) == 0o751
    for call in fake.named("fclonefileat"):
        staged = os.fsdecode(call[3])
        assert "/.cowpath-" in staged
        assert not os.path.basename(staged).startswith(".")
    assert names_in(tmp_path / "dst") == {"a.txt", "sub"}


def test_copytree_into_an_existing_directory_stages_each_clone(fake: FakeLibSystem, tmp_path: Path) -> None:
    files = _tree(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    cowpath.copytree(tmp_path / "src", tmp_path / "dst", dirs_exist_ok=True, workers=1)
    for relative, data in files.items():
        assert (tmp_path / "dst" / relative).read_bytes() == data
    for call in fake.named("fclonefileat"):
        assert os.path.basename(os.fsdecode(call[3])).endswith(".cowpath")


def test_direct_clone_onto_an_existing_name_takes_the_general_path(
    fake: FakeLibSystem, tmp_path: Path
) -> None:
    src = source_file(tmp_path)
    (tmp_path / "dst").write_bytes(b"there")
    backend = _select.backend()
    job = FileJob(str(src), str(tmp_path / "dst"), "auto", Metadata.NONE, direct=True)
    assert copy_new_file(backend, job) is False
    assert (tmp_path / "dst").read_bytes() == b"there"


def test_copytree_with_symlinks_never_asks_the_backend_for_a_link(
    fake: FakeLibSystem, tmp_path: Path
) -> None:
    # Symlinks are made above the backend (os.symlink, as shutil does), so
    # the backend never needs CLONE_NOFOLLOW for a source.
    (tmp_path / "src").mkdir()
    target = source_file(tmp_path / "src", "target")
    os.symlink("target", tmp_path / "src" / "link")
    cowpath.copytree(tmp_path / "src", tmp_path / "dst", symlinks=True)
    cowpath.copyfile(tmp_path / "src" / "link", tmp_path / "link-copy", follow_symlinks=False)
    assert os.readlink(tmp_path / "dst" / "link") == "target"
    assert os.readlink(tmp_path / "link-copy") == "target"
    sources = {os.path.basename(os.fsdecode(call[3])) for call in fake.named("fclonefileat")}
    assert sources == {"target"}
    assert (tmp_path / "dst" / "target").read_bytes() == target.read_bytes()
