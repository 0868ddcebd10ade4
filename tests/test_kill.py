"""A process killed (SIGKILL) in the middle of a copy leaves no partial file under a new name."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The child copies in a loop until it is killed; each round's destination
# names are new. Whatever exists under a destination name afterwards must be
# a whole copy.
CHILD = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import cowpath
src, out, kind, mode = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
i = 0
while True:
    target = os.path.join(out, f"copy{i}")
    if kind == "tree":
        cowpath.copytree(src, target, reflink=mode)
    else:
        cowpath.copy2(src, target, reflink=mode)
    i += 1
"""


def _source_file(where: Path) -> Path:
    src = where / "src.bin"
    # A fragmented file: clone and copy both take a while.
    with open(src, "wb") as f:
        for i in range(256):
            f.write(os.urandom(16384))
            f.flush()
            os.fsync(f.fileno())
            f.seek(i * 32768 + 16384)
    return src


def _source_tree(where: Path) -> Path:
    src = where / "tree"
    for d in range(20):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(20):
            (src / f"d{d}" / f"f{f}").write_bytes(os.urandom(1000 + 97 * f))
    return src


def _kill_many(src: Path, out: Path, kind: str, mode: str, rounds: int) -> int:
    out.mkdir()
    rng = random.Random(1234)
    killed = 0
    for _ in range(rounds):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), str(src), str(out), kind, mode])
        time.sleep(0.15 + rng.random() * 0.25)
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed += child.returncode == -signal.SIGKILL
        _check(src, out, kind)
        for entry in out.iterdir():
            subprocess.run(["rm", "-rf", str(entry)], check=True)
    return killed


def _check(src: Path, out: Path, kind: str) -> None:
    for entry in out.iterdir():
        if kind == "file":
            assert entry.name.startswith("copy"), entry
            assert entry.read_bytes() == src.read_bytes(), f"partial file under a destination name: {entry}"
            continue
        # A tree killed midway may still hold cowpath's private staging
        # directory (killed before or while the tree was moved into place):
        # every file under a destination name outside it is whole.
        for path in entry.rglob("*"):
            relative = path.relative_to(entry)
            if relative.parts[0].startswith(".cowpath-"):
                continue
            if path.is_file():
                assert path.read_bytes() == (src / relative).read_bytes(), path


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "never"])
def test_killed_file_copies_leave_only_whole_files(any_fs: Path, mode: str) -> None:
    src = _source_file(any_fs)
    assert _kill_many(src, any_fs / "out", "file", mode, rounds=6) == 6


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "never"])
def test_killed_tree_copies_leave_only_whole_files(any_fs: Path, mode: str) -> None:
    src = _source_tree(any_fs)
    assert _kill_many(src, any_fs / "out", "tree", mode, rounds=6) == 6


def test_killed_copies_quick(xfs: Path) -> None:
    """Two kills of each kind on XFS, in the default run; the slow tests do more."""
    assert _kill_many(_source_tree(xfs), xfs / "out-tree", "tree", "auto", rounds=2) == 2
    assert _kill_many(_source_file(xfs), xfs / "out-file", "file", "never", rounds=2) == 2
