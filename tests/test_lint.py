"""The code is type-checked (mypy --strict) and linted (ruff) as part of the suite.

They check the source tree, so they skip when ``COWPATH_SKIP_LINT=1``
(tools/wheel_test.sh sets it: its run tests an installed wheel, away from
the sources).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.environ.get("COWPATH_SKIP_LINT") == "1", reason="COWPATH_SKIP_LINT=1: no source tree to lint"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_mypy_strict() -> None:
    done = _run("mypy", "--strict", "--cache-dir", f".mypy_cache/{sys.version_info[:2]}", "cowpath")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_check() -> None:
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    done = _run("ruff", "format", "--check", "--no-cache", "cowpath")
    assert done.returncode == 0, done.stdout + done.stderr
