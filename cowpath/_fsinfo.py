"""Which filesystem a path is on, and what to tell a user about clones there."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._win32 import Kernel32

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
    """The mount holding ``path``, or None if it cannot be told.

    Linux reads /proc/self/mountinfo, macOS the output of mount(8), Windows
    asks for the volume (GetVolumePathNameW, GetVolumeInformationW).
    """
    if sys.platform.startswith("linux"):
        return _linux_mount(path)
    if sys.platform == "darwin":
        return _macos_mount(path)
    if sys.platform == "win32":
        return windows_volume(path)
    return None


def _linux_mount(path: str) -> Mount | None:
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
        # Later lines are mounted over earlier ones: the last, longest match wins.
        if _inside(real, point) and (best is None or len(point) >= len(best.point)):
            best = Mount(point, tail[0], _unescape(tail[1]))
    return best


def _inside(real: str, point: str) -> bool:
    return real == point or real.startswith(point.rstrip("/") + "/")


# One line of macOS mount(8): "DEVICE on POINT (TYPE, OPTION, ...)". The
# mount point may contain spaces, so the line is split at its last " (".
_MACOS_LINE = re.compile(r"^(?P<device>.+?) on (?P<point>.+) \((?P<type>[^,)]+)[^)]*\)$")


def _macos_mount(path: str) -> Mount | None:
    import subprocess  # macOS only: not imported elsewhere

    try:
        listed = subprocess.run(["/sbin/mount"], capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_macos_mounts(listed.stdout, os.path.realpath(path))


def parse_macos_mounts(text: str, real: str) -> Mount | None:
    """The mount of the resolved path ``real`` in the output of macOS mount(8)."""
    best: Mount | None = None
    for line in text.splitlines():
        found = _MACOS_LINE.match(line.strip())
        if found is None:
            continue
        point = found["point"]
        if _inside(real, point) and (best is None or len(point) >= len(best.point)):
            best = Mount(point, found["type"].strip(), found["device"])
    return best


def windows_volume(path: str, kernel32: Kernel32 | None = None) -> Mount | None:
    """The volume holding ``path`` on Windows: its root, file system name and root path.

    ``kernel32`` stands in for the real binding in tests; only its
    GetVolumePathNameW and GetVolumeInformationW are called.
    """
    import ctypes

    from . import _win32

    if kernel32 is None:
        try:
            kernel32 = _win32.kernel32()
        except (OSError, AttributeError):
            return None  # no kernel32: not Windows
    size = 32768  # the longest path Windows allows, in characters
    root = ctypes.create_unicode_buffer(size)
    if not kernel32.GetVolumePathNameW(os.path.abspath(path), root, size):
        return None
    fstype = ctypes.create_unicode_buffer(261)
    if not kernel32.GetVolumeInformationW(root.value, None, 0, None, None, None, fstype, len(fstype)):
        return None
    # Windows names them "NTFS", "ReFS", "FAT32": lower case, as on Linux.
    return Mount(root.value, fstype.value.lower(), root.value)


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
    "fat32": "FAT cannot share extents; files are copied.",
    "msdos": "FAT cannot share extents; files are copied.",
    "apfs": "APFS clones only between files of one APFS volume, on macOS 10.13 or later.",
    "hfs": "HFS+ cannot share extents; files are copied. Clones need APFS.",
    "refs": "ReFS clones only on Windows Server 2016 or later, or on a Dev Drive of Windows 11, "
    "with both files on one volume.",
}

# Where clones happen on each OS, for the advice on crossing filesystems.
_CLONING_HOME = {
    "darwin": "the same APFS volume",
    "win32": "the same ReFS volume (or Dev Drive)",
}


def advice(first: Mount | None, second: Mount | None, same_device: bool) -> str:
    """Why clones do not work between these mounts, and what to do about it."""
    if second is not None and not same_device:
        where = f"{first.point} ({first.fstype})" if first else "the first path"
        there = f"{second.point} ({second.fstype})"
        return (
            f"the paths are on different filesystems, {where} and {there}: a clone cannot cross "
            f"filesystems. Put both on {_CLONING_HOME.get(sys.platform, 'the same btrfs or XFS filesystem')} "
            "to get clones."
        )
    if first is None:
        return "this filesystem does not support clones here; files are copied."
    return _ADVICE.get(first.fstype, f"{first.fstype} does not support clones here; files are copied.")
