"""The kernel32 binding (cowpath._win32): structure layouts, FSCTL codes, errors, loading.

These run everywhere: on Windows the errors are checked against CPython's
own mapping, and the real binding reads a real volume.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cowpath
from cowpath import _win32 as win32
from cowpath import _winclone as winclone
from cowpath import _windows as win
from cowpath._windows import WindowsBackend
from tests.fakes.kernel32 import FakeKernel32

# -- structures and codes (everywhere) ------------------------------------------------

pointer_64 = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="layouts of 64-bit Windows")


class FileStreamInfoHeader(ctypes.Structure):
    """The fixed part of FILE_STREAM_INFO; StreamName (WCHAR[]) follows it.

    The backend reads it with a struct format; this is the layout that
    format must match.
    """

    _fields_ = (
        ("NextEntryOffset", ctypes.c_uint32),
        ("StreamNameLength", ctypes.c_uint32),  # in bytes
        ("StreamSize", ctypes.c_int64),
        ("StreamAllocationSize", ctypes.c_int64),
    )


@pointer_64
@pytest.mark.parametrize(
    ("structure", "size", "offsets"),
    [
        (
            win32.DuplicateExtentsData,
            32,
            {"FileHandle": 0, "SourceFileOffset": 8, "TargetFileOffset": 16, "ByteCount": 24},
        ),
        (
            win32.GetIntegrityInformationBuffer,
            16,
            {
                "ChecksumAlgorithm": 0,
                "Reserved": 2,
                "Flags": 4,
                "ChecksumChunkSizeInBytes": 8,
                "ClusterSizeInBytes": 12,
            },
        ),
        (win32.SetIntegrityInformationBuffer, 8, {"ChecksumAlgorithm": 0, "Reserved": 2, "Flags": 4}),
        (win32.FileSetSparseBuffer, 1, {"SetSparse": 0}),
        (win32.FileEndOfFileInfo, 8, {"EndOfFile": 0}),
        (win32.FileAttributeTagInfo, 8, {"FileAttributes": 0, "ReparseTag": 4}),
        (
            FileStreamInfoHeader,
            24,
            {"NextEntryOffset": 0, "StreamNameLength": 4, "StreamSize": 8, "StreamAllocationSize": 16},
        ),
    ],
)
def test_structure_layout(structure: type[ctypes.Structure], size: int, offsets: dict[str, int]) -> None:
    # Sizes and offsets of winioctl.h/winbase.h on 64-bit Windows.
    assert ctypes.sizeof(structure) == size
    assert {name: getattr(structure, name).offset for name in offsets} == offsets


@pointer_64
def test_duplicate_extents_bytes() -> None:
    data = win32.DuplicateExtentsData(0x1234, 4096, 8192, 65536)
    assert bytes(data) == struct.pack("<Qqqq", 0x1234, 4096, 8192, 65536)
    # The stream-info parser reads the same header the structure describes.
    assert win._STREAM_HEADER.size == ctypes.sizeof(FileStreamInfoHeader)


def _ctl_code(function: int, access: int) -> int:
    # CTL_CODE(FILE_DEVICE_FILE_SYSTEM, function, METHOD_BUFFERED, access)
    return (0x9 << 16) | (access << 14) | (function << 2)


def test_fsctl_codes_are_winioctl_definitions() -> None:
    any_access, read, write = 0, 1, 2
    assert _ctl_code(49, any_access) == win32.FSCTL_SET_SPARSE  # FILE_SPECIAL_ACCESS
    assert _ctl_code(159, any_access) == win32.FSCTL_GET_INTEGRITY_INFORMATION
    assert _ctl_code(160, read | write) == win32.FSCTL_SET_INTEGRITY_INFORMATION
    assert _ctl_code(209, write) == win32.FSCTL_DUPLICATE_EXTENTS_TO_FILE


# -- errors (everywhere) -----------------------------------------------------------------

# What CPython raises on Windows for each code (PC/errmap.h): the class and errno.
CPYTHON_ERRORS = {
    win32.ERROR_ACCESS_DENIED: (PermissionError, errno.EACCES),
    win32.ERROR_SHARING_VIOLATION: (PermissionError, errno.EACCES),
    win32.ERROR_WRITE_PROTECT: (PermissionError, errno.EACCES),
    win32.ERROR_DISK_FULL: (OSError, errno.ENOSPC),
    win32.ERROR_HANDLE_DISK_FULL: (OSError, errno.EINVAL),
    win32.ERROR_NOT_SAME_DEVICE: (OSError, errno.EXDEV),
    win32.ERROR_INVALID_HANDLE: (OSError, errno.EBADF),
    win32.ERROR_NOT_ENOUGH_MEMORY: (OSError, errno.ENOMEM),
    win32.ERROR_FILE_NOT_FOUND: (FileNotFoundError, errno.ENOENT),
    win32.ERROR_FILE_EXISTS: (FileExistsError, errno.EEXIST),
    win32.ERROR_NOT_SUPPORTED: (OSError, errno.EINVAL),
    win32.ERROR_IO_DEVICE: (OSError, errno.EINVAL),
}


@pytest.mark.parametrize("code", sorted(CPYTHON_ERRORS))
def test_win_error_is_cpythons_oserror_with_both_names(code: int) -> None:
    kind, number = CPYTHON_ERRORS[code]
    exc = win32.win_error(code, Path("src.bin"), "dst.bin")
    assert type(exc) is kind
    assert exc.errno == number
    assert exc.winerror == code  # type: ignore[attr-defined]
    assert (exc.filename, exc.filename2) == ("src.bin", "dst.bin")


# -- import, binding ------------------------------------------------------------------------


def test_import_and_construction_do_nothing() -> None:
    # A fresh interpreter where ctypes.WinDLL exists (a recorder) and the
    # Windows-only modules are missing: importing cowpath (which picks its
    # own backend) and the Windows modules, and making a Windows backend,
    # must load nothing.
    script = textwrap.dedent(
        """
        import ctypes, sys
        loaded = []
        ctypes.WinDLL = lambda *args, **kwargs: loaded.append(args)
        import cowpath, cowpath._windows as win
        import cowpath._win32, cowpath._winclone, cowpath._fsinfo
        backend = win.WindowsBackend()
        assert loaded == [], loaded
        assert win.kernel32.cache_info().currsize == 0
        assert win._windows_build.cache_info().currsize == 0
        print("clean")
        """
    )
    root = Path(cowpath.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert done.stdout.strip() == "clean", done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="the real binding loads on Windows")
def test_the_real_binding_refuses_to_load_off_windows() -> None:
    with pytest.raises(OSError) as caught:
        win32._RealKernel32()
    assert caught.value.errno == errno.ENOSYS


def test_the_backend_binds_kernel32_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loads: list[int] = []
    fake = FakeKernel32()

    def load() -> FakeKernel32:
        loads.append(1)
        return fake

    monkeypatch.setattr(win, "kernel32", load)
    backend = WindowsBackend()
    assert loads == []
    binding = backend._binding()
    assert backend._binding() is binding is fake
    assert loads == [1]


# -- on Windows itself ---------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "win32", reason="the real kernel32")
def test_real_kernel32_reads_the_volume(tmp_path: Path) -> None:
    k32 = win32.kernel32()
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    fds = [os.open(tmp_path / name, os.O_RDONLY) for name in ("a", "b")]
    try:
        clone = winclone._Clone(k32, fds[0], fds[1], 1, 1, "a", "b", winclone.CLONE_LIMIT)
        one, two = clone.volume(clone.src_handle), clone.volume(clone.dst_handle)
        assert one.serial == two.serial
        assert one.filesystem
    finally:
        for fd in fds:
            os.close(fd)
