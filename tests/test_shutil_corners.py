"""Corners where cowpath once differed from shutil, found by a differential test.

Each test runs one scenario through shutil and through cowpath on real
filesystems (tests/differential.py) and compares the whole outcome; those
marked as another user run in a child that has dropped to ``nobody``.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.differential import OLD_TIME, Areas, areas_fixture, assert_same, outcome, run_both
from tests.faultutil import NOBODY, in_child

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="loop-mounted Linux filesystems")

ALL_FS = ["btrfs", "xfs", "ext4", "tmpfs"]
CLONING = ["btrfs", "xfs"]
USERS = {"root": None, "nobody": NOBODY}
OTHER_GROUP = 4321  # a group nobody is not in


@pytest.fixture(scope="module")
def areas() -> Iterator[Areas]:
    yield from areas_fixture()


# -- 1. a setgid destination directory ----------------------------------------------


@pytest.mark.parametrize("kind", ALL_FS)
@pytest.mark.parametrize("user", list(USERS))
@pytest.mark.parametrize("group", [OTHER_GROUP, NOBODY])
@pytest.mark.parametrize("sub_mode", [0o755, 0o700, 0o2750])
def test_copytree_into_a_setgid_directory_gives_every_entry_its_group(
    areas: Areas, kind: str, user: str, group: int, sub_mode: int
) -> None:
    """Inside a setgid directory the kernel gives new entries the directory's
    group (and new directories the setgid bit); narrowing a new directory's
    mode must not take that away from what is created in it."""
    uid = USERS[user] or 0

    def setup(root: Path) -> None:
        (root / "src" / "sub" / "deep").mkdir(parents=True)
        (root / "src" / "f").write_bytes(b"f")
        (root / "src" / "sub" / "g").write_bytes(b"g")
        (root / "src" / "sub" / "deep" / "h").write_bytes(b"h")
        os.chmod(root / "src" / "sub", sub_mode)
        os.chmod(root / "src", 0o700)
        (root / "g").mkdir()
        for path in (root / "src", root / "src" / "sub", root / "src" / "sub" / "deep", root / "g"):
            os.chown(path, uid, NOBODY if uid else 0)
        os.chown(root / "g", uid, group)
        os.chmod(root / "g", 0o2775)

    _, state = assert_same(
        areas.fresh(kind), setup, lambda m, r: m.copytree(r / "src", r / "g" / "out"), user=USERS[user]
    )
    copied = {name: entry for name, entry in state.items() if name.startswith(b"g/out")}
    assert len(copied) == 6
    assert {entry[2] for entry in copied.values()} == {group}


# -- 2. copy2 onto an existing file of one's own, from a read-only source -----------


@pytest.mark.parametrize("kind", ALL_FS)
@pytest.mark.parametrize("user", list(USERS))
@pytest.mark.parametrize("function", ["copy2", "copy"])
def test_copy_onto_an_existing_file_keeps_write_access_for_the_extended_attributes(
    areas: Areas, kind: str, user: str, function: str
) -> None:
    """Narrowing the destination to a read-only source's mode before the copy
    took the owner's write bit, which setting extended attributes needs:
    shutil copies them before its chmod."""
    uid = USERS[user] or 0

    def setup(root: Path) -> None:
        os.chown(root, uid, uid)
        (root / "s").write_bytes(b"x")
        os.setxattr(root / "s", "user.k", b"v")
        os.chmod(root / "s", 0o444)
        (root / "d").write_bytes(b"old")
        for name in ("s", "d"):
            os.chown(root / name, uid, uid)

    result, state = assert_same(
        areas.fresh(kind), setup, lambda m, r: getattr(m, function)(r / "s", r / "d"), user=USERS[user]
    )
    assert result == ("returned", ("PosixPath", "ROOT/d"))
    assert state[b"d"][3] == b"x"
    if function == "copy2":
        assert ("user.k", b"v") in state[b"d"][4]


# -- 3. an exception from ignore or copy_function part-way through a tree -----------


def _partial_source(root: Path) -> None:
    # btrfs lists a directory in creation order: a, then its siblings.
    (root / "src").mkdir()
    (root / "src" / "top").write_bytes(b"top")
    (root / "src" / "a" / "inner").mkdir(parents=True)
    (root / "src" / "a" / "f").write_bytes(b"f")
    (root / "src" / "a" / "inner" / "g").write_bytes(b"g")
    (root / "src" / "b").mkdir()
    (root / "src" / "b" / "never").write_bytes(b"never")
    (root / "src" / "late").write_bytes(b"late")
    os.chmod(root / "src" / "a", 0o777)
    os.chmod(root / "src" / "a" / "inner", 0o750)
    os.utime(root / "src" / "a" / "inner", ns=(OLD_TIME, OLD_TIME + 7))


class Boom(RuntimeError):
    pass


def _ignore_raising_at_b(directory: Any, names: list[str]) -> list[str]:
    if os.path.basename(directory) == "b":
        raise Boom("ignore failed")
    return []


@pytest.mark.parametrize("workers", [None, 1, 4])
@pytest.mark.parametrize("dirs_exist_ok", [False, True])
def test_exception_from_ignore_leaves_what_shutil_leaves(
    areas: Areas, workers: int | None, dirs_exist_ok: bool
) -> None:
    """Files handed to the threads are copied, and the directories whose walk
    was complete have their metadata, as shutil's order leaves them."""

    def setup(root: Path) -> None:
        _partial_source(root)
        os.utime(root / "src" / "a", ns=(OLD_TIME, OLD_TIME + 5))
        if dirs_exist_ok:
            (root / "dst").mkdir()

    def action(m: Any, r: Path) -> Any:
        extra = {"workers": workers} if m is cowpath else {}
        return m.copytree(
            r / "src", r / "dst", ignore=_ignore_raising_at_b, dirs_exist_ok=dirs_exist_ok, **extra
        )

    result, state = assert_same(areas.fresh("btrfs"), setup, action)
    assert result[1] is Boom
    assert state[b"dst/a"][0] == oct(stat.S_IFDIR | 0o777)
    assert state[b"dst/a"][5] == OLD_TIME + 5
    assert state[b"dst/a/inner/g"][3] == b"g"
    assert state[b"dst/top"][3] == b"top"


@pytest.mark.parametrize("workers", [None, 1])
def test_exception_from_copy_function_leaves_what_shutil_leaves(areas: Areas, workers: int | None) -> None:
    def setup(root: Path) -> None:
        _partial_source(root)

    def action(m: Any, r: Path) -> Any:
        def copy_function(src: Any, dst: Any) -> Any:
            if os.path.basename(os.fspath(src)) == "never":
                raise Boom("copy failed")
            return shutil.copy2(src, dst)

        extra = {"workers": workers} if m is cowpath else {}
        return m.copytree(r / "src", r / "dst", copy_function=copy_function, **extra)

    result, state = assert_same(areas.fresh("btrfs"), setup, action)
    assert result[1] is Boom
    assert state[b"dst/a/inner"][5] == OLD_TIME + 7


# -- 4. destinations that are one inode -----------------------------------------------


@pytest.mark.parametrize("kind", CLONING)
@pytest.mark.parametrize("shape", ["hard-link", "symlink", "symlinked-directory"])
@pytest.mark.parametrize("many", [False, True])
def test_destinations_sharing_an_inode_are_written_in_shutils_order(
    areas: Areas, kind: str, shape: str, many: bool
) -> None:
    """A parallel copy must end as the sequential one: where the last write
    to a shared inode decides its content, shutil's order is kept."""

    def setup(root: Path) -> None:
        (root / "src").mkdir()
        (root / "src" / "y").write_bytes(b"y")
        (root / "src" / "a").mkdir()
        (root / "src" / "a" / "x").write_bytes(b"x")
        if many:
            # Enough files for the thread pool.
            for sub in ("a", "c"):
                (root / "src" / sub).mkdir(exist_ok=True)
                for i in range(40):
                    (root / "src" / sub / f"n{i:02d}").write_bytes(b"n%d" % i)
        (root / "d" / "a").mkdir(parents=True)
        (root / "d" / "y").write_bytes(b"")
        if shape == "hard-link":
            os.link(root / "d" / "y", root / "d" / "a" / "x")
        elif shape == "symlink":
            (root / "d" / "a" / "x").symlink_to("../y")
        else:
            (root / "src" / "b").mkdir()
            (root / "src" / "b" / "x").write_bytes(b"bx")
            (root / "d" / "b").symlink_to("a")

    def action(m: Any, r: Path) -> Any:
        extra = {"workers": 8} if m is cowpath else {}
        return m.copytree(r / "src", r / "d", dirs_exist_ok=True, **extra)

    assert_same(areas.fresh(kind), setup, action)


# -- 5. an empty source onto an existing empty file ----------------------------------


@pytest.mark.parametrize("kind", ALL_FS)
@pytest.mark.parametrize("user", list(USERS))
@pytest.mark.parametrize("reflink", ["auto", "never"])
@pytest.mark.parametrize("sizes", [(0, 0), (0, 3), (3, 0)])
def test_copy_onto_an_existing_file_acts_as_a_truncating_open(
    areas: Areas, kind: str, user: str, reflink: str, sizes: tuple[int, int]
) -> None:
    """shutil's open(dst, "wb") updates the mtime and clears setuid and setgid
    (for a caller without CAP_FSETID) even when nothing is written."""
    uid = USERS[user] or 0
    src_size, dst_size = sizes

    def setup(root: Path) -> None:
        os.chown(root, uid, uid)
        (root / "e").write_bytes(b"e" * src_size)
        (root / "d").write_bytes(b"d" * dst_size)
        for name in ("e", "d"):
            os.chown(root / name, uid, uid)
        os.chmod(root / "d", 0o6775)

    def action(m: Any, r: Path) -> Any:
        extra = {"reflink": reflink} if m is cowpath else {}
        return m.copyfile(r / "e", r / "d", **extra)

    _, state = assert_same(areas.fresh(kind), setup, action, user=USERS[user])
    assert state[b"d"][5] == "new"


# -- 6. follow_symlinks=False and a symlink to a device -------------------------------


@pytest.mark.parametrize("function", ["copyfile", "copy", "copy2"])
@pytest.mark.parametrize("target", ["/dev/null", "fifo", "sock"])
def test_symlink_not_followed_is_copied_whatever_it_points_to(
    areas: Areas, function: str, target: str
) -> None:
    """A link that is not followed is copied as a link: cowpath's own checks
    for sockets and character devices apply to sources it opens. shutil
    still looks through the link for a named pipe, and so does cowpath."""

    def setup(root: Path) -> None:
        if target == "fifo":
            os.mkfifo(root / "fifo")
        elif target == "sock":
            import socket

            with socket.socket(socket.AF_UNIX) as s:
                s.bind(str(root / "sock"))
        (root / "l").symlink_to(target)

    assert_same(
        areas.fresh("xfs"),
        setup,
        lambda m, r: getattr(m, function)(r / "l", r / "d", follow_symlinks=False),
    )


def test_copytree_copies_symlinks_to_devices_as_links(areas: Areas) -> None:
    def setup(root: Path) -> None:
        (root / "src").mkdir()
        (root / "src" / "null").symlink_to("/dev/null")

    assert_same(areas.fresh("xfs"), setup, lambda m, r: m.copytree(r / "src", r / "dst", symlinks=True))


# -- 7. DirEntry for shutil's copy functions, and access times ------------------------


def _atime_source(root: Path) -> None:
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "f").write_bytes(b"f" * 5000)
    (root / "src" / "e").write_bytes(b"")
    (root / "src" / "sub" / "g").write_bytes(b"g" * 5000)
    # Links to a file and a directory outside the tree: only the copy
    # through the link reads them.
    (root / "outside" / "dir").mkdir(parents=True)
    (root / "outside" / "file").write_bytes(b"o" * 5000)
    (root / "outside" / "dir" / "h").write_bytes(b"h" * 5000)
    (root / "src" / "l").symlink_to("../outside/file")
    (root / "src" / "ld").symlink_to("../outside/dir")
    # An access time older than the modification time: the first read
    # updates it (relatime).
    for path in ("src/f", "src/e", "src/sub/g", "src/sub", "outside/file", "outside/dir", "outside/dir/h"):
        os.utime(root / path, ns=(OLD_TIME, OLD_TIME + 10**9))


def _atimes(root: Path) -> dict[str, bool]:
    """Which copied entries kept the source's access time from before any read.

    Each entry is looked at before its directory is listed: listing reads it.
    """
    found = {}
    todo = [root / "dst"]
    while todo:
        with os.scandir(todo.pop()) as listing:
            entries = list(listing)
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            found[os.path.relpath(entry.path, root)] = st.st_atime_ns == OLD_TIME
            if stat.S_ISDIR(st.st_mode):
                todo.append(Path(entry.path))
    return found


@pytest.mark.parametrize("copy_function", ["shutil.copy2", "shutil.copy", "own.copy2"])
def test_copytree_passes_direntries_as_shutil_does(areas: Areas, copy_function: str) -> None:
    """shutil.copytree passes the DirEntry to its own copy and copy2 (which
    then use its cached stat); cowpath.copytree does the same for those and
    for its own. On ext4 every file is read, so access times show which stat
    was used."""
    base = areas.fresh("ext4")
    seen = {}
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        root = base / who
        root.mkdir()
        _atime_source(root)
        if copy_function == "own.copy2":
            function = module.copy2
        else:
            function = getattr(shutil, copy_function.split(".")[1])
        module.copytree(root / "src", root / "dst", copy_function=function)
        seen[who] = _atimes(root)
    assert seen["cowpath"] == seen["shutil"]


def _copytree_into_a_directory_of_roots(root: Path, who: str, copy_function: str) -> Any:
    module = cowpath if who == "cowpath" else shutil
    function = getattr(shutil, copy_function)
    return outcome(
        lambda: module.copytree(root / "src", root / "dst", copy_function=function, dirs_exist_ok=True), root
    )


@pytest.mark.parametrize("copy_function", ["copy2", "copy", "copyfile"])
def test_errors_for_directories_name_the_source_as_shutil_does(areas: Areas, copy_function: str) -> None:
    """A directory whose metadata cannot be copied is named in shutil.Error as
    copytree was given it: a DirEntry below the top when the copy function is
    shutil's copy or copy2, a str otherwise."""
    base = areas.fresh("tmpfs")
    outcomes = {}
    for who in ("shutil", "cowpath"):
        root = base / who
        (root / "src" / "sub").mkdir(parents=True)
        (root / "src" / "sub" / "f").write_bytes(b"f")
        os.chmod(root, 0o777)
        (root / "dst" / "sub").mkdir(parents=True)
        os.chown(root / "dst", NOBODY, NOBODY)
        # Writable by nobody, but only root may set its times and mode.
        os.chmod(root / "dst" / "sub", 0o777)
        outcomes[who] = in_child(_copytree_into_a_directory_of_roots, root, who, copy_function, user=NOBODY)
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert outcomes["cowpath"][0] == "raised"


@pytest.mark.parametrize("kind", CLONING)
def test_clone_leaves_the_source_unread_and_its_access_time_as_it_was(areas: Areas, kind: str) -> None:
    """The documented difference: a clone does not read the source, so its
    access time stays, and copy2 gives the destination that unchanged time
    (shutil's read updates the source's first, and copies the new time)."""
    root = areas.fresh(kind)
    (root / "src").write_bytes(b"s" * 10000)
    os.utime(root / "src", ns=(OLD_TIME, OLD_TIME + 10**9))
    cowpath.copy2(root / "src", root / "dst")
    assert os.stat(root / "src").st_atime_ns == OLD_TIME
    assert os.stat(root / "dst").st_atime_ns == OLD_TIME
    shutil.copy2(root / "src", root / "by-shutil")
    assert os.stat(root / "by-shutil").st_atime_ns != OLD_TIME


# -- 8. error details ------------------------------------------------------------------


@pytest.mark.parametrize("function", ["copyfile", "copy", "copy2", "copytree"])
@pytest.mark.parametrize("swap", [False, True])
def test_mixed_str_and_bytes_raise_shutils_type_error(areas: Areas, function: str, swap: bool) -> None:
    def setup(root: Path) -> None:
        (root / "t" / "sub").mkdir(parents=True)
        (root / "t" / "f").write_bytes(b"f")
        (root / "s").write_bytes(b"s")
        (root / "dir").mkdir()

    def action(m: Any, r: Path) -> Any:
        src = str(r / ("t" if function == "copytree" else "s"))
        dst = str(r / ("out" if function == "copytree" else "dir"))
        if swap:
            return getattr(m, function)(os.fsencode(src), dst)
        return getattr(m, function)(src, os.fsencode(dst))

    result, _ = assert_same(areas.fresh("xfs"), setup, action)
    if function != "copyfile":  # copyfile joins no names: it fails on the directory
        assert result[1] is TypeError


@pytest.mark.parametrize("kind", ALL_FS)
@pytest.mark.parametrize("function", ["copyfile", "copy", "copy2"])
def test_dangling_symlink_into_a_missing_directory_is_checked_before_the_data(
    areas: Areas, kind: str, function: str
) -> None:
    """shutil opens the destination before it writes: through a dangling
    symlink into a missing directory that fails first, whatever the data
    step would have met (here a file size limit)."""

    def setup(root: Path) -> None:
        (root / "big").write_bytes(b"b" * 100_000)
        (root / "l").symlink_to("nodir/x")

    result, _ = assert_same(
        areas.fresh(kind), setup, lambda m, r: getattr(m, function)(r / "big", r / "l"), fsize=4096
    )
    assert result[1] is FileNotFoundError
    assert result[2] == errno.ENOENT


@pytest.mark.parametrize("kind", ALL_FS)
@pytest.mark.parametrize("function", ["copyfile", "copy2"])
@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("size", [2999, 3000, 3001])
def test_a_source_at_the_file_size_limit_copies_as_with_shutil(
    areas: Areas, kind: str, function: str, existing: bool, size: int
) -> None:
    """Found by the property tests: copy_file_range checks RLIMIT_FSIZE
    before it sees the source's end, so a source of exactly the limit failed
    with EFBIG where shutil's sendfile, which reads the end first, copies it."""

    def setup(root: Path) -> None:
        (root / "s").write_bytes(b"s" * size)
        if existing:
            (root / "d").write_bytes(b"old")

    outcomes, states = run_both(
        areas.fresh(kind), setup, lambda m, r: getattr(m, function)(r / "s", r / "d"), fsize=3000
    )
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert (outcomes["cowpath"][0] == "returned") == (size <= 3000)
    if size <= 3000 or existing:
        assert states["cowpath"] == states["shutil"]
    else:
        # The listed difference: shutil leaves a partial new file, cowpath none.
        assert len(states["shutil"][b"d"][3]) == 3000
        assert b"d" not in states["cowpath"]


# -- 9. SameFileError inside a tree: the deliberate difference -------------------------


def _source_with_a_file(root: Path) -> None:
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "f").write_bytes(b"f")


def test_same_file_inside_a_tree_is_listed_as_a_proper_tuple(areas: Areas) -> None:
    """shutil lists the message's characters (it catches SameFileError as its
    base class shutil.Error and extends its list with the message); cowpath
    lists (source, destination, message), as for any other failure."""
    root = areas.fresh("xfs")
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "f").write_bytes(b"f")
    with pytest.raises(shutil.Error) as by_shutil:
        shutil.copytree(root / "src", root / "src", dirs_exist_ok=True)
    with pytest.raises(shutil.Error) as by_cowpath:
        cowpath.copytree(root / "src", root / "src", dirs_exist_ok=True)
    assert all(isinstance(item, str) and len(item) == 1 for item in by_shutil.value.args[0])
    errors = by_cowpath.value.args[0]
    assert [(os.fspath(s), d) for s, d, _ in errors] == [(str(root / "src" / "f"), str(root / "src" / "f"))]
    assert errors[0][2] == "".join(by_shutil.value.args[0])
    _, states = run_both(
        areas.fresh("xfs"),
        _source_with_a_file,
        lambda m, r: m.copytree(r / "src", r / "src", dirs_exist_ok=True),
    )
    assert states["cowpath"] == states["shutil"]
