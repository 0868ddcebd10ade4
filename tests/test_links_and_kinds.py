"""Symlinks, kinds and the same file: symlink loops and dangling links, a
directory where a file is expected and the reverse, links to an ancestor,
and the same file under another spelling or another hard link.

Each case is compared with shutil's for the same input on the same
filesystem (``tests/parity.py``): the return value or the exception (type,
errno, file names, message) and the state of the directory afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.parity import run_both, tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems and errno values")


def _links_area(root: Path) -> None:
    (root / "file").write_bytes(b"file data" * 100)
    (root / "dir").mkdir()
    (root / "dir" / "inner").write_bytes(b"inner")
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    (root / "self").symlink_to("self")
    (root / "dangling").symlink_to("nowhere")
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_bytes(b"f")
    (tree / "loop").symlink_to("loop")
    (tree / "dangling-relative").symlink_to("../missing")
    (tree / "dangling-absolute").symlink_to("/nonexistent/cowpath-test")
    (tree / "to-file").symlink_to("sub/f")
    (root / "with-up").mkdir()
    (root / "with-up" / "up").symlink_to("..")  # a link to an ancestor


def _dir_over_file(m: Any, r: Path) -> Any:
    """dirs_exist_ok where the destination has a directory for the source's file."""
    (r / "out" / "inner").mkdir(parents=True)
    return m.copytree(r / "dir", r / "out", dirs_exist_ok=True)


def _file_over_dir(m: Any, r: Path) -> Any:
    """dirs_exist_ok where the destination has a file for the source's directory."""
    (r / "out").mkdir()
    (r / "out" / "sub").write_bytes(b"a file")
    return m.copytree(r / "tree", r / "out", symlinks=True, dirs_exist_ok=True)


def _same_hard_link(m: Any, r: Path) -> Any:
    os.link(r / "file", r / "hard")
    return m.copyfile(r / "file", r / "hard")


CASES: dict[str, Callable[[Any, Path], Any]] = {
    "copyfile-loop": lambda m, r: m.copyfile(r / "loop-a", r / "out"),
    "copy2-self-loop": lambda m, r: m.copy2(r / "self", r / "out"),
    "copyfile-onto-loop": lambda m, r: m.copyfile(r / "file", r / "loop-a"),
    "copyfile-loop-not-followed": lambda m, r: m.copyfile(r / "loop-a", r / "out", follow_symlinks=False),
    "copy2-dangling-not-followed": lambda m, r: m.copy2(r / "dangling", r / "out", follow_symlinks=False),
    "copyfile-dangling": lambda m, r: m.copyfile(r / "dangling", r / "out"),
    "copyfile-onto-dangling": lambda m, r: m.copyfile(r / "file", r / "dangling"),
    "copytree-links-followed": lambda m, r: m.copytree(r / "tree", r / "out"),
    "copytree-links-kept": lambda m, r: m.copytree(r / "tree", r / "out", symlinks=True),
    "copytree-dangling-ignored": lambda m, r: m.copytree(
        r / "tree", r / "out", ignore_dangling_symlinks=True
    ),
    "copytree-ancestor-link-kept": lambda m, r: m.copytree(r / "with-up", r / "out", symlinks=True),
    "copytree-of-a-file": lambda m, r: m.copytree(r / "file", r / "out"),
    "copytree-onto-a-file": lambda m, r: m.copytree(r / "dir", r / "file"),
    "copytree-onto-a-file-exist-ok": lambda m, r: m.copytree(r / "dir", r / "file", dirs_exist_ok=True),
    "copytree-dir-over-file": _dir_over_file,
    "copytree-file-over-dir": _file_over_dir,
    "copytree-onto-itself": lambda m, r: m.copytree(r / "dir", r / "dir"),
    "copytree-into-itself": lambda m, r: m.copytree(r / "dir", r / "dir" / "copy"),
    "copyfile-file-onto-dir": lambda m, r: m.copyfile(r / "file", r / "dir"),
    "copyfile-dir-onto-file": lambda m, r: m.copyfile(r / "dir", r / "file"),
    "copy-into-dir": lambda m, r: m.copy(r / "file", r / "dir"),
    "copyfile-same-dot-spelling": lambda m, r: m.copyfile("./file", "file"),
    "copyfile-same-dotdot-spelling": lambda m, r: m.copyfile("dir/../file", "./dir/../file"),
    "copy2-same-through-dir-link": lambda m, r: m.copy2(
        r / "dir" / "inner", r / "with-up" / "up" / "dir" / "inner"
    ),
    "copyfile-same-hard-link": _same_hard_link,
}


@pytest.mark.parametrize("case", list(CASES))
def test_links_kinds_and_same_files_as_shutil(
    any_fs: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Symlink loops (ELOOP), dangling links, a directory where a file is
    expected and the reverse, the same file under other spellings (a
    SameFileError, nothing touched): each as shutil does it."""

    def call(module: Any, root: Path) -> Any:
        monkeypatch.chdir(root)
        return CASES[case](module, root)

    run_both(any_fs, _links_area, call)


def test_same_file_in_copytree_is_listed_whole(any_fs: Path) -> None:
    """copytree onto itself with dirs_exist_ok: every file is its own
    destination. shutil lists each SameFileError's message one character
    at a time (it extends its error list with the message string, since
    SameFileError is a shutil.Error); cowpath lists (src, dst, message),
    as for any other error. The files are untouched in both."""
    _links_area(any_fs)
    before = tree_state(any_fs / "dir", mtimes=True)
    with pytest.raises(shutil.Error) as by_shutil:
        shutil.copytree(any_fs / "dir", any_fs / "dir", dirs_exist_ok=True)
    with pytest.raises(shutil.Error) as by_cowpath:
        cowpath.copytree(any_fs / "dir", any_fs / "dir", dirs_exist_ok=True)
    message = f"{os.path.join(any_fs / 'dir', 'inner')!r} are the same file"
    assert "".join(by_shutil.value.args[0]).endswith(message)
    ((src, dst, why),) = by_cowpath.value.args[0]
    assert (src, dst) == (str(any_fs / "dir" / "inner"), str(any_fs / "dir" / "inner"))
    assert why.endswith(message)
    assert tree_state(any_fs / "dir", mtimes=True) == before
