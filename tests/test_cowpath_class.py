"""CowPath: a pathlib.Path on every Python, with 3.14's copy API and reflink_to."""

from __future__ import annotations

import errno
import os
import pathlib
from pathlib import Path

import pytest

import cowpath
from cowpath import CowPath
from tests.fsutil import shared_bytes


def test_is_a_path_and_derived_paths_stay_cowpaths(tmp_path: Path) -> None:
    p = CowPath(tmp_path) / "a" / "b.txt"
    assert isinstance(p, pathlib.Path)
    p.parent.mkdir()
    p.write_text("x")
    derived = [
        p.parent,
        p.with_name("c.txt"),
        p.with_suffix(".md"),
        p.resolve(),
        p.absolute(),
        p.relative_to(tmp_path),
        next(p.parent.iterdir()),
        next(CowPath(tmp_path).glob("a/*")),
        next(CowPath(tmp_path).rglob("b.txt")),
        CowPath("~").expanduser(),
    ]
    for q in derived:
        assert type(q) is CowPath, q


def test_reflink_to_clones_and_returns_target(cloning_fs: Path) -> None:
    src = CowPath(cloning_fs) / "model.bin"
    src.write_bytes(os.urandom(1 << 20))
    target = src.reflink_to(cloning_fs / "best.bin")
    assert type(target) is CowPath
    assert target == CowPath(cloning_fs / "best.bin")
    assert target.read_bytes() == src.read_bytes()
    assert shared_bytes(target) >= 1 << 20


def test_reflink_to_refused_leaves_existing_target(ext4: Path) -> None:
    src = CowPath(ext4) / "src"
    src.write_bytes(b"new" * 5000)
    (ext4 / "dst").write_bytes(b"old")
    with pytest.raises(cowpath.ReflinkNotSupportedError) as info:
        src.reflink_to(ext4 / "dst")
    assert info.value.errno == errno.EOPNOTSUPP
    assert (ext4 / "dst").read_bytes() == b"old"


def test_copy_file_and_metadata(any_fs: Path) -> None:
    src = CowPath(any_fs) / "tool"
    src.write_bytes(b"#!/bin/sh\n" * 1000)
    src.chmod(0o755)
    os.utime(src, (1_000_000, 2_000_000))
    plain = src.copy(any_fs / "plain")
    kept = src.copy(any_fs / "kept", preserve_metadata=True)
    assert plain.read_bytes() == kept.read_bytes() == src.read_bytes()
    # As 3.14's Path.copy: without preserve_metadata only the data is copied.
    assert plain.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert plain.stat().st_mtime != 2_000_000
    assert kept.stat().st_mode & 0o777 == 0o755
    assert kept.stat().st_mtime == 2_000_000


def test_copy_tree_and_into(any_fs: Path) -> None:
    root = CowPath(any_fs) / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("f")
    (root / "link").symlink_to("sub/f")
    report = cowpath.CopyReport()
    copied = root.copy(any_fs / "copy", report=report)
    assert (copied / "sub" / "f").read_text() == "f"
    assert (copied / "link").read_text() == "f"
    assert not (copied / "link").is_symlink()
    assert report.files == 2
    linked = root.copy(any_fs / "copy2", follow_symlinks=False)
    assert os.readlink(linked / "link") == "sub/f"
    (any_fs / "into").mkdir()
    inside = root.copy_into(any_fs / "into")
    assert inside == CowPath(any_fs / "into" / "tree")
    assert (inside / "sub" / "f").read_text() == "f"
    with pytest.raises(FileExistsError):
        root.copy(any_fs / "copy")


def test_copy_onto_or_into_itself(tmp_path: Path) -> None:
    root = CowPath(tmp_path) / "d"
    root.mkdir()
    (root / "f").write_text("f")
    for target in (root, root / "inside"):
        with pytest.raises(OSError) as info:
            root.copy(target)
        assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as same:
        (root / "f").copy(tmp_path / "d" / "." / "f")
    assert same.value.errno == errno.EINVAL
    assert (root / "f").read_text() == "f"
    with pytest.raises(ValueError, match="empty name"):
        CowPath("/").copy_into(tmp_path)


def _umask() -> int:
    value = os.umask(0o022)
    os.umask(value)
    return value
