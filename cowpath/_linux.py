"""Linux backend: FICLONE to clone, copy_file_range/sendfile to copy, FIDEDUPERANGE to share.

Imports cleanly everywhere; nothing here touches the system until a copy
is asked for.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from types import BuiltinFunctionType
from typing import Final

from ._backend import Backend, DedupeOutcome, Transfer
from ._common import copy_by_reading
from ._errors import CannotClone
from ._extents import Extent, fiemap

try:
    # Imported with the module, not on the first copy: a first clone in a
    # fresh process would otherwise pay for loading the extension module
    # (measurable against the clone itself, which takes well under 1 ms).
    import fcntl
except ImportError:  # not on Windows: the module must still import there
    fcntl = None  # type: ignore[assignment]

__all__ = ["LinuxBackend", "ficlone_request"]

# Errors from FICLONE that mean "no clone here, the data can still be
# copied", decided from ioctl_ficlone(2) and GNU coreutils' copy.c
# (which falls back on the same set). Each leaves the destination untouched:
# the kernel checks all of them before it changes anything.
CLONE_FALLBACK_ERRNOS: Final[frozenset[int]] = frozenset(
    {
        # The filesystem cannot share extents (ext4, tmpfs); ENOTSUP is the same value on Linux.
        errno.EOPNOTSUPP,
        errno.EXDEV,  # source and destination are on different filesystems or mounts
        # Unaligned length onto a longer destination, a btrfs NOCOW/COW
        # mismatch, a special file or a filesystem that rejects the request.
        errno.EINVAL,
        errno.ENOTTY,  # the file's driver does not know the ioctl (FUSE, some network filesystems)
        errno.ENOSYS,  # the ioctl is missing (seccomp filters, gVisor); also disables FICLONE for the process
        errno.EBADF,  # a descriptor the filesystem will not clone from or into (O_APPEND, odd FUSE)
        errno.ETXTBSY,  # the destination is an active swap file; the copy then reports the real error
        # Immutable or append-only destination, seccomp or LSM refusals in
        # containers: the ordinary write path reports the real error, if any.
        errno.EPERM,
        errno.EACCES,
    }
)
# Anything else is a real failure and is raised: ENOSPC and EDQUOT (no room
# even for the new extent references), EIO and ENOMEM (coreutils found that
# retrying with a copy after these risks writing corrupt data), EINTR, ...

# Errors after which a kernel copy method (copy_file_range, then sendfile)
# is abandoned for the next one. These calls fail before transferring
# anything, so switching at any offset is exact.
COPY_FALLBACK_ERRNOS: Final[frozenset[int]] = frozenset(
    {
        errno.EXDEV,  # copy_file_range across filesystems before Linux 5.3, and across some since 5.12
        errno.EOPNOTSUPP,  # the filesystem does not implement the call
        errno.ENOSYS,  # the call is missing (old kernels, seccomp)
        errno.EINVAL,  # special files, O_APPEND destinations, overlapping ranges
        errno.EBADF,  # descriptor types the call refuses
        errno.ETXTBSY,  # swap file: the read/write path reports it properly
        errno.ENOTSOCK,  # sendfile on kernels that wanted a socket as destination
    }
)

# FIDEDUPERANGE = _IOWR(0x94, 54, struct file_dedupe_range) (linux/fs.h):
# a 24-byte header (src_offset, src_length, dest_count, two reserved
# fields) followed by dest_count 32-byte records (dest_fd, dest_offset,
# bytes_deduped, status, reserved). Measured on Linux 6.18: at most 127
# destinations per call (128 answers ENOMEM).
FIDEDUPERANGE: Final = 0xC0189436
_DEDUPE_HEADER: Final = struct.Struct("=QQHHI")
_DEDUPE_INFO: Final = struct.Struct("=qQQiI")
FILE_DEDUPE_RANGE_DIFFERS: Final = 1
MAX_DEDUPE_DESTINATIONS: Final = 127

# Errors of the FIDEDUPERANGE call itself (not of one destination) that mean
# "this filesystem or these files cannot share storage": nothing was changed.
DEDUPE_UNSUPPORTED_ERRNOS: Final[frozenset[int]] = frozenset(
    {
        errno.EOPNOTSUPP,  # ext4, tmpfs: no remapping of extents
        errno.ENOTTY,  # the file's driver does not know the ioctl
        errno.ENOSYS,  # seccomp filters, gVisor
        errno.EXDEV,  # not one filesystem
        # A special file, a range past end of file (the file shrank), or a
        # btrfs NOCOW mismatch.
        errno.EINVAL,
        errno.EPERM,  # immutable or append-only, an LSM refusal
        errno.EACCES,
        errno.EBADF,  # the source is not open for reading
        errno.ETXTBSY,  # swap file
    }
)

_CHUNK: Final = 128 * 1024 * 1024  # bytes per kernel copy call: large, yet ^C stays responsive


def ficlone_request() -> int:
    """The FICLONE ioctl request number, ``_IOW(0x94, 9, int)``.

    ``fcntl.FICLONE`` exists from Python 3.12. Older Pythons get it computed
    from the architecture's ioctl encoding: alpha, mips, powerpc and sparc
    put a 3-bit direction (write = 4) at bit 29 with a 13-bit size; every
    other Linux architecture uses the generic encoding (write = 1 at bit 30,
    14-bit size), which gives 0x40049409.
    """
    value = getattr(fcntl, "FICLONE", None)
    if value is not None:
        return int(value)
    machine = os.uname().machine
    if machine.startswith(("alpha", "mips", "ppc", "powerpc", "sparc")):
        return (4 << 29) | (4 << 16) | (0x94 << 8) | 9
    return (1 << 30) | (4 << 16) | (0x94 << 8) | 9


class LinuxBackend(Backend):
    """FICLONE first; otherwise an in-kernel copy that keeps holes."""

    name = "linux"
    copies_xattrs = True

    def __init__(self, unnamed_staging: bool = True) -> None:
        # False stages new files under private names, as on systems without
        # O_TMPFILE (NFS, FUSE); the tests use it to reach that path here.
        self.unnamed_staging = unnamed_staging
        self._ficlone: int | None = None
        self._ficlone_missing = False
        self._cfr_missing = not hasattr(os, "copy_file_range")
        self._sendfile_missing = not hasattr(os, "sendfile")

    # -- cloning -----------------------------------------------------------

    def _ioctl_clone(self, src_fd: int, dst_fd: int) -> None:
        if self._ficlone is None:
            self._ficlone = ficlone_request()
        try:
            fcntl.ioctl(dst_fd, self._ficlone, src_fd)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                self._ficlone_missing = True
            if exc.errno in CLONE_FALLBACK_ERRNOS:
                raise CannotClone(exc.errno) from None
            raise

    def clone(self, transfer: Transfer) -> None:
        if self._ficlone_missing:
            raise CannotClone(errno.ENOSYS, "FICLONE is unavailable in this process")
        src_fd, dst_fd, src_size = transfer.src_fd, transfer.dst_fd, transfer.src_st.st_size
        if transfer.dst_size > src_size:
            self._clone_onto_longer(transfer)
        else:
            self._ioctl_clone(src_fd, dst_fd)
        if type(fcntl.ioctl) is not BuiltinFunctionType:
            # Not the C function: a fake or a wrapper (pyfakefs's returns 0
            # and does nothing). FICLONE makes the destination exactly as
            # long as the source; a "success" that did not is no clone.
            size = os.fstat(dst_fd).st_size
            if size != src_size and size != os.fstat(src_fd).st_size:
                raise CannotClone(errno.EIO, "the clone call reported success but changed nothing")

    def _clone_onto_longer(self, transfer: Transfer) -> None:
        # FICLONE replaces the destination's first st_size bytes and leaves
        # a longer destination's tail in place. With a block-aligned source
        # it succeeds (and the tail is cut here); otherwise XFS and btrfs
        # answer EINVAL, having changed nothing.
        src_fd, dst_fd = transfer.src_fd, transfer.dst_fd
        try:
            self._ioctl_clone(src_fd, dst_fd)
        except CannotClone as signal:
            if signal.errno != errno.EINVAL:
                raise
        else:
            os.ftruncate(dst_fd, transfer.src_st.st_size)
            return
        # Only an empty destination takes the clone, and emptying it destroys
        # its data: first prove on an unnamed scratch file in the same
        # directory that the clone will work, so that a refused clone still
        # leaves the destination untouched.
        directory = os.path.dirname(os.path.realpath(transfer.dst_path)) or "."
        try:
            scratch = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        except OSError:
            raise CannotClone(errno.EINVAL, "cannot prove the clone safe for a longer destination") from None
        try:
            self._ioctl_clone(src_fd, scratch)
        finally:
            os.close(scratch)
        os.ftruncate(dst_fd, 0)
        self._ioctl_clone(src_fd, dst_fd)

    # -- extents and deduplication -------------------------------------------

    def extents(self, fd: int) -> list[Extent]:
        try:
            return fiemap(fd)
        except OSError as exc:
            if exc.errno in CLONE_FALLBACK_ERRNOS:
                raise CannotClone(exc.errno, "the filesystem has no extent map (FIEMAP)") from None
            raise

    def dedupe(self, src_fd: int, offset: int, length: int, dst_fds: Sequence[int]) -> list[DedupeOutcome]:
        if len(dst_fds) > MAX_DEDUPE_DESTINATIONS:
            raise ValueError(f"at most {MAX_DEDUPE_DESTINATIONS} destinations per call")
        buf = bytearray(_DEDUPE_HEADER.size + len(dst_fds) * _DEDUPE_INFO.size)
        _DEDUPE_HEADER.pack_into(buf, 0, offset, length, len(dst_fds), 0, 0)
        for i, fd in enumerate(dst_fds):
            _DEDUPE_INFO.pack_into(buf, _DEDUPE_HEADER.size + i * _DEDUPE_INFO.size, fd, offset, 0, 0, 0)
        try:
            fcntl.ioctl(src_fd, FIDEDUPERANGE, buf, True)
        except OSError as exc:
            if exc.errno in DEDUPE_UNSUPPORTED_ERRNOS:
                raise CannotClone(exc.errno) from None
            raise
        outcomes = []
        for i in range(len(dst_fds)):
            at = _DEDUPE_HEADER.size + i * _DEDUPE_INFO.size
            _, _, deduped, status, _ = _DEDUPE_INFO.unpack_from(buf, at)
            # Per destination, the kernel reports failures as a negative errno
            # in ``status`` (EXDEV, EPERM, ...), not as the call's error.
            if status < 0:
                outcomes.append(DedupeOutcome(error=-status, refused=-status in DEDUPE_UNSUPPORTED_ERRNOS))
            elif status == FILE_DEDUPE_RANGE_DIFFERS:
                outcomes.append(DedupeOutcome(differs=True))
            else:
                outcomes.append(DedupeOutcome(deduped=deduped))
        return outcomes

    # -- copying -----------------------------------------------------------

    def copy(self, transfer: Transfer, may_clone: bool) -> int:
        src_fd, dst_fd, src_st = transfer.src_fd, transfer.dst_fd, transfer.src_st
        size = src_st.st_size
        if size == 0 or not stat.S_ISREG(src_st.st_mode):
            # procfs and sysfs files claim size 0; pipes and devices have no
            # offsets. shutil reads these until EOF, and so does cowpath.
            return self._copy_range(src_fd, dst_fd, 0, None, may_clone=False)
        if src_st.st_blocks * 512 >= size:
            return self._copy_range(src_fd, dst_fd, 0, None, may_clone)
        # Fewer blocks than bytes: the file has holes. Copy only its data
        # and keep the holes (shutil writes them out as zeros; the content
        # is the same, the space is not).
        total = 0
        for start, length in _data_segments(src_fd, size):
            total += self._copy_range(src_fd, dst_fd, start, length, may_clone)
        os.ftruncate(dst_fd, size)
        return size if total <= size else total

    def _copy_range(self, src_fd: int, dst_fd: int, start: int, length: int | None, may_clone: bool) -> int:
        """Copy ``length`` bytes (None: to end of file) at ``start``; return bytes copied."""
        done = 0
        use_cfr = may_clone and not self._cfr_missing
        use_sendfile = not self._sendfile_missing
        while length is None or done < length:
            want = _CHUNK if length is None else min(_CHUNK, length - done)
            offset = start + done
            try:
                if use_cfr:
                    # copy_file_range may share extents (btrfs, XFS) or copy
                    # on the server (NFS 4.2, SMB3): never for "never".
                    got = os.copy_file_range(src_fd, dst_fd, want, offset, offset)
                    if got == 0 and offset == 0:
                        # procfs/sysfs answer 0 at offset 0: read them instead.
                        use_cfr = use_sendfile = False
                        continue
                elif use_sendfile:
                    # sendfile writes at the destination's file position.
                    os.lseek(dst_fd, offset, os.SEEK_SET)
                    got = os.sendfile(dst_fd, src_fd, offset, want)
                    if got == 0 and offset == 0:
                        use_sendfile = False
                        continue
                else:
                    os.lseek(src_fd, offset, os.SEEK_SET)
                    os.lseek(dst_fd, offset, os.SEEK_SET)
                    return done + copy_by_reading(
                        src_fd, dst_fd, 1024 * 1024, None if length is None else length - done
                    )
            except OSError as exc:
                if exc.errno == errno.EFBIG and use_cfr and offset >= os.fstat(src_fd).st_size:
                    # copy_file_range checks the destination's size limit
                    # (RLIMIT_FSIZE, the filesystem's largest file) before it
                    # looks at the source: at the source's end, with the
                    # destination exactly at the limit, that is the end of
                    # the copy, as sendfile and read(2) say by returning 0.
                    break
                if exc.errno not in COPY_FALLBACK_ERRNOS or not (use_cfr or use_sendfile):
                    raise
                if use_cfr:
                    use_cfr = False
                    if exc.errno == errno.ENOSYS:
                        self._cfr_missing = True
                else:
                    use_sendfile = False
                    if exc.errno == errno.ENOSYS:
                        self._sendfile_missing = True
                continue
            if got == 0:
                break  # end of file: the source is shorter than it was
            done += got
        return done


def _data_segments(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) of each data region of a file with holes."""
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return  # only a hole remains
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield pos, size - pos  # no hole support: copy the rest as data
                return
            raise
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        end = min(hole, size)
        if end > data:
            yield data, end - data
        pos = hole
