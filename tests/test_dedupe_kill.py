"""``cowpath dedupe`` killed (SIGKILL) at random moments changes no file's content or metadata."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dedupeutil import MIB, pattern, record_tree, write

ROOT = Path(__file__).resolve().parent.parent


def _tree(where: Path, seed: int) -> Path:
    tree = where / f"tree{seed}"
    for d in range(4):
        (tree / f"d{d}").mkdir(parents=True)
        for f in range(12):
            size = (f % 4 + 1) * MIB + f * 4097
            data = pattern(size, seed=f % 6)
            write(tree / f"d{d}" / f"f{f}", data)
    return tree


@pytest.mark.slow
def test_sigkill_at_random_moments_changes_no_file(cloning_fs: Path) -> None:
    rng = random.Random(4321)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for round_ in range(8):
        tree = _tree(cloning_fs, round_)
        before = record_tree(tree)
        os.sync()
        child = subprocess.Popen(
            [sys.executable, "-m", "cowpath", "dedupe", "-r", str(tree)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert record_tree(tree) == before, f"round {round_}"
