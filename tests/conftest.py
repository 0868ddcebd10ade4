"""Real filesystems for the tests.

The filesystems are loop-mounted btrfs, XFS and ext4, and tmpfs. They need
root, util-linux ``mount``, ``mkfs.btrfs`` (btrfs-progs) and ``mkfs.xfs``
(xfsprogs). Where they cannot be made the tests that need them skip with the
reason, unless ``COWPATH_REQUIRE_LOOPFS=1`` (set by ``.ci/run``) says they
must run: then they fail. Besides these session-wide mounts, ``small`` makes
filesystems for one test alone, and ``staging`` runs a test with each way of
staging a new file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cowpath._select import use_backend
from tests.faultutil import SmallFilesystems

REQUIRED = os.environ.get("COWPATH_REQUIRE_LOOPFS") == "1"

MKFS = {
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}
CLONING = ("btrfs", "xfs")
ALL_FS = ("btrfs", "xfs", "ext4", "tmpfs")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("COWPATH_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or COWPATH_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"COWPATH_REQUIRE_LOOPFS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class Mounts:
    """Mounts made on first use and removed at the end of the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounted: dict[str, Path] = {}
        self.failed: dict[str, str] = {}

    def get(self, kind: str) -> Path:
        if kind in self.mounted:
            return self.mounted[kind]
        if kind in self.failed:
            _unavailable(self.failed[kind])
        try:
            self.mounted[kind] = self._mount(kind)
        except _Unavailable as exc:
            self.failed[kind] = str(exc)
            _unavailable(str(exc))
        return self.mounted[kind]

    def _mount(self, kind: str) -> Path:
        if not sys.platform.startswith("linux"):
            raise _Unavailable(f"{kind} loop mounts need Linux")
        if os.geteuid() != 0:
            raise _Unavailable(f"mounting {kind} needs root")
        point = self.root / f"mnt-{kind}"
        point.mkdir()
        if kind == "tmpfs":
            command = ["mount", "-t", "tmpfs", "-o", "size=2G", "tmpfs", str(point)]
        else:
            tool = shutil.which(MKFS[kind][0])
            if tool is None:
                raise _Unavailable(f"{MKFS[kind][0]} is not installed")
            image = self.root / f"{kind}.img"
            with open(image, "wb") as f:
                f.truncate(4 * 1024**3)
            made = subprocess.run([*MKFS[kind], str(image)], check=False, capture_output=True, text=True)
            if made.returncode:
                raise _Unavailable(f"{MKFS[kind][0]} failed: {made.stderr.strip()}")
            command = ["mount", "-o", "loop", str(image), str(point)]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode:
            raise _Unavailable(f"cannot mount {kind}: {done.stderr.strip()}")
        return point

    def close(self) -> None:
        for point in self.mounted.values():
            subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


class _Unavailable(Exception):
    pass


@pytest.fixture(scope="session")
def mounts() -> Iterator[Mounts]:
    root = Path(tempfile.mkdtemp(prefix="cowpath-fs-", dir=os.environ.get("COWPATH_IMAGE_DIR")))
    m = Mounts(root)
    yield m
    m.close()
    shutil.rmtree(root, ignore_errors=True)


def _fresh(mounts: Mounts, kind: str) -> Path:
    path = mounts.get(kind) / uuid.uuid4().hex
    path.mkdir()
    return path


def _directory_fixture(kind: str, doc: str) -> object:
    def fixture(mounts: Mounts) -> Iterator[Path]:
        path = _fresh(mounts, kind)
        yield path
        shutil.rmtree(path, ignore_errors=True)

    fixture.__doc__ = doc
    return pytest.fixture(name=kind)(fixture)


btrfs = _directory_fixture("btrfs", "A fresh empty directory on a loop-mounted btrfs.")
xfs = _directory_fixture("xfs", "A fresh empty directory on a loop-mounted XFS with reflink=1.")
ext4 = _directory_fixture("ext4", "A fresh empty directory on a loop-mounted ext4 (no clones).")
tmpfs = _directory_fixture("tmpfs", "A fresh empty directory on a tmpfs (no clones).")


@pytest.fixture(params=CLONING)
def cloning_fs(request: pytest.FixtureRequest, mounts: Mounts) -> Iterator[Path]:
    """A fresh directory on each filesystem that clones (btrfs, XFS)."""
    path = _fresh(mounts, request.param)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=ALL_FS)
def any_fs(request: pytest.FixtureRequest, mounts: Mounts) -> Iterator[Path]:
    """A fresh directory on each test filesystem, cloning or not."""
    path = _fresh(mounts, request.param)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cross_fs(mounts: Mounts) -> Iterator[tuple[Path, Path]]:
    """Two fresh directories on different cloning filesystems (XFS, btrfs)."""
    pair = (_fresh(mounts, "xfs"), _fresh(mounts, "btrfs"))
    yield pair
    for path in pair:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=[*ALL_FS, "cross"])
def src_dst_dirs(request: pytest.FixtureRequest, mounts: Mounts) -> Iterator[tuple[Path, Path]]:
    """(source dir, destination dir) on every filesystem, and across two."""
    if request.param == "cross":
        pair = (_fresh(mounts, "xfs"), _fresh(mounts, "btrfs"))
    else:
        same = _fresh(mounts, request.param)
        pair = (same, same)
    yield pair
    for path in set(pair):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def small() -> Iterator[SmallFilesystems]:
    """Filesystems made for this test alone, to fill, remount read-only or shut
    down (``tests/faultutil.py``); the user nobody can reach them. Unmounted
    and removed afterwards."""
    filesystems = SmallFilesystems()
    yield filesystems
    filesystems.close()


@pytest.fixture(params=["unnamed", "named"])
def staging(request: pytest.FixtureRequest) -> Iterator[str]:
    """Both ways a new file is staged: unnamed (O_TMPFILE) and under a private name.

    The private name is what cowpath uses where O_TMPFILE is missing (other
    systems, NFS, FUSE); here it is forced on the real filesystem.
    """
    if request.param == "named" and sys.platform.startswith("linux"):
        from cowpath._linux import LinuxBackend

        with use_backend(LinuxBackend(unnamed_staging=False)):
            yield str(request.param)
    else:
        yield str(request.param)


def _quiet(command: list[str]) -> None:
    subprocess.run(command, check=False, capture_output=True)


@pytest.fixture
def subvolumes(mounts: Mounts) -> Iterator[tuple[Path, Path]]:
    """Two btrfs subvolumes of one filesystem: rename(2) between them fails with EXDEV, clones work."""
    base = _fresh(mounts, "btrfs")
    pair = (base / "sub1", base / "sub2")
    for path in pair:
        done = subprocess.run(["btrfs", "subvolume", "create", str(path)], check=False, capture_output=True)
        if done.returncode:
            _unavailable(f"btrfs subvolume create failed: {done.stderr.decode().strip()}")
    os.chmod(base, 0o755)
    yield pair
    for path in pair:
        _quiet(["btrfs", "subvolume", "delete", str(path)])
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def xfs_binds(mounts: Mounts) -> Iterator[tuple[Path, Path]]:
    """One XFS directory bind-mounted at two points: rename(2) between them fails with EXDEV."""
    base = _fresh(mounts, "xfs")
    shared = base / "shared"
    shared.mkdir()
    points = (base / "bind1", base / "bind2")
    for point in points:
        point.mkdir()
        done = subprocess.run(["mount", "--bind", str(shared), str(point)], check=False, capture_output=True)
        if done.returncode:
            _unavailable(f"mount --bind failed: {done.stderr.decode().strip()}")
    yield points
    for point in points:
        _quiet(["umount", str(point)])
    shutil.rmtree(base, ignore_errors=True)
