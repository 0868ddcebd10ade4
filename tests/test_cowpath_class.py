"""CowPath: a pathlib.Path on every Python, with 3.14's copy API and reflink_to."""

from __future__ import annotations

import errno
import os
import pathlib
import sys
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


def _tree_with_links(root: Path) -> Path:
    src = root / "src"
    (src / "d" / "e").mkdir(parents=True)
    for i in range(40):  # enough files for the thread pool to start
        (src / "d" / f"f{i}").write_bytes(os.urandom(8192))
    (src / "d" / "e" / "g").write_bytes(b"g" * 5000)
    (src / "link").symlink_to("d/f0")
    os.chmod(src / "d", 0o750)
    os.utime(src / "d" / "f1", (1_000_000_000, 1_000_000_000))
    return src


@pytest.mark.parametrize("preserve", [False, True])
def test_copy_of_a_directory_goes_through_the_tree_engine(
    cloning_fs: Path, preserve: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CowPath.copy of a directory is built in copytree's private staging
    directory and moved into place, with every file cloned, and gives
    Python 3.14's Path.copy result: metadata only with preserve_metadata."""
    src = _tree_with_links(cloning_fs)
    made: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "os.mkdir" and watching[0]:
            made.append(os.fsdecode(args[0]))  # type: ignore[arg-type]

    sys.addaudithook(hook)
    report = cowpath.CopyReport()
    try:
        target = CowPath(src).copy(cloning_fs / "dst", preserve_metadata=preserve, report=report)
    finally:
        watching[0] = False  # audit hooks cannot be removed: it records nothing more
    made_now = list(made)
    assert any(os.path.basename(path).startswith(".cowpath-") for path in made_now), made_now
    assert target == cloning_fs / "dst"
    assert report.files_cloned == 42
    assert report.files_copied == 0
    assert sorted(p.name for p in (target / "d").iterdir()) == sorted(p.name for p in (src / "d").iterdir())
    for name in ("f0", "f7", "e/g"):
        assert (target / "d" / name).read_bytes() == (src / "d" / name).read_bytes()
    assert shared_bytes(target / "d" / "f7") == 8192
    # follow_symlinks (the default) copies the file a link points to.
    assert not (target / "link").is_symlink()
    assert (target / "link").read_bytes() == (src / "d" / "f0").read_bytes()
    assert not any(p.name.startswith(".cowpath-") for p in target.iterdir())
    dir_mode = os.stat(target / "d").st_mode & 0o7777
    mtime = os.stat(target / "d" / "f1").st_mtime
    if preserve:
        assert dir_mode == 0o750
        assert mtime == 1_000_000_000
    else:
        assert dir_mode == 0o777 & ~_umask()
        assert mtime != 1_000_000_000
        assert os.stat(target / "d" / "f2").st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_copy_of_a_directory_keeps_links_without_follow_symlinks(cloning_fs: Path) -> None:
    src = _tree_with_links(cloning_fs)
    target = CowPath(src).copy(cloning_fs / "dst", follow_symlinks=False)
    assert (target / "link").is_symlink()
    assert os.readlink(target / "link") == "d/f0"


def test_copy_of_a_directory_raises_the_first_error_as_pathlib_does(any_fs: Path) -> None:
    """Path.copy raises the failing OSError itself, never shutil.Error, and
    the failure names the final paths, never a staging directory."""
    src = any_fs / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "ok").write_bytes(b"ok")
    (src / "dangling").symlink_to("nowhere")
    with pytest.raises(FileNotFoundError) as info:
        CowPath(src).copy(any_fs / "dst")
    assert not isinstance(info.value, cowpath.Error)
    assert ".cowpath-" not in str(info.value)
    assert info.value.filename == str(src / "dangling")
    assert not any(p.name.startswith(".cowpath-") for p in (any_fs / "dst").iterdir())


def test_copy_of_a_directory_needs_a_missing_target_and_an_existing_parent(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    (tmp_path / "there").mkdir()
    with pytest.raises(FileExistsError):
        CowPath(src).copy(tmp_path / "there")
    with pytest.raises(FileNotFoundError):
        CowPath(src).copy(tmp_path / "missing" / "dst")
    assert not (tmp_path / "missing").exists()
