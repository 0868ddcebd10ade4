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

Imports cleanly everywhere; nothing here touches the system, or loads
ctypes, until a copy is asked for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Iterable
from typing import Any, Final

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
from ._staging import Staging, _private_name, umask

__all__ = [
    "ACL_TYPE_EXTENDED",
    "AT_FDCWD",
    "CLONE_ACL",
    "CLONE_FALLBACK_ERRNOS",
    "CLONE_NOFOLLOW",
    "CLONE_NOOWNERCOPY",
    "CLONE_PATH_ERRNOS",
    "COPYFILE_DATA",
    "FCOPYFILE_GIVEUP_ERRNOS",
    "LIBSYSTEM",
    "LIBSYSTEM_PATH",
    "XATTR_KEPT_ERRNOS",
    "LibSystem",
    "MacBackend",
]

LIBSYSTEM_PATH: Final = "/usr/lib/libSystem.B.dylib"

# <sys/clonefile.h>. CLONE_ACL (macOS 12.6+) is never passed: shutil does
# not copy ACLs, and older systems answer EINVAL to it.
CLONE_NOFOLLOW: Final = 0x0001
CLONE_NOOWNERCOPY: Final = 0x0002  # macOS 10.13+; EINVAL on 10.12
CLONE_ACL: Final = 0x0004
# <sys/fcntl.h> on Darwin (Linux's is -100).
AT_FDCWD: Final = -2
# <sys/acl.h>: the only ACL type Darwin has, and acl_get_entry's "first".
ACL_TYPE_EXTENDED: Final = 0x00000100
ACL_FIRST_ENTRY: Final = 0
# <copyfile.h>: COPYFILE_DATA, the flag CPython's shutil passes as posix._COPYFILE_DATA.
COPYFILE_DATA: Final = 1 << 3

# <sys/stat.h> file flags (st_flags, chflags(2)).
UF_NODUMP: Final = 0x00000001
UF_IMMUTABLE: Final = 0x00000002
UF_APPEND: Final = 0x00000004
UF_COMPRESSED: Final = 0x00000020
UF_TRACKED: Final = 0x00000040
UF_DATAVAULT: Final = 0x00000080
UF_HIDDEN: Final = 0x00008000
SF_SETTABLE: Final = 0x3FFF0000  # the flags only the superuser may change
SF_ARCHIVED: Final = 0x00010000
SF_IMMUTABLE: Final = 0x00020000
SF_APPEND: Final = 0x00040000
SF_RESTRICTED: Final = 0x00080000
SF_NOUNLINK: Final = 0x00100000

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

# Errors from fclonefileat that mean "no clone here; the data can still be
# copied", from clonefile(2) and xnu's clonefile_internal. Each is raised
# before anything is created: the call is atomic (all or nothing).
CLONE_FALLBACK_ERRNOS: Final[frozenset[int]] = frozenset(
    {
        errno.ENOTSUP,  # the volume cannot clone: HFS+, FAT, exFAT, SMB and NFS shares
        # A distinct value on macOS (102, ENOTSUP is 45): what some
        # third-party and network filesystems answer instead.
        errno.EOPNOTSUPP,
        errno.EXDEV,  # source and destination are on different volumes
        # Flags the kernel does not know (CLONE_NOOWNERCOPY on 10.12), or an
        # object it will not clone (only files, links and directories clone).
        errno.EINVAL,
        errno.ENOSYS,  # no such call (before 10.12): also disables cloning for the process
        # A "dataless" file (a cloud placeholder) that this process's I/O
        # policy does not let the kernel materialize: reading it fails the
        # same way, and the copy reports that as shutil would.
        errno.EDEADLK,
        # A sandbox or other MAC policy refusing the clone, or the root of a
        # filesystem as source: the copy does what shutil would, or fails
        # as it would.
        errno.EPERM,
        # fclonefileat checks the right to read the source's attributes,
        # extended attributes and ACL, which a data copy does not need (an
        # ACL can deny them alone); or the directory is not writable, which
        # the copy's own open then reports exactly as shutil does.
        errno.EACCES,
    }
)
# Errors about the destination's name itself: its directory is missing or
# not a directory, the volume is read-only, the name too long, a symlink
# loop on the way. The copy path meets the same error at its own open and
# raises it exactly as shutil does (FileNotFoundError naming the
# destination, ...), also with reflink="always".
CLONE_PATH_ERRNOS: Final[frozenset[int]] = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EROFS, errno.EISDIR}
)
# EEXIST is neither: a staging name that is taken is replaced by another.
# Anything else is a real failure and is raised with both file names, in
# every mode: ENOSPC and EDQUOT (no room for the new file's metadata), EIO,
# ENOMEM, ...

# fremovexattr errors that mean "this attribute stays on the clone": macOS
# protects some attributes from removal (SIP's com.apple.rootless,
# com.apple.macl, and on recent systems others it attaches itself). Such a
# clone cannot be made into what shutil gives; it is removed and the file
# copied instead.
XATTR_KEPT_ERRNOS: Final[frozenset[int]] = frozenset({errno.EPERM, errno.EACCES})
# The attribute went away meanwhile: nothing left to remove. (ENOATTR on
# macOS; Linux, where the tests fake the calls, says ENODATA.)
_ENOATTR: Final = getattr(errno, "ENOATTR", errno.ENODATA)

# chflags errors that shutil.copystat ignores ("the filesystem has no
# flags"); a clone's flags are treated alike.
_NO_FLAGS_ERRNOS: Final[frozenset[int]] = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})

# fcopyfile errors after which shutil gives up its fast path and copies with
# read/write (_fastcopy_fcopyfile): the call failed before writing.
# ENOSYS stands for "CPython has no posix._fcopyfile here".
FCOPYFILE_GIVEUP_ERRNOS: Final[frozenset[int]] = frozenset({errno.EINVAL, errno.ENOTSUP, errno.ENOSYS})

_OPEN_CLONE: Final = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
)
_CLONE_FLAGS: Final = CLONE_NOFOLLOW | CLONE_NOOWNERCOPY


def _signatures(ctypes: Any) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """restype and argtypes of each libSystem function used, as the headers declare them."""
    c_int, c_uint32, c_char_p, c_void_p = ctypes.c_int, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_void_p
    return {
        # int fclonefileat(int srcfd, int dst_dirfd, const char *dst, uint32_t flags)
        "fclonefileat": (c_int, (c_int, c_int, c_char_p, c_uint32)),
        # ssize_t flistxattr(int fd, char *namebuf, size_t size, int options)
        "flistxattr": (ctypes.c_ssize_t, (c_int, c_char_p, ctypes.c_size_t, c_int)),
        # int fremovexattr(int fd, const char *name, int options)
        "fremovexattr": (c_int, (c_int, c_char_p, c_int)),
        # int fchflags(int fd, __uint32_t flags)
        "fchflags": (c_int, (c_int, c_uint32)),
        # acl_t acl_get_fd_np(int fd, acl_type_t type)
        "acl_get_fd_np": (c_void_p, (c_int, c_int)),
        # int acl_get_entry(acl_t acl, int entry_id, acl_entry_t *entry_p)
        "acl_get_entry": (c_int, (c_void_p, c_int, ctypes.POINTER(c_void_p))),
        # int acl_free(void *obj_p)
        "acl_free": (c_int, (c_void_p,)),
    }


class LibSystem:
    """The macOS-only calls the backend makes, bound through ctypes on first use.

    Constructing one loads nothing; the library is opened, and each
    function looked up and typed, the first time it is called. A function
    the library lacks raises ``OSError(ENOSYS)``. Errors are ``OSError``
    with the call's errno and no file name. This object is the whole seam
    between the backend and the OS: the tests replace it with a fake that
    does the same things to real files.
    """

    def __init__(self, path: str | None = LIBSYSTEM_PATH) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._library: Any = None
        self._bound: dict[str, Any] = {}

    def _function(self, name: str) -> Any:
        function = self._bound.get(name)
        if function is not None:
            return function
        import ctypes

        with self._lock:
            if self._library is None:
                try:
                    self._library = ctypes.CDLL(self._path, use_errno=True)
                except OSError as exc:
                    raise OSError(errno.ENOSYS, f"cannot load {self._path}: {exc}") from None
            try:
                function = getattr(self._library, name)
            except AttributeError:
                raise OSError(errno.ENOSYS, f"{name}() is not available") from None
            function.restype, function.argtypes = _signatures(ctypes)[name]
            self._bound[name] = function
        return function

    @staticmethod
    def _error() -> OSError:
        import ctypes

        code = ctypes.get_errno()
        return OSError(code, os.strerror(code))

    def fclonefileat(self, src_fd: int, dst_dirfd: int, dst: bytes, flags: int) -> None:
        """Clone the file open as ``src_fd`` to the new name ``dst``."""
        if self._function("fclonefileat")(src_fd, dst_dirfd, dst, flags) != 0:
            raise self._error()

    def flistxattr(self, fd: int) -> list[bytes]:
        """The names of the file's extended attributes.

        Without XATTR_SHOWCOMPRESSION, so the attributes that hold a
        compressed file's data (com.apple.decmpfs, its resource fork) are
        neither listed nor ever removed.
        """
        import ctypes

        call = self._function("flistxattr")
        while True:
            size = call(fd, None, 0, 0)
            if size < 0:
                raise self._error()
            if size == 0:
                return []
            buffer = ctypes.create_string_buffer(size)
            got = call(fd, buffer, size, 0)
            if got >= 0:
                return [name for name in buffer.raw[:got].split(b"\0") if name]
            error = self._error()
            if error.errno != errno.ERANGE:  # ERANGE: an attribute was added meanwhile
                raise error

    def fremovexattr(self, fd: int, name: bytes) -> None:
        """Remove one extended attribute."""
        if self._function("fremovexattr")(fd, name, 0) != 0:
            raise self._error()

    def fchflags(self, fd: int, flags: int) -> None:
        """Set the file's flags (chflags(2)); CPython has no fchflags."""
        if self._function("fchflags")(fd, flags) != 0:
            raise self._error()

    def file_flags(self, fd: int) -> int:
        """The file's flags (st_flags, which only BSD systems report)."""
        return int(getattr(os.fstat(fd), "st_flags", 0))

    def has_acl(self, fd: int) -> bool:
        """Does the file have an access control list with at least one entry?"""
        import ctypes

        acl = self._function("acl_get_fd_np")(fd, ACL_TYPE_EXTENDED)
        if not acl:
            error = self._error()
            if error.errno == errno.ENOENT:  # the file has no ACL
                return False
            raise error
        try:
            entry = ctypes.c_void_p()
            return bool(self._function("acl_get_entry")(acl, ACL_FIRST_ENTRY, ctypes.byref(entry)) == 0)
        finally:
            self._function("acl_free")(acl)

    def fcopyfile(self, src_fd: int, dst_fd: int) -> None:
        """Copy the data as shutil does on macOS: ``posix._fcopyfile(..., COPYFILE_DATA)``.

        COPYFILE_DATA copies the data fork only and never clones, so it
        serves reflink="never" too. ``OSError(ENOSYS)`` where CPython has
        no ``posix._fcopyfile``.
        """
        try:
            import posix
        except ImportError:  # not a POSIX system
            raise OSError(errno.ENOSYS, "posix._fcopyfile is not available") from None
        function = getattr(posix, "_fcopyfile", None)
        if function is None:
            raise OSError(errno.ENOSYS, "posix._fcopyfile is not available")
        function(src_fd, dst_fd, getattr(posix, "_COPYFILE_DATA", COPYFILE_DATA))


#: The binding every MacBackend shares unless given another; loads nothing yet.
LIBSYSTEM: Final = LibSystem()


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
