"""Which filesystem a path is on, and what to tell a user about clones there."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["Mount", "advice", "mount_of"]


@dataclass(frozen=True)
class Mount:
    """The mount a path lives on: its mount point, filesystem type and device."""

    point: str
    fstype: str
    device: str


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \\ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_of(path: str) -> Mount | None:
    """The mount holding ``path`` (Linux: from /proc/self/mountinfo), or None if unknown."""
    if not sys.platform.startswith("linux"):
        return None
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best: Mount | None = None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        tail = right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        # Later lines are mounted over earlier ones: the last, longest match wins.
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(point, tail[0], _unescape(tail[1]))
    return best


# What each filesystem type needs for clones, in words a user can act on.
_ADVICE = {
    "ext4": "ext4 cannot share extents; files are copied. Clones need btrfs, XFS (reflink=1) or bcachefs.",
    "ext3": "ext3 cannot share extents; files are copied.",
    "ext2": "ext2 cannot share extents; files are copied.",
    "tmpfs": "tmpfs keeps files in memory and cannot share extents; files are copied.",
    "xfs": "this XFS was formatted without reflink support (xfs_info shows reflink=0); "
    "clones need a filesystem made with mkfs.xfs -m reflink=1 (the default since xfsprogs 5.1).",
    "overlay": "overlayfs clones only when its upper layer can (btrfs or XFS) and both files are "
    "in the upper layer; a file still in a lower layer is copied up first.",
    "zfs": "ZFS clones only with OpenZFS 2.2+ block cloning enabled "
    "(zfs_bclone_enabled=1, pool feature block_cloning).",
    "nfs": "NFS clones only with NFS 4.2 on a server whose exported filesystem can clone.",
    "nfs4": "NFS clones only with NFS 4.2 on a server whose exported filesystem can clone.",
    "cifs": "SMB clones only when the server supports FSCTL_DUPLICATE_EXTENTS (ReFS, Samba on btrfs).",
    "fuseblk": "this FUSE filesystem does not implement clones.",
    "vfat": "FAT cannot share extents; files are copied.",
    "exfat": "exFAT cannot share extents; files are copied.",
    "ntfs": "NTFS cannot share extents; files are copied.",
    "ntfs3": "NTFS cannot share extents; files are copied.",
}


def advice(first: Mount | None, second: Mount | None, same_device: bool) -> str:
    """Why clones do not work between these mounts, and what to do about it."""
    if second is not None and not same_device:
        where = f"{first.point} ({first.fstype})" if first else "the first path"
        there = f"{second.point} ({second.fstype})"
        return (
            f"the paths are on different filesystems, {where} and {there}: a clone cannot cross "
            "filesystems. Put both on the same btrfs or XFS filesystem to get clones."
        )
    if first is None:
        return "this filesystem does not support clones here; files are copied."
    return _ADVICE.get(first.fstype, f"{first.fstype} does not support clones here; files are copied.")
