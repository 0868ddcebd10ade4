"""A fake kernel32 that acts on real files, for the Windows backend run on Linux.

The seam is the narrowest one: :class:`cowpath._win32.Kernel32`, the Win32
calls themselves. The fake takes the same arguments as the real functions
(HANDLEs, FSCTL codes, pointers to the real input and output structures),
reads the bytes it is given with its own ``struct`` formats (not the
backend's ctypes classes, so a wrong layout shows), and acts on the real
files behind the handles: a "handle" is a Linux descriptor behind a faked
``get_osfhandle``, and a volume is a directory. It enforces what Windows
documents for block cloning (alignment to the cluster size, a destination
long enough, less than 4 GiB per call, one volume, sparse and integrity
settings that match, the access each FSCTL needs) and fails with the Win32
code Windows gives otherwise.

It runs on Linux only (it uses ``/proc/self/fd`` and ``fcntl``): tests that
need it are marked :data:`needs_fake`.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cowpath import _win32 as win32
from cowpath import _windows as win

LINUX = sys.platform.startswith("linux")
needs_fake = pytest.mark.skipif(
    not LINUX, reason="the fake kernel32 acts on Linux descriptors (/proc/self/fd)"
)

KIB = 1024
GIB = 1024**3
ROUNDED = 4 * GIB  # the documented limit of one clone call

FILE_SUPPORTS_SPARSE_FILES = 0x40
FILE_SUPPORTS_INTEGRITY_STREAMS = 0x04000000
CHECKSUM_TYPE_CRC64 = 2
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_MORE_DATA = 234


@dataclass
class Volume:
    """A fake volume: every file under ``root`` is on it."""

    serial: int
    filesystem: str = "ReFS"
    cluster: int = 4096
    clones: bool = True  # FILE_SUPPORTS_BLOCK_REFCOUNTING
    integrity_default: int = 0  # the checksum algorithm new files get
    devdrive: bool = False  # refuses to change a file's integrity setting

    @property
    def flags(self) -> int:
        flags = FILE_SUPPORTS_SPARSE_FILES
        if self.filesystem == "ReFS":
            flags |= FILE_SUPPORTS_INTEGRITY_STREAMS
        if self.clones:
            flags |= win32.FILE_SUPPORTS_BLOCK_REFCOUNTING
        return flags


@dataclass
class FileState:
    sparse: bool = False
    integrity: int | None = None  # None: the volume's default
    attributes: int = win32.FILE_ATTRIBUTE_ARCHIVE
    streams: list[str] = field(default_factory=lambda: ["::$DATA"])


@dataclass
class Call:
    name: str
    handle: int
    detail: tuple[Any, ...] = ()


@dataclass
class Handle:
    fd: int
    reopened: bool = False
    access: int = 0  # GENERIC_* for reopened handles; CRT handles take the descriptor's mode


def _target(arg: Any) -> Any:
    """The ctypes object an argument points to: byref()'s object, or an array itself."""
    return getattr(arg, "_obj", arg)


def _read(arg: Any, size: int) -> bytes:
    return ctypes.string_at(ctypes.addressof(_target(arg)), size)


def _write(arg: Any, data: bytes) -> None:
    ctypes.memmove(ctypes.addressof(_target(arg)), data, len(data))


def _set(arg: Any, value: int) -> None:
    if arg is not None:
        _target(arg).value = value


def round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


class FakeKernel32:
    """kernel32 as ReFS, NTFS and Dev Drive answer it, acting on Linux files."""

    def __init__(self, default: Volume | None = None) -> None:
        self.default = default or Volume(serial=0x5EED, filesystem="NTFS", clones=False)
        self.volumes: dict[str, Volume] = {}
        self.handles: dict[int, Handle] = {}
        self.files: dict[tuple[int, int], FileState] = {}
        self.calls: list[Call] = []
        self.injected: list[tuple[str, int, int]] = []  # (call, code, nth call)
        self.counts: dict[str, int] = {}
        self.bad_closes: list[int] = []
        self.error = 0
        self.next_handle = 0x7000

    # -- set-up helpers for the tests ----------------------------------------

    def volume(self, root: Path, volume: Volume) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        self.volumes[str(root)] = volume
        return root

    def state_of_path(self, path: Path) -> FileState:
        st_ = os.stat(path)
        return self.files.setdefault((st_.st_dev, st_.st_ino), FileState())

    def inject(self, call: str, code: int, nth: int = 1) -> None:
        """Make the ``nth`` ``call`` (counted from now) fail with ``code``."""
        self.injected.append((call, code, self.counts.get(call, 0) + nth))

    def names(self) -> list[str]:
        return [call.name for call in self.calls]

    def duplicates(self) -> list[tuple[int, int, int, int]]:
        return [call.detail for call in self.calls if call.name == "FSCTL_DUPLICATE_EXTENTS_TO_FILE"]

    def open_reopened(self) -> list[int]:
        return [number for number, handle in self.handles.items() if handle.reopened]

    # -- internals -----------------------------------------------------------

    def _fail(self, code: int) -> int:
        self.error = code
        return 0

    def _injected(self, name: str) -> int:
        self.counts[name] = self.counts.get(name, 0) + 1
        for call, code, nth in self.injected:
            if call == name and nth == self.counts[name]:
                return code
        return 0

    def _handle(self, number: int) -> Handle | None:
        handle = self.handles.get(number)
        if handle is None:
            return None
        try:
            os.fstat(handle.fd)
        except OSError:
            return None
        return handle

    def _can(self, handle: Handle, read: bool = False, write: bool = False) -> bool:
        if handle.reopened:
            readable = bool(handle.access & win32.GENERIC_READ)
            writable = bool(handle.access & win32.GENERIC_WRITE)
        else:
            import fcntl

            mode = fcntl.fcntl(handle.fd, fcntl.F_GETFL) & os.O_ACCMODE
            readable, writable = mode in (os.O_RDONLY, os.O_RDWR), mode in (os.O_WRONLY, os.O_RDWR)
        return (readable or not read) and (writable or not write)

    def _volume_of(self, fd: int) -> Volume:
        path = os.readlink(f"/proc/self/fd/{fd}")
        best, volume = "", self.default
        for root, candidate in self.volumes.items():
            if (path == root or path.startswith(root + os.sep)) and len(root) > len(best):
                best, volume = root, candidate
        return volume

    def _state(self, fd: int) -> FileState:
        st_ = os.fstat(fd)
        return self.files.setdefault((st_.st_dev, st_.st_ino), FileState())

    def _integrity(self, fd: int) -> int:
        state = self._state(fd)
        return self._volume_of(fd).integrity_default if state.integrity is None else state.integrity

    # -- the C runtime -----------------------------------------------------

    def get_osfhandle(self, fd: int) -> int:
        os.fstat(fd)  # msvcrt raises OSError(EBADF) for a descriptor that is not open
        number = 0x10000 + fd * 4  # not the descriptor: passing one for the other shows
        self.handles[number] = Handle(fd)
        return number

    def last_error(self) -> int:
        return self.error

    # -- kernel32 ----------------------------------------------------------

    def GetVolumeInformationByHandleW(
        self,
        number: int,
        name: Any,
        name_size: int,
        serial: Any,
        longest: Any,
        flags: Any,
        filesystem: Any,
        filesystem_size: int,
    ) -> int:
        handle = self._handle(number)
        self.calls.append(Call("GetVolumeInformationByHandleW", number))
        if handle is None:
            return self._fail(win32.ERROR_INVALID_HANDLE)
        code = self._injected("GetVolumeInformationByHandleW")
        if code:
            return self._fail(code)
        volume = self._volume_of(handle.fd)
        _set(serial, volume.serial)
        _set(longest, 255)
        _set(flags, volume.flags)
        if filesystem is not None:
            if filesystem_size <= len(volume.filesystem):
                return self._fail(ERROR_INSUFFICIENT_BUFFER)
            filesystem.value = volume.filesystem
        return 1

    def GetFileInformationByHandleEx(self, number: int, info_class: int, buffer: Any, size: int) -> int:
        handle = self._handle(number)
        self.calls.append(Call("GetFileInformationByHandleEx", number, (info_class,)))
        if handle is None:
            return self._fail(win32.ERROR_INVALID_HANDLE)
        state = self._state(handle.fd)
        if info_class == win32.FILE_ATTRIBUTE_TAG_INFO_CLASS:
            if size < 8:
                return self._fail(ERROR_INSUFFICIENT_BUFFER)
            attributes = state.attributes
            if state.sparse:
                attributes |= win32.FILE_ATTRIBUTE_SPARSE_FILE
            if self._integrity(handle.fd):
                attributes |= win32.FILE_ATTRIBUTE_INTEGRITY_STREAM
            _write(buffer, struct.pack("<II", attributes, 0))
            return 1
        if info_class == win32.FILE_STREAM_INFO_CLASS:
            if not state.streams:
                return self._fail(win32.ERROR_HANDLE_EOF)
            entries = []
            for name in state.streams:
                encoded = name.encode("utf-16-le")
                entry = struct.pack("<IIqq", 0, len(encoded), 0, 0) + encoded
                entries.append(entry + b"\0" * (-len(entry) % 8))
            data = b""
            for index, entry in enumerate(entries):
                following = len(entry) if index + 1 < len(entries) else 0
                data += struct.pack("<I", following) + entry[4:]
            if len(data) > size:
                return self._fail(ERROR_MORE_DATA)
            _write(buffer, data)
            return 1
        return self._fail(win32.ERROR_INVALID_PARAMETER)

    def SetFileInformationByHandle(self, number: int, info_class: int, buffer: Any, size: int) -> int:
        handle = self._handle(number)
        if handle is None:
            return self._fail(win32.ERROR_INVALID_HANDLE)
        if info_class != win32.FILE_END_OF_FILE_INFO_CLASS or size != 8:
            return self._fail(win32.ERROR_INVALID_PARAMETER)
        (end,) = struct.unpack("<q", _read(buffer, 8))
        self.calls.append(Call("SetEndOfFile", number, (end,)))
        if not self._can(handle, write=True):
            return self._fail(win32.ERROR_ACCESS_DENIED)
        code = self._injected("SetEndOfFile")
        if code:
            return self._fail(code)
        os.ftruncate(handle.fd, end)
        return 1

    def ReOpenFile(self, number: int, access: int, share: int, flags: int) -> int | None:
        handle = self._handle(number)
        self.calls.append(Call("ReOpenFile", number, (access,)))
        if handle is None:
            self.error = win32.ERROR_INVALID_HANDLE
            return ctypes.c_void_p(-1).value
        mode = os.O_RDWR if access & win32.GENERIC_READ and access & win32.GENERIC_WRITE else os.O_WRONLY
        fd = os.open(f"/proc/self/fd/{handle.fd}", mode)
        self.next_handle += 4
        self.handles[self.next_handle] = Handle(fd, reopened=True, access=access)
        return self.next_handle

    def CloseHandle(self, number: int) -> int:
        handle = self.handles.get(number)
        self.calls.append(Call("CloseHandle", number))
        if handle is None:
            return self._fail(win32.ERROR_INVALID_HANDLE)
        if not handle.reopened:
            # Closing the C runtime's handle would break its descriptor.
            self.bad_closes.append(number)
            return 1
        del self.handles[number]
        os.close(handle.fd)
        return 1

    def DeviceIoControl(
        self,
        number: int,
        code: int,
        in_buffer: Any,
        in_size: int,
        out_buffer: Any,
        out_size: int,
        returned: Any,
        overlapped: Any,
    ) -> int:
        assert overlapped is None
        handle = self._handle(number)
        if handle is None:
            self.calls.append(Call(f"DeviceIoControl({code:#x})", number))
            return self._fail(win32.ERROR_INVALID_HANDLE)
        volume = self._volume_of(handle.fd)
        state = self._state(handle.fd)
        if code == win32.FSCTL_GET_INTEGRITY_INFORMATION:
            self.calls.append(Call("FSCTL_GET_INTEGRITY_INFORMATION", number))
            if volume.filesystem != "ReFS":
                return self._fail(win32.ERROR_INVALID_FUNCTION)
            if out_size < 16:
                return self._fail(ERROR_INSUFFICIENT_BUFFER)
            data = struct.pack("<HHIII", self._integrity(handle.fd), 0, 0, 16 * KIB, volume.cluster)
            _write(out_buffer, data)
            _set(returned, len(data))
            return 1
        if code == win32.FSCTL_SET_INTEGRITY_INFORMATION:
            algorithm, _, flags = struct.unpack("<HHI", _read(in_buffer, 8)) if in_size >= 8 else (0, 0, 0)
            self.calls.append(Call("FSCTL_SET_INTEGRITY_INFORMATION", number, (algorithm, flags)))
            if not self._can(handle, read=True, write=True):
                # The FSCTL needs FILE_READ_DATA | FILE_WRITE_DATA.
                return self._fail(win32.ERROR_ACCESS_DENIED)
            if volume.filesystem != "ReFS":
                return self._fail(win32.ERROR_INVALID_FUNCTION)
            if in_size < 8 or algorithm not in (0, 1, CHECKSUM_TYPE_CRC64):
                return self._fail(win32.ERROR_INVALID_PARAMETER)
            if volume.devdrive:
                return self._fail(win32.ERROR_NOT_SUPPORTED)
            if os.fstat(handle.fd).st_size:
                return self._fail(win32.ERROR_INVALID_PARAMETER)  # only an empty file's setting can change
            state.integrity = algorithm
            return 1
        if code == win32.FSCTL_SET_SPARSE:
            sparse = True if in_size == 0 else bool(_read(in_buffer, 1)[0])
            self.calls.append(Call("FSCTL_SET_SPARSE", number, (sparse,)))
            if not self._can(handle, write=True):
                return self._fail(win32.ERROR_ACCESS_DENIED)
            state.sparse = sparse
            return 1
        if code == win32.FSCTL_DUPLICATE_EXTENTS_TO_FILE:
            return self._duplicate(number, handle, volume, in_buffer, in_size)
        self.calls.append(Call(f"DeviceIoControl({code:#x})", number))
        return self._fail(win32.ERROR_INVALID_FUNCTION)

    def _duplicate(self, number: int, target: Handle, volume: Volume, in_buffer: Any, in_size: int) -> int:
        layout = struct.Struct("@Pqqq")  # HANDLE, then three LARGE_INTEGERs
        if in_size != layout.size:
            self.calls.append(Call("FSCTL_DUPLICATE_EXTENTS_TO_FILE", number, ()))
            return self._fail(win32.ERROR_INVALID_PARAMETER)
        source_number, src_offset, dst_offset, count = layout.unpack(_read(in_buffer, in_size))
        self.calls.append(
            Call("FSCTL_DUPLICATE_EXTENTS_TO_FILE", number, (source_number, src_offset, dst_offset, count))
        )
        if not self._can(target, write=True):
            return self._fail(win32.ERROR_ACCESS_DENIED)
        if not volume.clones:
            return self._fail(win32.ERROR_INVALID_FUNCTION)  # STATUS_INVALID_DEVICE_REQUEST
        source = self._handle(source_number)
        if source is None or self._volume_of(source.fd) is not volume:
            return self._fail(win32.ERROR_INVALID_PARAMETER)  # not a file on the target's volume
        if not self._can(source, read=True):
            return self._fail(win32.ERROR_ACCESS_DENIED)
        cluster = volume.cluster
        if src_offset % cluster or dst_offset % cluster or count % cluster or count < 0:
            return self._fail(win32.ERROR_INVALID_PARAMETER)
        if count >= ROUNDED:
            return self._fail(win32.ERROR_INVALID_PARAMETER)
        src_size, dst_size = os.fstat(source.fd).st_size, os.fstat(target.fd).st_size
        if src_offset + count > round_up(src_size, cluster):
            return self._fail(win32.ERROR_NOT_SUPPORTED)  # past the source's allocation
        if dst_offset + count > round_up(dst_size, cluster):
            return self._fail(win32.ERROR_INVALID_PARAMETER)  # past the target's end of file
        if self._state(source.fd).sparse and not self._state(target.fd).sparse:
            return self._fail(win32.ERROR_NOT_SUPPORTED)
        if bool(self._integrity(source.fd)) != bool(self._integrity(target.fd)):
            return self._fail(win32.ERROR_NOT_SUPPORTED)
        code = self._injected("FSCTL_DUPLICATE_EXTENTS_TO_FILE")
        if code:
            return self._fail(code)
        # The clone: the range's data, as far as the target's end of file
        # (the rest of its last cluster lies past it and cannot be read).
        data = os.pread(source.fd, count, src_offset)
        data += b"\0" * (count - len(data))
        data = data[: max(0, dst_size - dst_offset)]
        written = 0
        while written < len(data):
            written += os.pwrite(target.fd, data[written:], dst_offset + written)
        return 1

    def close(self) -> None:
        for number in self.open_reopened():
            os.close(self.handles.pop(number).fd)


class FakeCopyFile2:
    """``_winapi.CopyFile2``: copies data and, as CopyFile2 does, times and streams."""

    def __init__(self, fake: FakeKernel32) -> None:
        self.fake = fake
        self.calls: list[tuple[str, str, int]] = []
        self.fail_with: int | None = None

    def __call__(self, src: str, dst: str, flags: int) -> None:
        self.calls.append((src, dst, flags))
        if self.fail_with is not None:
            raise win32.win_error(self.fail_with)
        if flags & win.COPY_FILE_FAIL_IF_EXISTS and os.path.lexists(dst):
            raise win32.win_error(win32.ERROR_FILE_EXISTS)
        shutil.copyfile(src, dst)
        shutil.copystat(src, dst)
        source = self.fake.state_of_path(Path(src))
        target = self.fake.state_of_path(Path(dst))
        target.streams = list(source.streams)
        target.attributes = source.attributes
