"""The seam between the engine and the operating systems: what an OS backend provides.

The engine (:mod:`cowpath._engine`) does everything that is the same on
every OS: the shutil checks, opening the files, staging a new file out of
sight and naming it when whole, the fallback from clone to copy, metadata,
errors and their file names. A backend provides only its system calls,
through the hooks of :class:`Backend`:

``clone(transfer)``
    clone an open source into an open destination (Linux FICLONE, Windows
    FSCTL_DUPLICATE_EXTENTS_TO_FILE); by default there is no clone call.
``clone_new(source, path)``
    create a new file as a clone of an open source (macOS clonefile);
    declared by ``clones_new_files``.
``copy(transfer)``
    copy the data without cloning where ``may_clone`` is false
    (copy_file_range, fcopyfile, or read/write).
``route(job)`` and ``native_copy(job)``
    an optional whole-file copy call of the OS, and when to prefer it
    (CopyFile2 for copy2 on Windows, which is what shutil.copy2 uses there).
``open``, ``file_flags``, ``set_flags``, ``can_stage``
    small per-OS differences in opening files, BSD file flags and staging.
``extents(fd)`` and ``dedupe(src_fd, offset, length, dst_fds)``
    where a file's data lies on disk (Linux FIEMAP), and sharing the
    storage of ranges the kernel finds identical (Linux FIDEDUPERANGE); by
    default neither exists.

A backend signals "no clone here" only with :class:`~cowpath._errors.CannotClone`,
raised while the destination is untouched; any other failure is the
``OSError`` it is. A backend need not name files in its errors: the engine
gives every error without a name, or naming a private file, the caller's
names (a backend that knows better, such as the Windows clone naming its
Win32 errors, uses the job's names).
"""

from __future__ import annotations

import enum
import errno
import os
from abc import ABC
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ._common import Metadata, ReflinkMode, StrOrBytesPath, copy_by_reading
from ._errors import CannotClone

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._extents import Extent
    from ._report import CopyReport

__all__ = ["Backend", "DedupeOutcome", "FileJob", "Route", "Source", "Transfer"]


class Route(enum.Enum):
    """Which way a backend wants a file copied."""

    ENGINE = "engine"  # the engine's ladder: clone if asked and possible, else copy
    NATIVE = "native"  # the OS's whole-file copy first; the engine if it declines
    CLONE_THEN_NATIVE = "clone-then-native"  # a clone if possible, else the OS's whole-file copy


@dataclass(slots=True)
class FileJob:
    """One file to copy, as the caller asked for it."""

    src: StrOrBytesPath
    dst: StrOrBytesPath
    mode: ReflinkMode
    metadata: Metadata = Metadata.NONE
    atomic: bool = False
    report: CopyReport | None = None
    #: ``os.stat(dst)`` if the caller has it and ``dst_known`` is set (None: it does not exist).
    dst_st: os.stat_result | None = None
    dst_known: bool = False
    #: A tree copy's new file in a private staging directory: created under its own name.
    direct: bool = False
    #: Private names made for this copy (staging files): errors never show them.
    private: list[StrOrBytesPath] = field(default_factory=list)
    #: Set by the engine: the bytes the destination was given, and whether
    #: the metadata is left to shutil's functions by path.
    nbytes: int = 0
    by_path: bool = False
    #: Set by a tree's fast path: the source's ``fstat``, taken before its data was read.
    src_st: os.stat_result | None = None


class Source:
    """An open source file (plain slots: one is made per file, on the hot path of a tree)."""

    __slots__ = ("fd", "job", "st")

    def __init__(self, job: FileJob, fd: int, st: os.stat_result) -> None:
        self.job = job
        self.fd = fd
        self.st = st


class Transfer:
    """An open source and an open destination."""

    __slots__ = ("dst_fd", "dst_path", "dst_size", "job", "source", "src_fd", "src_st")

    def __init__(self, source: Source, dst_fd: int, dst_size: int, dst_path: StrOrBytesPath) -> None:
        self.source = source
        self.job = source.job
        self.src_fd = source.fd
        self.src_st = source.st
        self.dst_fd = dst_fd
        #: The destination's size before the transfer (0 for a new file).
        self.dst_size = dst_size
        #: The destination's path (its directory holds any scratch file).
        self.dst_path = dst_path


@dataclass(frozen=True)
class DedupeOutcome:
    """What one dedupe call did to one destination."""

    #: Bytes of the destination now sharing the source's storage.
    deduped: int = 0
    #: The kernel compared the range and found it different: nothing was shared.
    differs: bool = False
    #: The errno of this destination's own failure (0: none).
    error: int = 0
    #: The failure means "these two files cannot share storage here" (EXDEV,
    #: EPERM, ...), not that something went wrong.
    refused: bool = False


class Backend(ABC):
    """What one operating system provides to the engine."""

    #: Short name shown by diagnostics ("linux", "macos", "windows", "portable").
    name: ClassVar[str]
    #: The OS can create a new file as a clone: :meth:`clone_new` is implemented.
    clones_new_files: ClassVar[bool] = False
    #: New files may be staged as unnamed O_TMPFILE files, linked through /proc/self/fd.
    unnamed_staging: bool = False
    #: Metadata may be applied through descriptors. False for the portable
    #: backend, which also serves a faked ``os`` (pyfakefs) whose descriptor
    #: and path calls need not agree: it works by path.
    fd_metadata: ClassVar[bool] = True
    #: copy2 copies extended attributes, as shutil.copystat does where the
    #: os module has the xattr calls (Linux; not macOS, not Windows).
    copies_xattrs: ClassVar[bool] = False
    #: Files have BSD flags (st_flags): :meth:`file_flags` and :meth:`set_flags` are implemented.
    has_file_flags: ClassVar[bool] = False

    def clone(self, transfer: Transfer) -> None:
        """Make the open destination a clone of the open source, replacing all its data.

        Raise :class:`CannotClone` while the destination is untouched when
        cloning is impossible here; raise ``OSError`` for real failures.
        """
        raise CannotClone(errno.EOPNOTSUPP, "this platform has no clone call")

    def clone_new(self, source: Source, path: StrOrBytesPath, mode: int) -> int:
        """Create ``path`` as a clone of the open source; return a descriptor open on it.

        The new file must be what a newly created file holding the data
        is: none of the extra metadata a clone call carries (extended
        attributes, flags, ACLs, another owner), the current time, and no
        permission beyond ``mode`` (its final mode) and the source's. The
        engine gives it its metadata and its name. Raise
        ``FileExistsError`` if ``path`` exists, and :class:`CannotClone`
        having created nothing when no clone can be made.
        """
        raise CannotClone(errno.EOPNOTSUPP, "this platform cannot create a file as a clone")

    def copy(self, transfer: Transfer, may_clone: bool) -> int:
        """Copy all data of the source into the empty destination; return the byte count.

        ``may_clone`` is false for ``reflink="never"``: no call that may
        share extents behind cowpath's back is allowed then.
        """
        return copy_by_reading(transfer.src_fd, transfer.dst_fd)

    def route(self, job: FileJob) -> Route:
        """Which way to copy this file; :attr:`Route.ENGINE` unless the OS has a better call."""
        return Route.ENGINE

    def native_copy(self, job: FileJob, replace: bool) -> bool:
        """Copy ``job.src`` to ``job.dst`` with the OS's own whole-file call.

        ``replace`` says an existing destination is replaced whole
        (``atomic``), not written in place. Returns False, having changed
        nothing, to leave the copy to the engine.
        """
        return False

    def open(self, path: StrOrBytesPath, flags: int, mode: int = 0o666) -> int:
        """``os.open``; a backend may open differently (the portable one keeps a faked file's mode)."""
        return os.open(path, flags, mode)

    def can_stage(self, path: StrOrBytesPath) -> bool:
        """Whether a new file for ``path`` may be made under another name and renamed (not a stream)."""
        return True

    def file_flags(self, fd: int) -> int:
        """The file's BSD flags (``st_flags``); 0 where the OS has none."""
        return 0

    def set_flags(self, fd: int, flags: int) -> bool:
        """Give the open file these flags; False if they must be set by path once it is named."""
        return True

    def extents(self, fd: int) -> list[Extent]:
        """Where the open file's data lies on disk, extent by extent.

        Raise :class:`CannotClone` where the OS cannot tell (no FIEMAP, or
        no per-file map that proves two files share storage).
        """
        raise CannotClone(errno.EOPNOTSUPP, "this platform cannot map a file's extents")

    def dedupe(self, src_fd: int, offset: int, length: int, dst_fds: Sequence[int]) -> list[DedupeOutcome]:
        """Share ``length`` bytes at ``offset`` of the source with the same range of each destination.

        The kernel compares each range under lock and shares it only where it
        is identical: no content can change. One outcome per destination, in
        order. Raise :class:`CannotClone` where the OS or the filesystem has
        no such call (nothing has been changed then); a failure of one
        destination is its outcome's ``error``.
        """
        raise CannotClone(errno.EOPNOTSUPP, "this platform has no dedupe call")
