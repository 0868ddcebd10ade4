"""Private staging directories, locked for their lifetime, and the removal of stale ones.

A tree is built in a hidden directory ``.cowpath-<16 hex digits>`` and moved
into place when complete (:mod:`cowpath._treestage`, :mod:`cowpath._move`).
A process killed meanwhile leaves that directory behind. Whether its maker
is still at work is decided by a lock, not by the name or the age: the
maker holds an exclusive ``flock(2)`` on the open directory from just after
``mkdir`` until the directory is gone. The kernel drops the lock with the
process's last descriptor, however the process ends; a directory whose lock
can be taken is therefore stale, and it is removed while the remover holds
that lock.

Between ``mkdir`` and ``flock`` a remover could take the lock of a brand-new
directory. The maker waits for its own lock (a remover holds it only while
it removes) and then checks that the directory still has a link; if a
remover got there first, the maker starts again under a new name.

Only directories named exactly like cowpath's, owned by the effective user,
reached without following a symlink, are ever considered. Where ``flock`` is
missing (Windows) or refused (some network filesystems answer ENOLCK),
nothing is ever found stale: a directory whose maker cannot be known to be
gone is left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
from typing import Any, Final

from ._common import token

if sys.platform == "win32":
    fcntl = None
else:
    import fcntl

__all__ = ["PREFIX", "LockedDirectory", "clean_quietly", "clean_staging", "make_locked"]

PREFIX: Final = ".cowpath-"
_NAME: Final = re.compile(r"\.cowpath-[0-9a-f]{16}\Z")
_OPEN_DIR: Final = (
    os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)


class LockedDirectory:
    """A staging directory made by this process, and the descriptor holding its lock."""

    __slots__ = ("fd", "name", "path")

    def __init__(self, name: str, path: Any, fd: int | None) -> None:
        self.name = name
        self.path = path
        # None where no lock can be held: the directory is then never found stale.
        self.fd = fd

    def release(self) -> None:
        """Drop the lock (after the directory is removed or emptied); never raises."""
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _join(parent: Any, name: str) -> Any:
    return os.path.join(parent, os.fsencode(name) if isinstance(os.fspath(parent), bytes) else name)


def make_locked(parent: Any) -> LockedDirectory:
    """Create a fresh ``.cowpath-<hex>`` directory (mode 0700) in ``parent`` and lock it.

    Raises the ``OSError`` of ``mkdir`` where it cannot be made.
    """
    while True:
        name = PREFIX + token()
        path = _join(parent, name)
        os.mkdir(path, 0o700)
        try:
            fd = _lock_own(path)
        except BaseException:
            # Interrupted (Ctrl-C) before it was locked: nothing may stay.
            with contextlib.suppress(OSError):
                os.rmdir(path)
            raise
        if fd != -1:
            return LockedDirectory(name, path, fd)


def _lock_own(path: Any) -> int | None:
    """Lock a directory just made: its descriptor, None if no lock is possible, -1 if it is gone."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, _OPEN_DIR)
    except FileNotFoundError:
        return -1  # removed as stale before it could be opened
    except OSError:
        return None
    try:
        # Blocks only while a remover that took it for stale holds it.
        fcntl.flock(fd, fcntl.LOCK_EX)
        gone = os.fstat(fd).st_nlink == 0
    except OSError:
        os.close(fd)
        return None
    if gone:
        os.close(fd)
        return -1
    return fd


def clean_staging(directory: Any) -> list[Any]:
    """Remove the staging directories that killed copies and moves left in ``directory``.

    A tree copied or moved by cowpath is built in a hidden directory
    ``.cowpath-<16 hex digits>`` inside the destination's directory and
    moved into place when complete; a process killed meanwhile leaves it
    behind. This removes each such directory in ``directory`` (not below
    it) whose maker is gone: its maker holds a lock on it for as long as it
    works, so one in use by a running copy, in this process or another, is
    left alone. Only directories owned by the current user, reached without
    following a symlink, are considered. Returns the paths removed.

    :func:`cowpath.copytree` and :func:`cowpath.move` call this for the
    directory they build a tree in. Where the OS has no ``flock`` (Windows),
    or the filesystem refuses it, nothing can be known stale and nothing is
    removed.

    The staging files of single-file copies (``.NAME.<16 hex>.cowpath``)
    are not removed. They exist only where Linux's unnamed ``O_TMPFILE``
    files cannot be used (other systems, NFS, FUSE), and there a lock for
    each file copied would cost a lock request to the server per file; with
    no lock, nothing tells a live one from a stale one. Remove them by hand
    when no copy is running.
    """
    removed: list[Any] = []
    if fcntl is None:
        return removed
    uid = os.geteuid()
    with os.scandir(directory) as listing:
        candidates = [entry for entry in listing if _NAME.match(os.fsdecode(entry.name))]
    for entry in candidates:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and _remove_if_stale(entry.path, st):
            removed.append(entry.path)
    return removed


def clean_quietly(directory: Any) -> None:
    """:func:`clean_staging`, for a copy on its way: a directory that cannot be listed is no error."""
    with contextlib.suppress(OSError, ValueError):
        clean_staging(directory)


def _remove_if_stale(path: Any, st: os.stat_result) -> bool:
    assert fcntl is not None
    try:
        fd = os.open(path, _OPEN_DIR)
    except OSError:
        return False
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            return False  # replaced since it was listed
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held by a live copy (EWOULDBLOCK), or no locks here (ENOLCK)
        # rmtree never follows a symlink inside (and on Linux walks by descriptor).
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)
    finally:
        os.close(fd)
