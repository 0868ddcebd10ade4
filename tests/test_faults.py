"""Faults on real filesystems: a full disk, a read-only mount, permissions, a
source that changes under copytree, and I/O errors.

Each test checks what the caller sees (the OSError subclass, its errno and
the file names) and what is left: the source untouched (bytes and mtime),
no staging file or directory behind, a new destination absent or whole, and
in a tree every file that was copied whole. Where shutil meets the same
fault the outcome is compared with shutil's.

The full and shut-down filesystems are small images made for one test
(``tests/faultutil.py``), so the session's mounts are never disturbed.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.faultutil import (
    NOBODY,
    SmallFilesystems,
    both_names,
    caller_names,
    fill,
    fingerprint,
    fragmented,
    free_bytes,
    in_child,
    leftovers,
    shut_down,
    walk_files,
)
from tests.fsutil import extents, shared_bytes, tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="loop-mounted Linux filesystems")

MIB = 1024 * 1024


@pytest.fixture
def small() -> Iterator[SmallFilesystems]:
    """Filesystems made for this test alone, unmounted and removed afterwards."""
    filesystems = SmallFilesystems()
    yield filesystems
    filesystems.close()


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


def _intact(dst: Path, content: dict[str, bytes]) -> int:
    """Every file under ``dst`` is whole; returns how many there are."""
    count = 0
    for path in walk_files(dst):
        relative = str(path.relative_to(dst))
        assert relative in content, f"unexpected file {path}"
        assert path.read_bytes() == content[relative], f"partial file under a destination name: {path}"
        count += 1
    return count


def _error_names(errors: list[tuple[Any, Any, str]], *roots: Path) -> list[tuple[str, str, str]]:
    """shutil.Error's list with the test's roots replaced, to compare two runs."""
    out = []
    for src, dst, why in errors:
        parts = [os.fsdecode(os.fspath(src)), os.fsdecode(os.fspath(dst)), why]
        for i, root in enumerate(roots):
            parts = [p.replace(str(root), f"ROOT{i}") for p in parts]
        out.append((parts[0], parts[1], parts[2]))
    return out


# -- a full filesystem ---------------------------------------------------------


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
    _intact(root / "dst", content)
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


@pytest.mark.parametrize(("kind", "mode"), COPYING)
def _copy_as_nobody(src: Path, dst: Path, atomic: bool) -> None:
    cowpath.copyfile(src, dst, atomic=atomic)


def test_atomic_replacement_in_a_directory_it_may_not_write(small: SmallFilesystems) -> None:
    """A writable file in a directory the caller may not write: the atomic
    copy cannot make its new file there and fails, leaving the file as it
    was; without ``atomic`` the file is rewritten in place, as by shutil."""
    root = small.make("tmpfs")
    src = root / "src"
    src.write_bytes(b"new" * 1000)
    locked = root / "locked"
    locked.mkdir(mode=0o755)
    dst = locked / "dst"
    dst.write_bytes(b"old")
    os.chmod(dst, 0o666)
    with pytest.raises(PermissionError) as info:
        in_child(_copy_as_nobody, src, dst, True, user=NOBODY)
    both_names(info.value, src, dst)
    assert dst.read_bytes() == b"old"
    assert os.listdir(locked) == ["dst"]
    in_child(_copy_as_nobody, src, dst, False, user=NOBODY)
    assert dst.read_bytes() == b"new" * 1000


def test_atomic_replacement_of_a_read_only_file(small: SmallFilesystems) -> None:
    """A read-only file in a directory the caller may write: shutil cannot
    open it for writing; an atomic copy replaces it, as ``mv`` would, and
    keeps its mode for copyfile."""
    root = small.make("tmpfs")
    os.chmod(root, 0o777)
    src = root / "src"
    src.write_bytes(b"new")
    dst = root / "dst"
    dst.write_bytes(b"old")
    os.chown(dst, NOBODY, NOBODY)
    os.chmod(dst, 0o444)
    with pytest.raises(PermissionError):
        in_child(_copy_as_nobody, src, dst, False, user=NOBODY)
    in_child(_copy_as_nobody, src, dst, True, user=NOBODY)
    assert dst.read_bytes() == b"new"
    assert stat.S_IMODE(dst.stat().st_mode) == 0o444
    assert leftovers(root) == []


# -- permissions -------------------------------------------------------------------
#
# Root reads and writes everything: each copy runs in a child that has
# dropped to nobody (tests/faultutil.py: in_child). The filesystem is a
# tmpfs of the test's own, mounted where nobody may enter.


def _outcome(call: Any, root: Path) -> tuple[Any, ...]:
    """What a caller observes: the result, or the exception's type, errno, names and text."""
    try:
        result = call()
    except Exception as exc:
        if isinstance(exc, shutil.Error):
            # shutil.Error's list: (source, destination, message) for each
            # failure; a source is a DirEntry for a directory below the top.
            detail: Any = tuple(
                (type(s).__name__, _relative(s, root), _relative(d, root), _relative(why, root))
                for s, d, why in exc.args[0]
            )
        else:
            detail = str(exc).replace(str(root), "ROOT")
        return (
            "raised",
            type(exc),
            getattr(exc, "errno", None),
            _relative(getattr(exc, "filename", None), root),
            _relative(getattr(exc, "filename2", None), root),
            detail,
        )
    return ("returned", _relative(result, root))


def _relative(value: Any, root: Path) -> Any:
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value).replace(str(root), "ROOT")
    return value


PERMISSION_CASES = {
    # name: (function, source, destination, setup)
    "unreadable-source": ("copy2", "src", "dst"),
    "unsearchable-source-directory": ("copy", "closed/src", "dst"),
    "unwritable-destination-directory": ("copy2", "src", "locked/dst"),
    "read-only-destination": ("copyfile", "src", "readonly"),
    "destination-owned-by-another-user": ("copy", "src", "theirs"),
    "destination-owned-by-another-user-copy2": ("copy2", "src", "theirs"),
    "tree-with-unreadable-parts": ("copytree", "tree", "tree-copy"),
    "tree-into-unwritable-directory": ("copytree", "tree", "locked/tree-copy"),
    "unreadable-tree": ("copytree", "closed", "tree-copy"),
}


def _permission_area(root: Path, case: str) -> None:
    """Files owned by root, with modes that nobody meets."""
    root.mkdir()
    os.chmod(root, 0o777)
    (root / "src").write_bytes(b"source data" * 1000)
    os.chmod(root / "src", 0o644 if case != "unreadable-source" else 0o600)
    (root / "closed").mkdir(mode=0o700)
    (root / "closed" / "src").write_bytes(b"hidden")
    (root / "locked").mkdir(mode=0o755)
    (root / "readonly").write_bytes(b"read-only")
    os.chmod(root / "readonly", 0o444)
    # A colleague's file that everyone may write, but only its owner chmod.
    (root / "theirs").write_bytes(b"theirs")
    os.chmod(root / "theirs", 0o666)
    tree = root / "tree"
    for sub in ("open", "secret", "mixed"):
        (tree / sub).mkdir(parents=True)
        for i in range(3):
            (tree / sub / f"f{i}").write_bytes(f"{sub} {i}".encode() * 500)
    os.chmod(tree / "secret", 0o700)
    os.chmod(tree / "mixed" / "f1", 0o600)
    os.chmod(tree, 0o755)


def _copy_as_another_user(function: str, src: Path, dst: Path, root: Path, module_name: str) -> Any:
    module = cowpath if module_name == "cowpath" else shutil
    return _outcome(lambda: getattr(module, function)(src, dst), root)


@pytest.mark.parametrize("case", list(PERMISSION_CASES))
def test_permission_denied_as_shutil(small: SmallFilesystems, case: str) -> None:
    """Each case as shutil: the same exception, errno, names and message,
    the same files afterwards (the copied ones whole), nothing else left."""
    base = small.make("tmpfs")
    function, src_name, dst_name = PERMISSION_CASES[case]
    outcomes, states = {}, {}
    for who in ("shutil", "cowpath"):
        root = base / who
        _permission_area(root, case)
        source = tree_state(root, mtimes=True)
        outcomes[who] = in_child(
            _copy_as_another_user, function, root / src_name, root / dst_name, root, who, user=NOBODY
        )
        states[who] = tree_state(root)
        # The sources are as they were.
        after = tree_state(root, mtimes=True)
        assert {k: v for k, v in after.items() if k in source and k != dst_name} == {
            k: v for k, v in source.items() if k != dst_name
        }
        assert leftovers(root) == []
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert states["cowpath"] == states["shutil"]
    assert outcomes["cowpath"][0] == "raised"


# -- a read-only filesystem -------------------------------------------------------

READ_ONLY_CALLS = {
    "copyfile-new": lambda m, ro, src: m.copyfile(src, ro / "new"),
    "copy-new": lambda m, ro, src: m.copy(src, ro / "new"),
    "copy2-new": lambda m, ro, src: m.copy2(src, ro / "new"),
    "copyfile-existing": lambda m, ro, src: m.copyfile(src, ro / "existing"),
    "copy2-existing": lambda m, ro, src: m.copy2(src, ro / "existing"),
    "copytree-new": lambda m, ro, src: m.copytree(ro / "tree", ro / "tree-copy"),
    "copytree-into-existing": lambda m, ro, src: m.copytree(
        src.parent / "tree", ro / "tree", dirs_exist_ok=True
    ),
}


def _read_only_area(root: Path) -> Path:
    root.mkdir()
    (root / "existing").write_bytes(b"old data")
    for i in range(3):
        (root / "tree" / f"d{i}").mkdir(parents=True)
        (root / "tree" / f"d{i}" / "f").write_bytes(b"tree data %d" % i)
    return root


@pytest.mark.parametrize("case", list(READ_ONLY_CALLS))
@pytest.mark.parametrize("how", ["remount", "bind"])
def test_read_only_destination_as_shutil(small: SmallFilesystems, tmpfs: Path, case: str, how: str) -> None:
    """EROFS, as shutil raises it (type, errno, names, message), nothing changed."""
    point = small.make("xfs")
    for who in ("shutil", "cowpath"):
        _read_only_area(point / who)
    if how == "remount":
        small.remount(point, "ro")
        view = point
    else:
        view = small.bind(point, read_only=True)
    src = tmpfs / "src"
    src.write_bytes(b"new data" * 1000)
    (tmpfs / "tree" / "d0").mkdir(parents=True)
    (tmpfs / "tree" / "d0" / "f").write_bytes(b"other tree data")
    before = tree_state(point, mtimes=True)
    outcomes = {}
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        outcomes[who] = _outcome(lambda m=module, w=who: READ_ONLY_CALLS[case](m, view / w, src), view / who)
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert outcomes["cowpath"][0] == "raised"
    assert "Read-only file system" in str(outcomes["cowpath"][-1])
    assert tree_state(point, mtimes=True) == before


@pytest.mark.parametrize("reflink", ["auto", "always"])
def test_read_only_destination_atomic_and_clone(small: SmallFilesystems, reflink: str) -> None:
    """An atomic replacement and a required clone on a read-only mount fail
    with EROFS (not "cannot clone"), naming both files, and change nothing."""
    point = small.make("xfs")
    src = point / "src"
    src.write_bytes(os.urandom(MIB))
    (point / "existing").write_bytes(b"old")
    small.remount(point, "ro")
    for dst, atomic in ((point / "existing", True), (point / "new", False), (point / "existing", False)):
        with pytest.raises(OSError) as info:
            cowpath.copyfile(src, dst, reflink=reflink, atomic=atomic)  # type: ignore[arg-type]
        assert type(info.value) is OSError
        assert info.value.errno == errno.EROFS
        caller_names(info.value, src, dst)
    assert (point / "existing").read_bytes() == b"old"
    assert not (point / "new").exists()


def test_read_only_source_mount(small: SmallFilesystems) -> None:
    """Copying from a read-only view (bind mount) of the same XFS clones:
    the kernel allows a clone between two mounts of one filesystem, and
    a read-only source is all a clone needs. The source is untouched."""
    point = small.make("xfs")
    (point / "data").mkdir()
    data = os.urandom(3 * MIB)
    (point / "data" / "src").write_bytes(data)
    source = fingerprint(point / "data" / "src")
    view = small.bind(point / "data", read_only=True)
    report = cowpath.CopyReport()
    cowpath.copy2(view / "src", point / "dst", report=report)
    cowpath.reflink(view / "src", point / "dst2", report=report)
    assert (point / "dst").read_bytes() == data
    assert (point / "dst2").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (2, 0)
    assert shared_bytes(point / "dst") == len(data)
    assert fingerprint(point / "data" / "src") == source
    assert leftovers(point) == []


# -- a source that changes during copytree -------------------------------------


def _changing_tree(root: Path) -> None:
    for name in ("d0", "d2", "d3"):
        (root / name).mkdir(parents=True)
    (root / "d0" / "a").write_bytes(b"a" * 5000)
    for name in ("vanish", "shrink", "grow", "to-dir", "to-fifo", "keep"):
        (root / name).write_bytes(name.encode() * 20_000)
    (root / "d2" / "x").write_bytes(b"x" * 100)
    (root / "d3" / "y").write_bytes(b"y" * 100)


def _change(root: Path) -> None:
    """What happens to the source once its top is listed, before anything is copied."""
    (root / "vanish").unlink()
    os.truncate(root / "shrink", 1000)
    with open(root / "grow", "ab") as f:
        f.write(b"more" * 50_000)
    (root / "to-dir").unlink()
    (root / "to-dir").mkdir()
    (root / "to-fifo").unlink()
    os.mkfifo(root / "to-fifo")
    shutil.rmtree(root / "d2")
    shutil.rmtree(root / "d3")
    (root / "d3").write_bytes(b"now a file")


def _copy_changing(module_name: str, src: Path, dst: Path, workers: int) -> tuple[Any, ...]:
    def ignore(directory: Any, names: list[str]) -> list[str]:
        if os.fspath(directory) == os.fspath(src):
            _change(src)
        return []

    if module_name == "shutil":
        return _outcome(lambda: shutil.copytree(src, dst, ignore=ignore), src.parent)
    return _outcome(lambda: cowpath.copytree(src, dst, ignore=ignore, workers=workers), src.parent)


@pytest.mark.parametrize("workers", [1, 8])
def test_source_changing_during_copytree_as_shutil(any_fs: Path, workers: int) -> None:
    """Files vanish, shrink, grow, turn into a directory or a FIFO, and
    directories vanish or turn into files, once the walk has listed them
    (the ``ignore`` callback changes the tree).

    cowpath reports the same errors as shutil (a FIFO never blocks: the
    copy runs in a child with a time limit), copies what remains as it is
    at that moment, whole, and leaves no staging files.
    """
    outcomes, states = {}, {}
    for who in ("shutil", "cowpath"):
        area = any_fs / who
        _changing_tree(area / "src")
        outcomes[who] = in_child(_copy_changing, who, area / "src", area / "dst", workers, timeout=30)
        states[who] = tree_state(area / "dst")
        assert leftovers(area) == []
        # What was copied is the source as it was when copied.
        assert (area / "dst" / "shrink").read_bytes() == (area / "src" / "shrink").read_bytes()
        assert (area / "dst" / "grow").read_bytes() == (area / "src" / "grow").read_bytes()
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert states["cowpath"] == states["shutil"]
    assert outcomes["cowpath"][1] is shutil.Error
    for expected in ("[Errno 2]", "[Errno 21]", "[Errno 20]", "is a named pipe"):
        assert expected in str(outcomes["cowpath"][-1])


# -- I/O errors ----------------------------------------------------------------------
#
# A filesystem that stops (XFS_IOC_GOINGDOWN / EXT4_IOC_SHUTDOWN, what XFS and
# ext4 do themselves after a fatal metadata error) answers every later read,
# write or open with EIO; btrfs answers EIO when a block fails its checksum.
# Both are real kernel errors on a real filesystem, made without a
# device-mapper target (see test_device_mapper_error_target).


def _eio_tree(root: Path) -> dict[str, bytes]:
    content = {}
    for d in range(6):
        for f in range(5):
            path = root / f"d{d}" / f"f{f}"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = os.urandom(20_000 + 1000 * f)
            path.write_bytes(data)
            content[f"d{d}/f{f}"] = data
    os.sync()
    return content


def _copytree_until_shutdown(module_name: str, src: Path, dst: Path, workers: int) -> tuple[Any, ...]:
    """copytree that stops the source's filesystem when the walk reaches its third directory."""
    walked = []

    def ignore(directory: Any, names: list[str]) -> list[str]:
        if os.path.basename(os.fspath(directory)).startswith("d"):  # not ext4's lost+found
            walked.append(directory)
            if len(walked) == 3:
                shut_down(src)
        return []

    if module_name == "shutil":
        return _outcome(lambda: shutil.copytree(src, dst, ignore=ignore), dst.parent)
    return _outcome(lambda: cowpath.copytree(src, dst, ignore=ignore, workers=workers), dst.parent)


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_source_filesystem_fails_during_copytree(
    small: SmallFilesystems, tmpfs: Path, kind: str, workers: int
) -> None:
    """The source's filesystem stops partway: every later file fails with
    EIO and is listed; the files copied before are whole; nothing is left
    of cowpath's staging; the source, mounted again, is as it was."""
    outcomes, failed_files = {}, {}
    for who in ("shutil", "cowpath"):
        src = small.make(kind)
        content = _eio_tree(src)
        before = tree_state(src, mtimes=True)
        dst = tmpfs / who
        outcomes[who] = _copytree_until_shutdown(who, src, dst, workers)
        with small.offline(src):
            pass
        assert tree_state(src, mtimes=True) == before
        assert leftovers(tmpfs) == []
        failed_files[who] = sorted(
            os.path.relpath(s, src) for _, s, _, _ in outcomes[who][-1] if os.path.relpath(s, src) in content
        )
        if who == "cowpath":
            assert outcomes[who][1] is shutil.Error
            errors = outcomes[who][-1]
            copied = _intact(dst, content)
            assert copied < len(content)
            listed = {d.replace("ROOT", str(tmpfs)) for _, _, d, _ in errors}
            for relative in content:
                target = dst / relative
                assert target.exists() or {str(target), str(target.parent)} & listed, relative
            for _, _, _, why in errors:
                assert why.startswith("[Errno 5] Input/output error"), why
    assert outcomes["cowpath"][:2] == outcomes["shutil"][:2]
    if workers == 1:
        # One thread copies in shutil's order: as many files fail (ext4
        # lists each new filesystem's directories in its own hash order, so
        # not necessarily the same ones). Directories differ: shutil copies a
        # directory's metadata when its subtree is done, cowpath all of them
        # at the end, when those walked before the failure fail as well.
        assert len(failed_files["cowpath"]) == len(failed_files["shutil"])


def _fail_during(point: str, after: int, call: Any, src: Path, dst: Path) -> tuple[Any, ...]:
    """In a child: run ``call``, stopping the filesystem at ``point`` at the
    ``after``-th audited step from the first file opened that is not the
    source (1: as the destination or its staging file is created; 2: the
    step after, once the data is written)."""
    steps = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if steps or (event == "open" and os.fsdecode(args[0]) != str(src)):
            steps.append(event)
            if len(steps) == after:
                shut_down(Path(point))

    sys.addaudithook(hook)
    return _outcome(lambda: call(src, dst), dst.parent)


@pytest.mark.parametrize(
    ("side", "after"),
    [("source", 1), ("destination", 1), ("destination", 2)],
    ids=["source", "create", "name"],
)
@pytest.mark.parametrize("kind", ["xfs", "ext4"])
@pytest.mark.parametrize("function", ["copyfile", "copy2"])
def test_filesystem_fails_during_a_file_copy(
    small: SmallFilesystems, tmpfs: Path, side: str, after: int, kind: str, function: str
) -> None:
    """The source's filesystem stops once the copy has opened the source, or
    the destination's as the new file is made or once its data is written:
    EIO naming the caller's files (both, for a failed read); no file under
    the destination name, also after mounting again; the source untouched.
    shutil, when the source fails, leaves a file under the name."""
    results = {}
    for who in ("shutil", "cowpath"):
        failing = small.make(kind)
        if side == "source":
            src, dst = failing / "src", tmpfs / who
        else:
            src, dst = tmpfs / f"src-{who}", failing / "dst"
        src.write_bytes(os.urandom(2 * MIB))
        os.sync()
        source = fingerprint(src)
        module = cowpath if who == "cowpath" else shutil
        results[who] = in_child(_fail_during, str(failing), after, getattr(module, function), src, dst)
        with small.offline(failing):
            pass
        results[who] += (os.path.lexists(dst),)
        assert fingerprint(src) == source
        assert leftovers(dst.parent) == []
    outcome = results["cowpath"]
    assert outcome[:3] == ("raised", OSError, errno.EIO)
    named = tuple(_relative(name, dst.parent) for name in (src, dst))
    assert outcome[3:5] in (named, (named[1], None)) if side == "destination" else outcome[3:5] == named
    assert outcome[-1] is False, "a file under the destination name"
    if side == "source":
        assert results["shutil"][:3] == ("raised", OSError, errno.EIO)
        assert results["shutil"][-1] is True


def _corrupt(small: SmallFilesystems, point: Path, data: bytes) -> None:
    """Flip a byte of ``data`` where it lies in the image of ``point``'s filesystem."""
    with small.offline(point) as image:
        raw = image.read_bytes()
        at = raw.find(data[:4096])
        assert at >= 0
        assert raw.find(data[:4096], at + 1) < 0
        with open(image, "r+b") as f:
            f.seek(at + 100)
            f.write(bytes([raw[at + 100] ^ 0xFF]))


@pytest.mark.parametrize("function", ["copyfile", "copy2"])
def test_checksum_error_on_btrfs(small: SmallFilesystems, tmpfs: Path, function: str) -> None:
    """A data block that fails its checksum: btrfs answers EIO on reading it.

    A copy fails with EIO, naming both files, and leaves nothing (shutil
    leaves a partial file). A clone does not read the data: it succeeds and
    shares the damaged block, which reads as EIO in the clone too, as with
    ``cp --reflink``.
    """
    point = small.make("btrfs")
    data = os.urandom(4 * MIB)
    (point / "src").write_bytes(data)
    os.sync()
    _corrupt(small, point, data)
    src = point / "src"
    for dst, mode in ((tmpfs / "dst", "auto"), (point / "dst", "never")):
        with pytest.raises(OSError) as info:
            getattr(cowpath, function)(src, dst, reflink=mode)
        assert type(info.value) is OSError
        assert info.value.errno == errno.EIO
        both_names(info.value, src, dst)
        assert not os.path.lexists(dst)
    assert leftovers(point) == []
    assert leftovers(tmpfs) == []
    with pytest.raises(OSError) as by_shutil:
        getattr(shutil, function)(src, tmpfs / "by-shutil")
    assert by_shutil.value.errno == errno.EIO
    assert (tmpfs / "by-shutil").stat().st_size < len(data)
    report = cowpath.CopyReport()
    cowpath.copyfile(src, point / "clone", report=report)
    assert report.files_cloned == 1
    with pytest.raises(OSError) as reading:
        (point / "clone").read_bytes()
    assert reading.value.errno == errno.EIO


def _device_mapper_unavailable() -> str | None:
    """Why device-mapper cannot be used here, with the evidence; None if it can."""
    if shutil.which("dmsetup") is None:
        return "dmsetup is not installed (package dmsetup)"
    misc = Path("/proc/misc")
    if misc.exists() and "device-mapper" not in misc.read_text():
        evidence = [f"kernel {os.uname().release}: /proc/misc does not list device-mapper"]
        config = Path("/proc/config.gz")
        if config.exists():
            import gzip

            lines = gzip.decompress(config.read_bytes()).decode().splitlines()
            found = [
                line for line in lines if "CONFIG_BLK_DEV_DM" in line or line == "# CONFIG_MD is not set"
            ]
            evidence.append("its config: " + ("; ".join(found) or "no CONFIG_BLK_DEV_DM"))
        return ", ".join(evidence)
    done = subprocess.run(["dmsetup", "targets"], check=False, capture_output=True, text=True)
    if done.returncode:
        return f"dmsetup targets failed: {' '.join((done.stderr or done.stdout).split())}"
    if not any(line.split()[:1] == ["error"] for line in done.stdout.splitlines()):
        return f"the kernel has no dm error target ({' '.join(done.stdout.split())})"
    return None


def _dm(*args: str, table: str | None = None) -> None:
    done = subprocess.run(["dmsetup", *args], input=table, check=False, capture_output=True, text=True)
    assert done.returncode == 0, (args, done.stderr)


def test_device_mapper_error_target(small: SmallFilesystems, tmpfs: Path) -> None:
    """A disk whose blocks under one file fail (dm "error" target over a loop
    device): reading the file gives EIO. The copy raises it with both names
    and leaves nothing; shutil leaves a partial file.

    Needs device-mapper, which containers and some kernels do not have:
    then the test is skipped and says why (and fails instead with
    COWPATH_REQUIRE_DM=1). The shutdown and checksum tests above cover EIO
    without it.
    """
    reason = _device_mapper_unavailable()
    if reason is not None:
        if os.environ.get("COWPATH_REQUIRE_DM") == "1":
            pytest.fail(f"COWPATH_REQUIRE_DM=1 but device-mapper is unavailable: {reason}", pytrace=False)
        pytest.skip(f"device-mapper is unavailable: {reason}")
    image = small.root / "dm.img"
    size = 64 * MIB
    with open(image, "wb") as f:
        f.truncate(size)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True)
    device = loop.stdout.strip()
    name = f"cowpath-test-{os.getpid()}"
    mapped = Path("/dev/mapper") / name
    point = small.root / "dm"
    point.mkdir()
    sectors = size // 512
    mounted = created = False
    try:
        _dm("create", "--noudevsync", name, table=f"0 {sectors} linear {device} 0\n")
        created = True
        _dm("mknodes", name)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(mapped)], check=True, capture_output=True)
        subprocess.run(["mount", str(mapped), str(point)], check=True, capture_output=True)
        mounted = True
        src = point / "src"
        data = os.urandom(4 * MIB)
        src.write_bytes(data)
        os.sync()
        first = extents(src)[0]
        start, count = first.physical // 512, max(first.length // 512, 8)
        table = (
            f"0 {start} linear {device} 0\n"
            f"{start} {count} error\n"
            f"{start + count} {sectors - start - count} linear {device} {start + count}\n"
        )
        _dm("reload", "--noudevsync", name, table=table)
        _dm("resume", "--noudevsync", name)
        fd = os.open(src, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # read from the disk, not the cache
        os.close(fd)
        for function in ("copyfile", "copy2"):
            dst = tmpfs / function
            with pytest.raises(OSError) as info:
                getattr(cowpath, function)(src, dst)
            assert info.value.errno == errno.EIO
            both_names(info.value, src, dst)
            assert not os.path.lexists(dst)
        assert leftovers(tmpfs) == []
        with pytest.raises(OSError) as by_shutil:
            shutil.copyfile(src, tmpfs / "by-shutil")
        assert by_shutil.value.errno == errno.EIO
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
        if created:
            subprocess.run(["dmsetup", "remove", "--noudevsync", name], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
