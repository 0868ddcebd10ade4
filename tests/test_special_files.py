"""Special files and unusual regular files: FIFOs, character devices and
sockets as a source or inside a tree (refused at once, never read: a FIFO or
/dev/zero would never end), a file swapped for a FIFO after the walk listed
it, and empty and sparse files in a tree.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
from pathlib import Path

import pytest

import cowpath
from tests.faultutil import in_child
from tests.parity import Outcome, outcome

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems and errno values")


def _special_area(root: Path) -> None:
    os.mkfifo(root / "fifo")
    os.mknod(root / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))  # /dev/zero: never ends
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.fspath(root / "socket"))
    listener.close()
    (root / "tree").mkdir()
    (root / "tree" / "plain").write_bytes(b"plain")
    for name in ("fifo", "zero", "socket"):
        os.link(root / name, root / "tree" / name)


def _copy_special(root: Path, function: str, source: str) -> Outcome:
    if function == "copytree":
        return outcome(lambda: cowpath.copytree(root / "tree", root / "tree-copy"), root)
    return outcome(lambda: getattr(cowpath, function)(root / source, root / f"out-{source}"), root)


@pytest.mark.parametrize("source", ["fifo", "zero", "null", "socket"])
@pytest.mark.parametrize("function", ["copyfile", "copy2"])
def test_special_files_raise_and_never_hang(any_fs: Path, function: str, source: str) -> None:
    """A FIFO, a character device or a socket as the source: SpecialFileError
    naming it, at once (each copy runs in a child with a time limit: a copy
    of /dev/zero or of a FIFO would otherwise never end), and no file made."""
    _special_area(any_fs)
    seen = in_child(_copy_special, any_fs, function, source, timeout=20)
    kind = {"fifo": "named pipe", "zero": "character device", "null": "character device", "socket": "socket"}
    assert (seen.raised, seen.type) == (True, shutil.SpecialFileError)
    assert seen.message == f"`ROOT0/{source}` is a {kind[source]}"
    assert not os.path.lexists(any_fs / f"out-{source}")


def test_special_files_in_a_tree(any_fs: Path) -> None:
    """In a tree each special file is listed as SpecialFileError; the rest is copied."""
    _special_area(any_fs)
    seen = in_child(_copy_special, any_fs, "copytree", "", timeout=20)
    assert (seen.raised, seen.type) == (True, shutil.Error)
    for name, kind in (("fifo", "named pipe"), ("zero", "character device"), ("socket", "socket")):
        assert f"`ROOT0/tree/{name}` is a {kind}" in seen.message
    assert (any_fs / "tree-copy" / "plain").read_bytes() == b"plain"
    assert sorted(os.listdir(any_fs / "tree-copy")) == ["plain"]


def _swap_for_fifo(root: Path, workers: int) -> Outcome:
    def ignore(directory: str, names: list[str]) -> list[str]:
        (root / "tree" / "plain").unlink()
        os.mkfifo(root / "tree" / "plain")
        return []

    return outcome(
        lambda: cowpath.copytree(root / "tree", root / "copy", ignore=ignore, workers=workers), root
    )


@pytest.mark.parametrize("workers", [1, 4])
def test_file_swapped_for_a_fifo_after_the_listing_never_blocks(tmp_path: Path, workers: int) -> None:
    """A file listed by the walk and replaced by a FIFO before it is copied:
    the copy opens it without blocking and reports it as shutil would."""
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "plain").write_bytes(b"plain")
    seen = in_child(_swap_for_fifo, tmp_path, workers, timeout=20)
    assert (seen.raised, seen.type) == (True, shutil.Error)
    assert "`ROOT0/tree/plain` is a named pipe" in seen.message


def test_empty_and_sparse_files_in_a_tree(any_fs: Path) -> None:
    """Empty files and sparse files (holes kept, as far as the filesystem
    keeps them) through copytree: the same bytes as the source."""
    tree = any_fs / "tree"
    tree.mkdir()
    (tree / "empty").write_bytes(b"")
    with open(tree / "sparse", "wb") as f:
        f.truncate(64 * 1024 * 1024)
        f.seek(32 * 1024 * 1024)
        f.write(b"middle")
    with open(tree / "all-hole", "wb") as f:
        f.truncate(10 * 1024 * 1024)
    cowpath.copytree(tree, any_fs / "copy")
    for name in ("empty", "sparse", "all-hole"):
        assert (any_fs / "copy" / name).read_bytes() == (tree / name).read_bytes()
        assert os.stat(any_fs / "copy" / name).st_blocks <= os.stat(tree / name).st_blocks + 256
