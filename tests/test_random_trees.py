"""Random trees through copytree, compared with shutil's copy of the same tree.

Files (empty, read-only, 0600), directories and symlinks (to files,
absolute, dangling, looping), with names that are not UTF-8, hold newlines
or look like "." prefixes; str and bytes paths; one or several workers.
The comparison is ``tests/parity.py``'s: the same return value or error,
the same tree with the same times, and no staging left behind.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cowpath
from tests.parity import run_both

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems and errno values")

NAME_PARTS = [b"a", b"B", b"caf\xe9", b"\xff", b"new\nline", b" ", b"-", b".", b"\xc3\xa4", b"x" * 40, b"*"]
NAMES = (
    st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=3)
    .map(b"".join)
    .filter(lambda n: n not in (b".", b".."))
)
ENTRY = st.tuples(
    st.lists(NAMES, min_size=1, max_size=3),  # path below the top
    st.sampled_from(["file", "empty", "dir", "link-file", "link-dangling", "link-absolute", "link-loop"]),
    st.sampled_from([0o644, 0o600, 0o755, 0o444]),
)


def _prepare(root: bytes, parts: list[bytes]) -> bytes | None:
    """The path for ``parts`` below ``root`` with its directories made, or
    None where something other than a directory is in the way."""
    path = root
    for part in parts[:-1]:
        path = os.path.join(path, part)
        if not os.path.lexists(path):
            os.mkdir(path)
        elif os.path.islink(path) or not os.path.isdir(path):
            return None
    path = os.path.join(path, parts[-1])
    return None if os.path.lexists(path) else path


def _build(root: bytes, entries: list[tuple[list[bytes], str, int]]) -> None:
    """Make the entries under ``root`` (those that clash with earlier ones
    are skipped); every time is then set to a fixed value, so that two
    builds compare equal."""
    os.mkdir(root)
    files: list[bytes] = []
    for parts, kind, mode in entries:
        path = _prepare(root, parts)
        if path is None:
            continue
        if kind in ("file", "empty"):
            with open(path, "wb") as f:
                f.write(b"" if kind == "empty" else b"data of " + path[len(root) :] * 50)
            os.chmod(path, mode)
            files.append(path)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "link-file" and files:
            os.symlink(os.path.relpath(files[-1], os.path.dirname(path)), path)
        elif kind == "link-absolute" and files:
            os.symlink(files[0], path)
        elif kind == "link-loop":
            os.symlink(os.path.basename(path), path)
        else:
            os.symlink(b"missing-" + os.path.basename(path), path)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(1_000_000_000, 1_500_000_000), follow_symlinks=False)
    os.utime(root, ns=(1_000_000_000, 1_500_000_000))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(ENTRY, min_size=1, max_size=14),
    symlinks=st.booleans(),
    ignore_dangling=st.booleans(),
    workers=st.sampled_from([1, 2, 8]),
    as_bytes=st.booleans(),
)
def test_random_trees_as_shutil(
    any_fs: Path,
    entries: list[tuple[list[bytes], str, int]],
    symlinks: bool,
    ignore_dangling: bool,
    workers: int,
    as_bytes: bool,
) -> None:
    """Random trees of files (empty, read-only, 0600), directories and
    symlinks (to files, absolute, dangling, looping), with names that are
    not UTF-8, hold newlines or look like "." prefixes: the same copy, the
    same errors as shutil's, and no staging left behind."""
    base = any_fs / os.urandom(6).hex()
    base.mkdir()

    def setup(root: Path) -> None:
        _build(os.path.join(os.fsencode(root), b"src"), entries)

    def call(module: Any, root: Path) -> Any:
        src, dst = os.path.join(os.fsencode(root), b"src"), os.path.join(os.fsencode(root), b"dst")
        args: tuple[Any, Any] = (src, dst) if as_bytes else (os.fsdecode(src), os.fsdecode(dst))
        extra = {"workers": workers} if module is cowpath else {}
        return module.copytree(*args, symlinks=symlinks, ignore_dangling_symlinks=ignore_dangling, **extra)

    run_both(base, setup, call, mtimes=True)
    shutil.rmtree(base)
