"""Windows backend: ReFS block cloning (FSCTL_DUPLICATE_EXTENTS_TO_FILE) to clone.

Copies are made by reading and writing, as shutil makes them on Windows.
Imports cleanly on every OS and does nothing at import time: kernel32 is
bound through ctypes on first use (no compiled code), and that binding is
the seam the Linux-run tests replace with a fake.

Sources for the rules below: "Block Cloning" (Win32 FileIO docs) and "Block
cloning on ReFS" (Windows Server storage docs) for the restrictions; [MS-FSCC]
2.3.7-2.3.10 for the status codes of the clone call; the winioctl.h pages of
DUPLICATE_EXTENTS_DATA and the FSCTL_*_INTEGRITY_INFORMATION buffers.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import ntpath
import os
import stat
import struct
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, cast

from ._api import META_STAT, READ_FLAGS, FdBackend, ReflinkMode, StrOrBytesPath
from ._errors import CannotClone, ReflinkNotSupportedError, with_filenames
from ._staging import Staging, _private_name

if TYPE_CHECKING:
    from ._report import CopyReport

__all__ = [
    "CLONE_FALLBACK_WINERRORS",
    "CLONE_FATAL_WINERRORS",
    "CLONE_LIMIT",
    "Kernel32",
    "WindowsBackend",
    "clone_ranges",
    "is_stream_path",
    "kernel32",
    "win_error",
]

# -- Win32 constants ------------------------------------------------------------

# CTL_CODE(FILE_DEVICE_FILE_SYSTEM, function, METHOD_BUFFERED, access), winioctl.h.
FSCTL_SET_SPARSE: Final = 0x000900C4  # function 49, FILE_SPECIAL_ACCESS
FSCTL_GET_INTEGRITY_INFORMATION: Final = 0x0009027C  # function 159, FILE_ANY_ACCESS
FSCTL_SET_INTEGRITY_INFORMATION: Final = 0x0009C280  # function 160, FILE_READ_DATA | FILE_WRITE_DATA
FSCTL_DUPLICATE_EXTENTS_TO_FILE: Final = 0x00098344  # function 209, FILE_WRITE_DATA

FILE_SUPPORTS_BLOCK_REFCOUNTING: Final = 0x08000000  # GetVolumeInformation's file system flags

FILE_ATTRIBUTE_READONLY: Final = 0x1
FILE_ATTRIBUTE_ARCHIVE: Final = 0x20
FILE_ATTRIBUTE_NORMAL: Final = 0x80
FILE_ATTRIBUTE_SPARSE_FILE: Final = 0x200
FILE_ATTRIBUTE_INTEGRITY_STREAM: Final = 0x8000

# FILE_INFO_BY_HANDLE_CLASS values.
FILE_END_OF_FILE_INFO_CLASS: Final = 6  # FileEndOfFileInfo
FILE_STREAM_INFO_CLASS: Final = 7  # FileStreamInfo
FILE_ATTRIBUTE_TAG_INFO_CLASS: Final = 9  # FileAttributeTagInfo

GENERIC_READ: Final = 0x80000000
GENERIC_WRITE: Final = 0x40000000
FILE_SHARE_ALL: Final = 0x1 | 0x2 | 0x4  # FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE

CHECKSUM_TYPE_NONE: Final = 0

# CopyFile2's dwCopyFlags (winbase.h).
COPY_FILE_FAIL_IF_EXISTS: Final = 0x1
COPY_FILE_ALLOW_DECRYPTED_DESTINATION: Final = 0x8

# Win32 error codes (winerror.h).
ERROR_INVALID_FUNCTION: Final = 1
ERROR_FILE_NOT_FOUND: Final = 2
ERROR_PATH_NOT_FOUND: Final = 3
ERROR_ACCESS_DENIED: Final = 5
ERROR_INVALID_HANDLE: Final = 6
ERROR_NOT_ENOUGH_MEMORY: Final = 8
ERROR_NOT_SAME_DEVICE: Final = 17
ERROR_WRITE_PROTECT: Final = 19
ERROR_CRC: Final = 23
ERROR_SHARING_VIOLATION: Final = 32
ERROR_LOCK_VIOLATION: Final = 33
ERROR_HANDLE_EOF: Final = 38
ERROR_HANDLE_DISK_FULL: Final = 39
ERROR_NOT_SUPPORTED: Final = 50
ERROR_FILE_EXISTS: Final = 80
ERROR_INVALID_PARAMETER: Final = 87
ERROR_DISK_FULL: Final = 112
ERROR_INSUFFICIENT_BUFFER: Final = 122
ERROR_ALREADY_EXISTS: Final = 183
ERROR_MORE_DATA: Final = 234
ERROR_DATA_CHECKSUM_ERROR: Final = 323
ERROR_OFFSET_ALIGNMENT_VIOLATION: Final = 327
ERROR_BLOCK_TOO_MANY_REFERENCES: Final = 347
ERROR_IO_DEVICE: Final = 1117
ERROR_USER_MAPPED_FILE: Final = 1224
ERROR_DISK_QUOTA_EXCEEDED: Final = 1295
ERROR_NO_SYSTEM_RESOURCES: Final = 1450

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

# Refusals that ReFS makes while checking a request, before it remaps any
# cluster: after one of these the target's data is as it was.
_REFUSED_UNCHANGED: Final[frozenset[int]] = CLONE_FALLBACK_WINERRORS - {ERROR_BLOCK_TOO_MANY_REFERENCES}

# Errors that are real failures: raised as the OSError they are, with both
# file names, in every mode. Anything outside both sets is raised as well.
CLONE_FATAL_WINERRORS: Final[frozenset[int]] = frozenset(
    {
        # STATUS_DISK_FULL and friends: no room even for the new references
        # and metadata; a copy needs more room still.
        ERROR_DISK_FULL,
        ERROR_HANDLE_DISK_FULL,
        ERROR_DISK_QUOTA_EXCEEDED,  # the owner's quota is used up: the same for a copy
        # The handles lack the access the FSCTL needs, or a filter (antivirus,
        # EDR, Controlled Folder Access) refuses writes: a copy's writes would
        # be refused too, and the user must hear why.
        ERROR_ACCESS_DENIED,
        ERROR_WRITE_PROTECT,  # STATUS_MEDIA_WRITE_PROTECTED: a read-only volume
        ERROR_NO_SYSTEM_RESOURCES,  # STATUS_INSUFFICIENT_RESOURCES: kernel pool exhausted
        ERROR_NOT_ENOUGH_MEMORY,
        # The medium or an integrity-stream checksum failed: as GNU coreutils
        # found for EIO, copying after such an error risks writing bad data.
        ERROR_IO_DEVICE,
        ERROR_CRC,
        ERROR_DATA_CHECKSUM_ERROR,
        # Another process holds the file or a byte range of it; a copy meets the same lock.
        ERROR_SHARING_VIOLATION,
        ERROR_LOCK_VIOLATION,
        ERROR_USER_MAPPED_FILE,  # the target is mapped into memory: its size cannot change for a copy either
    }
)

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

# CPython's winerror_to_errno (PC/errmap.h) for the codes this module meets;
# every other code becomes EINVAL there too. Used off Windows, so that the
# Linux-run tests see the OSError subclass that Windows would raise.
_CPYTHON_ERRNO: Final[dict[int, int]] = {
    ERROR_FILE_NOT_FOUND: errno.ENOENT,
    ERROR_PATH_NOT_FOUND: errno.ENOENT,
    ERROR_ACCESS_DENIED: errno.EACCES,
    ERROR_INVALID_HANDLE: errno.EBADF,
    ERROR_NOT_ENOUGH_MEMORY: errno.ENOMEM,
    ERROR_NOT_SAME_DEVICE: errno.EXDEV,
    ERROR_WRITE_PROTECT: errno.EACCES,
    ERROR_CRC: errno.EACCES,
    ERROR_SHARING_VIOLATION: errno.EACCES,
    ERROR_LOCK_VIOLATION: errno.EACCES,
    ERROR_FILE_EXISTS: errno.EEXIST,
    ERROR_ALREADY_EXISTS: errno.EEXIST,
    ERROR_DISK_FULL: errno.ENOSPC,
}

_WINERROR_NAMES: Final[dict[int, str]] = {
    value: name
    for name, value in list(globals().items())
    if name.startswith("ERROR_") and isinstance(value, int)
}

# -- structures (winioctl.h, winbase.h) ------------------------------------------
# Fixed-width ctypes types, so that the layout is Windows' on every OS the
# tests run on (c_ulong is 64-bit on Linux). HANDLE is pointer-sized.
_HANDLE = ctypes.c_void_p
_INVALID_HANDLE_VALUE: Final = ctypes.c_void_p(-1).value  # what ReOpenFile returns on failure
_DWORD = ctypes.c_uint32
_WORD = ctypes.c_uint16
_LARGE_INTEGER = ctypes.c_int64


class DuplicateExtentsData(ctypes.Structure):
    """DUPLICATE_EXTENTS_DATA: the input of FSCTL_DUPLICATE_EXTENTS_TO_FILE."""

    _fields_ = (
        ("FileHandle", _HANDLE),  # the source; the FSCTL is issued on the target
        ("SourceFileOffset", _LARGE_INTEGER),
        ("TargetFileOffset", _LARGE_INTEGER),
        ("ByteCount", _LARGE_INTEGER),
    )


class GetIntegrityInformationBuffer(ctypes.Structure):
    """FSCTL_GET_INTEGRITY_INFORMATION_BUFFER; it also gives the volume's cluster size."""

    _fields_ = (
        ("ChecksumAlgorithm", _WORD),
        ("Reserved", _WORD),
        ("Flags", _DWORD),
        ("ChecksumChunkSizeInBytes", _DWORD),
        ("ClusterSizeInBytes", _DWORD),
    )


class SetIntegrityInformationBuffer(ctypes.Structure):
    """FSCTL_SET_INTEGRITY_INFORMATION_BUFFER."""

    _fields_ = (("ChecksumAlgorithm", _WORD), ("Reserved", _WORD), ("Flags", _DWORD))


class FileSetSparseBuffer(ctypes.Structure):
    """FILE_SET_SPARSE_BUFFER: the optional input of FSCTL_SET_SPARSE."""

    _fields_ = (("SetSparse", ctypes.c_ubyte),)  # BOOLEAN


class FileEndOfFileInfo(ctypes.Structure):
    """FILE_END_OF_FILE_INFO, for SetFileInformationByHandle(FileEndOfFileInfo)."""

    _fields_ = (("EndOfFile", _LARGE_INTEGER),)


class FileAttributeTagInfo(ctypes.Structure):
    """FILE_ATTRIBUTE_TAG_INFO, from GetFileInformationByHandleEx(FileAttributeTagInfo)."""

    _fields_ = (("FileAttributes", _DWORD), ("ReparseTag", _DWORD))


class FileStreamInfoHeader(ctypes.Structure):
    """The fixed part of FILE_STREAM_INFO; StreamName (WCHAR[]) follows it."""

    _fields_ = (
        ("NextEntryOffset", _DWORD),
        ("StreamNameLength", _DWORD),  # in bytes
        ("StreamSize", _LARGE_INTEGER),
        ("StreamAllocationSize", _LARGE_INTEGER),
    )


_STREAM_HEADER: Final = struct.Struct("<IIqq")
_MAIN_STREAM: Final = "::$DATA"

# -- the kernel32 seam ------------------------------------------------------------


class Kernel32(Protocol):
    """The Win32 calls this backend makes, with their Win32 signatures.

    The real one is :func:`kernel32`; the tests pass a fake to
    :class:`WindowsBackend` that acts on Linux descriptors.
    """

    DeviceIoControl: Callable[..., int]
    GetVolumeInformationByHandleW: Callable[..., int]
    GetFileInformationByHandleEx: Callable[..., int]
    SetFileInformationByHandle: Callable[..., int]
    ReOpenFile: Callable[..., int | None]
    CloseHandle: Callable[..., int]

    def get_osfhandle(self, fd: int) -> int:
        """The HANDLE behind a C runtime descriptor (``msvcrt.get_osfhandle``)."""

    def last_error(self) -> int:
        """The calling thread's last Win32 error (``ctypes.get_last_error``)."""


def _declare(function: Any, restype: Any, *argtypes: Any) -> Callable[..., Any]:
    function.restype = restype
    function.argtypes = argtypes
    return cast("Callable[..., Any]", function)


class _RealKernel32:
    """kernel32 through ctypes, with every prototype declared (a HANDLE is pointer-sized)."""

    DeviceIoControl: Callable[..., int]
    GetVolumeInformationByHandleW: Callable[..., int]
    GetFileInformationByHandleEx: Callable[..., int]
    SetFileInformationByHandle: Callable[..., int]
    ReOpenFile: Callable[..., int | None]
    CloseHandle: Callable[..., int]
    _get_osfhandle: Callable[[int], int]
    _get_last_error: Callable[[], int]

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise OSError(errno.ENOSYS, "kernel32 exists only on Windows")
        import msvcrt

        dll = ctypes.WinDLL("kernel32", use_last_error=True)
        bool_, handle, dword = ctypes.c_int, _HANDLE, _DWORD
        pointer, dword_p = ctypes.c_void_p, ctypes.POINTER(_DWORD)
        self.DeviceIoControl = _declare(
            dll.DeviceIoControl, bool_, handle, dword, pointer, dword, pointer, dword, dword_p, pointer
        )
        self.GetVolumeInformationByHandleW = _declare(
            dll.GetVolumeInformationByHandleW,
            bool_,
            handle,
            ctypes.c_wchar_p,
            dword,
            dword_p,
            dword_p,
            dword_p,
            ctypes.c_wchar_p,
            dword,
        )
        self.GetFileInformationByHandleEx = _declare(
            dll.GetFileInformationByHandleEx, bool_, handle, ctypes.c_int, pointer, dword
        )
        self.SetFileInformationByHandle = _declare(
            dll.SetFileInformationByHandle, bool_, handle, ctypes.c_int, pointer, dword
        )
        self.ReOpenFile = _declare(dll.ReOpenFile, handle, handle, dword, dword, dword)
        self.CloseHandle = _declare(dll.CloseHandle, bool_, handle)
        self._get_osfhandle = msvcrt.get_osfhandle
        self._get_last_error = ctypes.get_last_error

    def get_osfhandle(self, fd: int) -> int:
        return self._get_osfhandle(fd)

    def last_error(self) -> int:
        return self._get_last_error()


@functools.cache
def kernel32() -> Kernel32:
    """kernel32, bound on first use and cached for the process.

    Raises OSError where there is no kernel32 (any OS but Windows).
    """
    return _RealKernel32()


def _copyfile2_function() -> Callable[[str, str, int], object] | None:
    """``_winapi.CopyFile2`` where this Python has it (3.12+ on Windows), else None."""
    if sys.platform != "win32":
        return None
    import _winapi

    function: Callable[[str, str, int], object] | None = getattr(_winapi, "CopyFile2", None)
    return function


@functools.cache
def _windows_build() -> int:
    """The build number of the running Windows (0 elsewhere).

    ``platform_version`` is the system's own version, not the one a
    compatibility shim may show the process: what decides how the system's
    CopyFile2 behaves.
    """
    if sys.platform != "win32":
        return 0
    return sys.getwindowsversion().platform_version[2]


# -- helpers ----------------------------------------------------------------------

#: Each FSCTL_DUPLICATE_EXTENTS_TO_FILE call must cover less than 4 GiB.
CLONE_LIMIT: Final = 4 * 1024**3

# The first Windows build whose CopyFile2 may clone on its own: Windows 11
# 22H2/23H2 with KB5034848 ("Moment 5"); 24H2 and Windows Server 2025 (26100)
# clone by default. Windows Server 2022 is 20348, Windows 10 is 1904x.
NATIVE_CLONE_BUILD: Final = 22621


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


def _message(code: int) -> str:
    if sys.platform == "win32":
        return ctypes.FormatError(code).strip()
    return _WINERROR_NAMES.get(code, f"Windows error {code}")


def _name(path: object) -> object:
    return os.fspath(path) if isinstance(path, os.PathLike) else path


def win_error(code: int, filename: object = None, filename2: object = None) -> OSError:
    """The OSError that CPython raises for Win32 error ``code``, with both file names.

    On Windows, ``OSError(None, message, filename, code, filename2)`` makes
    CPython choose the errno and the subclass (PermissionError for
    ERROR_ACCESS_DENIED, ...). Elsewhere (the tests) the same errno comes
    from a copy of CPython's table and ``winerror`` is set by hand.
    """
    filename, filename2 = _name(filename), _name(filename2)
    if sys.platform == "win32":
        return OSError(None, _message(code), filename, code, filename2)
    exc = OSError(_CPYTHON_ERRNO.get(code, errno.EINVAL), _message(code), filename, None, filename2)
    setattr(exc, "winerror", code)  # noqa: B010 - typeshed declares winerror on Windows only
    return exc


def _refusal(code: int, what: str) -> CannotClone:
    number = _REFUSAL_ERRNO.get(code) or _CPYTHON_ERRNO.get(code, errno.EINVAL)
    return CannotClone(number, f"{what}: {_message(code)}")


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
        serial, flags, longest = _DWORD(), _DWORD(), _DWORD()
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
        info, returned = GetIntegrityInformationBuffer(), _DWORD()
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
        data, returned = FileSetSparseBuffer(1 if sparse else 0), _DWORD()
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
        if handle in (None, 0, _INVALID_HANDLE_VALUE):
            raise _Failed(self.k32.last_error(), "ReOpenFile")
        try:
            data, returned = SetIntegrityInformationBuffer(algorithm, 0, flags), _DWORD()
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
        data, returned = DuplicateExtentsData(self.src_handle, offset, offset, length), _DWORD()
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


# A stat result that is no regular file: passed as the destination's stat,
# it sends the engine to its in-place path (used for stream destinations,
# which cannot be staged under another name).
_WRITE_IN_PLACE: Final = os.stat_result((0,) * 10)

# The file attributes that a clone followed by copystat reproduces as
# CopyFile2 does; any other (hidden, system, not indexed, ...) is carried
# by CopyFile2 only. Sparse is the one accepted difference: a clone of a
# sparse file is sparse (ReFS requires it), CopyFile2's copy is not.
_PLAIN_ATTRIBUTES: Final = (
    FILE_ATTRIBUTE_READONLY
    | FILE_ATTRIBUTE_ARCHIVE
    | FILE_ATTRIBUTE_NORMAL
    | FILE_ATTRIBUTE_SPARSE_FILE
    | FILE_ATTRIBUTE_INTEGRITY_STREAM
)


def _remove_private(path: StrOrBytesPath) -> None:
    """Remove a private staging file, also one made read-only by CopyFile2; never raises."""
    try:
        os.unlink(path)
    except PermissionError:
        with contextlib.suppress(OSError):
            os.chmod(path, stat.S_IREAD | stat.S_IWRITE)
            os.unlink(path)
    except OSError:
        pass


# -- the backend --------------------------------------------------------------------


class WindowsBackend(FdBackend):
    """Block cloning on ReFS and Dev Drive; a read/write copy everywhere else.

    copy2 on Python 3.12+ is delegated to CopyFile2 where that is what
    keeps the result equal to shutil.copy2's (see :meth:`copy_data`).
    """

    name = "windows"

    #: Each clone call covers less than this many bytes.
    clone_limit: ClassVar[int] = CLONE_LIMIT

    def __init__(self, kernel32: Kernel32 | None = None) -> None:
        # None: the real kernel32, bound on the first clone.
        self._kernel32 = kernel32
        self._no_kernel32 = False
        # The source path of the copy under way in this thread: clone_fd is
        # given descriptors, and needs the name to refuse streams and to
        # name both files in its errors.
        self._local = threading.local()

    def _binding(self) -> Kernel32:
        if self._kernel32 is None:
            if self._no_kernel32:
                raise CannotClone(errno.ENOSYS, "kernel32 is unavailable")
            try:
                self._kernel32 = kernel32()
            except (OSError, AttributeError) as exc:
                self._no_kernel32 = True
                raise CannotClone(errno.ENOSYS, f"kernel32 is unavailable: {exc}") from None
        return self._kernel32

    # -- cloning -------------------------------------------------------------

    def clone_fd(
        self, src_fd: int, dst_fd: int, src_st: os.stat_result, dst_size: int, dst: StrOrBytesPath
    ) -> None:
        src = getattr(self._local, "src", None)
        if is_stream_path(dst) or (src is not None and is_stream_path(src)):
            raise CannotClone(errno.EINVAL, "alternate data streams are copied, never cloned")
        if not stat.S_ISREG(src_st.st_mode):
            raise CannotClone(errno.EINVAL, "only regular files are cloned")
        k32 = self._binding()
        _Clone(k32, src_fd, dst_fd, src_st.st_size, dst_size, src, dst, self.clone_limit).run()

    # -- the shutil-shaped entry points ------------------------------------------

    def copy_data(
        self,
        src: StrOrBytesPath,
        dst: StrOrBytesPath,
        mode: ReflinkMode,
        report: CopyReport | None,
        metadata: int = 0,
        atomic: bool = False,
        dst_st: bool | os.stat_result | None = True,
    ) -> bool:
        # copyfile and copy never go through CopyFile2: it carries alternate
        # data streams, extended attributes, file attributes and the
        # modification time ("This function preserves extended attributes,
        # OLE structured storage, NTFS file system alternate data streams,
        # and file attributes", CopyFile2 remarks), none of which
        # shutil.copyfile (data only) or shutil.copy (data and the read-only
        # bit) gives a destination.
        #
        # shutil.copy2 on Python 3.12+ *is* _winapi.CopyFile2 (falling back
        # to copyfile + copystat only on ERROR_ACCESS_DENIED), so copy2 goes
        # there too where that keeps both promises, shutil's result and the
        # reflink mode:
        # - "always": never; only FSCTL_DUPLICATE_EXTENTS_TO_FILE proves a
        #   clone (copy2 then carries copystat's metadata, not streams);
        # - "never": only before build 22621, where CopyFile2 cannot clone
        #   (later it may, and _winapi.CopyFile2 cannot pass
        #   COPY_FILE2_V2_DISABLE_BLOCK_CLONING);
        # - "auto": a source with nothing but data, times and the read-only
        #   bit is cloned, as a clone plus copystat then equals CopyFile2's
        #   result (ReFS has no extended attributes); anything else, or a
        #   pair that cannot be cloned, goes to CopyFile2, which Windows 11
        #   24H2 and Server 2025 make a clone on ReFS by themselves.
        # Windows does not say whether CopyFile2 cloned: it counts as a copy.
        if metadata == META_STAT and _copyfile2_function() is not None:
            delegate = False
            if mode == "never":
                delegate = _windows_build() < NATIVE_CLONE_BUILD
            elif mode == "auto":
                if self._plain_source(src):
                    try:
                        return self._engine(src, dst, "always", report, metadata, atomic, dst_st)
                    except ReflinkNotSupportedError:
                        pass  # the destination is as it was
                delegate = True
            if delegate and self._copy2_with_copyfile2(src, dst, atomic, report):
                return True
        return self._engine(src, dst, mode, report, metadata, atomic, dst_st)

    def copy_new_file(
        self, src: str, dst: str, mode: ReflinkMode, metadata: int, direct: bool = False
    ) -> tuple[bool, int] | None:
        if metadata == META_STAT and _copyfile2_function() is not None:
            return None  # copy2's way is chosen by copy_data, which the general path calls
        self._local.src = src
        try:
            return super().copy_new_file(src, dst, mode, metadata, direct)
        finally:
            self._local.src = None

    def _engine(
        self,
        src: StrOrBytesPath,
        dst: StrOrBytesPath,
        mode: ReflinkMode,
        report: CopyReport | None,
        metadata: int,
        atomic: bool,
        dst_st: bool | os.stat_result | None,
    ) -> bool:
        if is_stream_path(dst):
            # A stream is opened, and created, where it is, as shutil's
            # open(dst, "wb") does; it has no name of its own to stage.
            dst_st, atomic = _WRITE_IN_PLACE, False
        self._local.src = src
        try:
            return super().copy_data(src, dst, mode, report, metadata, atomic, dst_st)
        finally:
            self._local.src = None

    # -- CopyFile2 -----------------------------------------------------------

    def _plain_source(self, src: StrOrBytesPath) -> bool:
        """Does a clone plus copystat give ``src``'s copy exactly as CopyFile2 makes it?

        True for a file without alternate data streams and without
        attributes beyond read-only, archive, sparse and integrity. True as
        well when the file cannot be opened: the clone attempt then reports
        what is wrong, as the engine reports it for every copy.
        """
        if is_stream_path(src):
            return False
        try:
            k32 = self._binding()
            fd = os.open(src, READ_FLAGS)
        except (CannotClone, OSError):
            return True
        try:
            handle = k32.get_osfhandle(fd)
            info = FileAttributeTagInfo()
            ok = k32.GetFileInformationByHandleEx(
                handle, FILE_ATTRIBUTE_TAG_INFO_CLASS, ctypes.byref(info), ctypes.sizeof(info)
            )
            if not ok or info.FileAttributes & ~_PLAIN_ATTRIBUTES:
                return False
            return _stream_names(k32, handle) == [_MAIN_STREAM]
        finally:
            os.close(fd)

    def _copy2_with_copyfile2(
        self, src: StrOrBytesPath, dst: StrOrBytesPath, atomic: bool, report: CopyReport | None
    ) -> bool:
        """copy2 as shutil.copy2 makes it on 3.12+; False if shutil would fall back (or if the
        destination is not a plain file name), leaving the copy to the engine."""
        copyfile2 = _copyfile2_function()
        if copyfile2 is None or os.path.islink(dst):
            # A symlink destination is written through by cowpath, replaced
            # by CopyFile2: the engine keeps cowpath's meaning.
            return False
        try:
            existing = os.stat(dst)
        except FileNotFoundError:
            existing = None
        except (OSError, ValueError):
            return False  # the engine reports it as shutil would
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            return False
        flags = COPY_FILE_ALLOW_DECRYPTED_DESTINATION  # shutil's flags
        try:
            nbytes = os.stat(src).st_size if report is not None else 0
            if is_stream_path(dst) or (existing is not None and not atomic):
                # In place, as shutil writes an existing file (or a stream).
                copyfile2(os.fsdecode(src), os.fsdecode(dst), flags)
            else:
                _copyfile2_staged(copyfile2, src, dst, flags, replace=existing is not None)
        except OSError as exc:
            if getattr(exc, "winerror", None) == ERROR_ACCESS_DENIED:
                # shutil.copy2's own fallback (a hidden or read-only
                # destination): copyfile, then copystat.
                return False
            code = getattr(exc, "winerror", None)
            raise (
                win_error(code, src, dst) if isinstance(code, int) else with_filenames(exc, src, dst)
            ) from None
        if report is not None:
            report.record(cloned=False, nbytes=nbytes)
        return True


def _copyfile2_staged(
    copyfile2: Callable[[str, str, int], object],
    src: StrOrBytesPath,
    target: StrOrBytesPath,
    flags: int,
    replace: bool,
) -> None:
    """CopyFile2 into a fresh private name beside ``target``, then name it ``target``.

    As every new cowpath destination, it appears only when complete; with
    ``replace`` it replaces an existing ``target`` whole (``atomic``).
    """
    for _ in range(8):
        private = _private_name(target)
        try:
            # FAIL_IF_EXISTS: the private name is this call's alone.
            copyfile2(os.fsdecode(src), os.fsdecode(private), flags | COPY_FILE_FAIL_IF_EXISTS)
        except FileExistsError:
            continue
        except BaseException:
            _remove_private(private)
            raise
        break
    else:
        raise FileExistsError(errno.EEXIST, "no free staging name", os.fsdecode(target))
    staging = Staging(-1, target, private)
    try:
        if staging.commit(replace=replace):
            return
    except BaseException:
        _remove_private(private)
        raise
    # The destination appeared meanwhile: write it as shutil would have.
    _remove_private(private)
    copyfile2(os.fsdecode(src), os.fsdecode(target), flags)


def _stream_names(k32: Kernel32, handle: int) -> list[str]:
    """The names of a file's data streams ("::$DATA" is the unnamed one); [""] if unknown."""
    buffer = ctypes.create_string_buffer(64 * 1024)
    if not k32.GetFileInformationByHandleEx(handle, FILE_STREAM_INFO_CLASS, buffer, len(buffer)):
        if k32.last_error() == ERROR_HANDLE_EOF:
            return []  # no data stream at all
        return [""]  # too many streams for the buffer, or no answer: not plain
    names: list[str] = []
    offset = 0
    raw = buffer.raw
    while offset + _STREAM_HEADER.size <= len(raw):
        following, length, _, _ = _STREAM_HEADER.unpack_from(raw, offset)
        start = offset + _STREAM_HEADER.size
        names.append(raw[start : start + length].decode("utf-16-le", "replace"))
        if not following:
            return names
        offset += following
    return [""]  # a malformed list: not plain
