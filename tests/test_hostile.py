"""Hostile and unusual input: odd names, long names and paths, symlink loops,
kinds swapped, the same file under another name, special files, random trees.

Unless a difference is intended (and then it says so), cowpath's outcome is
compared with shutil's for the same input on the same filesystem: the
return value or the exception (type, errno, file names, message) and the
state of the directory afterwards.
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
from cowpath import _select
from tests.faultutil import leftovers
from tests.fsutil import tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems and errno values")


@pytest.fixture(params=["unnamed", "named"])
def staging(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a new file is staged: unnamed (O_TMPFILE) and under a private name."""
    if request.param == "named":
        monkeypatch.setattr(_select.BACKEND, "unnamed_staging", False)
    return str(request.param)


def _outcome(call: Callable[[], Any], *roots: Any) -> tuple[Any, ...]:
    """The result or exception of ``call``, with the areas' roots made equal."""
    try:
        result = call()
    except Exception as exc:
        return (
            "raised",
            type(exc),
            getattr(exc, "errno", None),
            _norm(str(exc), roots),
            _norm(getattr(exc, "filename", None), roots),
            _norm(getattr(exc, "filename2", None), roots),
        )
    return ("returned", type(result), _norm(result, roots))


def _norm(value: Any, roots: tuple[Any, ...]) -> Any:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    for i, root in enumerate(roots):
        text = os.fsdecode(os.fspath(root))
        if isinstance(value, bytes):
            value = value.replace(os.fsencode(text), b"ROOT%d" % i)
        elif isinstance(value, str):
            value = value.replace(text, f"ROOT{i}")
    return value


def _both(base: Path, setup: Callable[[Path], None], call: Callable[[Any, Path], Any]) -> None:
    """Run ``call(module, root)`` with shutil and cowpath in two identical areas; compare."""
    outcomes, states = {}, {}
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        root = base / who
        root.mkdir()
        setup(root)
        outcomes[who] = _outcome(lambda m=module, r=root: call(m, r), root)
        states[who] = tree_state(root)
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert states["cowpath"] == states["shutil"]
    assert leftovers(base / "cowpath") == []


# -- names ------------------------------------------------------------------------

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

    _both(any_fs, setup, call)


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
