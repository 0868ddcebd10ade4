"""macOS backend: clonefile(2) for new files, fcopyfile(3) to copy.

``fclonefileat`` creates its destination: it cannot write into an open or
existing file. The backend therefore implements the engine's ``clone_new``
hook: the engine asks for a clone under a private name beside a new
destination (or, in a tree copy, under its own name inside the tree's
private staging directory); the backend strips it of what clonefile carries
beyond the data (flags, extended attributes; sources with an ACL or system
flags are not cloned), and the engine gives it exactly the metadata the
shutil function would give, and only then names it. An existing destination is written in place, as
shutil does, which on APFS means a copy; ``atomic=True`` replaces it with a
clone instead.

clonefile(2) can also clone a whole directory in one call. copytree does
not use that: the result would have to be proved identical to a file by
file copy, and it cannot be. The directory clone copies symlinks as links
where copytree (symlinks=False) copies their targets; it cannot call
``ignore`` or a ``copy_function``; it carries every entry's extended
attributes, flags and (before macOS 12.6) ACLs, which would have to be
removed entry by entry; it refuses an existing destination
(dirs_exist_ok); it succeeds or fails whole where copytree reports each
file in shutil.Error and treats special files as errors; and checking a
tree first costs as many calls as cloning it file by file, while the tree
can change between the check and the clone. Apple's manual page, too,
advises against cloning large hierarchies with clonefile.

The libSystem calls, and the Darwin constants and error tables this
backend works with, are in ``_libsystem``. Both modules import cleanly
everywhere; nothing here touches the system, or loads ctypes, until a copy
is asked for.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Final

from ._backend import Backend, Source, Transfer
from ._common import Metadata, StrOrBytesPath, copy_by_reading, remove_quietly
from ._errors import CannotClone
from ._libsystem import (
    _ENOATTR,
    _NO_FLAGS_ERRNOS,
    AT_FDCWD,
    CLONE_FALLBACK_ERRNOS,
    CLONE_NOFOLLOW,
    CLONE_NOOWNERCOPY,
    CLONE_PATH_ERRNOS,
    FCOPYFILE_GIVEUP_ERRNOS,
    LIBSYSTEM,
    SF_APPEND,
    SF_IMMUTABLE,
    SF_NOUNLINK,
    SF_RESTRICTED,
    SF_SETTABLE,
    UF_APPEND,
    UF_COMPRESSED,
    UF_DATAVAULT,
    UF_IMMUTABLE,
    XATTR_KEPT_ERRNOS,
    LibSystem,
)

__all__ = ["MacBackend"]

# The kernel gives a clone the source's flags except these two (xnu,
# clonefile_internal), which a new file takes from its directory instead.
_NOT_CLONED_FLAGS: Final = UF_DATAVAULT | SF_RESTRICTED
# Flags that forbid changing the file's attributes, or linking and renaming
# it: they are cleared before anything else is done to a clone, and a copy2
# that must end with them gets them by path once the file has its name, as
# shutil.copystat sets them (last).
_LOCKING_FLAGS: Final = UF_IMMUTABLE | UF_APPEND | SF_IMMUTABLE | SF_APPEND | SF_NOUNLINK
# Flags a clone carries that this backend will not clone with: only the
# superuser may clear them, and an SF_IMMUTABLE or SF_NOUNLINK clone could
# not even be removed again. copyfile and copy must not carry them; copy2
# sets them as shutil does, by path, after a copy (and fails as it does).
_SYSTEM_FLAGS: Final = SF_SETTABLE & ~SF_RESTRICTED

_OPEN_CLONE: Final = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
)
_CLONE_FLAGS: Final = CLONE_NOFOLLOW | CLONE_NOOWNERCOPY


class MacBackend(Backend):
    """clonefile(2) for new destinations (and atomic replacement); fcopyfile(3) otherwise."""

    name = "macos"
    clones_new_files = True
    has_file_flags = True

    def __init__(self, lib: LibSystem | None = None) -> None:
        self.lib = LIBSYSTEM if lib is None else lib
        self._clone_missing = False

    # -- the engine's hooks ------------------------------------------------------

    def clone(self, transfer: Transfer) -> None:
        # Reached only for a file that already exists (an existing
        # destination written in place, or a staged copy after a refused
        # clone): clonefile(2) creates its destination, and refuses one
        # that exists with EEXIST.
        if self._clone_missing:
            raise CannotClone(errno.ENOSYS, "clonefile(2) is unavailable in this process")
        raise CannotClone(
            errno.EEXIST,
            "clonefile(2) cannot write into an existing file; atomic=True replaces it with a clone",
        )

    def copy(self, transfer: Transfer, may_clone: bool) -> int:
        # As shutil.copyfile on macOS: fcopyfile(COPYFILE_DATA), which never
        # clones (so "never" may use it too); read/write if it gives up.
        try:
            self.lib.fcopyfile(transfer.src_fd, transfer.dst_fd)
        except OSError as exc:
            if exc.errno not in FCOPYFILE_GIVEUP_ERRNOS:
                raise
            return copy_by_reading(transfer.src_fd, transfer.dst_fd)
        return os.fstat(transfer.dst_fd).st_size

    def file_flags(self, fd: int) -> int:
        return self.lib.file_flags(fd)

    def set_flags(self, fd: int, flags: int) -> bool:
        # UF_COMPRESSED is kept as the file has it: it says how the data is
        # stored (as the shared blocks of a clone do), and clearing it would
        # expose a compressed file's empty data fork.
        current = self.lib.file_flags(fd)
        wanted = (flags & ~UF_COMPRESSED) | (current & UF_COMPRESSED)
        if wanted & _LOCKING_FLAGS:
            # They would forbid naming the file: shutil.copystat sets times,
            # mode and flags by path once it has its name.
            return False
        if wanted != current:
            try:
                self.lib.fchflags(fd, wanted)
            except OSError as exc:
                if exc.errno not in _NO_FLAGS_ERRNOS:  # ignored as shutil.copystat ignores them
                    raise
        return True

    def clone_new(self, source: Source, path: StrOrBytesPath, mode: int) -> int:
        if self._clone_missing:
            raise CannotClone(errno.ENOSYS, "clonefile(2) is unavailable in this process")
        lib = self.lib
        src_fd, src_st = source.fd, source.st
        if not stat.S_ISREG(src_st.st_mode):
            # Only files are cloned here: a directory would clone whole,
            # and a block device does not clone (EINVAL).
            raise CannotClone(errno.EINVAL, "not a regular file")
        # copy2 would set the source's flags as shutil.copystat does; the two
        # a clone does not take are system flags too (only the superuser, or
        # nobody, may set them): a copy makes copy2 fail or succeed exactly
        # as shutil's does.
        refused = _SYSTEM_FLAGS | (_NOT_CLONED_FLAGS if source.job.metadata is Metadata.STAT else 0)
        try:
            if lib.file_flags(src_fd) & refused:
                raise CannotClone(errno.EPERM, "the source has system flags, which a clone would carry")
            if lib.has_acl(src_fd):
                # Where the source has no ACL, a clone has what a new file
                # gets, the directory's inherited entries; one with an ACL
                # gives a clone that may carry it too (before macOS 12.6,
                # or ever with CLONE_ACL), which no shutil function copies.
                raise CannotClone(
                    errno.ENOTSUP, "the source has an access control list, which a clone may carry"
                )
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                self._clone_missing = True
            raise CannotClone(exc.errno or errno.EIO, str(exc)) from None
        self._clone_to(src_fd, path)
        try:
            fd, clone_st = _open_clone(path, src_st)
        except BaseException:
            remove_quietly(path)
            raise
        try:
            self._make_plain(fd, clone_st, mode, source.job.metadata)
        except BaseException:
            os.close(fd)
            remove_quietly(path)
            raise
        return fd

    # -- cloning a new file ---------------------------------------------------

    def _clone_to(self, src_fd: int, path: StrOrBytesPath) -> None:
        """fclonefileat to the new name ``path``."""
        # CLONE_NOFOLLOW: the source is a descriptor, so this flag governs
        # the destination's lookup only (xnu uses one follow flag for both):
        # a symlink planted at the new name is not followed, but answers
        # EEXIST like any existing name. CLONE_NOOWNERCOPY: the clone
        # belongs to the caller even when root runs this, as a file shutil
        # creates would; without it root's clone keeps the source's owner.
        try:
            self.lib.fclonefileat(src_fd, AT_FDCWD, os.fsencode(path), _CLONE_FLAGS)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path) from None
            if exc.errno == errno.ENOSYS:
                self._clone_missing = True
            if exc.errno in CLONE_FALLBACK_ERRNOS:
                raise CannotClone(exc.errno) from None
            if exc.errno in CLONE_PATH_ERRNOS:
                raise CannotClone(exc.errno, path_error=True) from None
            raise

    def _make_plain(self, fd: int, clone_st: os.stat_result, final_mode: int, metadata: Metadata) -> None:
        """Make the clone what a new file with the data is; the engine then gives it shutil's metadata.

        A clone carries the source's mode (without setuid and setgid),
        flags and extended attributes, and possibly its times. shutil's
        copyfile and copy create a new file (no flags, no attributes, the
        current time), and copy2 then copies times, mode and flags: shutil
        does not copy extended attributes on macOS (CPython has no
        os.listxattr there). The mode is never wider than both the source's
        and the final one, except for the owner's write bit if removing an
        attribute needs it.
        """
        lib = self.lib
        # 1. Flags that would refuse every change below go first.
        flags = lib.file_flags(fd)
        if flags & _LOCKING_FLAGS:
            flags = self._set_flags(fd, flags & ~_LOCKING_FLAGS)
        # 2. From here on, no one the final mode excludes can open the file.
        mode = stat.S_IMODE(clone_st.st_mode)
        if mode & ~final_mode:
            mode &= final_mode
            os.chmod(fd, mode)
        # 3. Extended attributes: none (shutil copies none on macOS).
        for name in lib.flistxattr(fd):
            mode = self._remove_xattr(fd, name, mode)
        if mode & ~final_mode:
            os.chmod(fd, mode & final_mode)
        # 4. Times of a file made now (copy2's are the engine's).
        if metadata is not Metadata.STAT:
            os.utime(fd)
        # 5. No flags but how the data is stored (see set_flags).
        if flags & ~UF_COMPRESSED:
            self._set_flags(fd, flags & UF_COMPRESSED)

    def _set_flags(self, fd: int, flags: int) -> int:
        try:
            self.lib.fchflags(fd, flags)
        except OSError as exc:
            if exc.errno in _NO_FLAGS_ERRNOS:
                return flags
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise CannotClone(exc.errno, "the clone's flags cannot be set") from None
            raise
        return flags

    def _remove_xattr(self, fd: int, name: bytes, mode: int) -> int:
        """Remove one attribute; returns the file's mode, which may have gained the owner's write bit."""
        for attempt in range(2):
            try:
                self.lib.fremovexattr(fd, name)
            except OSError as exc:
                if exc.errno == _ENOATTR:
                    return mode
                if exc.errno == errno.EACCES and attempt == 0 and not mode & stat.S_IWUSR:
                    # Changing attributes needs write access; the owner
                    # gets it (nobody else does) until the final chmod.
                    mode |= stat.S_IWUSR
                    os.chmod(fd, mode)
                    continue
                if exc.errno in XATTR_KEPT_ERRNOS:
                    shown = name.decode(errors="backslashreplace")
                    raise CannotClone(
                        exc.errno, f"the clone carries the attribute {shown}, which stays"
                    ) from None
                raise
            return mode
        return mode  # pragma: no cover - the loop always returns or raises


def _open_clone(path: StrOrBytesPath, src_st: os.stat_result) -> tuple[int, os.stat_result]:
    """Open a new clone for the metadata calls, without following a swapped-in link."""
    try:
        fd = os.open(path, _OPEN_CLONE)
    except PermissionError:
        # The clone has the source's mode, and the source was readable
        # through its group or other bits only (or an ACL): give the owner,
        # the caller, read access to what it may read already.
        readable = (stat.S_IMODE(src_st.st_mode) & 0o777) | stat.S_IRUSR
        if os.chmod in os.supports_follow_symlinks:
            os.chmod(path, readable, follow_symlinks=False)
        else:
            os.chmod(path, readable)
        fd = os.open(path, _OPEN_CLONE)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileExistsError(errno.EEXIST, "the new clone was replaced by another file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st
