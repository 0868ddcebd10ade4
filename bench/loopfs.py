"""Loop-mounted XFS, btrfs and ext4 images, made for one run and always removed.

The images are sparse files in a private temporary directory (under
``$COWPATH_IMAGE_DIR`` when set, as for the test suite). Every mount is
undone in a ``finally`` with ``umount -l``: a lazy unmount cannot fail on a
busy mount point, so an interrupted run leaves no mount behind, and the loop
device is released by the kernel (``mount -o loop`` sets autoclear) once the
last user goes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Final

__all__ = ["FILESYSTEMS", "LoopFsError", "loop_filesystem", "scratch_dir", "used_bytes"]

# XFS clones only when formatted with reflink=1 (the default of recent
# xfsprogs, stated here so that an older mkfs does not silently turn the XFS
# rows into plain copies).
MKFS: Final[dict[str, tuple[str, ...]]] = {
    "xfs": ("mkfs.xfs", "-q", "-f", "-m", "reflink=1"),
    "btrfs": ("mkfs.btrfs", "-q", "-f"),
    "ext4": ("mkfs.ext4", "-q", "-F"),
}
FILESYSTEMS: Final = tuple(MKFS)


class LoopFsError(RuntimeError):
    """A loop filesystem could not be made (not root, mkfs missing, mount refused)."""


@contextlib.contextmanager
def scratch_dir() -> Iterator[str]:
    """A private directory for images and mount points, removed at the end."""
    root = tempfile.mkdtemp(prefix="cowpath-bench-", dir=os.environ.get("COWPATH_IMAGE_DIR"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def loop_filesystem(kind: str, scratch: str, size: int) -> Iterator[str]:
    """Make, mount and yield a fresh ``kind`` filesystem of ``size`` bytes; unmount at the end."""
    if os.geteuid() != 0:
        raise LoopFsError(f"mounting {kind} needs root")
    command = MKFS[kind]
    if shutil.which(command[0]) is None:
        raise LoopFsError(f"{command[0]} is not installed (apt-get install xfsprogs btrfs-progs)")
    image = os.path.join(scratch, f"{kind}.img")
    point = os.path.join(scratch, f"mnt-{kind}")
    os.mkdir(point)
    with open(image, "wb") as f:
        f.truncate(size)
    try:
        made = subprocess.run([*command, image], check=False, capture_output=True, text=True)
        if made.returncode:
            raise LoopFsError(f"{command[0]} failed: {made.stderr.strip()}")
        mounted = subprocess.run(
            ["mount", "-o", "loop", image, point], check=False, capture_output=True, text=True
        )
        if mounted.returncode:
            raise LoopFsError(f"cannot mount {kind}: {mounted.stderr.strip()}")
        try:
            yield point
        finally:
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(image)


def used_bytes(path: str) -> int:
    """Bytes in use on the filesystem holding ``path`` (call after ``os.sync()``)."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize
