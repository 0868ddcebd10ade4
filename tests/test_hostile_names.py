"""Hostile names: bytes and undecodable names, names that look like options,
globs or cowpath's own staging names, the longest names a filesystem takes,
names one byte too long, and paths near PATH_MAX.

Unless a difference is intended (and then it says so), cowpath's outcome is
compared with shutil's for the same input on the same filesystem
(``tests/parity.py``): the return value or the exception (type, errno, file
names, message) and the state of the directory afterwards.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.faultutil import leftovers
from tests.parity import MODULES, outcome, run_both, tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems and errno values")

ODD_NAMES = [
    b"caf\xe9",  # Latin-1, not valid UTF-8
    b"\xff\xfe\x80",
    b"line\nbreak",
    b"tab\there",
    b"-starts-with-dash",
    b" spaces ",
    b"back\\slash",
    b"*?[glob]",
    "e\u0301-nfd".encode(),
    "\U0001f600-emoji".encode(),
    b".hidden",
    b".cowpath",  # looks like a staging name
]


@pytest.mark.parametrize("name", ODD_NAMES, ids=repr)
@pytest.mark.parametrize("as_type", ["bytes", "str"])
@pytest.mark.parametrize("function", ["copyfile", "copy2", "copytree"])
def test_odd_names(any_fs: Path, name: bytes, as_type: str, function: str) -> None:
    """Bytes paths and str paths with surrogate escapes, for files and trees."""

    def setup(root: Path) -> None:
        raw = os.fsencode(root)
        os.mkdir(os.path.join(raw, b"tree"))
        with open(os.path.join(raw, b"tree", name), "wb") as f:
            f.write(b"data of " + name)
        os.symlink(name, os.path.join(raw, b"tree", b"link-" + name))
        with open(os.path.join(raw, name), "wb") as f:
            f.write(b"data of " + name)

    def call(module: Any, root: Path) -> Any:
        raw = os.fsencode(root)
        convert: Callable[[bytes], Any] = (lambda p: p) if as_type == "bytes" else os.fsdecode
        if function == "copytree":
            return module.copytree(
                convert(os.path.join(raw, b"tree")), convert(os.path.join(raw, b"new-" + name))
            )
        return getattr(module, function)(
            convert(os.path.join(raw, name)), convert(os.path.join(raw, name + b".copy"))
        )

    run_both(any_fs, setup, call)


LONG_NAMES = {
    "ascii-255": "a" * 255,
    "two-byte-255": "\u00e4" * 127 + "x",
    "three-byte-255": "\u20ac" * 85,
    "four-byte-252": "\U0001f600" * 63,
    "non-utf8-255": os.fsdecode(b"\xff" * 255),
}


@pytest.mark.parametrize("name", list(LONG_NAMES.values()), ids=list(LONG_NAMES))
@pytest.mark.parametrize("atomic", [False, True])
def test_longest_names(any_fs: Path, staging: str, name: str, atomic: bool) -> None:
    """255-byte names work, in both kinds of staging and for an atomic replacement.

    A private staging name is made from the destination's name: it must be
    cut by bytes, not characters, to stay within NAME_MAX.
    """
    assert len(os.fsencode(name)) <= 255
    src = any_fs / "src"
    src.write_bytes(b"new" * 1000)
    dst = any_fs / name
    if atomic:
        dst.write_bytes(b"old")
    cowpath.copy2(src, dst, atomic=atomic)
    assert dst.read_bytes() == b"new" * 1000
    cowpath.copytree(any_fs, any_fs.parent / (any_fs.name + "-tree") / name)
    assert (any_fs.parent / (any_fs.name + "-tree") / name / name).read_bytes() == b"new" * 1000
    shutil.rmtree(any_fs.parent / (any_fs.name + "-tree"))
    assert leftovers(any_fs) == []


@pytest.mark.parametrize("function", ["copyfile", "copy", "copy2", "copytree"])
@pytest.mark.parametrize("where", ["source", "destination"])
def test_name_too_long(any_fs: Path, function: str, where: str) -> None:
    """A 256-byte name fails with ENAMETOOLONG naming it, as in shutil."""
    long_name = "n" * 256

    def setup(root: Path) -> None:
        (root / "src").mkdir()
        (root / "src" / "f").write_text("x")
        (root / "file").write_text("x")

    def call(module: Any, root: Path) -> Any:
        if function == "copytree":
            if where == "source":
                return module.copytree(root / long_name, root / "dst")
            return module.copytree(root / "src", root / long_name)
        if where == "source":
            return getattr(module, function)(root / long_name, root / "dst")
        return getattr(module, function)(root / "file", root / long_name)

    run_both(any_fs, setup, call)


def _deep(root: Path, length: int) -> str:
    """Make a chain of directories under ``root`` whose relative path is
    exactly ``length`` bytes, creating each level through a directory
    descriptor so that no call needs the whole path; returns that path."""
    parts: list[str] = []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while (room := length - len("/".join(parts)) - (1 if parts else 0)) > 0:
            part = "d" * min(200, room)
            os.mkdir(part, dir_fd=fd)
            new = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = new
            parts.append(part)
    finally:
        os.close(fd)
    return "/".join(parts)


PATH_MAX = 4096
# A staged tree is built in DST/.cowpath-<16 hex>: 26 more bytes in every path.
STAGING_BYTES = 26


def _copy_deep(module: Any, function: str, deep: str, name: str) -> Any:
    if function == "copytree":
        return module.copytree(os.path.join(deep, "s"), os.path.join(deep, "tt"))
    if function == "atomic" and module is cowpath:
        return cowpath.copyfile(os.path.join(deep, "f"), os.path.join(deep, name), atomic=True)
    if function == "atomic":
        return shutil.copyfile(os.path.join(deep, "f"), os.path.join(deep, name))
    return getattr(module, function)(os.path.join(deep, "f"), os.path.join(deep, name))


LIMITATION = pytest.mark.xfail(
    strict=True,
    reason="the staging name makes the path longer than the destination's: "
    "within 26 bytes of PATH_MAX the copy fails where shutil's succeeds",
)


@pytest.mark.parametrize(
    ("function", "longest"),
    [
        ("copyfile", PATH_MAX - 1),
        ("copyfile", PATH_MAX),
        ("copy2", PATH_MAX - 1),
        ("copy2", PATH_MAX),
        ("copytree", PATH_MAX - 1 - STAGING_BYTES),
        pytest.param("copytree", PATH_MAX - 1, marks=LIMITATION),
        ("copytree", PATH_MAX),
        ("atomic", PATH_MAX - 1 - STAGING_BYTES),
        pytest.param("atomic", PATH_MAX - 1, marks=LIMITATION),
    ],
)
def test_paths_near_path_max(
    any_fs: Path, function: str, longest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths up to PATH_MAX - 1 bytes work; PATH_MAX bytes fail, as in shutil.

    ``longest`` is the length of the longest destination path the copy
    makes. The test runs from inside the area (chdir): the paths given are
    relative, and their absolute form is longer than PATH_MAX.
    """
    outcomes, states = {}, {}
    for who, module in MODULES:
        root = any_fs / who
        root.mkdir()
        monkeypatch.chdir(root)
        deep = _deep(root, 3900)
        # The longest path a copy makes: deep/NAME for a file; for a tree
        # deep/tt/inner/NAME, copied from deep/s/inner/NAME, one byte shorter.
        # A tree is staged in deep/tt/.cowpath-<hex>, which fits.
        name = "x" * (longest - len(deep) - (len("/tt/inner/") if function == "copytree" else 1))
        inner = name if function == "copytree" else "g"
        for path in ("f", "old", f"s/inner/{inner}"):
            os.makedirs(os.path.dirname(os.path.join(deep, path)), exist_ok=True)
            with open(os.path.join(deep, path), "w") as f:
                f.write(f"data of {path}")
        if function == "atomic":
            os.rename(os.path.join(deep, "old"), os.path.join(deep, name))
        # Absolute, the longest path would be too long.
        assert len(os.path.abspath(deep)) - len(deep) + longest > PATH_MAX
        outcomes[who] = outcome(lambda m=module, d=deep, n=name: _copy_deep(m, function, d, n))
        # Relative to the working directory, every path made fits.
        states[who] = tree_state(deep)
        assert leftovers(".") == []
    assert outcomes["cowpath"] == outcomes["shutil"]
    seen = outcomes["cowpath"]
    assert seen.raised is (longest >= PATH_MAX)
    if seen.raised and function == "copytree":
        assert seen.type is shutil.Error
        assert "[Errno 36] File name too long" in seen.message
    elif seen.raised:
        assert seen.errno == errno.ENAMETOOLONG
    assert states["cowpath"] == states["shutil"]
