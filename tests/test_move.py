"""cowpath.move: shutil.move's results, with clones where rename(2) is refused.

On real filesystems: two btrfs subvolumes and two bind mounts of one XFS
directory (rename fails with EXDEV, clones work), XFS to ext4 and onto
tmpfs (a real copy), and one mount (a rename).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

import cowpath
from tests.faultutil import NOBODY, SmallFilesystems, in_child, leftovers
from tests.fsutil import extents, free_bytes, shared_bytes
from tests.parity import run_both, tree_state

MIB = 1024 * 1024


def write_file(path: Path, size: int, seed: int = 7) -> bytes:
    """A file of ``size`` bytes of a pattern that differs with ``seed`` (made fast: no loop per byte)."""
    block = bytes((i * 31 + seed) % 251 for i in range(4096)) + bytes([seed])
    data = (block * (size // len(block) + 1))[:size]
    path.write_bytes(data)
    return data


def _tree(root: Path) -> Path:
    """A small tree: nested directories, modes, a symlink, a hard link, an empty directory."""
    top = root / "tree"
    (top / "a" / "b").mkdir(parents=True)
    (top / "empty").mkdir()
    write_file(top / "big", 3 * MIB + 123, seed=1)
    write_file(top / "a" / "small", 100, seed=2)
    write_file(top / "a" / "b" / "deep", 70000, seed=3)
    os.chmod(top / "a" / "small", 0o751)
    os.symlink("a/small", top / "link")
    os.symlink("nowhere", top / "a" / "dangling")
    os.utime(top / "a", ns=(1_000_000_000, 2_000_000_000))
    return top


def _expected(top: Path) -> dict[str, tuple[object, ...]]:
    return tree_state(top, mtimes=True)


# -- a file -------------------------------------------------------------------------


def _physical(path: Path) -> list[tuple[int, int]]:
    return [(e.physical, e.length) for e in extents(path)]


@pytest.mark.parametrize("setup", ["subvolumes", "xfs_binds"])
def test_a_file_is_cloned_where_rename_is_refused(setup: str, request: pytest.FixtureRequest) -> None:
    first, second = request.getfixturevalue(setup)
    src = first / "src.bin"
    data = write_file(src, 16 * MIB + 5, seed=9)
    # A second name keeps the source's extents alive after the move, so
    # that FIEMAP can show the new file shares them.
    os.link(src, first / "keep")
    with pytest.raises(OSError, match="Invalid cross-device link"):
        os.rename(src, second / "probe")
    free = free_bytes(second)
    report = cowpath.CopyReport()
    result = cowpath.move(str(src), str(second / "dst.bin"), report=report)
    assert result == str(second / "dst.bin")
    assert not src.exists()
    assert (second / "dst.bin").read_bytes() == data
    assert report.files_cloned == 1
    assert report.bytes_cloned == len(data)
    assert report.files_copied == report.files_renamed == 0
    assert shared_bytes(second / "dst.bin") >= 16 * MIB
    assert _physical(second / "dst.bin") == _physical(first / "keep")
    # No data allocated: far less than the file's size (metadata only).
    assert free - free_bytes(second) < 2 * MIB


@pytest.mark.parametrize("target", ["ext4", "tmpfs"])
def test_a_file_is_copied_to_a_filesystem_that_cannot_clone(
    xfs: Path, target: str, request: pytest.FixtureRequest
) -> None:
    where: Path = request.getfixturevalue(target)
    src = xfs / "src.bin"
    data = write_file(src, 2 * MIB + 1, seed=4)
    os.chmod(src, 0o640)
    os.utime(src, ns=(5_000_000_000, 6_000_000_000))
    report = cowpath.CopyReport()
    assert cowpath.move(src, where, report=report) == os.path.join(where, "src.bin")
    moved = where / "src.bin"
    assert moved.read_bytes() == data
    assert stat.S_IMODE(moved.stat().st_mode) == 0o640
    assert moved.stat().st_mtime_ns == 6_000_000_000
    assert not src.exists()
    assert (report.files_copied, report.bytes_copied, report.files_cloned) == (1, len(data), 0)


def test_a_rename_on_one_filesystem_is_a_rename(any_fs: Path) -> None:
    src = any_fs / "src"
    write_file(src, 5000)
    inode = src.stat().st_ino
    report = cowpath.CopyReport()
    cowpath.move(src, any_fs / "dst", report=report)
    assert (any_fs / "dst").stat().st_ino == inode
    assert (report.files_renamed, report.bytes_renamed, report.files) == (1, 5000, 0)


def test_an_existing_destination_file_is_replaced_whole(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    data = write_file(first / "src", 300000, seed=1)
    write_file(second / "dst", 900000, seed=2)
    os.link(second / "dst", second / "other-name")
    cowpath.move(first / "src", second / "dst")
    assert (second / "dst").read_bytes() == data
    # Replaced by a new file (as rename replaces it), never rewritten in place.
    assert (second / "other-name").stat().st_size == 900000
    assert leftovers(second) == []


def test_a_symlink_is_recreated(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    os.symlink("../somewhere/else", first / "link")
    assert cowpath.move(first / "link", second) == os.path.join(second, "link")
    assert os.readlink(second / "link") == "../somewhere/else"
    assert not os.path.lexists(first / "link")


# -- a tree -------------------------------------------------------------------------


@pytest.mark.parametrize("setup", ["subvolumes", "xfs_binds", "xfs_to_ext4", "xfs_to_tmpfs"])
def test_a_tree_is_moved_whole(setup: str, request: pytest.FixtureRequest) -> None:
    if setup.startswith("xfs_to_"):
        first, second = request.getfixturevalue("xfs"), request.getfixturevalue(setup[7:])
    else:
        first, second = request.getfixturevalue(setup)
    top = _tree(first)
    expected = _expected(top)
    free = free_bytes(second)
    report = cowpath.CopyReport()
    result = cowpath.move(top, second / "moved", report=report)
    assert result == second / "moved"
    assert not top.exists()
    assert _expected(second / "moved") == expected
    assert leftovers(second) == []
    assert report.files == 3
    if setup in ("subvolumes", "xfs_binds"):
        assert report.files_cloned == 3
        assert free - free_bytes(second) < 2 * MIB
    else:
        assert report.files_copied == 3


def test_a_tree_renamed_is_counted(xfs: Path) -> None:
    top = _tree(xfs)
    report = cowpath.CopyReport()
    cowpath.move(top, xfs / "moved", report=report)
    assert (report.files_renamed, report.files) == (3, 0)
    assert report.bytes_renamed == 3 * MIB + 123 + 100 + 70000


def test_a_tree_goes_into_an_existing_directory(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    top = _tree(first)
    expected = _expected(top)
    assert cowpath.move(str(top), str(second) + "/") == os.path.join(str(second) + "/", "tree")
    assert _expected(second / "tree") == expected


def test_missing_parents_are_made_as_copytree_makes_them(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    top = _tree(first)
    expected = _expected(top)
    cowpath.move(top, second / "x" / "y" / "moved")
    assert _expected(second / "x" / "y" / "moved") == expected


# -- as shutil.move -----------------------------------------------------------------

# (what the two areas hold, the call): each run by shutil and by cowpath on
# two fresh pairs of areas, one on each subvolume, and compared.
CASES = {
    "file-to-new-name": (lambda a, b: write_file(a / "f", 10), lambda a, b: (a / "f", b / "g")),
    "file-into-dir": (lambda a, b: write_file(a / "f", 10), lambda a, b: (a / "f", b)),
    "file-over-file": (
        lambda a, b: (write_file(a / "f", 10), write_file(b / "g", 20)),
        lambda a, b: (a / "f", b / "g"),
    ),
    "name-exists-in-dir": (
        lambda a, b: (write_file(a / "f", 10), write_file(b / "f", 20)),
        lambda a, b: (a / "f", b),
    ),
    "dir-into-dir": (lambda a, b: _tree(a), lambda a, b: (a / "tree", b)),
    "dir-to-new-name": (lambda a, b: _tree(a), lambda a, b: (a / "tree", b / "t2")),
    "dir-over-file": (lambda a, b: (_tree(a), write_file(b / "f", 3)), lambda a, b: (a / "tree", b / "f")),
    "dir-over-empty-dir-inside": (
        lambda a, b: (_tree(a), (b / "tree").mkdir()),
        lambda a, b: (a / "tree", b),
    ),
    "dir-into-itself": (lambda a, b: _tree(a), lambda a, b: (a / "tree", a / "tree" / "a")),
    "missing-source": (lambda a, b: None, lambda a, b: (a / "nothing", b / "x")),
    "symlink-to-dir": (
        lambda a, b: (_tree(a), os.symlink("tree", a / "ln")),
        lambda a, b: (a / "ln", b / "ln"),
    ),
    "dir-trailing-slash": (lambda a, b: _tree(a), lambda a, b: (f"{a}/tree/", f"{b}/t3")),
}


def _fixed_times(*areas: Path) -> None:
    """Every entry's times set to one value, so that the two runs' modification times compare."""
    for area in areas:
        for path in sorted(area.rglob("*"), reverse=True):
            os.utime(path, ns=(7_000_000_000, 8_000_000_000), follow_symlinks=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_as_shutil_move(subvolumes: tuple[Path, Path], case: str) -> None:
    setup, paths = CASES[case]
    run_both(
        list(subvolumes),
        lambda a, b: (setup(a, b), _fixed_times(a, b)),
        lambda module, a, b: module.move(*paths(a, b)),
        # A recreated symlink has the time it was made, by either module.
        mtimes=case != "symlink-to-dir",
    )


ONE_FS_CASES = ["file-to-new-name", "dir-into-dir", "name-exists-in-dir", "dir-into-itself"]


@pytest.mark.parametrize("case", ONE_FS_CASES)
def test_as_shutil_move_on_one_filesystem(btrfs: Path, case: str) -> None:
    setup, paths = CASES[case]
    run_both(
        btrfs,
        lambda a: (setup(a, a), _fixed_times(a)),
        lambda module, a: module.move(*paths(a, a)),
        mtimes=True,
    )


def test_a_custom_copy_function_is_called_as_shutil_calls_it(subvolumes: tuple[Path, Path]) -> None:
    def setup(a: Path, b: Path) -> None:
        _tree(a)

    def call(module: object, a: Path, b: Path) -> object:
        calls: list[tuple[str, str]] = []

        def copier(s: str, d: str) -> object:
            calls.append((os.path.relpath(s, a), os.path.relpath(d, b)))
            return shutil.copy(s, d)

        module.move(a / "tree", b / "dst", copy_function=copier)  # type: ignore[attr-defined]
        return sorted(calls)

    run_both(list(subvolumes), setup, call)


def test_a_source_that_cannot_be_removed_keeps_both_as_shutil(small: SmallFilesystems) -> None:
    point = small.make("btrfs", 200)
    import subprocess

    for name in ("sub1", "sub2"):
        subprocess.run(["btrfs", "subvolume", "create", str(point / name)], check=True, capture_output=True)
        os.chown(point / name, NOBODY, NOBODY)

    def setup(a: Path, b: Path) -> None:
        for area in (a, b):
            os.chown(area, NOBODY, NOBODY)
        top = _tree(a)
        for path in [top, *top.rglob("*")]:
            os.lchown(path, NOBODY, NOBODY)
        os.chmod(top / "a", 0o555)  # its entries cannot be removed
        # Sticky, and root's: nobody may not remove root's file in it.
        (a / "sticky").mkdir(mode=0o1777)
        os.chmod(a / "sticky", 0o1777)
        write_file(a / "sticky" / "file", 10)

    def call(module: object, a: Path, b: Path) -> object:
        results = []
        for src in ("tree", "sticky/file"):
            try:
                results.append(os.path.relpath(module.move(a / src, b), b))  # type: ignore[attr-defined]
            except OSError as exc:
                # The name in rmtree's error differs between Python versions
                # (3.12 names a directory by its last component alone):
                # cowpath names the full path.
                results.append((type(exc), exc.errno))
        return results

    # Which entries a failed removal leaves in the source is rmtree's order:
    # Python 3.13 rewrote rmtree and stops elsewhere than 3.10-3.12, which
    # cowpath matches. There, the destination is compared, and what stays in
    # the source must be whole (checked below).
    compared = [1] if sys.version_info >= (3, 13) else None
    run_both([point / "sub1", point / "sub2"], setup, call, user=NOBODY, compared=compared)
    if compared is not None:
        source = point / "sub1" / "cowpath" / "tree"
        for path in source.rglob("*"):
            if path.is_file() and not path.is_symlink():
                moved = point / "sub2" / "cowpath" / "tree" / path.relative_to(source)
                assert path.read_bytes() == moved.read_bytes(), path


def test_a_non_root_user_moves_between_subvolumes(small: SmallFilesystems) -> None:
    point = small.make("btrfs", 200)
    import subprocess

    for name in ("sub1", "sub2"):
        subprocess.run(["btrfs", "subvolume", "create", str(point / name)], check=True, capture_output=True)
        os.chown(point / name, NOBODY, NOBODY)
    top = _tree(point / "sub1")
    for path in [top, *top.rglob("*")]:
        os.lchown(path, NOBODY, NOBODY)
    expected = _expected(top)

    def move() -> int:
        report = cowpath.CopyReport()
        cowpath.move(top, point / "sub2" / "moved", report=report)
        return report.files_cloned

    assert in_child(move, user=NOBODY) == 3
    assert _expected(point / "sub2" / "moved") == expected
    assert not top.exists()


# -- a source that changes while it is moved ----------------------------------------------


def test_what_changes_during_the_move_stays_in_the_source(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    top = _tree(first)
    write_file(top / "a" / "later", 10)
    copied: list[str] = []

    def copier(s: str, d: str) -> object:
        result = cowpath.copy2(s, d)
        if not copied:
            # While the tree is being copied: the file just copied grows, a
            # file appears in a directory already listed, and a file not yet
            # copied grows (its copy then holds the change: it may go).
            with open(s, "ab") as f:
                f.write(b"more")
            write_file(top / "new", 5)
            grown = top / "a" / "later" if s != str(top / "a" / "later") else top / "big"
            with open(grown, "ab") as f:
                f.write(b"late")
        copied.append(s)
        return result

    with pytest.raises(shutil.Error) as caught:
        cowpath.move(top, second / "moved", copy_function=copier)
    first_copied = os.path.relpath(copied[0], top)
    kept = sorted(os.path.relpath(src, top) for src, _, _ in caught.value.args[0])
    assert kept == sorted([first_copied, "new"])
    # The destination is complete as copied; the source holds only what was kept.
    assert (second / "moved" / "big").exists()
    remaining = sorted(str(p.relative_to(top)) for p in top.rglob("*") if not p.is_dir())
    assert remaining == kept
    assert (top / first_copied).read_bytes().endswith(b"more")
    assert not (second / "moved" / first_copied).read_bytes().endswith(b"more")
    # Changed before its copy: moved with the change.
    grown = "a/later" if first_copied != "a/later" else "big"
    assert (second / "moved" / grown).read_bytes().endswith(b"late")


def test_a_file_changed_during_its_copy_is_kept(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    write_file(first / "f", 1000)

    def copier(s: str, d: str) -> object:
        result = cowpath.copy2(s, d)
        with open(s, "ab") as f:
            f.write(b"late")
        return result

    with pytest.raises(shutil.Error):
        cowpath.move(first / "f", second / "g", copy_function=copier)
    assert (first / "f").read_bytes().endswith(b"late")
    assert (second / "g").stat().st_size == 1000
