"""No permission window: a copy of a file others may not read is never, for
an instant, readable by them, under its own name or a staging name; nor is
a file of a tree inside a directory they may not enter.

shutil has such a window (it creates the file with the default mode, writes
the data, and only then copies the mode): the spy below is shown to catch
it, then cowpath is shown to leave none. The spy is another user
(``nobody``) that scans the destination between every two steps of the copy.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import shutil
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.faultutil import NOBODY, SmallFilesystems, in_child
from tests.fsutil import force_named_staging

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems and errno values")

SECRET = b"SECRET-DATA-" * 4000


class Spy:
    """Another user (nobody), watching a directory for files it can open.

    It scans the directory over and over and opens every file it can, and
    keeps the descriptors: whoever opens a file while its mode allows it
    can read its data later, whatever the mode becomes. On each
    :meth:`sync` (called from the copying process at every step it takes,
    through an audit hook) it scans once more before the copy goes on, so
    it sees the state between any two steps. It starts with the copy (the
    first step): :meth:`finish` returns every mode it saw for each name
    from then on, and the names whose data it could read.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests = os.pipe()
        self.replies = os.pipe()
        self.results = os.pipe()
        self.parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - child
            try:
                # Not holding the test run's output open, and ending with it.
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 1)
                os.dup2(null, 2)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                self._watch()
            finally:
                os._exit(0)

    def _watch(self) -> None:  # pragma: no cover - child
        modes: dict[str, set[int]] = {}
        opened: dict[tuple[str, int], int] = {}
        armed = False

        def scan() -> None:
            if not armed:
                return
            for dirpath, dirnames, filenames in os.walk(self.root):
                for name in dirnames + filenames:
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(path)
                    except OSError:
                        continue
                    relative = os.path.relpath(path, self.root)
                    modes.setdefault(relative, set()).add(stat.S_IMODE(st.st_mode))
                    if stat.S_ISREG(st.st_mode) and (relative, st.st_ino) not in opened:
                        with contextlib.suppress(OSError):
                            opened[relative, st.st_ino] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

        while os.getppid() == self.parent:
            ready, _, _ = select.select([self.requests[0]], [], [], 0 if armed else 0.01)
            if ready:
                request = os.read(self.requests[0], 1)
                armed = True
                scan()
                if request == b"q":
                    break
                os.write(self.replies[1], b"k")
            else:
                scan()
        stolen = set()
        for (relative, _), fd in opened.items():
            os.lseek(fd, 0, os.SEEK_SET)
            if b"SECRET-DATA-" in os.read(fd, len(SECRET)):
                stolen.add(relative)
        result = pickle.dumps(({k: sorted(v) for k, v in modes.items()}, sorted(stolen)))
        with os.fdopen(self.results[1], "wb") as f:
            f.write(result)

    def sync(self) -> None:
        os.write(self.requests[1], b"s")
        os.read(self.replies[0], 1)

    def finish(self) -> tuple[dict[str, list[int]], list[str]]:
        os.write(self.requests[1], b"q")
        os.close(self.results[1])
        with os.fdopen(self.results[0], "rb") as f:
            data = f.read()
        os.waitpid(self.pid, 0)
        for fd in (*self.requests, *self.replies):
            os.close(fd)
        modes, stolen = pickle.loads(data)
        return modes, stolen


def _copy_watched(spy: Spy, call: Callable[[], Any], named: bool) -> None:
    """In a child (root, umask 022): run ``call``; the spy scans at every audited step."""
    os.umask(0o022)
    if named:
        force_named_staging()
    lock = threading.Lock()
    watching = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if watching[0]:
            with lock:
                spy.sync()

    sys.addaudithook(hook)
    try:
        call()
    finally:
        watching[0] = False


def _secret_source(where: Path) -> Path:
    src = where / "secret"
    src.write_bytes(SECRET)
    os.chmod(src, 0o600)
    return src


def _watched(
    small: SmallFilesystems, kind: str, copy: Callable[[Path, Path], Any], named: bool = False
) -> Any:
    base = small.make(kind)
    src = _secret_source(base)
    out = base / "out"
    out.mkdir(mode=0o755)
    (out / "existing").write_bytes(b"old")
    os.chmod(out / "existing", 0o644)
    spy = Spy(out)
    try:
        in_child(_copy_watched, spy, lambda: copy(src, out), named)
    finally:
        result = spy.finish()
    return result


FILE_COPIES: dict[str, Callable[[Path, Path], Any]] = {
    "copy": lambda src, out: cowpath.copy(src, out / "dst"),
    "copy2": lambda src, out: cowpath.copy2(src, out / "dst"),
    "copy2-never": lambda src, out: cowpath.copy2(src, out / "dst", reflink="never"),
    "CowPath.copy": lambda src, out: cowpath.CowPath(src).copy(out / "dst", preserve_metadata=True),
    "copy2-atomic-onto-existing": lambda src, out: (
        os.rename(out / "existing", out / "dst"),
        cowpath.copy2(src, out / "dst", atomic=True),
    ),
}


@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_shutil_has_a_permission_window(small: SmallFilesystems, kind: str) -> None:
    """The spy is able to catch the window: shutil.copy makes the file 0644,
    writes the data, then sets 0600; the spy opens it meanwhile and reads
    the data afterwards."""
    modes, stolen = _watched(small, kind, lambda src, out: shutil.copy(src, out / "dst"))
    assert 0o644 in modes["dst"]
    assert stolen == ["dst"]


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
@pytest.mark.parametrize("case", list(FILE_COPIES))
@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_no_permission_window_for_files(small: SmallFilesystems, kind: str, case: str, named: bool) -> None:
    """A 0600 source's copy is never visible with a wider mode, under any name."""
    modes, stolen = _watched(small, kind, FILE_COPIES[case], named)
    assert stolen == []
    assert modes["dst"] == [0o600] or case.endswith("existing")
    for name, seen in modes.items():
        assert set(seen) <= {0o600, 0o644}, (name, seen)


def test_in_place_copy_reaches_who_had_the_file_open(small: SmallFilesystems) -> None:
    """The limit of the in-place rewrite (shutil's semantics): whoever may
    open the existing destination before the copy narrows its mode keeps a
    descriptor to the same file and reads the new data. atomic=True
    replaces the file instead, and that descriptor keeps the old data."""
    modes, stolen = _watched(small, "xfs", lambda src, out: cowpath.copy(src, out / "existing"))
    assert stolen == ["existing"]
    assert modes["existing"] == [0o600, 0o644]
    modes, stolen = _watched(small, "xfs", lambda src, out: cowpath.copy(src, out / "existing", atomic=True))
    assert stolen == []


def _secret_tree(src: Path, out: Path, function: Any) -> Any:
    tree = src.parent / "tree"
    if not tree.exists():
        (tree / "private").mkdir(parents=True)
        (tree / "private" / "inside").write_bytes(SECRET)
        os.chmod(tree / "private" / "inside", 0o644)
        os.chmod(tree / "private", 0o700)
        (tree / "top-secret").write_bytes(SECRET)
        os.chmod(tree / "top-secret", 0o600)
        (tree / "public").mkdir()
        (tree / "public" / "readme").write_bytes(b"anyone may read this")
        closed = src.parent / "closed"
        closed.mkdir(mode=0o700)
        (closed / "inside").write_bytes(SECRET)
        os.chmod(closed / "inside", 0o644)
    function(src.parent / "closed", out / "closed")
    return function(tree, out / "copy")


@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_shutil_copytree_has_a_permission_window(small: SmallFilesystems, kind: str) -> None:
    _, stolen = _watched(small, kind, lambda src, out: _secret_tree(src, out, shutil.copytree))
    assert "copy/top-secret" in stolen
    assert "copy/private/inside" in stolen
    assert "closed/inside" in stolen


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_no_permission_window_for_trees(small: SmallFilesystems, kind: str, workers: int) -> None:
    """Nothing of a tree is readable by others unless the source let them:
    not a 0600 file, and not a 0644 file inside a 0700 directory (the root
    or below it)."""

    def copytree(src: Path, dst: Path) -> Any:
        return cowpath.copytree(src, dst, workers=workers)

    modes, stolen = _watched(small, kind, lambda src, out: _secret_tree(src, out, copytree))
    assert stolen == []
    assert modes["copy/top-secret"] == [0o600]
    assert "copy/private/inside" not in modes or modes["copy/private"] == [0o700]
