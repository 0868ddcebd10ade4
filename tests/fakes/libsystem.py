"""A libSystem that does to real Linux files what macOS does, for the macOS backend's tests.

It replaces only the binding (``MacBackend(lib=...)``). Its ``fclonefileat``
makes a real file at the new name as the kernel would: it refuses an
existing name, copies the data, gives the source's mode without setuid and
setgid, its extended attributes, its flags and, as the worst case, its
times. Its xattr calls act on the file's real Linux ``user.`` attributes,
and file flags and ACLs live in attributes of the file itself, so they go
wherever the file goes. It needs a filesystem with user extended
attributes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cowpath._libsystem import (
    AT_FDCWD,
    CLONE_NOFOLLOW,
    CLONE_NOOWNERCOPY,
    SF_RESTRICTED,
    UF_APPEND,
    UF_DATAVAULT,
    UF_IMMUTABLE,
    LibSystem,
)
from tests.fakes.darwin import CLONE_ACL

__all__ = [
    "LOCKED",
    "FakeLibSystem",
    "acl_of",
    "flags_of",
    "names_in",
    "set_acl",
    "set_flags",
    "skip_without_user_xattrs",
    "source_file",
    "xattrs_of",
]

_FLAGS = "user.fake.flags"  # where the fake keeps a file's st_flags
_ACL = "user.fake.acl"  # and its ACL (one text line per entry)
_KERNEL_CLONE_FLAGS = CLONE_NOFOLLOW | CLONE_NOOWNERCOPY | CLONE_ACL
# The flags under which the fake, as macOS, refuses to remove an attribute.
LOCKED = UF_IMMUTABLE | UF_APPEND


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _get(where: int | Path, name: str) -> bytes | None:
    """An attribute's value, or None if the file has no such attribute."""
    try:
        return os.getxattr(where, name)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise


class FakeLibSystem(LibSystem):
    """libSystem's clone, xattr, flag, ACL and fcopyfile calls, done to real Linux files."""

    def __init__(self) -> None:
        # A path that cannot load: a call the fake does not implement fails loudly.
        super().__init__("/nonexistent/libSystem.B.dylib")
        self.calls: list[tuple[Any, ...]] = []
        self.errors: dict[str, list[int]] = {}  # call name -> errnos to raise, one per call
        self.protected: set[bytes] = set()  # attributes that refuse removal (EPERM)
        self.carry_times = True  # the worst case: the clone keeps the source's times
        self.clone_copies_acl = False  # macOS before 12.6 did
        self.superuser = False  # may the caller change SF_ flags?
        self.xattrs_need_write = False  # does removing an attribute need the owner's write bit?
        self.has_fcopyfile = True
        self.before_clone: Callable[[bytes], None] | None = None
        self.modes: list[int] = []  # the clone's mode at each metadata call

    def _maybe_fail(self, name: str) -> None:
        queue = self.errors.get(name)
        if queue:
            raise _error(queue.pop(0))

    def _seen(self, fd: int) -> None:
        self.modes.append(stat.S_IMODE(os.fstat(fd).st_mode))

    # -- the calls --------------------------------------------------------------

    def fclonefileat(self, src_fd: int, dst_dirfd: int, dst: bytes, flags: int) -> None:
        self.calls.append(("fclonefileat", src_fd, dst_dirfd, dst, flags))
        if self.before_clone is not None:
            self.before_clone(dst)
        self._maybe_fail("fclonefileat")
        if flags & ~_KERNEL_CLONE_FLAGS:
            raise _error(errno.EINVAL)
        if dst_dirfd != AT_FDCWD:
            raise _error(errno.EBADF)
        src_st = os.fstat(src_fd)
        if not stat.S_ISREG(src_st.st_mode):
            raise _error(errno.EINVAL)
        if not flags & CLONE_NOFOLLOW and os.path.islink(dst) and not os.path.exists(dst):
            dst = os.fsencode(
                os.path.realpath(dst)
            )  # the kernel follows a dangling link and creates its target
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            offset = 0
            while chunk := os.pread(src_fd, 1 << 20, offset):
                os.write(fd, chunk)
                offset += len(chunk)
            os.fchmod(fd, stat.S_IMODE(src_st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
            for name in os.listxattr(src_fd):
                if not name.startswith("user.") or (name == _ACL and not self.clone_copies_acl):
                    continue
                value = os.getxattr(src_fd, name)
                if name == _FLAGS:
                    value = str(int(value) & ~(UF_DATAVAULT | SF_RESTRICTED)).encode()
                os.setxattr(fd, name, value)
            if not flags & CLONE_NOOWNERCOPY and os.geteuid() == 0:
                os.fchown(fd, src_st.st_uid, src_st.st_gid)
            if self.carry_times:
                os.utime(fd, ns=(src_st.st_atime_ns, src_st.st_mtime_ns))
            # A clone shares the blocks without reading them: the source's
            # access time stays (the pread above would have moved it).
            with contextlib.suppress(PermissionError):  # another user's file: no atime to keep
                os.utime(src_fd, ns=(src_st.st_atime_ns, src_st.st_mtime_ns))
        except BaseException:
            os.unlink(dst)  # all or nothing, as clonefile(2) promises
            raise
        finally:
            os.close(fd)

    def flistxattr(self, fd: int) -> list[bytes]:
        self.calls.append(("flistxattr", fd))
        self._seen(fd)
        self._maybe_fail("flistxattr")
        return [
            name[len("user.") :].encode()
            for name in os.listxattr(fd)
            if name.startswith("user.") and not name.startswith("user.fake.")
        ]

    def fremovexattr(self, fd: int, name: bytes) -> None:
        self.calls.append(("fremovexattr", fd, name))
        self._seen(fd)
        self._maybe_fail("fremovexattr")
        if name in self.protected or self.file_flags(fd) & LOCKED:
            raise _error(errno.EPERM)
        if self.xattrs_need_write and not os.fstat(fd).st_mode & stat.S_IWUSR:
            raise _error(errno.EACCES)
        os.removexattr(fd, "user." + name.decode())

    def fchflags(self, fd: int, flags: int) -> None:
        self.calls.append(("fchflags", fd, flags))
        self._seen(fd)
        self._maybe_fail("fchflags")
        if (self.file_flags(fd) ^ flags) & 0xFFFF0000 and not self.superuser:
            raise _error(errno.EPERM)
        os.setxattr(fd, _FLAGS, str(flags).encode())

    def file_flags(self, fd: int) -> int:
        value = _get(fd, _FLAGS)
        return int(value) if value else 0

    def has_acl(self, fd: int) -> bool:
        self.calls.append(("has_acl", fd))
        self._maybe_fail("has_acl")
        return bool(_get(fd, _ACL))

    def fcopyfile(self, src_fd: int, dst_fd: int) -> None:
        self.calls.append(("fcopyfile", src_fd, dst_fd))
        if not self.has_fcopyfile:
            raise _error(errno.ENOSYS)
        self._maybe_fail("fcopyfile")
        while chunk := os.read(src_fd, 1 << 16):
            os.write(dst_fd, chunk)

    # -- for the tests ------------------------------------------------------------

    def named(self, call: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == call]


# -- the fake's state, read and set by path ------------------------------------------


def set_flags(path: Path, flags: int) -> None:
    os.setxattr(path, _FLAGS, str(flags).encode())


def flags_of(path: Path) -> int:
    value = _get(path, _FLAGS)
    return int(value) if value else 0


def set_acl(path: Path, entries: bytes) -> None:
    os.setxattr(path, _ACL, entries)


def acl_of(path: Path) -> bytes | None:
    return _get(path, _ACL)


def xattrs_of(path: Path) -> dict[str, bytes]:
    """The file's extended attributes, without those holding the fake's state."""
    return {n: os.getxattr(path, n) for n in os.listxattr(path) if not n.startswith("user.fake.")}


# -- the files the tests start from and check -----------------------------------------


def skip_without_user_xattrs(directory: Path) -> None:
    """Skip the test where ``directory`` cannot hold the fake's state (user extended attributes)."""
    try:
        os.setxattr(directory, "user.probe", b"1")
    except OSError:
        pytest.skip(f"{directory} has no user extended attributes")


def source_file(directory: Path, name: str = "src", data: bytes = b"", mode: int = 0o640) -> Path:
    """A file of 70,000 random bytes (or ``data``) with ``mode``."""
    path = directory / name
    path.write_bytes(data or os.urandom(70_000))
    path.chmod(mode)
    return path


def names_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}
