"""The kernel32 binding: the Win32 constants, structures and calls cowpath uses.

Imports cleanly on every OS and loads nothing at import time: kernel32 is
bound through ctypes on the first call of :func:`kernel32` (no compiled
code). :class:`Kernel32` is the seam that the Linux-run tests replace with
a fake acting on real files.

Sources: the winioctl.h pages of DUPLICATE_EXTENTS_DATA and the
FSCTL_*_INTEGRITY_INFORMATION buffers, winbase.h and winerror.h for the
other structures and codes, CPython's PC/errmap.h for the errno of each
Win32 error.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

__all__ = ["CPYTHON_ERRNO", "Kernel32", "error_message", "kernel32", "win_error"]

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
ERROR_ALREADY_EXISTS: Final = 183
ERROR_DATA_CHECKSUM_ERROR: Final = 323
ERROR_OFFSET_ALIGNMENT_VIOLATION: Final = 327
ERROR_BLOCK_TOO_MANY_REFERENCES: Final = 347
ERROR_IO_DEVICE: Final = 1117
ERROR_USER_MAPPED_FILE: Final = 1224
ERROR_DISK_QUOTA_EXCEEDED: Final = 1295
ERROR_NO_SYSTEM_RESOURCES: Final = 1450

# CPython's winerror_to_errno (PC/errmap.h) for the codes cowpath meets;
# every other code becomes EINVAL there too. Used off Windows, so that the
# Linux-run tests see the OSError subclass that Windows would raise.
CPYTHON_ERRNO: Final[dict[int, int]] = {
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
INVALID_HANDLE_VALUE: Final = ctypes.c_void_p(-1).value  # what ReOpenFile returns on failure
DWORD = ctypes.c_uint32
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
        ("Flags", DWORD),
        ("ChecksumChunkSizeInBytes", DWORD),
        ("ClusterSizeInBytes", DWORD),
    )


class SetIntegrityInformationBuffer(ctypes.Structure):
    """FSCTL_SET_INTEGRITY_INFORMATION_BUFFER."""

    _fields_ = (("ChecksumAlgorithm", _WORD), ("Reserved", _WORD), ("Flags", DWORD))


class FileSetSparseBuffer(ctypes.Structure):
    """FILE_SET_SPARSE_BUFFER: the optional input of FSCTL_SET_SPARSE."""

    _fields_ = (("SetSparse", ctypes.c_ubyte),)  # BOOLEAN


class FileEndOfFileInfo(ctypes.Structure):
    """FILE_END_OF_FILE_INFO, for SetFileInformationByHandle(FileEndOfFileInfo)."""

    _fields_ = (("EndOfFile", _LARGE_INTEGER),)


class FileAttributeTagInfo(ctypes.Structure):
    """FILE_ATTRIBUTE_TAG_INFO, from GetFileInformationByHandleEx(FileAttributeTagInfo)."""

    _fields_ = (("FileAttributes", DWORD), ("ReparseTag", DWORD))


# -- the kernel32 seam ------------------------------------------------------------


class Kernel32(Protocol):
    """The Win32 calls cowpath makes, with their Win32 signatures.

    The real one is :func:`kernel32`; the tests pass a fake to
    :class:`~cowpath._windows.WindowsBackend` that acts on Linux descriptors.
    """

    DeviceIoControl: Callable[..., int]
    GetVolumeInformationByHandleW: Callable[..., int]
    GetFileInformationByHandleEx: Callable[..., int]
    SetFileInformationByHandle: Callable[..., int]
    ReOpenFile: Callable[..., int | None]
    CloseHandle: Callable[..., int]
    # For `cowpath check` (cowpath._fsinfo): the volume holding a path.
    GetVolumePathNameW: Callable[..., int]
    GetVolumeInformationW: Callable[..., int]

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
    GetVolumePathNameW: Callable[..., int]
    GetVolumeInformationW: Callable[..., int]
    _get_osfhandle: Callable[[int], int]
    _get_last_error: Callable[[], int]

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise OSError(errno.ENOSYS, "kernel32 exists only on Windows")
        import msvcrt

        dll = ctypes.WinDLL("kernel32", use_last_error=True)
        bool_, handle, dword = ctypes.c_int, _HANDLE, DWORD
        pointer, dword_p, wide = ctypes.c_void_p, ctypes.POINTER(DWORD), ctypes.c_wchar_p
        self.DeviceIoControl = _declare(
            dll.DeviceIoControl, bool_, handle, dword, pointer, dword, pointer, dword, dword_p, pointer
        )
        self.GetVolumeInformationByHandleW = _declare(
            dll.GetVolumeInformationByHandleW,
            bool_,
            handle,
            wide,
            dword,
            dword_p,
            dword_p,
            dword_p,
            wide,
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
        self.GetVolumePathNameW = _declare(dll.GetVolumePathNameW, bool_, wide, wide, dword)
        self.GetVolumeInformationW = _declare(
            dll.GetVolumeInformationW, bool_, wide, wide, dword, dword_p, dword_p, dword_p, wide, dword
        )
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


# -- errors -------------------------------------------------------------------------


def error_message(code: int) -> str:
    """What Windows says for error ``code`` (off Windows, the code's winerror.h name)."""
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
        return OSError(None, error_message(code), filename, code, filename2)
    exc = OSError(CPYTHON_ERRNO.get(code, errno.EINVAL), error_message(code), filename, None, filename2)
    setattr(exc, "winerror", code)  # noqa: B010 - typeshed declares winerror on Windows only
    return exc
