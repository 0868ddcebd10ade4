"""Permissions: a copy by a user the modes refuse, as shutil fails it, and
what ``atomic=True`` does where the caller may write a file but not its
directory, or its directory but not the file.

Root reads and writes everything: each copy runs in a child that has
dropped to nobody (``tests/faultutil.py``: ``in_child``). The filesystem
is a tmpfs of the test's own (the ``small`` fixture).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.faultutil import NOBODY, SmallFilesystems, both_names, in_child, leftovers
from tests.parity import run_both, tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="loop-mounted Linux filesystems")


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


@pytest.mark.parametrize("case", list(PERMISSION_CASES))
def test_permission_denied_as_shutil(small: SmallFilesystems, case: str) -> None:
    """Each case as shutil: the same exception, errno, names and message,
    the same files afterwards (the copied ones whole), nothing else left."""
    base = small.make("tmpfs")
    function, src_name, dst_name = PERMISSION_CASES[case]
    sources = {}

    def setup(root: Path) -> None:
        _permission_area(root, case)
        sources[root.name] = tree_state(root, mtimes=True)

    def call(module: Any, root: Path) -> Any:
        return getattr(module, function)(root / src_name, root / dst_name)

    seen = run_both(base, setup, call, user=NOBODY)
    assert seen.raised
    for who, source in sources.items():
        # The sources are as they were.
        after = tree_state(base / who, mtimes=True)
        assert {k: v for k, v in after.items() if k in source and k != dst_name} == {
            k: v for k, v in source.items() if k != dst_name
        }
        assert leftovers(base / who) == []


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
