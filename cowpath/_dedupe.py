"""Sharing what is already duplicated: :func:`dedupe`, and proving it: :func:`shared_bytes`.

Deduplication asks the kernel to share the storage of identical ranges
(Linux ``FIDEDUPERANGE``). The kernel locks both files, compares the bytes
itself and remaps only what is equal, so no file's content can change,
whatever else happens at the same time; the files' inode, size, mode,
owner, times and extended attributes are not touched either. Where the OS
has no such call (macOS, Windows) cowpath refuses: see docs/dedupe.md for
why it does not emulate one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from ._backend import Backend, DedupeOutcome
from ._common import READ_FLAGS, StrOrBytesPath
from ._errors import CannotClone, named
from ._extents import Extent, physical_overlap, within
from ._fsinfo import mount_of
from ._select import backend

__all__ = [
    "DedupeReport",
    "dedupe",
    "open_quietly",
    "read_at",
    "sample",
    "sample_ranges",
    "share",
    "shared_bytes",
]

#: Bytes asked of the kernel per call: measured on Linux 6.18, XFS and btrfs
#: dedupe at most 1 GiB per call.
DEDUPE_CHUNK: Final = 1 << 30
#: Destinations per call: 128 answers ENOMEM (measured on Linux 6.18).
MAX_DESTINATIONS: Final = 127
#: The blocks compared before asking the kernel (see :func:`sample`).
SAMPLE_BLOCK: Final = 4096

_NOATIME: Final = getattr(os, "O_NOATIME", 0)


@dataclass
class DedupeReport:
    """Counts of what one or more :func:`dedupe` calls did.

    ``files_deduped``/``bytes_deduped`` count destinations that now share
    the source's storage and how many of their bytes do; ``files_differing``
    counts destinations left alone because their content (or size) differs
    from the source's. One report may be shared by several calls and threads.
    """

    files_deduped: int = 0
    """Destinations that now share the source's storage."""
    bytes_deduped: int = 0
    """Bytes of those destinations that now share it."""
    files_differing: int = 0
    """Destinations left alone because their content or size differs from the source's."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def record(self, nbytes: int) -> None:
        """Count one destination that now shares ``nbytes`` bytes. Called by cowpath."""
        with self._lock:
            self.files_deduped += 1
            self.bytes_deduped += nbytes

    def record_differing(self) -> None:
        """Count one destination left alone because it differs. Called by cowpath."""
        with self._lock:
            self.files_differing += 1


def open_quietly(path: StrOrBytesPath, follow: bool = True) -> int:
    """Open for reading without updating the access time where the caller may (O_NOATIME)."""
    flags = READ_FLAGS | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    if _NOATIME:
        try:
            return os.open(path, flags | _NOATIME)
        except PermissionError as exc:
            # O_NOATIME needs the file's owner or CAP_FOWNER (open(2)); EPERM
            # then, and the plain open below says whether reading is allowed.
            if exc.errno != errno.EPERM:
                raise
    return os.open(path, flags)


def read_at(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset`` (``os.pread``, which Windows lacks)."""
    if sys.platform == "win32":
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)
    return os.pread(fd, size, offset)


def sample(fd: int, size: int) -> bytes:
    """A cheap partial check: the first, middle and last block (a small file whole).

    Files that differ in a header, a trailer or a middle record mostly
    differ there; the kernel's own comparison remains the full check.
    """
    return b"".join(read_at(fd, length, at) for at, length in sample_ranges(size))


def sample_ranges(size: int) -> list[tuple[int, int]]:
    """Where :func:`sample` reads: ``(offset, length)`` of each block."""
    if size <= 4 * SAMPLE_BLOCK:
        return [(0, size)]
    middle = (size // 2) & ~(SAMPLE_BLOCK - 1)
    return [(at, SAMPLE_BLOCK) for at in (0, middle, size - SAMPLE_BLOCK)]


def share(chosen: Backend, src_fd: int, size: int, dst_fds: Sequence[int]) -> list[DedupeOutcome]:
    """Dedupe the first ``size`` bytes of the source onto each destination; one outcome each.

    The calls cover at most :data:`DEDUPE_CHUNK` bytes and
    :data:`MAX_DESTINATIONS` destinations each; the last one ends exactly
    at ``size`` (the end of file), because an unaligned tail is shared only
    by a range that ends at EOF. A destination that differs or fails stops
    there; ranges already shared stay shared (they are identical).
    ``CannotClone`` from the first call means nothing was changed.
    """
    deduped = [0] * len(dst_fds)
    final: list[DedupeOutcome | None] = [None] * len(dst_fds)
    active = list(range(len(dst_fds)))
    offset = 0
    while offset < size and active:
        length = min(DEDUPE_CHUNK, size - offset)
        for first in range(0, len(active), MAX_DESTINATIONS):
            batch = active[first : first + MAX_DESTINATIONS]
            outcomes = chosen.dedupe(src_fd, offset, length, [dst_fds[i] for i in batch])
            for i, first_outcome in zip(batch, outcomes, strict=True):
                outcome, got = _finish(chosen, src_fd, dst_fds[i], offset, length, first_outcome)
                deduped[i] += got
                if outcome.differs or outcome.error or got < length:
                    final[i] = outcome
        active = [i for i in active if final[i] is None]
        offset += length
    return [
        DedupeOutcome(deduped[i], f.differs, f.error, f.refused) if f else DedupeOutcome(deduped[i])
        for i, f in enumerate(final)
    ]


def _finish(
    chosen: Backend, src_fd: int, dst_fd: int, offset: int, length: int, outcome: DedupeOutcome
) -> tuple[DedupeOutcome, int]:
    """The range's last outcome for one destination, and the bytes shared of it.

    The kernel may share less than asked: the rest of the range is asked for
    this destination alone until it is done, differs, fails or stalls.
    """
    got = outcome.deduped
    while not (outcome.differs or outcome.error) and 0 < got < length:
        outcome = chosen.dedupe(src_fd, offset + got, length - got, [dst_fd])[0]
        got += outcome.deduped
        if outcome.deduped == 0:
            break
    return outcome, got


@contextlib.contextmanager
def _opened(path: StrOrBytesPath) -> Iterator[tuple[int, os.stat_result]]:
    fd = open_quietly(path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            code = errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL
            raise OSError(code, "not a regular file", os.fspath(path))
        yield fd, st
    finally:
        os.close(fd)


def dedupe(src: StrOrBytesPath, dst: StrOrBytesPath, *, report: DedupeReport | None = None) -> int:
    """Make ``dst`` share ``src``'s storage where their contents are identical.

    Returns how many bytes of ``dst``'s data are now the very same blocks
    as ``src``'s. Nothing else about either file changes: content, inode,
    size, mode, owner, times (``st_mtime_ns`` included), extended
    attributes and hard links stay as they were. On Linux the kernel
    compares the bytes itself, under lock, and shares only what is equal
    (``FIDEDUPERANGE``), so no content can change even if another process
    writes to either file meanwhile.

    Files whose size or content differ are left alone: the call returns 0
    and counts the destination in ``report.files_differing`` (pass a
    :class:`DedupeReport` to tell "differs" from "empty"). Identical empty
    files have nothing to share and also give 0. A file larger than 1 GiB
    that differs only after its first GiB may keep the identical leading
    ranges shared (still no content or metadata change).

    Raises :class:`ReflinkNotSupportedError` (``EOPNOTSUPP`` on ext4,
    tmpfs, and on macOS and Windows, which have no dedupe call; ``EXDEV``
    across filesystems; ``EPERM`` where the caller may not) having changed
    nothing, and ``OSError`` for other failures, both naming ``src`` and
    ``dst``. Symlinks are followed, as shutil's copy functions follow them.
    """
    chosen = backend()
    with _opened(src) as (src_fd, src_st), _opened(dst) as (dst_fd, dst_st):
        size = src_st.st_size
        if (src_st.st_dev, src_st.st_ino) == (dst_st.st_dev, dst_st.st_ino):
            return size  # one file: all its data is its own
        if size != dst_st.st_size or sample(src_fd, size) != sample(dst_fd, size):
            if report is not None:
                report.record_differing()
            return 0
        if size == 0:
            return 0
        try:
            (outcome,) = share(chosen, src_fd, size, [dst_fd])
        except CannotClone as signal:
            raise signal.to_error(src, dst) from None
        except OSError as exc:
            raise named(exc, src, dst) from None
        if outcome.error:
            error = CannotClone(outcome.error).to_error(src, dst)
            if not outcome.refused:
                raise OSError(error.errno, error.strerror, error.filename, None, error.filename2)
            raise error
        if outcome.differs:
            if report is not None:
                report.record_differing()
            return 0
        shared = _measured(chosen, src_fd, dst_fd, size, outcome.deduped)
        if report is not None:
            report.record(shared)
        return shared


def _measured(chosen: Backend, src_fd: int, dst_fd: int, size: int, reported: int) -> int:
    """Bytes of the destination that now share the source's blocks, as the extent map shows.

    The kernel's count is not proof: btrfs reports small inline files as
    deduped, yet their data stays in each file's own metadata.
    """
    try:
        return _overlap(chosen.extents(src_fd), chosen.extents(dst_fd), size)
    except CannotClone:
        return reported


def _overlap(a: list[Extent], b: list[Extent], size: int) -> int:
    return physical_overlap(a, within(b, size))


def shared_bytes(a: StrOrBytesPath, b: StrOrBytesPath) -> int:
    """How many bytes of ``b``'s data are stored in the very same blocks as ``a``'s.

    A clone or a deduplicated copy shares all its data: ``shared_bytes(src,
    clone) == os.path.getsize(clone)`` (less any holes). Linux reads both
    files' extent maps (FIEMAP) and compares their physical ranges, not the
    "shared" flag, which says only that *some* file shares an extent. Holes
    hold no data; small files btrfs keeps inline in its metadata and
    preallocated (unwritten) extents are never counted as shared. Files on
    different filesystems share nothing (0).

    Raises :class:`ReflinkNotSupportedError` (``EOPNOTSUPP``) where the OS
    cannot tell: filesystems without FIEMAP, and macOS and Windows, whose
    extent queries do not prove that two files share storage.
    """
    chosen = backend()
    with _opened(a) as (a_fd, a_st), _opened(b) as (b_fd, b_st):
        try:
            a_map, b_map = chosen.extents(a_fd), chosen.extents(b_fd)
        except CannotClone as signal:
            raise signal.to_error(a, b) from None
        except OSError as exc:
            raise named(exc, a, b) from None
        if a_st.st_dev != b_st.st_dev and not _one_filesystem(a, b):
            return 0
        return _overlap(a_map, b_map, b_st.st_size)


def _one_filesystem(a: StrOrBytesPath, b: StrOrBytesPath) -> bool:
    """Two devices that are one filesystem: btrfs subvolumes each have their own ``st_dev``."""
    first, second = (mount_of(os.fsdecode(os.fspath(path))) for path in (a, b))
    return (
        first is not None
        and second is not None
        and (first.device, first.fstype)
        == (
            second.device,
            second.fstype,
        )
    )
