"""A full filesystem: no room for the data, for a clone's metadata, for one
more name in a directory, or for one more inode.

Each test checks what the caller sees (ENOSPC as a plain OSError, naming the
caller's files, never a staging name) and what is left: the source
untouched, no staging file or directory behind, a new destination absent or
whole, an atomically replaced one as it was, and in a tree every file that
was copied whole. Where shutil meets the same fault it is shown to leave a
partial file where cowpath leaves none.

The filesystems are small images made for one test (the ``small`` fixture,
``tests/faultutil.py``), so the session's mounts are never disturbed.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.faultutil import (
    MIB,
    SmallFilesystems,
    both_names,
    caller_names,
    fill,
    fingerprint,
    fragmented,
    free_bytes,
    intact,
    leftovers,
    walk_files,
)
from tests.parity import tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="loop-mounted Linux filesystems")


def _tree(root: Path, files: int = 24, size: int = 300_000) -> dict[str, bytes]:
    """A source tree of a few directories; returns its files' content by relative path."""
    content = {}
    for i in range(files):
        path = root / f"d{i % 4}" / f"f{i:02d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size + i * 1000)
        path.write_bytes(data)
        content[str(path.relative_to(root))] = data
    return content


COPYING = [("ext4", "auto"), ("xfs", "never"), ("btrfs", "never")]


@pytest.mark.parametrize(("kind", "mode"), COPYING)
@pytest.mark.parametrize("function", ["copyfile", "copy2"])
def test_full_filesystem_during_the_copy(
    small: SmallFilesystems, staging: str, kind: str, mode: str, function: str
) -> None:
    """ENOSPC in the middle of the data: raised with both names, nothing left, space given back."""
    root = small.make(kind)
    src = root / "src"
    src.write_bytes(os.urandom(24 * MIB))
    os.chmod(src, 0o640)
    source = fingerprint(src)
    fill(root, leave=8 * MIB)
    free = free_bytes(root)
    dst = root / "dst"
    with pytest.raises(OSError) as info:
        getattr(cowpath, function)(src, dst, reflink=mode)
    assert type(info.value) is OSError
    assert info.value.errno == errno.ENOSPC
    both_names(info.value, src, dst)
    assert not os.path.lexists(dst)
    assert leftovers(root) == []
    assert fingerprint(src) == source
    # The staging file's blocks are free again (some slack for metadata).
    assert free_bytes(root) >= free - MIB
    if kind == "ext4":
        # shutil meets the same error and leaves a partial file under the name.
        with pytest.raises(OSError) as by_shutil:
            getattr(shutil, function)(src, root / "by-shutil")
        assert by_shutil.value.errno == errno.ENOSPC
        assert 0 <= (root / "by-shutil").stat().st_size < src.stat().st_size


@pytest.mark.parametrize(("kind", "mode"), COPYING)
def test_full_filesystem_across_filesystems(
    small: SmallFilesystems, tmpfs: Path, kind: str, mode: str
) -> None:
    """The source on another filesystem (tmpfs): the same error, the same cleanliness."""
    root = small.make(kind)
    src = tmpfs / "src"
    src.write_bytes(os.urandom(24 * MIB))
    source = fingerprint(src)
    fill(root, leave=4 * MIB)
    with pytest.raises(OSError) as info:
        cowpath.copy(src, root / "dst", reflink=mode)
    assert info.value.errno == errno.ENOSPC
    both_names(info.value, src, root / "dst")
    assert not os.path.lexists(root / "dst")
    assert leftovers(root) == []
    assert fingerprint(src) == source


@pytest.mark.parametrize(("kind", "mode"), COPYING)
def test_full_filesystem_atomic_replacement_keeps_the_old_file(
    small: SmallFilesystems, staging: str, kind: str, mode: str
) -> None:
    root = small.make(kind)
    src = root / "src"
    src.write_bytes(os.urandom(16 * MIB))
    dst = root / "dst"
    dst.write_bytes(b"old" * 1000)
    os.link(dst, root / "other-link")
    before = fingerprint(dst)
    inode = dst.stat().st_ino
    fill(root, leave=4 * MIB)
    with pytest.raises(OSError) as info:
        cowpath.copyfile(src, dst, reflink=mode, atomic=True)
    assert info.value.errno == errno.ENOSPC
    both_names(info.value, src, dst)
    assert fingerprint(dst) == before
    assert dst.stat().st_ino == inode
    assert leftovers(root) == []


def _free_up_until_it_fits(
    root: Path, copy: Any, dst: Path, expected: bytes, steps: Iterable[int]
) -> set[str]:
    """Fill ``root`` completely, then give back space a step at a time and
    copy again after each step, until the copy succeeds.

    Every failed attempt must be ENOSPC naming the caller's files and leave
    nothing behind. Returns how the failures named the files: "create" (the
    destination alone, as an open of it fails) and "data" (source and
    destination: the clone or copy itself ran out of room).
    """
    fill(root)
    filler = next(p for p in root.iterdir() if p.name.startswith("filler"))
    seen = set()
    for step in steps:
        error = _attempt(copy)
        if error is None:
            assert dst.read_bytes() == expected
            assert leftovers(root) == []
            return seen
        assert type(error) is OSError, error
        assert error.errno == errno.ENOSPC, error
        caller_names(error, root / "src", dst)
        seen.add("data" if error.filename2 is not None else "create")
        assert not os.path.lexists(dst)
        assert leftovers(root) == []
        size = filler.stat().st_size
        assert size > step, "the copy still fails with the filler gone"
        os.truncate(filler, size - step)
        os.sync()
    raise AssertionError("the copy never succeeded")


def _attempt(copy: Any) -> OSError | None:
    try:
        copy()
    except OSError as exc:
        return exc
    return None


# btrfs tries hard (seconds) before it answers ENOSPC: fewer, growing steps.
CLONE_STEPS = {"xfs": [8192] * 400, "btrfs": [16384 << i for i in range(12)]}


@pytest.mark.parametrize("kind", ["xfs", pytest.param("btrfs", marks=pytest.mark.slow)])
@pytest.mark.parametrize("mode", ["auto", "always"])
def test_full_filesystem_during_the_clone(small: SmallFilesystems, kind: str, mode: str) -> None:
    """A clone needs only metadata, and with none left it fails with ENOSPC.

    From no room at all to enough, each attempt fails cleanly or succeeds;
    the failures include the clone itself running out of room (after the
    staging file was made). ENOSPC is never taken for "cannot clone here":
    with "always" it is not ReflinkNotSupportedError, and the copy that
    finally fits is a clone, not a copy.
    """
    root = small.make(kind)
    src = root / "src"
    data = fragmented(src, 3000)
    dst = root / "dst"
    report = cowpath.CopyReport()
    seen = _free_up_until_it_fits(
        root, lambda: cowpath.copyfile(src, dst, reflink=mode, report=report), dst, data, CLONE_STEPS[kind]
    )
    # The clone itself ran out of room, after the staging file was made.
    # (btrfs may or may not find room for the file itself when full.)
    assert "data" in seen
    assert kind == "btrfs" or seen == {"create", "data"}
    assert report.files_cloned == 1
    assert report.files_copied == 0


def test_full_filesystem_during_the_fallback_copy(small: SmallFilesystems) -> None:
    root = small.make("ext4")
    src = root / "src"
    data = os.urandom(2 * MIB)
    src.write_bytes(data)
    dst = root / "dst"
    seen = _free_up_until_it_fits(root, lambda: cowpath.copy2(src, dst), dst, data, [128 * 1024] * 100)
    assert "data" in seen


@pytest.mark.parametrize(("kind", "mode"), COPYING)
@pytest.mark.parametrize("workers", [1, 4])
def test_full_filesystem_during_copytree(small: SmallFilesystems, kind: str, mode: str, workers: int) -> None:
    """The files that fit are copied whole, the others are listed with ENOSPC.

    On btrfs even moving the finished tree out of its staging directory can
    fail for want of room: what cannot be moved is removed and listed, and
    no staging directory is left behind.
    """
    root = small.make(kind)
    content = _tree(root / "src", files=24, size=400_000)
    source = tree_state(root / "src", mtimes=True)
    fill(root, leave=4 * MIB)
    with pytest.raises(shutil.Error) as info:
        cowpath.copytree(root / "src", root / "dst", reflink=mode, workers=workers)
    errors = info.value.args[0]
    assert errors
    for _, dst_name, why in errors:
        assert "No space left on device" in why, why
        assert ".cowpath" not in why, why
        assert str(root / "dst") in dst_name
    intact(root / "dst", content)
    # Each file is at its destination, whole, or it (or a directory above
    # it) is listed with its error.
    failed = {os.fsdecode(os.fspath(dst_name)) for _, dst_name, _ in errors}
    for relative in content:
        if not (root / "dst" / relative).exists():
            above = [str(root / "dst" / relative), *map(str, (root / "dst" / relative).parents)]
            assert failed.intersection(above), relative
    assert leftovers(root) == []
    assert tree_state(root / "src", mtimes=True) == source
    if kind == "ext4":
        # shutil leaves partial files under destination names.
        shutil.rmtree(root / "dst")
        with pytest.raises(shutil.Error):
            shutil.copytree(root / "src", root / "by-shutil")
        partial = [
            p
            for p in walk_files(root / "by-shutil")
            if p.read_bytes() != content[str(p.relative_to(root / "by-shutil"))]
        ]
        assert partial


def test_full_directory_errors_name_the_callers_files(small: SmallFilesystems, staging: str) -> None:
    """No room for one more name in a directory: the same error as shutil's.

    The staging file can be made and filled; only naming it fails. The
    error names the destination, as the open in shutil does, never the
    kernel path that links an unnamed file (/proc/self/fd/N) nor a private
    staging name.
    """
    root = small.make("ext4")
    src = root / "src"
    src.touch()
    full = root / "full"
    full.mkdir()
    fill(root)
    count = 0
    while _attempt(lambda n=count: os.link(src, full / f"name{n:05d}")) is None:
        count += 1
    for function in ("copyfile", "copy", "copy2"):
        dst = full / f"new-{function}"
        with pytest.raises(OSError) as info:
            getattr(cowpath, function)(src, dst)
        assert not os.path.lexists(dst)
        with pytest.raises(OSError) as by_shutil:
            getattr(shutil, function)(src, dst)
        seen = info.value
        assert (type(seen), seen.errno, seen.filename, seen.filename2) == (
            type(by_shutil.value),
            errno.ENOSPC,
            str(dst),
            None,
        )
    assert leftovers(root) == []
    assert len(os.listdir(full)) == count


def test_no_inode_left_atomic_replacement_refuses_instead_of_writing_in_place(
    small: SmallFilesystems,
) -> None:
    """``atomic=True`` promises old-or-new, never a mix. When no staging file
    can be made (here: no inode left), the copy must fail, not quietly
    rewrite the destination in place, where a failure halfway would lose
    the old data and a reader could see a mix."""
    root = small.make("ext4", options=("-N", "32"))
    src = root / "src"
    src.write_bytes(b"new" * 100_000)
    dst = root / "dst"
    dst.write_bytes(b"old" * 50_000)
    os.link(dst, root / "other-link")
    before = fingerprint(dst)
    count = 0
    while _attempt((root / f"i{count}").touch) is None:
        count += 1
    assert _attempt(lambda: os.close(os.open(root, os.O_TMPFILE | os.O_WRONLY))).errno == errno.ENOSPC
    with pytest.raises(OSError) as info:
        cowpath.copyfile(src, dst, atomic=True)
    assert info.value.errno == errno.ENOSPC
    both_names(info.value, src, dst)
    assert fingerprint(dst) == before
    assert (root / "other-link").read_bytes() == b"old" * 50_000
    assert leftovers(root) == []
    # Without atomic, the destination is rewritten in place, as by shutil.
    cowpath.copyfile(src, dst)
    assert (root / "other-link").read_bytes() == b"new" * 100_000
