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


# The modules only one OS imports: its backend and the native binding it uses.
OS_MODULES = {
    "linux": {"_linux"},
    "darwin": {"_macos", "_libsystem"},
    "win32": {"_windows", "_winclone"},
}


# Each OS's own modules with the shared ones, type-checked as that OS sees
# them (typeshed hides what a platform lacks: ctypes.WinDLL off Windows,
# os.copy_file_range off Linux). The other OSes' modules are left out:
# they are never imported there.
@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_mypy_strict_as_other_platforms(platform: str) -> None:
    others = set().union(*(modules for name, modules in OS_MODULES.items() if name != platform))
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cowpath").glob("*.py") if p.stem not in others)
    cache = f".mypy_cache/{sys.version_info[:2]}-{platform}"
    done = _run("mypy", "--strict", "--platform", platform, "--cache-dir", cache, *files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(files)} source files" in done.stdout


def test_ruff_check() -> None:
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    done = _run("ruff", "format", "--check", "--no-cache", "cowpath")
    assert done.returncode == 0, done.stdout + done.stderr
