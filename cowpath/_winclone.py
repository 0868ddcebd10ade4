"""Block cloning of one file on ReFS and Dev Drive, and how a refused clone is taken back.

A clone is FSCTL_DUPLICATE_EXTENTS_TO_FILE, issued on the destination's
handle range by range; this module plans the ranges, asks everything that
can refuse the pair before changing anything, and gives the destination
back as it was when Windows refuses (CannotClone: "copy instead").

Sources: "Block Cloning" (Win32 FileIO docs) and "Block cloning on ReFS"
(Windows Server storage docs) for the restrictions; [MS-FSCC] 2.3.7-2.3.10
for the status codes of the clone call.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ntpath
import os
from typing import TYPE_CHECKING, Final

from ._errors import CannotClone
from ._win32 import (
    CHECKSUM_TYPE_NONE,
    CPYTHON_ERRNO,
    DWORD,
    ERROR_BLOCK_TOO_MANY_REFERENCES,
    ERROR_INVALID_FUNCTION,
    ERROR_INVALID_PARAMETER,
    ERROR_NOT_SAME_DEVICE,
    ERROR_NOT_SUPPORTED,
    ERROR_OFFSET_ALIGNMENT_VIOLATION,
    FILE_ATTRIBUTE_SPARSE_FILE,
    FILE_ATTRIBUTE_TAG_INFO_CLASS,
    FILE_END_OF_FILE_INFO_CLASS,
    FILE_SHARE_ALL,
    FILE_SUPPORTS_BLOCK_REFCOUNTING,
    FSCTL_DUPLICATE_EXTENTS_TO_FILE,
    FSCTL_GET_INTEGRITY_INFORMATION,
    FSCTL_SET_INTEGRITY_INFORMATION,
    FSCTL_SET_SPARSE,
    GENERIC_READ,
    GENERIC_WRITE,
    INVALID_HANDLE_VALUE,
    DuplicateExtentsData,
    FileAttributeTagInfo,
    FileEndOfFileInfo,
    FileSetSparseBuffer,
    GetIntegrityInformationBuffer,
    Kernel32,
    SetIntegrityInformationBuffer,
    error_message,
    win_error,
)

if TYPE_CHECKING:
    from ._common import StrOrBytesPath

__all__ = ["CLONE_FALLBACK_WINERRORS", "CLONE_LIMIT", "clone_ranges", "is_stream_path"]

#: Each FSCTL_DUPLICATE_EXTENTS_TO_FILE call must cover less than 4 GiB.
CLONE_LIMIT: Final = 4 * 1024**3

# -- which errors mean what -----------------------------------------------------

# Errors of the clone call, and of the calls that prepare it, that mean "this
# pair cannot be cloned here; its data can still be copied". The status each
# comes from is the one [MS-FSCC] 2.3.8 and 2.3.10 list for the request.
CLONE_FALLBACK_WINERRORS: Final[frozenset[int]] = frozenset(
    {
        # STATUS_INVALID_DEVICE_REQUEST: the filesystem does not implement the
        # FSCTL (NTFS, FAT, exFAT, SMB servers without block cloning).
        ERROR_INVALID_FUNCTION,
        # STATUS_NOT_SUPPORTED: a sparse source into a non-sparse target,
        # overlapping ranges, a range past the source's allocation (the list
        # [MS-FSCC] gives); also what redirectors answer for unknown FSCTLs.
        ERROR_NOT_SUPPORTED,
        # STATUS_INVALID_PARAMETER: the source handle is not an open file on
        # the target's volume (two volumes that share a 32-bit serial number).
        ERROR_INVALID_PARAMETER,
        ERROR_NOT_SAME_DEVICE,  # STATUS_NOT_SAME_DEVICE: two volumes, as filters and redirectors say it
        ERROR_OFFSET_ALIGNMENT_VIOLATION,  # a range not on cluster boundaries
        # A source cluster is already shared by as many file regions as ReFS
        # allows (8175; 64K on Windows Server 2016): a copy gives the data
        # new clusters. Unlike the others it can come partway through a range.
        ERROR_BLOCK_TOO_MANY_REFERENCES,
    }
)

# Every other error is a real failure, raised as the OSError it is with both
# file names, in every mode: no room for the new references (ERROR_DISK_FULL,
# ERROR_HANDLE_DISK_FULL, ERROR_DISK_QUOTA_EXCEEDED), access refused by the
# handles or by a filter such as antivirus or Controlled Folder Access
# (ERROR_ACCESS_DENIED, ERROR_WRITE_PROTECT), kernel memory exhausted, a
# failing medium or integrity checksum (ERROR_IO_DEVICE, ERROR_CRC,
# ERROR_DATA_CHECKSUM_ERROR: as GNU coreutils found for EIO, copying after
# such an error risks writing bad data), a lock held by another process
# (ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION, ERROR_USER_MAPPED_FILE).
# A copy would meet each of them too, and the user must hear why.

# Refusals that ReFS makes while checking a request, before it remaps any
# cluster: after one of these the target's data is as it was.
_REFUSED_UNCHANGED: Final[frozenset[int]] = CLONE_FALLBACK_WINERRORS - {ERROR_BLOCK_TOO_MANY_REFERENCES}

# The errno a ReflinkNotSupportedError carries for each refusal: what the
# same refusal is on Linux, so that callers can test one errno everywhere.
_REFUSAL_ERRNO: Final[dict[int, int]] = {
    ERROR_INVALID_FUNCTION: errno.EOPNOTSUPP,
    ERROR_NOT_SUPPORTED: errno.EOPNOTSUPP,
    ERROR_INVALID_PARAMETER: errno.EINVAL,
    ERROR_NOT_SAME_DEVICE: errno.EXDEV,
    ERROR_OFFSET_ALIGNMENT_VIOLATION: errno.EINVAL,
    ERROR_BLOCK_TOO_MANY_REFERENCES: errno.EMLINK,
}

# -- the range plan, and what is never cloned ---------------------------------------


def clone_ranges(size: int, cluster: int, limit: int = CLONE_LIMIT) -> list[tuple[int, int]]:
    """The (offset, length) of each clone call for a ``size``-byte file.

    Offsets and lengths are multiples of ``cluster``, since every region
    must begin and end on a cluster boundary; together the ranges cover the
    file from 0 to ``size`` rounded up to a whole cluster (the last partial
    cluster is cloned whole, running past end of file), and each is shorter
    than ``limit``: the largest multiple of the cluster size below 4 GiB by
    default, so as few calls as the rule allows.
    """
    if cluster <= 0 or cluster & (cluster - 1):
        raise ValueError(f"cluster size must be a power of two, not {cluster}")
    step = (limit - 1) // cluster * cluster
    if step <= 0:
        raise ValueError(f"no whole cluster of {cluster} bytes fits below {limit}")
    end = -(-size // cluster) * cluster
    return [(offset, min(step, end - offset)) for offset in range(0, end, step)]


def is_stream_path(path: StrOrBytesPath) -> bool:
    """Does ``path`` name an alternate data stream (``name:stream``)?

    The last component is taken as Windows parses it (``ntpath``: ``\\\\?\\``,
    UNC and drive prefixes are not in it; ``a:b`` is drive A:), so any colon
    left in it opens a stream. Cloning into a stream has crashed Windows for
    other tools, and a stream cannot be staged under a private name: streams
    are always copied, and written where they are.
    """
    name = os.fspath(path)
    if isinstance(name, bytes):
        return b":" in ntpath.basename(name)
    return ":" in ntpath.basename(name)


def _refusal(code: int, what: str) -> CannotClone:
    number = _REFUSAL_ERRNO.get(code) or CPYTHON_ERRNO.get(code, errno.EINVAL)
    return CannotClone(number, f"{what}: {error_message(code)}")


class _Failed(Exception):
    """A Win32 call of the clone sequence failed with ``code``."""

    def __init__(self, code: int, call: str) -> None:
        super().__init__(code, call)
        self.code = code
        self.call = call


class _Volume:
    __slots__ = ("filesystem", "flags", "serial")

    def __init__(self, serial: int, flags: int, filesystem: str) -> None:
        self.serial = serial
        self.flags = flags
        self.filesystem = filesystem


# -- the clone --------------------------------------------------------------------


class _Clone:
    """One clone of a whole source into a destination, and how to take it back.

    Everything that can refuse the clone is asked first, while nothing has
    been changed. Then the destination is prepared (integrity setting,
    sparse flag, end of file) and cloned range by range; what was changed
    is remembered, so that a refusal can put the destination back as it was
    and say "copy instead" (CannotClone). Once data may have changed in a
    destination that had data, a failure is an OSError.
    """

    def __init__(
        self,
        k32: Kernel32,
        src_fd: int,
        dst_fd: int,
        size: int,
        dst_size: int,
        src: object,
        dst: object,
        limit: int,
    ) -> None:
        self.k32 = k32
        self.src_handle = k32.get_osfhandle(src_fd)
        self.dst_handle = k32.get_osfhandle(dst_fd)
        self.size = size
        self.dst_size = dst_size
        self.src = src
        self.dst = dst
        self.limit = limit
        self.src_sparse = False
        self.dst_sparse = False
        self.eof_changed = False
        self.sparse_set = False
        # The destination's integrity setting before it was changed, if it was.
        self.integrity_before: GetIntegrityInformationBuffer | None = None

    # Win32 calls, each raising _Failed --------------------------------------------

    def _check(self, ok: int, call: str) -> None:
        if not ok:
            raise _Failed(self.k32.last_error(), call)

    def volume(self, handle: int) -> _Volume:
        serial, flags, longest = DWORD(), DWORD(), DWORD()
        filesystem = ctypes.create_unicode_buffer(261)
        ok = self.k32.GetVolumeInformationByHandleW(
            handle,
            None,
            0,
            ctypes.byref(serial),
            ctypes.byref(longest),
            ctypes.byref(flags),
            filesystem,
            len(filesystem),
        )
        self._check(ok, "GetVolumeInformationByHandleW")
        return _Volume(serial.value, flags.value, filesystem.value)

    def integrity(self, handle: int) -> GetIntegrityInformationBuffer:
        info, returned = GetIntegrityInformationBuffer(), DWORD()
        ok = self.k32.DeviceIoControl(
            handle,
            FSCTL_GET_INTEGRITY_INFORMATION,
            None,
            0,
            ctypes.byref(info),
            ctypes.sizeof(info),
            ctypes.byref(returned),
            None,
        )
        self._check(ok, "FSCTL_GET_INTEGRITY_INFORMATION")
        return info

    def attributes(self, handle: int) -> int:
        info = FileAttributeTagInfo()
        ok = self.k32.GetFileInformationByHandleEx(
            handle, FILE_ATTRIBUTE_TAG_INFO_CLASS, ctypes.byref(info), ctypes.sizeof(info)
        )
        self._check(ok, "GetFileInformationByHandleEx")
        return int(info.FileAttributes)

    def set_end_of_file(self, size: int) -> None:
        # Not os.ftruncate: the C runtime's _chsize_s extends a file by
        # writing zeros into it, which is the very copy a clone avoids.
        info = FileEndOfFileInfo(size)
        ok = self.k32.SetFileInformationByHandle(
            self.dst_handle, FILE_END_OF_FILE_INFO_CLASS, ctypes.byref(info), ctypes.sizeof(info)
        )
        self._check(ok, "SetFileInformationByHandle(FileEndOfFileInfo)")

    def set_sparse(self, sparse: bool) -> None:
        data, returned = FileSetSparseBuffer(1 if sparse else 0), DWORD()
        ok = self.k32.DeviceIoControl(
            self.dst_handle,
            FSCTL_SET_SPARSE,
            ctypes.byref(data),
            ctypes.sizeof(data),
            None,
            0,
            ctypes.byref(returned),
            None,
        )
        self._check(ok, "FSCTL_SET_SPARSE")

    def set_integrity(self, setting: GetIntegrityInformationBuffer) -> None:
        # FSCTL_SET_INTEGRITY_INFORMATION needs read and write access to the
        # file; the destination descriptor is write-only, so the call goes
        # through a second handle on the same file.
        algorithm = int(setting.ChecksumAlgorithm)
        # The enforcement flag is valid only with an algorithm.
        flags = int(setting.Flags) if algorithm != CHECKSUM_TYPE_NONE else 0
        handle = self.k32.ReOpenFile(self.dst_handle, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_ALL, 0)
        if handle in (None, 0, INVALID_HANDLE_VALUE):
            raise _Failed(self.k32.last_error(), "ReOpenFile")
        try:
            data, returned = SetIntegrityInformationBuffer(algorithm, 0, flags), DWORD()
            ok = self.k32.DeviceIoControl(
                handle,
                FSCTL_SET_INTEGRITY_INFORMATION,
                ctypes.byref(data),
                ctypes.sizeof(data),
                None,
                0,
                ctypes.byref(returned),
                None,
            )
            self._check(ok, "FSCTL_SET_INTEGRITY_INFORMATION")
        finally:
            self.k32.CloseHandle(handle)

    def duplicate(self, offset: int, length: int) -> None:
        data, returned = DuplicateExtentsData(self.src_handle, offset, offset, length), DWORD()
        ok = self.k32.DeviceIoControl(
            self.dst_handle,
            FSCTL_DUPLICATE_EXTENTS_TO_FILE,
            ctypes.byref(data),
            ctypes.sizeof(data),
            None,
            0,
            ctypes.byref(returned),
            None,
        )
        self._check(ok, "FSCTL_DUPLICATE_EXTENTS_TO_FILE")

    # the sequence ------------------------------------------------------------------

    def run(self) -> None:
        ranges, integrity = self.examine()
        try:
            self.prepare(integrity)
        except _Failed as failed:
            raise self.give_up(failed, data_changed=False) from None
        for index, (offset, length) in enumerate(ranges):
            try:
                self.duplicate(offset, length)
            except _Failed as failed:
                # A refusal of the first range changed nothing; a later one
                # (or a limit met partway) may have replaced data already.
                unchanged = index == 0 and failed.code in _REFUSED_UNCHANGED
                raise self.give_up(failed, data_changed=not unchanged) from None
        if self.dst_size > self.size:
            try:
                self.set_end_of_file(self.size)
            except _Failed as failed:
                raise self.error(failed) from None

    def examine(self) -> tuple[list[tuple[int, int]], GetIntegrityInformationBuffer | None]:
        """Everything that can refuse the clone, asked before anything changes.

        Returns the ranges to clone, and the integrity setting to give the
        destination (None when it has the source's already). A failing
        query only means that this pair cannot be cloned: the copy that
        follows reports a real problem, if there is one.
        """
        try:
            source, target = self.volume(self.src_handle), self.volume(self.dst_handle)
        except _Failed as failed:
            raise _refusal(failed.code, "the volume cannot be examined") from None
        # Serial numbers come from the handles: no drive letter is parsed,
        # so \\?\ paths, UNC paths and mount points compare correctly.
        if source.serial != target.serial:
            raise CannotClone(errno.EXDEV, "source and destination are on different volumes")
        if not source.flags & FILE_SUPPORTS_BLOCK_REFCOUNTING:
            raise CannotClone(errno.EOPNOTSUPP, f"{source.filesystem or 'this'} volume cannot clone")
        try:
            wanted, present = self.integrity(self.src_handle), self.integrity(self.dst_handle)
            src_attributes, dst_attributes = (
                self.attributes(self.src_handle),
                self.attributes(self.dst_handle),
            )
        except _Failed as failed:
            raise _refusal(failed.code, f"{failed.call} failed") from None
        cluster = int(wanted.ClusterSizeInBytes)
        if cluster <= 0 or cluster & (cluster - 1):
            raise CannotClone(errno.EINVAL, f"the volume reports a cluster size of {cluster} bytes")
        integrity: GetIntegrityInformationBuffer | None = None
        if (wanted.ChecksumAlgorithm != CHECKSUM_TYPE_NONE) != (
            present.ChecksumAlgorithm != CHECKSUM_TYPE_NONE
        ):
            # Both files must have integrity streams, or neither. The setting
            # can change only while a file is empty.
            if self.dst_size:
                raise CannotClone(errno.EINVAL, "integrity streams differ and the destination is not empty")
            integrity, self.integrity_before = wanted, present
        self.src_sparse = bool(src_attributes & FILE_ATTRIBUTE_SPARSE_FILE)
        self.dst_sparse = bool(dst_attributes & FILE_ATTRIBUTE_SPARSE_FILE)
        return clone_ranges(self.size, cluster, self.limit), integrity

    def prepare(self, integrity: GetIntegrityInformationBuffer | None) -> None:
        if integrity is not None:
            try:
                self.set_integrity(integrity)
            except _Failed:
                # Dev Drive refuses to change the setting. That is harmless:
                # if the two files still differ, the clone call refuses the
                # pair and the data is copied.
                self.integrity_before = None
        if self.src_sparse and not self.dst_sparse:
            # "If the source file is sparse, the destination file must also be sparse."
            self.set_sparse(True)
            self.sparse_set = True
        # The destination region must lie within the destination's end of
        # file: extend it first (never shorten it yet, so that a refusal can
        # give an existing destination back whole; it is cut at the end).
        if self.size > self.dst_size:
            self.set_end_of_file(self.size)
            self.eof_changed = True

    def give_up(self, failed: _Failed, data_changed: bool) -> CannotClone | OSError:
        """CannotClone for a refusal if the destination is as it was (or made so
        again); otherwise the OSError, the destination given back if it can be."""
        # A destination that had data, some of it perhaps replaced already,
        # cannot be given back; an empty one can, whatever was cloned into it.
        restored = not data_changed or self.dst_size == 0
        if restored:
            try:
                self.undo()
            except _Failed:
                restored = False
        if restored and failed.code in CLONE_FALLBACK_WINERRORS:
            return _refusal(failed.code, f"{failed.call} refused")
        return self.error(failed)

    def undo(self) -> None:
        # An empty destination is made empty again, which also drops what was
        # cloned into it; an existing one was only extended, and is cut back.
        if self.eof_changed:
            self.set_end_of_file(self.dst_size)
        if self.sparse_set:
            self.set_sparse(False)
        if self.integrity_before is not None:
            with contextlib.suppress(_Failed):
                # Best effort: on an empty file the setting changes no data.
                self.set_integrity(self.integrity_before)

    def error(self, failed: _Failed) -> OSError:
        return win_error(failed.code, self.src, self.dst)
