"""What a copy keeps or gives besides the data: modes, times, attributes, flags and owners.

The engine applies a copy's metadata (shutil.copymode's or copystat's work)
itself, through the descriptor before a new file is named where the OS
allows, else by path once it is named; no caller finishes the job. This
module also holds the rules that keep a copy's data from anyone the source's
mode excludes, and that decide who owns an atomic replacement.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
from typing import TYPE_CHECKING, Final

from ._common import Metadata, StrOrBytesPath

if TYPE_CHECKING:
    from ._backend import Backend

__all__ = ["apply_by_fd", "apply_by_path", "keep_identity", "narrow_mode"]

# Metadata can be applied through descriptors where utime and chmod accept
# them. Extended attributes are copied where the os module has the xattr
# calls (Linux), exactly where shutil.copystat copies them.
_FD_CALLS: Final = os.utime in os.supports_fd and os.chmod in os.supports_fd
# The xattr errors that shutil.copystat ignores on the source side.
_NO_XATTRS: Final = frozenset({errno.ENOTSUP, errno.ENODATA, errno.EINVAL})


def apply_by_fd(
    backend: Backend, src_fd: int, dst_fd: int, src_st: os.stat_result, metadata: Metadata
) -> bool:
    """Apply copymode/copystat through descriptors; False when it must be redone by path.

    Same steps in the same order as shutil.copystat: times, then extended
    attributes (before a chmod could make the file read-only), then mode,
    then flags. The times are those of the source's stat taken before the
    copy, as shutil.copytree has them (it passes cached DirEntry stats).
    Any error leaves the rest to shutil's own function, which then raises
    precisely what shutil raises.
    """
    if metadata is Metadata.NONE:
        return True
    if not (_FD_CALLS and backend.fd_metadata):
        return False
    try:
        if metadata is Metadata.STAT:
            os.utime(dst_fd, ns=(src_st.st_atime_ns, src_st.st_mtime_ns))
            if backend.copies_xattrs and not _copy_xattrs(src_fd, dst_fd):
                return False
        os.chmod(dst_fd, stat.S_IMODE(src_st.st_mode))
        if metadata is Metadata.STAT and backend.has_file_flags:
            return backend.set_flags(dst_fd, backend.file_flags(src_fd))
    except OSError:
        return False
    return True


def _copy_xattrs(src_fd: int, dst_fd: int) -> bool:
    # The platform test also tells the type checker that the xattr calls
    # exist (CPython has them on Linux only).
    if not (sys.platform.startswith("linux") and hasattr(os, "listxattr")):
        return True
    try:
        names = os.listxattr(src_fd)
    except OSError as exc:
        if exc.errno not in _NO_XATTRS:
            return False
        names = []
    for name in names:
        os.setxattr(dst_fd, name, os.getxattr(src_fd, name))
    return True


def apply_by_path(
    src: StrOrBytesPath, dst: StrOrBytesPath, metadata: Metadata, follow_symlinks: bool = True
) -> None:
    """shutil.copymode or shutil.copystat, by path, raising exactly what they raise."""
    if metadata is Metadata.STAT:
        shutil.copystat(src, dst, follow_symlinks=follow_symlinks)
    elif metadata is Metadata.MODE:
        shutil.copymode(src, dst, follow_symlinks=follow_symlinks)


def narrow_mode(dst_fd: int, src_st: os.stat_result) -> int | None:
    """Before copying into an existing file whose mode will become the source's,
    take away what the source's mode does not allow, so that no one who may
    not read the source can read its data in the destination meanwhile.
    The owner keeps its write bit: copystat sets extended attributes before
    its chmod, and without write access a non-root owner may not (EACCES).
    Returns the mode to restore if the copy is refused, or None.
    """
    if os.chmod not in os.supports_fd:
        return None
    current = stat.S_IMODE(os.fstat(dst_fd).st_mode)
    narrowed = current & (stat.S_IMODE(src_st.st_mode) | stat.S_IWUSR)
    if narrowed == current:
        return None
    try:
        os.chmod(dst_fd, narrowed)
    except PermissionError:
        # Another user's file that the caller may write but not chmod
        # (EPERM): shutil copies the data and then fails in copymode or
        # copystat, and so does cowpath. The mode stays the owner's.
        return None
    return current


def keep_identity(fd: int, existing: os.stat_result, metadata: Metadata, target: StrOrBytesPath) -> None:
    """An atomic replacement keeps the replaced file's owner (where the
    caller may give files away), and its mode where shutil keeps it
    (copyfile). Ownership goes first: chown clears setuid and setgid."""
    if hasattr(os, "fchown"):
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (existing.st_uid, existing.st_gid) and not _planted(existing, target):
            with contextlib.suppress(OSError):
                os.fchown(fd, existing.st_uid, existing.st_gid)
    if metadata is Metadata.NONE and os.chmod in os.supports_fd:
        os.chmod(fd, stat.S_IMODE(existing.st_mode))


def _planted(existing: os.stat_result, target: StrOrBytesPath) -> bool:
    """Whether ``existing`` may have been put there by another user to receive the copy.

    The kernel's rule for fs.protected_regular (Documentation/admin-guide/
    sysctl/fs.rst): a file in a sticky directory that others may write
    (/tmp), owned neither by the caller nor by the directory's owner. Such
    a file is replaced, but its owner does not get the copy.
    """
    if sys.platform == "win32" or existing.st_uid == os.geteuid():
        return False
    try:
        directory = os.stat(os.path.dirname(os.path.realpath(target)) or ".")
    except (OSError, ValueError):
        return True
    shared = directory.st_mode & (stat.S_IWOTH | stat.S_IWGRP)
    return bool(directory.st_mode & stat.S_ISVTX and shared and existing.st_uid != directory.st_uid)
