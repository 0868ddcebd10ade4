"""The harness itself (``tests/parity.py``): it must see every difference a
user could, or every comparison with shutil made through it passes for
nothing."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.parity import Failure, normalise, outcome, run_both, tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="xattrs and ownership as on Linux")


def _tree(root: Path) -> None:
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "file").write_bytes(b"data")
    os.link(root / "dir" / "file", root / "hard")
    (root / "link").symlink_to("dir/file")
    os.setxattr(root / "dir" / "file", "user.note", b"kept")
    for path in (root / "dir" / "file", root / "dir", root / "link"):
        os.utime(path, ns=(1_000_000_000, 2_000_000_000), follow_symlinks=False)


CHANGES: dict[str, Callable[[Path], object]] = {
    "content": lambda r: (r / "dir" / "file").write_bytes(b"DATA"),
    "mode": lambda r: os.chmod(r / "dir", 0o700),
    "owner": lambda r: os.chown(r / "dir" / "file", 65534, -1),
    "group": lambda r: os.chown(r / "dir", -1, 65534),
    "xattr": lambda r: os.setxattr(r / "dir" / "file", "user.note", b"changed"),
    "hard-link-broken": lambda r: (os.unlink(r / "hard"), shutil.copy2(r / "dir" / "file", r / "hard")),
    "link-text": lambda r: (os.unlink(r / "link"), os.symlink("./dir/file", r / "link")),
    "kind": lambda r: (os.unlink(r / "link"), shutil.copy2(r / "dir" / "file", r / "link")),
    "mtime": lambda r: os.utime(r / "dir" / "file", ns=(1_000_000_000, 3_000_000_000)),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_tree_state_sees_every_change(tmpfs: Path, change: str) -> None:
    """Each change alone (times only compared for the change of a time, so
    that a new file's time cannot stand in for what was changed)."""
    mtimes = change == "mtime"
    _tree(tmpfs / "a")
    _tree(tmpfs / "b")
    assert tree_state(tmpfs / "a", mtimes=True) == tree_state(tmpfs / "b", mtimes=True)
    CHANGES[change](tmpfs / "b")
    assert tree_state(tmpfs / "a", mtimes=mtimes) != tree_state(tmpfs / "b", mtimes=mtimes)


def test_normalise_labels_each_root_and_keeps_path_types() -> None:
    assert normalise("/x/a/f and /x/g", "/x", "/x/a") == "ROOT1/f and ROOT0/g"
    assert normalise(b"/x/a/f", Path("/x/a")) == b"ROOT0/f"
    assert normalise(Path("/x/f"), "/x") == (type(Path("/x/f")), "ROOT0/f")
    assert normalise(Path("/x/f"), "/x") != normalise("/x/f", "/x")
    assert normalise(5, "/x") == 5


def test_outcome_keeps_an_error_list_entry_by_entry(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "dangling").symlink_to("nowhere")
    seen = outcome(lambda: shutil.copytree(tmp_path / "src", tmp_path / "dst"), tmp_path)
    assert (seen.raised, seen.type) == (True, shutil.Error)
    assert seen.errors is not None
    ((source_type, src, dst, why),) = seen.errors
    assert seen.errors[0] == Failure(source_type, src, dst, why)
    assert (source_type, src, dst) == ("str", "ROOT0/src/dangling", "ROOT0/dst/dangling")
    assert why.startswith("[Errno 2]")
    assert outcome(lambda: tmp_path / "x", tmp_path) == outcome(lambda: tmp_path / "x", tmp_path)
    assert outcome(lambda: tmp_path / "x", tmp_path) != outcome(lambda: str(tmp_path / "x"), tmp_path)


def _differ(module: Any, root: Path) -> Any:
    """Copies with copy2 under shutil, with copy under cowpath: the times differ."""
    if module is cowpath:
        return cowpath.copy(root / "src", root / "dst")
    return shutil.copy2(root / "src", root / "dst")


def _setup(root: Path) -> None:
    (root / "src").write_bytes(b"data")
    os.utime(root / "src", ns=(1_000_000_000, 2_000_000_000))


def test_run_both_fails_where_cowpath_differs(tmpfs: Path) -> None:
    (tmpfs / "same").mkdir()
    (tmpfs / "different").mkdir()
    run_both(
        tmpfs / "same", _setup, lambda module, root: module.copy2(root / "src", root / "dst"), mtimes=True
    )
    with pytest.raises(AssertionError):
        run_both(tmpfs / "different", _setup, _differ, mtimes=True)
