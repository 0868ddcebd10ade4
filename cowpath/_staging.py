"""Staging files: a new destination is filled out of sight and named when whole.

A copy to a name that does not exist yet is written into an unnamed file
(Linux ``O_TMPFILE``) in the destination's directory and linked to its name
only once its data and metadata are complete. Killed at any moment, the
process leaves nothing under the destination name, and nothing at all in the
directory: the kernel frees an unnamed file with its last descriptor. No
other user can open it while it is being filled, since it has no name.

Where ``O_TMPFILE`` is unavailable (other systems, NFS, FUSE, old kernels)
the staging file gets an unpredictable name, created with ``O_EXCL`` and
``O_NOFOLLOW`` and mode 0600, and is renamed over the destination when done;
only a crash between creation and rename can leave it behind, under that
name and never under the destination's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
from typing import Final

from ._common import StrOrBytesPath, token

__all__ = ["NEW_FILE", "Staging", "create", "private_name", "stage", "umask"]

_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)
_BINARY: Final = getattr(os, "O_BINARY", 0)
#: How a file inside a staged directory is created: under its final name, never over another.
NEW_FILE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC | _BINARY
_TMPFILE: Final = getattr(os, "O_TMPFILE", 0)
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_PROC_FD: Final = sys.platform.startswith("linux")
# Where os.rename refuses to replace an existing file (Windows).
_RENAME_KEEPS: Final = sys.platform == "win32"

# O_TMPFILE failures that mean "this filesystem or kernel cannot": use a
# named staging file instead. open(2): EOPNOTSUPP from filesystems without
# support; EISDIR from kernels older than 3.11, which ignore the flag's
# O_TMPFILE bit and see O_DIRECTORY; EINVAL for other refusals.
_NO_TMPFILE: Final[frozenset[int]] = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})

_umask_lock = threading.Lock()
_umask_cache: list[int] = []


def umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    if _umask_cache:
        return _umask_cache[0]
    with _umask_lock:
        if not _umask_cache:
            value = None
            if _PROC_FD:
                # Linux 4.7+ shows it in /proc/self/status.
                with contextlib.suppress(OSError, ValueError), open("/proc/self/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Umask:"):
                            value = int(line.split()[1], 8)
                            break
            if value is None:
                # Elsewhere the only way to read it is to set it; it is put
                # back at once, and read once per process.
                value = os.umask(0o022)
                os.umask(value)
            _umask_cache.append(value)
    return _umask_cache[0]


class Staging:
    """An open staging file for ``target``; :meth:`commit` names it, :meth:`discard` drops it."""

    __slots__ = ("direct", "fd", "named", "path", "target")

    def __init__(
        self, fd: int, target: StrOrBytesPath, path: StrOrBytesPath | None, direct: bool = False
    ) -> None:
        self.fd = fd
        self.target = target
        # None for an unnamed O_TMPFILE file; else the staging file's name.
        self.path = path
        self.named = path is not None and not direct
        # The file was created under its final name, inside a directory
        # that is itself staged (see cowpath._tree): committing only closes it.
        self.direct = direct

    def commit(self, replace: bool) -> bool:  # noqa: PLR0911 - one exit for each way a file is named
        """Give the staged file the target's name and close it.

        Without ``replace`` the target must still not exist: returns False
        (and keeps the staging file) if it appeared meanwhile. With
        ``replace`` an existing target is replaced atomically.
        """
        if self.direct:
            self.path = None
            self._close()
            return True
        if self.path is None:
            if replace:
                # linkat cannot replace: give the file a private name first.
                self.path = _link_unnamed_to_private_name(self.fd, self.target)
            else:
                try:
                    # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N names an
                    # O_TMPFILE file; passing src_dir_fd makes Python call
                    # linkat with that flag (plain link() would not follow).
                    os.link(f"/proc/self/fd/{self.fd}", self.target, src_dir_fd=self.fd, follow_symlinks=True)
                except FileExistsError:
                    return False
                self._close()
                return True
        if _RENAME_KEEPS:
            return self._commit_by_rename(replace)
        if replace:
            os.replace(self.path, self.target)
        else:
            try:
                os.link(self.path, self.target)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                # No hard links here (FAT, some FUSE, Windows without NTFS
                # links): a rename, which replaces a file that appeared
                # meanwhile. The destination is still one whole version.
                os.replace(self.path, self.target)
                self.path = None
                self._close()
                return True
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self.path = None
        self._close()
        return True

    def _commit_by_rename(self, replace: bool) -> bool:
        # Windows: a file cannot be renamed or unlinked while a descriptor
        # without FILE_SHARE_DELETE is open on it (the C runtime's never
        # share deletion), so the file is closed first; and rename
        # (MoveFileExW without MOVEFILE_REPLACE_EXISTING) never replaces a
        # file, which is what link-then-unlink gives elsewhere, also where
        # there are no hard links (FAT, ReFS before Windows Server 2022) and
        # for a read-only file (which cannot be unlinked).
        assert self.path is not None
        self._close()
        try:
            if replace:
                os.replace(self.path, self.target)
            else:
                os.rename(self.path, self.target)
        except FileExistsError:
            return False
        self.path = None
        return True

    def _close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def discard(self) -> None:
        """Close and remove the staging file; never raises."""
        with contextlib.suppress(OSError):
            self._close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.path = None


def _directory(target: StrOrBytesPath) -> str | bytes:
    name = os.fspath(target)
    head = os.path.dirname(name)
    if head:
        return head
    return b"." if isinstance(name, bytes) else "."


def private_name(target: StrOrBytesPath) -> str | bytes:
    """A fresh unpredictable hidden name beside ``target`` (64 random bits), never longer than NAME_MAX."""
    name = os.fspath(target)
    head, tail = os.path.split(os.fsencode(name))
    # NAME_MAX (255) counts bytes: a name of 255 bytes in multi-byte
    # characters is far fewer than 200 characters. Cut the encoded name;
    # a character cut in two becomes surrogate escapes, which encode back
    # to the same bytes.
    private = os.path.join(head, b"." + tail[:200] + b"." + token().encode() + b".cowpath")
    return private if isinstance(name, bytes) else os.fsdecode(private)


def _link_unnamed_to_private_name(fd: int, target: StrOrBytesPath) -> str | bytes:
    for _ in range(8):
        path = private_name(target)
        try:
            os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, follow_symlinks=True)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no free staging name", os.fsdecode(target))


def create(target: StrOrBytesPath) -> Staging | None:
    """Create ``target`` itself (O_EXCL), for a file inside a staged directory.

    None if it cannot be created (it exists, ...): the caller takes the
    general path, which reports what shutil would.
    """
    try:
        fd = os.open(target, NEW_FILE, 0o666)
    except OSError:
        return None
    return Staging(fd, target, target, direct=True)


def stage(
    target: StrOrBytesPath, mode: int = 0o666, unnamed: bool = True, required: bool = False
) -> Staging | None:
    """Open a staging file in ``target``'s directory, or None if none can be made there.

    An unnamed file is created with ``mode`` (the umask and default ACLs
    apply, as for a file created under the target's name); a named one with
    0600, to be given its final mode before it is named (always, when
    ``unnamed`` is false: a faked ``os`` has no /proc to link through). None means the
    caller should write the target directly; it then also meets the exact
    error that a direct open gives (missing directory, permissions, ...).
    With ``required`` (an atomic replacement, which has no direct path) the
    error is raised instead.
    """
    directory = _directory(target)
    if unnamed and _TMPFILE and _PROC_FD:
        try:
            fd = os.open(directory, _TMPFILE | os.O_WRONLY | _CLOEXEC, mode)
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                if required:
                    raise
                return None
        else:
            return Staging(fd, target, None)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
    for _ in range(8):
        path = private_name(target)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        except OSError:
            if required:
                raise
            return None
        return Staging(fd, target, path)
    if required:
        raise FileExistsError(errno.EEXIST, "no free staging name", os.fsdecode(target))
    return None
