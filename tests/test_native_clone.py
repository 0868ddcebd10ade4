"""Real clones through the backend of the OS the suite runs on.

The same checks on every OS, on a filesystem that clones: XFS (loop-mounted)
on Linux, APFS (the temporary directory) on macOS, and on Windows a ReFS Dev
Drive named by ``COWPATH_CLONE_DIR`` (the CI workflow creates one). Any OS
can point ``COWPATH_CLONE_DIR`` at a directory of its own. With
``COWPATH_REQUIRE_CLONES=1`` (set by the CI workflow on macOS and Windows) a
missing cloning filesystem fails the tests instead of skipping them.

A clone is proved without FIEMAP, which only Linux has: the report says the
data was cloned, the free space does not drop by the file's size, and
writing to one side leaves the other as it was.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import cowpath

SIZE = 64 * 1024 * 1024
REQUIRED = os.environ.get("COWPATH_REQUIRE_CLONES") == "1"


@pytest.fixture
def clone_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory on a filesystem where this OS's backend clones."""
    configured = os.environ.get("COWPATH_CLONE_DIR")
    if configured:
        base = Path(configured)
    elif sys.platform == "darwin":
        base = Path(tempfile.gettempdir())
    elif sys.platform.startswith("linux"):
        base = request.getfixturevalue("xfs")
    else:
        reason = "no cloning filesystem here: set COWPATH_CLONE_DIR to a directory on ReFS or a Dev Drive"
        if REQUIRED:
            pytest.fail(f"COWPATH_REQUIRE_CLONES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    path = base / f"cowpath-native-{uuid.uuid4().hex}"
    path.mkdir()
    if not cowpath.supports_reflink(path):
        shutil.rmtree(path, ignore_errors=True)
        reason = f"{path} does not clone (backend {cowpath.backend_name()})"
        if REQUIRED:
            pytest.fail(f"COWPATH_REQUIRE_CLONES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _random_file(path: Path, size: int = SIZE) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def _free(path: Path) -> int:
    return shutil.disk_usage(path).free


def test_the_backend_is_this_os(clone_dir: Path) -> None:
    expected = {"linux": "linux", "darwin": "macos", "win32": "windows"}
    platform = "linux" if sys.platform.startswith("linux") else sys.platform
    assert cowpath.backend_name() == expected[platform]


@pytest.mark.parametrize("function", [cowpath.copyfile, cowpath.copy, cowpath.copy2])
def test_new_destination_is_a_clone(clone_dir: Path, function: object) -> None:
    src = clone_dir / "src.bin"
    data = _random_file(src)
    before = _free(clone_dir)
    report = cowpath.CopyReport()
    assert callable(function)
    function(src, clone_dir / "dst.bin", report=report)
    used = before - _free(clone_dir)
    assert (report.files_cloned, report.bytes_cloned, report.files_copied) == (1, SIZE, 0)
    assert (clone_dir / "dst.bin").read_bytes() == data
    # A copy would take the whole file; allow for metadata and other writers.
    assert used < SIZE // 4, f"free space dropped by {used} bytes for a {SIZE}-byte clone"


def test_writing_to_the_clone_leaves_the_source(clone_dir: Path) -> None:
    src = clone_dir / "src.bin"
    data = _random_file(src, 1024 * 1024)
    dst = cowpath.reflink(src, clone_dir / "dst.bin")
    with open(dst, "r+b") as f:
        f.seek(4096)
        f.write(b"x" * 8192)
    assert src.read_bytes() == data
    changed = dst.read_bytes()
    assert changed[4096 : 4096 + 8192] == b"x" * 8192
    assert changed[:4096] == data[:4096]
    assert changed[4096 + 8192 :] == data[4096 + 8192 :]


def test_metadata_is_shutils(clone_dir: Path) -> None:
    src = clone_dir / "tool"
    _random_file(src, 100_000)
    os.chmod(src, 0o750 if os.name != "nt" else stat.S_IREAD)
    os.utime(src, ns=(1_000_000_000_000_000_000, 1_100_000_000_000_000_000))
    try:
        for function, mine in ((shutil.copyfile, cowpath.copyfile), (shutil.copy, cowpath.copy)):
            theirs_path = clone_dir / f"theirs-{function.__name__}"
            mine_path = clone_dir / f"mine-{function.__name__}"
            function(src, theirs_path)
            report = cowpath.CopyReport()
            mine(src, mine_path, report=report)
            assert report.files_cloned == 1
            assert stat.S_IMODE(os.stat(mine_path).st_mode) == stat.S_IMODE(os.stat(theirs_path).st_mode)
        shutil.copy2(src, clone_dir / "theirs-copy2")
        cowpath.copy2(src, clone_dir / "mine-copy2")
        theirs, mine_st = os.stat(clone_dir / "theirs-copy2"), os.stat(clone_dir / "mine-copy2")
        assert mine_st.st_mtime_ns == theirs.st_mtime_ns
        assert stat.S_IMODE(mine_st.st_mode) == stat.S_IMODE(theirs.st_mode)
    finally:
        # A read-only file on Windows cannot be removed by the cleanup.
        for path in clone_dir.iterdir():
            os.chmod(path, stat.S_IREAD | stat.S_IWRITE)


def test_tree_is_cloned_file_by_file(clone_dir: Path) -> None:
    src = clone_dir / "tree"
    expected = {}
    for i in range(30):
        path = src / f"d{i % 4}" / f"f{i}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        expected[path.relative_to(src)] = _random_file(path, 5000 + 4096 * i)
    report = cowpath.CopyReport()
    cowpath.copytree(src, clone_dir / "copy", report=report)
    assert (report.files_cloned, report.files_copied) == (30, 0)
    for relative, data in expected.items():
        assert (clone_dir / "copy" / relative).read_bytes() == data


def test_reflink_never_copies(clone_dir: Path) -> None:
    src = clone_dir / "src.bin"
    data = _random_file(src, 256 * 1024)
    report = cowpath.CopyReport()
    cowpath.copyfile(src, clone_dir / "dst.bin", reflink="never", report=report)
    assert (report.files_cloned, report.files_copied) == (0, 1)
    assert (clone_dir / "dst.bin").read_bytes() == data


def test_cowpath_reflink_to(clone_dir: Path) -> None:
    src = cowpath.CowPath(clone_dir) / "model.bin"
    data = _random_file(src, 3 * 1024 * 1024 + 17)
    target = src.reflink_to(clone_dir / "best.bin")
    assert isinstance(target, cowpath.CowPath)
    assert target.read_bytes() == data
