"""Helpers for the fault, hostile-input, concurrency and soak tests.

Small filesystems made for one test (to fill, remount read-only or shut
down without disturbing the session's mounts), a full disk, a filesystem
that fails every I/O call, a child process that runs as another user, and
the checks every fault test makes: what is left behind, and whether the
source is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import pickle
import re
import shutil
import struct
import subprocess
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRED = os.environ.get("COWPATH_REQUIRE_LOOPFS") == "1"
NOBODY = 65534
MIB = 1024 * 1024

MKFS = {
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
    # Mixed block groups: data and metadata share the same space, so a
    # filesystem filled with data is full for a clone's metadata too.
    "btrfs": ["mkfs.btrfs", "-q", "-f", "--mixed"],
    # No blocks reserved for root: the tests run as root and must see ENOSPC.
    "ext4": ["mkfs.ext4", "-q", "-F", "-m", "0"],
}
# mkfs.xfs refuses anything smaller than 300 MB.
SMALLEST_MIB = {"xfs": 300, "btrfs": 64, "ext4": 64, "tmpfs": 64}

# XFS_IOC_GOINGDOWN and EXT4_IOC_SHUTDOWN are the same request,
# _IOR('X', 125, __u32); NOLOGFLUSH (2) stops the filesystem at once: every
# later read, write or open on it fails with EIO until it is mounted again.
GOINGDOWN = 0x8004587D
GOINGDOWN_NOLOGFLUSH = 2


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"COWPATH_REQUIRE_LOOPFS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=False, capture_output=True, text=True)


class SmallFilesystems:
    """Loop-mounted filesystems made on demand in a directory others may enter.

    The directory is 0755 (pytest's and the session's are 0700), so that a
    child running as ``nobody`` reaches what a test allows it to. Everything
    is unmounted and removed by :meth:`close`.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cowpath-faults-", dir=os.environ.get("COWPATH_IMAGE_DIR")))
        os.chmod(self.root, 0o755)
        self.points: list[Path] = []
        self.count = 0

    def make(self, kind: str, mib: int | None = None, options: tuple[str, ...] = ()) -> Path:
        """A fresh, empty filesystem of ``kind`` and ``mib`` MiB; returns its mount point."""
        if os.geteuid() != 0:
            unavailable(f"mounting {kind} needs root")
        size = mib or SMALLEST_MIB[kind]
        self.count += 1
        point = self.root / f"{kind}{self.count}"
        point.mkdir()
        if kind == "tmpfs":
            command = ["mount", "-t", "tmpfs", "-o", f"size={size}M,mode=0755", "tmpfs", str(point)]
        else:
            if shutil.which(MKFS[kind][0]) is None:
                unavailable(f"{MKFS[kind][0]} is not installed")
            image = self.root / f"{kind}{self.count}.img"
            with open(image, "wb") as f:
                f.truncate(size * 1024 * 1024)
            made = _run([*MKFS[kind], *options, str(image)])
            if made.returncode:
                unavailable(f"{MKFS[kind][0]} failed: {made.stderr.strip()}")
            command = ["mount", "-o", "loop", str(image), str(point)]
        done = _run(command)
        if done.returncode:
            unavailable(f"cannot mount {kind}: {done.stderr.strip()}")
        self.points.append(point)
        os.chmod(point, 0o755)
        return point

    def remount(self, point: Path, options: str) -> None:
        done = _run(["mount", "-o", f"remount,{options}", str(point)])
        assert done.returncode == 0, done.stderr

    @contextlib.contextmanager
    def offline(self, point: Path) -> Iterator[Path]:
        """Unmount the filesystem at ``point``, yield its image, mount it again.

        After a shutdown, mounting replays the log; with the image in hand a
        test can damage it.
        """
        image = self.root / f"{point.name}.img"
        assert _run(["umount", str(point)]).returncode == 0
        try:
            yield image
        finally:
            done = _run(["mount", "-o", "loop", str(image), str(point)])
            assert done.returncode == 0, done.stderr

    def bind(self, directory: Path, read_only: bool) -> Path:
        """A second mount of ``directory``, read-only if asked."""
        self.count += 1
        point = self.root / f"bind{self.count}"
        point.mkdir()
        assert _run(["mount", "--bind", str(directory), str(point)]).returncode == 0
        self.points.append(point)
        if read_only:
            self.remount(point, "bind,ro")
        return point

    def close(self) -> None:
        for point in reversed(self.points):
            if _run(["umount", str(point)]).returncode:
                _run(["umount", "-l", str(point)])
        shutil.rmtree(self.root, ignore_errors=True)


def fill(root: Path, leave: int = 0, *, metadata: bool = False) -> None:
    """Take the free space of ``root``'s filesystem, leaving about ``leave`` bytes.

    With ``metadata`` (and ``leave`` 0), also create extended attributes
    until even metadata has no room: a clone then has nowhere to record its
    extents.
    """
    os.sync()
    st = os.statvfs(root)
    want = st.f_bavail * st.f_frsize - leave
    path = root / f"filler-{os.urandom(4).hex()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        step = max(want, 4096)
        while step >= 4096 and os.fstat(fd).st_size < want:
            try:
                os.posix_fallocate(fd, os.fstat(fd).st_size, min(step, want - os.fstat(fd).st_size))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                step //= 2
    finally:
        os.close(fd)
    if metadata:
        count = 0
        while True:
            try:
                os.setxattr(path, f"user.fill{count}", b"m" * 3000)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.E2BIG):
                    raise
                break
            count += 1
    os.sync()


def free_bytes(root: Path) -> int:
    os.sync()
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


def shut_down(point: Path) -> None:
    """Stop the filesystem mounted at ``point`` now, as after a fatal I/O error."""
    fd = os.open(point, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, GOINGDOWN, struct.pack("I", GOINGDOWN_NOLOGFLUSH))
    finally:
        os.close(fd)


def fragmented(path: Path, blocks: int, seed: int = 0) -> bytes:
    """A file of ``blocks`` 4 KiB data blocks each followed by a hole: one
    extent per block, so a clone of it needs metadata for every block."""
    with open(path, "wb") as f:
        for i in range(blocks):
            f.seek(i * 8192)
            f.write(bytes([(i + seed) % 251 + 1]) * 4096)
        f.truncate(blocks * 8192)
    return path.read_bytes()


# -- what a failed copy may leave behind ------------------------------------


def leftovers(root: Path | str | bytes) -> list[str]:
    """Names under ``root`` that only cowpath's staging makes.

    A named staging file is ``.NAME.<16 hex>.cowpath``; a staged tree is
    built in ``.cowpath-<16 hex>``. Unnamed (O_TMPFILE) files never appear.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            if _STAGING_NAME.match(name):
                found.append(os.fsdecode(os.path.join(dirpath, name)))
    return found


_STAGING_NAME = re.compile(rb"\A(\.cowpath-[0-9a-f]{16}|\..*\.[0-9a-f]{16}\.cowpath)\Z", re.DOTALL)


def fingerprint(path: Path) -> tuple[str, int, int, int]:
    """Content hash, size, mode and mtime: what "the source is untouched" compares."""
    st = os.stat(path)
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mode, st.st_mtime_ns


def caller_names(exc: OSError, src: Any, dst: Any) -> None:
    """The error names the caller's files, never a private staging name or a descriptor."""
    given = {os.fsdecode(os.fspath(src)), os.fsdecode(os.fspath(dst))}
    named = [exc.filename, exc.filename2]
    assert exc.filename is not None, exc
    for name in named:
        if name is not None:
            assert os.fsdecode(name) in given, (exc, given)


def intact(dst: Path, content: dict[str, bytes]) -> int:
    """Every file under ``dst`` is whole, one of ``content`` (keyed by
    relative path); returns how many there are."""
    count = 0
    for path in walk_files(dst):
        relative = str(path.relative_to(dst))
        assert relative in content, f"unexpected file {path}"
        assert path.read_bytes() == content[relative], f"partial file under a destination name: {path}"
        count += 1
    return count


def both_names(exc: OSError, src: Any, dst: Any) -> None:
    """An error of the data step names the source and then the destination."""
    assert (exc.filename, exc.filename2) == (os.fspath(src), os.fspath(dst)), exc


# -- running code elsewhere -----------------------------------------------------


def in_child(function: Callable[..., Any], *args: Any, user: int | None = None, timeout: float = 60) -> Any:
    """Run ``function(*args)`` in a forked child and return its result or raise its exception.

    With ``user``, the child drops to that uid and gid first (root reads and
    writes everything: permissions only show as another user). Audit hooks
    and other process-wide changes made in the child stay there. A child
    still running after ``timeout`` seconds is killed and the call fails.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        status = 0
        try:
            if user is not None:
                os.setgroups([])
                os.setgid(user)
                os.setuid(user)
            try:
                outcome: tuple[str, Any] = ("returned", function(*args))
            except BaseException as exc:
                outcome = ("raised", exc)
            try:
                data = pickle.dumps(outcome)
            except Exception:
                data = pickle.dumps(("raised", RuntimeError(traceback.format_exc())))
            with os.fdopen(write, "wb") as f:
                f.write(data)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write)
    import select

    with os.fdopen(read, "rb") as f:
        ready, _, _ = select.select([f], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"{function.__name__} did not finish within {timeout} s")
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "raised":
        raise value
    return value


def walk_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path
