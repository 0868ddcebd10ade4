"""A source that changes under copytree: files vanish, shrink, grow or turn
into a directory or a FIFO, and directories vanish or turn into files,
after the walk has listed them. cowpath copies and reports it as shutil.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.parity import run_both

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="loop-mounted Linux filesystems")


def _changing_tree(root: Path) -> None:
    for name in ("d0", "d2", "d3"):
        (root / name).mkdir(parents=True)
    (root / "d0" / "a").write_bytes(b"a" * 5000)
    for name in ("vanish", "shrink", "grow", "to-dir", "to-fifo", "keep"):
        (root / name).write_bytes(name.encode() * 20_000)
    (root / "d2" / "x").write_bytes(b"x" * 100)
    (root / "d3" / "y").write_bytes(b"y" * 100)


def _change(root: Path) -> None:
    """What happens to the source once its top is listed, before anything is copied."""
    (root / "vanish").unlink()
    os.truncate(root / "shrink", 1000)
    with open(root / "grow", "ab") as f:
        f.write(b"more" * 50_000)
    (root / "to-dir").unlink()
    (root / "to-dir").mkdir()
    (root / "to-fifo").unlink()
    os.mkfifo(root / "to-fifo")
    shutil.rmtree(root / "d2")
    shutil.rmtree(root / "d3")
    (root / "d3").write_bytes(b"now a file")


def _copy_changing(module: Any, area: Path, workers: int) -> Any:
    src = area / "src"

    def ignore(directory: Any, names: list[str]) -> list[str]:
        if os.fspath(directory) == os.fspath(src):
            _change(src)
        return []

    extra = {"workers": workers} if module is cowpath else {}
    return module.copytree(src, area / "dst", ignore=ignore, **extra)


@pytest.mark.parametrize("workers", [1, 8])
def test_source_changing_during_copytree_as_shutil(any_fs: Path, workers: int) -> None:
    """Files vanish, shrink, grow, turn into a directory or a FIFO, and
    directories vanish or turn into files, once the walk has listed them
    (the ``ignore`` callback changes the tree).

    cowpath reports the same errors as shutil (a FIFO never blocks: the
    copy runs in a child with a time limit), copies what remains as it is
    at that moment, whole, and leaves no staging files.
    """
    seen = run_both(
        any_fs,
        lambda area: _changing_tree(area / "src"),
        lambda module, area: _copy_changing(module, area, workers),
        timeout=30,
    )
    for who in ("shutil", "cowpath"):
        area = any_fs / who
        # What was copied is the source as it was when copied.
        assert (area / "dst" / "shrink").read_bytes() == (area / "src" / "shrink").read_bytes()
        assert (area / "dst" / "grow").read_bytes() == (area / "src" / "grow").read_bytes()
    assert seen.type is shutil.Error
    assert seen.errors is not None
    whys = " ".join(str(failure.why) for failure in seen.errors)
    for expected in ("[Errno 2]", "[Errno 21]", "[Errno 20]", "is a named pipe"):
        assert expected in whys
