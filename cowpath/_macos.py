"""macOS backend: clonefile(2) for new files, fcopyfile(3) to copy.

``fclonefileat`` creates its destination: it cannot write into an open or
existing file. A new destination is therefore cloned under a private name
beside it (or, in a tree copy, under its own name inside the tree's private
staging directory), given exactly the metadata the shutil function would
give, and only then named. An existing destination is written in place, as
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

import contextlib
import errno
import os
import stat
from collections.abc import Iterable
from typing import Final

from ._api import (
    META_NONE,
    META_STAT,
    FdBackend,
    ReflinkMode,
    StrOrBytesPath,
    _replace_appeared,
    copy_by_reading,
)
from ._errors import CannotClone, with_filenames
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
from ._staging import Staging, _private_name, umask

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


class MacBackend(FdBackend):
    """clonefile(2) for new destinations (and atomic replacement); fcopyfile(3) otherwise."""

    name = "macos"

    def __init__(self, lib: LibSystem | None = None) -> None:
        self.lib = LIBSYSTEM if lib is None else lib
        self._clone_missing = False

    # -- what the engine asks of every backend ------------------------------

    def clone_fd(
        self, src_fd: int, dst_fd: int, src_st: os.stat_result, dst_size: int, dst: StrOrBytesPath
    ) -> None:
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

    def copy_fd(self, src_fd: int, dst_fd: int, src_st: os.stat_result, may_clone: bool) -> int:
        # As shutil.copyfile on macOS: fcopyfile(COPYFILE_DATA), which never
        # clones (so "never" may use it too); read/write if it gives up.
        try:
            self.lib.fcopyfile(src_fd, dst_fd)
        except OSError as exc:
            if exc.errno not in FCOPYFILE_GIVEUP_ERRNOS:
                raise
            return copy_by_reading(src_fd, dst_fd)
        return os.fstat(dst_fd).st_size

    def _write_staged(
        self,
        src_fd: int,
        src_st: os.stat_result,
        target: StrOrBytesPath,
        mode: ReflinkMode,
        src: StrOrBytesPath,
        dst: StrOrBytesPath,
        metadata: int,
        existing: os.stat_result | None,
        restat: bool,
        direct: bool = False,
    ) -> tuple[bool, int, bool] | None:
        if mode != "never" and not self._clone_missing:
            try:
                return self._clone_new(src_fd, src_st, target, src, dst, metadata, existing, restat, direct)
            except CannotClone as signal:
                if mode == "always" and signal.errno not in CLONE_PATH_ERRNOS:
                    raise signal.to_error(src, dst) from None
        # The engine's staged copy; it meets a path error at its own open.
        return super()._write_staged(
            src_fd, src_st, target, mode, src, dst, metadata, existing, restat, direct
        )

    # -- cloning a new file ---------------------------------------------------

    def _clone_new(
        self,
        src_fd: int,
        src_st: os.stat_result,
        target: StrOrBytesPath,
        src: StrOrBytesPath,
        dst: StrOrBytesPath,
        metadata: int,
        existing: os.stat_result | None,
        restat: bool,
        direct: bool,
    ) -> tuple[bool, int, bool] | None:
        """Clone ``src_fd``, shape the clone into shutil's result and name it ``target``.

        Returns ``(True, bytes, applied)``; a regular file that another copy
        put under the name meanwhile is replaced whole, as the engine does
        (several late copies writing into it in place could mix their
        data). None when something else appeared there (the engine then
        handles it as shutil does) or, with ``direct``, the name exists (the
        tree copy takes its general path). Raises
        CannotClone while nothing is left behind, OSError for real errors.
        """
        lib = self.lib
        if not stat.S_ISREG(src_st.st_mode):
            # Only files are cloned here: a directory would clone whole,
            # and a block device does not clone (EINVAL).
            raise CannotClone(errno.EINVAL, "not a regular file")
        # copy2 would set the source's flags as shutil.copystat does; the two
        # a clone does not take are system flags too (only the superuser, or
        # nobody, may set them): a copy makes copy2 fail or succeed exactly
        # as shutil's does.
        refused = _SYSTEM_FLAGS | (_NOT_CLONED_FLAGS if metadata == META_STAT else 0)
        try:
            src_flags = lib.file_flags(src_fd)
            if src_flags & refused:
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
        path = self._clone_to_new_name(src_fd, target, direct, src, dst)
        if path is None:
            return None
        try:
            fd, clone_st = _open_clone(path, src_st)
        except OSError as exc:
            _remove_quietly(path)
            # The error names the caller's files, not the private name.
            raise type(exc)(exc.errno, exc.strerror, _name(src), None, _name(dst)) from None
        except BaseException:
            _remove_quietly(path)
            raise
        staging = Staging(fd, target, path, direct=direct)
        try:
            applied = self._shape(fd, clone_st, src_fd, src_st, src_flags, metadata, existing, restat)
            if not staging.commit(replace=existing is not None) and not _replace_appeared(staging, target):
                staging.discard()
                return None
        except CannotClone:
            staging.discard()
            raise
        except OSError as exc:
            staging.discard()
            raise with_filenames(exc, src, dst) from None
        except BaseException:
            staging.discard()
            raise
        return True, clone_st.st_size, applied

    def _clone_to_new_name(
        self, src_fd: int, target: StrOrBytesPath, direct: bool, src: StrOrBytesPath, dst: StrOrBytesPath
    ) -> StrOrBytesPath | None:
        """fclonefileat to a private name beside ``target`` (or, ``direct``, to ``target``)."""
        # CLONE_NOFOLLOW: the source is a descriptor, so this flag governs
        # the destination's lookup only (xnu uses one follow flag for both):
        # a symlink planted at the new name is not followed, but answers
        # EEXIST like any existing name. CLONE_NOOWNERCOPY: the clone
        # belongs to the caller even when root runs this, as a file shutil
        # creates would; without it root's clone keeps the source's owner.
        names: Iterable[StrOrBytesPath] = [target] if direct else (_private_name(target) for _ in range(8))
        for path in names:
            try:
                self.lib.fclonefileat(src_fd, AT_FDCWD, os.fsencode(path), _CLONE_FLAGS)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    continue  # a taken private name: draw another
                if exc.errno == errno.ENOSYS:
                    self._clone_missing = True
                if exc.errno in CLONE_FALLBACK_ERRNOS or exc.errno in CLONE_PATH_ERRNOS:
                    raise CannotClone(exc.errno) from None
                raise with_filenames(exc, src, dst) from None
            return path
        if direct:
            return None  # the name exists: the tree copy's general path reports it as shutil would
        raise FileExistsError(errno.EEXIST, "no free staging name", os.fsdecode(target))

    def _shape(
        self,
        fd: int,
        clone_st: os.stat_result,
        src_fd: int,
        src_st: os.stat_result,
        src_flags: int,
        metadata: int,
        existing: os.stat_result | None,
        restat: bool,
    ) -> bool:
        """Give the clone exactly the metadata the shutil function gives; True if ``metadata`` was applied.

        A clone carries the source's mode (without setuid and setgid),
        flags and extended attributes, and possibly its times. shutil's
        copyfile and copy create a new file (no flags, no attributes, the
        current time; mode 0666 minus the umask, or the source's), and
        copy2 then copies times, mode and flags: shutil does not copy
        extended attributes on macOS (CPython has no os.listxattr there).
        The mode is never wider than both the source's and the final one,
        except for the owner's write bit if removing an attribute needs it.
        """
        lib = self.lib
        meta_st = os.fstat(src_fd) if restat and metadata == META_STAT else src_st
        if metadata != META_NONE:
            final_mode = stat.S_IMODE(meta_st.st_mode)
        elif existing is not None:
            final_mode = stat.S_IMODE(existing.st_mode)  # copyfile keeps the replaced file's mode
        else:
            final_mode = 0o666 & ~umask()  # what open(dst, "wb") gives
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
        # 4. Times: the source's for copy2, else those of a file made now.
        if metadata == META_STAT:
            os.utime(fd, ns=(meta_st.st_atime_ns, meta_st.st_mtime_ns))
        else:
            os.utime(fd)
        # 5. Ownership and mode. An atomic replacement keeps the replaced
        # file's owner where the caller may give it away (root); chown
        # clears setuid and setgid, so it comes before the mode.
        owner = (clone_st.st_uid, clone_st.st_gid)
        if existing is not None and owner != (existing.st_uid, existing.st_gid) and hasattr(os, "fchown"):
            with contextlib.suppress(OSError):
                os.fchown(fd, existing.st_uid, existing.st_gid)
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode != final_mode:
            os.chmod(fd, final_mode)
        # 6. Flags last, as in shutil.copystat: the source's for copy2,
        # none otherwise. UF_COMPRESSED is kept as the clone has it: it
        # says how the data is stored (as the shared blocks do), and
        # clearing it would expose the compressed file's empty data fork.
        wanted = 0
        if metadata == META_STAT:
            wanted = lib.file_flags(src_fd) if restat else src_flags
        wanted = (wanted & ~UF_COMPRESSED) | (flags & UF_COMPRESSED)
        if wanted & _LOCKING_FLAGS:
            # They would forbid naming the file: shutil.copystat redoes
            # times, mode and flags by path once it has its name.
            return False
        if wanted != flags:
            self._set_flags(fd, wanted)
        return metadata != META_NONE

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


def _name(path: StrOrBytesPath) -> str | bytes:
    return os.fspath(path)


def _remove_quietly(path: StrOrBytesPath) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
