"""Names and small helpers every layer shares: path and mode types, open flags, the read/write copy.

Nothing here imports another cowpath module, so any module may import it.
"""

from __future__ import annotations

import contextlib
import enum
import os
import stat
from typing import Final, Literal, Union

__all__ = [
    "COPY_BUFSIZE",
    "ENV_VAR",
    "READ_FLAGS",
    "REFLINK_MODES",
    "WRITE_FLAGS",
    "Metadata",
    "ReflinkMode",
    "StrOrBytesPath",
    "copy_by_reading",
    "identity_of",
    "remove_quietly",
    "resolve_mode",
    "token",
]

StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
ReflinkMode = Literal["auto", "always", "never"]
#: The values of ``reflink=`` (and ``$COWPATH_REFLINK``, and ``--reflink``), as ``cp --reflink=WHEN``.
REFLINK_MODES: Final[tuple[ReflinkMode, ...]] = ("auto", "always", "never")
ENV_VAR: Final = "COWPATH_REFLINK"

# Descriptor flags. O_BINARY and O_NOINHERIT exist only on Windows, O_CLOEXEC
# only on POSIX; each is 0 where it does not exist.
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)
READ_FLAGS: Final = os.O_RDONLY | _CLOEXEC | getattr(os, "O_BINARY", 0)
WRITE_FLAGS: Final = os.O_WRONLY | _CLOEXEC | getattr(os, "O_BINARY", 0)

# shutil.COPY_BUFSIZE: 1 MiB on Windows, 64 KiB elsewhere.
COPY_BUFSIZE: Final = 1024 * 1024 if os.name == "nt" else 64 * 1024


class Metadata(enum.Enum):
    """What a copy gives the destination besides the data: which shutil function it is."""

    NONE = "copyfile"  # data only
    MODE = "copy"  # data and permission bits (shutil.copymode)
    STAT = "copy2"  # data, times, permission bits, flags, xattrs (shutil.copystat)


def resolve_mode(reflink: str | None) -> ReflinkMode:
    """The effective mode: the argument, else ``$COWPATH_REFLINK``, else auto."""
    source = "reflink"
    if reflink is None:
        reflink = os.environ.get(ENV_VAR) or "auto"
        source = ENV_VAR
    for mode in REFLINK_MODES:
        if reflink == mode:
            return mode
    choices = ", ".join(repr(mode) for mode in REFLINK_MODES)
    raise ValueError(f"{source} must be one of {choices}, not {reflink!r}")


def copy_by_reading(src_fd: int, dst_fd: int, bufsize: int = COPY_BUFSIZE, length: int | None = None) -> int:
    """Copy from the current offsets with read/write calls; return the byte count.

    Copies to end of file, or at most ``length`` bytes. The portable path,
    used when no kernel copy applies (and under a faked ``os`` module, where
    it goes through the fake).
    """
    total = 0
    while length is None or total < length:
        want = bufsize if length is None else min(bufsize, length - total)
        chunk = os.read(src_fd, want)
        if not chunk:
            break
        total += len(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view) :]
    return total


def remove_quietly(path: StrOrBytesPath) -> None:
    """Unlink ``path`` if it can be; a cleanup step that must never raise."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def token() -> str:
    """16 random hex digits (64 bits from the OS's generator) for a private name."""
    return os.urandom(8).hex()


#: What identifies a file and changes with any write to it: see :func:`identity_of`.
Identity = tuple[int, ...]


def identity_of(st: os.stat_result) -> Identity:
    """The parts of an ``lstat`` that a moved tree's removal compares (:mod:`cowpath._moveclean`).

    A directory is known by its type and inode (its own removals change its
    times); anything else also by its size, mtime and ctime, one of which
    any write changes. A tuple of ints: what a helper process sends back
    instead of the whole ``stat_result``, which costs several times more to
    pass through a pipe.
    """
    if stat.S_ISDIR(st.st_mode):
        return (stat.S_IFMT(st.st_mode), st.st_dev, st.st_ino)
    return (stat.S_IFMT(st.st_mode), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
