"""libSystem for the macOS backend: the calls it makes, bound through ctypes on first use.

Also the Darwin facts those calls need: the header constants they take,
and what each error number they answer means for a clone or a copy. The
backend that uses them is in ``_macos``.

Imports cleanly everywhere; nothing here touches the system, or loads
ctypes, until a call is made.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any, Final

__all__ = [
    "ACL_FIRST_ENTRY",
    "ACL_TYPE_EXTENDED",
    "AT_FDCWD",
    "CLONE_FALLBACK_ERRNOS",
    "CLONE_NOFOLLOW",
    "CLONE_NOOWNERCOPY",
    "CLONE_PATH_ERRNOS",
    "COPYFILE_DATA",
    "FCOPYFILE_GIVEUP_ERRNOS",
    "LIBSYSTEM",
    "LIBSYSTEM_PATH",
    "SF_APPEND",
    "SF_IMMUTABLE",
    "SF_NOUNLINK",
    "SF_RESTRICTED",
    "SF_SETTABLE",
    "UF_APPEND",
    "UF_COMPRESSED",
    "UF_DATAVAULT",
    "UF_IMMUTABLE",
    "XATTR_KEPT_ERRNOS",
    "LibSystem",
]

LIBSYSTEM_PATH: Final = "/usr/lib/libSystem.B.dylib"

# <sys/clonefile.h>. CLONE_ACL (macOS 12.6+) is never passed: shutil does
# not copy ACLs, and older systems answer EINVAL to it.
CLONE_NOFOLLOW: Final = 0x0001
CLONE_NOOWNERCOPY: Final = 0x0002  # macOS 10.13+; EINVAL on 10.12
# <sys/fcntl.h> on Darwin (Linux's is -100).
AT_FDCWD: Final = -2
# <sys/acl.h>: the only ACL type Darwin has, and acl_get_entry's "first".
ACL_TYPE_EXTENDED: Final = 0x00000100
ACL_FIRST_ENTRY: Final = 0
# <copyfile.h>: COPYFILE_DATA, the flag CPython's shutil passes as posix._COPYFILE_DATA.
COPYFILE_DATA: Final = 1 << 3

# <sys/stat.h> file flags (st_flags, chflags(2)).
UF_IMMUTABLE: Final = 0x00000002
UF_APPEND: Final = 0x00000004
UF_COMPRESSED: Final = 0x00000020
UF_DATAVAULT: Final = 0x00000080
SF_SETTABLE: Final = 0x3FFF0000  # the flags only the superuser may change
SF_IMMUTABLE: Final = 0x00020000
SF_APPEND: Final = 0x00040000
SF_RESTRICTED: Final = 0x00080000
SF_NOUNLINK: Final = 0x00100000

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
